//! OpenAI-compatible servers: the OpenAI API, vLLM, llama-server, mlx_lm.server, …

use std::sync::Arc;

use async_trait::async_trait;
use rigger_domain::ModelRole;
use rigger_openai_adapter::{
    API_KEY_VAR, BASE_URL_VAR, DEADLINE_VAR, DEFAULT_BASE_URL, IDLE_TIMEOUT_VAR, MODEL_VAR,
    OpenAiAdapter, OpenAiConfig, RESPONSE_TIMEOUT_VAR,
};
use rigger_ports::{InferenceError, LanguageModel};

use super::{Backend, Setting, not_configured};
use crate::Provider;
use crate::detect::{BackendStatus, PROBE_TIMEOUT, status};
use crate::vars::Vars;

pub(crate) struct OpenAi;

fn not_set() -> String {
    format!("{API_KEY_VAR} and {BASE_URL_VAR} are not set")
}

fn config(vars: &Vars) -> Result<OpenAiConfig, InferenceError> {
    OpenAiConfig::from_vars(&vars.lookup())
}

/// Whether there is anything to reach: a key (for the default base URL) or a base URL of its
/// own. Without either, probing the public API would only fail.
fn is_configured(config: &OpenAiConfig) -> bool {
    config.api_key.is_some() || config.base_url != DEFAULT_BASE_URL
}

#[async_trait]
impl Backend for OpenAi {
    fn provider(&self) -> Provider {
        Provider::OpenAi
    }

    fn model_var(&self) -> &'static str {
        MODEL_VAR
    }

    /// None: a server serves whatever it was started with, so `OPENAI_MODEL` is required.
    fn role_default(&self, _role: ModelRole) -> Option<&'static str> {
        None
    }

    fn settings(&self) -> &'static [Setting] {
        const SETTINGS: &[Setting] = &[
            Setting::text("base_url", BASE_URL_VAR),
            Setting::text("model", MODEL_VAR),
            Setting::count("response_timeout_secs", RESPONSE_TIMEOUT_VAR),
            Setting::count("idle_timeout_secs", IDLE_TIMEOUT_VAR),
            Setting::count("deadline_secs", DEADLINE_VAR),
        ];
        SETTINGS
    }

    fn build(&self, model: &str, vars: &Vars) -> Result<Arc<dyn LanguageModel>, InferenceError> {
        let config = OpenAiConfig::from_vars(&vars.lookup_with(MODEL_VAR, model))?;
        Ok(Arc::new(OpenAiAdapter::new(config)?))
    }

    /// Usable when a key or a base URL is set and the server answers.
    async fn probe(&self, vars: &Vars) -> BackendStatus {
        let fix = Some(format!(
            "check {BASE_URL_VAR}, {API_KEY_VAR} and that the server runs"
        ));
        let config = match config(vars) {
            Ok(config) => config,
            Err(e) => return status(Provider::OpenAi, false, e.message().to_owned(), fix),
        };
        if !is_configured(&config) {
            return status(
                Provider::OpenAi,
                false,
                not_set(),
                Some(format!(
                    "set {BASE_URL_VAR} to a server's /v1 base (vLLM, llama-server, mlx_lm.server) or {API_KEY_VAR}"
                )),
            );
        }
        match rigger_openai_adapter::probe(&config, PROBE_TIMEOUT).await {
            Ok(found) => status(Provider::OpenAi, true, found, None),
            Err(e) => status(Provider::OpenAi, false, e.message().to_owned(), fix),
        }
    }

    async fn list_models(&self, vars: &Vars) -> Result<Vec<String>, InferenceError> {
        let config = config(vars)?;
        if !is_configured(&config) {
            return Err(not_configured(&not_set()));
        }
        rigger_openai_adapter::list_models(&config).await
    }
}
