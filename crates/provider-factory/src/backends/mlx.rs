//! MLX on Apple Silicon, through a Python worker (`mlx-lm`).

use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use rigger_domain::ModelRole;
use rigger_mlx_adapter::{MlxConfig, MlxSubprocessAdapter};
use rigger_ports::{InferenceError, LanguageModel};

use super::{Backend, Setting};
use crate::Provider;
use crate::detect::{BackendStatus, status};
use crate::models::hub_cache_models;
use crate::vars::Vars;

pub(crate) struct Mlx;

const MODEL_VAR: &str = "MLX_MODEL";
const PYTHON_VAR: &str = "PYTHON_PATH";

/// The adapter's settings for `model`; the interpreter from `PYTHON_PATH`, when set.
fn config(model: &str, vars: &Vars) -> MlxConfig {
    let mut config = MlxConfig::new(model);
    config.python = vars.get(PYTHON_VAR).map(PathBuf::from);
    config
}

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
        ];
        SETTINGS
    }

    fn build(&self, model: &str, vars: &Vars) -> Result<Arc<dyn LanguageModel>, InferenceError> {
        Ok(Arc::new(MlxSubprocessAdapter::new(config(model, vars))?))
    }

    async fn probe(&self, vars: &Vars) -> BackendStatus {
        let python = config("", vars).python;
        let checked = tokio::task::spawn_blocking(move || match python {
            Some(p) => rigger_mlx_adapter::check_availability(Some(&p)),
            None => rigger_mlx_adapter::availability().clone(),
        })
        .await;
        let a = match checked {
            Ok(a) => a,
            Err(e) => return status(Provider::Mlx, false, format!("the check failed: {e}"), None),
        };
        let fix =
            Some("cargo xtask setup-mlx (or pip install mlx-lm), or set PYTHON_PATH".to_owned());
        let mut s = status(Provider::Mlx, a.available, a.reason.clone(), fix);
        let apple_silicon = cfg!(all(target_os = "macos", target_arch = "aarch64"));
        if a.available && !apple_silicon {
            s.auto_selectable = false;
            s.detail = format!(
                "{} — not auto-selected off Apple Silicon; set TASK_ORCHESTRATOR_PROVIDER=mlx to use it",
                a.reason
            );
        }
        s
    }

    /// MLX loads hub ids from the Hugging Face cache.
    async fn list_models(&self, vars: &Vars) -> Result<Vec<String>, InferenceError> {
        Ok(hub_cache_models(vars))
    }
}
