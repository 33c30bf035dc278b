//! MLX on Apple Silicon, through a Python worker (`mlx-lm`).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use rigger_domain::ModelRole;
use rigger_mlx_adapter::{
    FIRST_TOKEN_TIMEOUT_VAR, IDLE_TIMEOUT_VAR, LOAD_TIMEOUT_VAR, MODEL_VAR, MlxConfig,
    MlxSubprocessAdapter, PYTHON_VAR, STARTUP_TIMEOUT_VAR,
};
use rigger_ports::{InferenceError, LanguageModel};

use super::{Backend, Setting};
use crate::Provider;
use crate::detect::{BackendStatus, status};
use crate::vars::Vars;

pub(crate) struct Mlx;

/// The probe starts Python and imports mlx, which takes seconds on a cold start: far more than
/// a network probe's timeout.
const PROBE_TIMEOUT: Duration = Duration::from_secs(20);

#[async_trait]
impl Backend for Mlx {
    fn provider(&self) -> Provider {
        Provider::Mlx
    }

    fn model_var(&self) -> &'static str {
        MODEL_VAR
    }

    /// A fast model routes and tests, a reasoning model decomposes (the guide's choices).
    fn role_default(&self, role: ModelRole) -> Option<&'static str> {
        Some(match role {
            ModelRole::Router | ModelRole::Tester => "mlx-community/Phi-3-mini-4k-instruct",
            ModelRole::Decomposer => "mlx-community/orca-2-7b",
            ModelRole::Enhancer => "mlx-community/Mistral-7B-Instruct-v0.2",
        })
    }

    fn settings(&self) -> &'static [Setting] {
        const SETTINGS: &[Setting] = &[
            Setting::text("model", MODEL_VAR),
            Setting::text("python", PYTHON_VAR),
            Setting::count("startup_timeout_secs", STARTUP_TIMEOUT_VAR),
            Setting::count("load_timeout_secs", LOAD_TIMEOUT_VAR),
            Setting::count("first_token_timeout_secs", FIRST_TOKEN_TIMEOUT_VAR),
            Setting::count("idle_timeout_secs", IDLE_TIMEOUT_VAR),
        ];
        SETTINGS
    }

    fn build(&self, model: &str, vars: &Vars) -> Result<Arc<dyn LanguageModel>, InferenceError> {
        let config = MlxConfig::from_vars(&vars.lookup_with(MODEL_VAR, model))?;
        Ok(Arc::new(MlxSubprocessAdapter::new(config)?))
    }

    async fn probe(&self, vars: &Vars) -> BackendStatus {
        let fix = Some(format!(
            "cargo xtask setup-mlx (or pip install mlx-lm), or set {PYTHON_VAR}"
        ));
        let found = match MlxConfig::from_vars(&vars.lookup()) {
            Ok(config) => rigger_mlx_adapter::probe(&config, PROBE_TIMEOUT).await,
            Err(e) => Err(e),
        };
        let found = match found {
            Ok(found) => found,
            Err(e) => return status(Provider::Mlx, false, e.message().to_owned(), fix),
        };
        let mut s = status(Provider::Mlx, true, found.clone(), None);
        let apple_silicon = cfg!(all(target_os = "macos", target_arch = "aarch64"));
        if !apple_silicon {
            s.auto_selectable = false;
            s.detail = format!(
                "{found} — not auto-selected off Apple Silicon; set TASK_ORCHESTRATOR_PROVIDER=mlx to use it"
            );
        }
        s
    }

    async fn list_models(&self, vars: &Vars) -> Result<Vec<String>, InferenceError> {
        rigger_mlx_adapter::list_models(&MlxConfig::from_vars(&vars.lookup())?).await
    }
}
