//! Ollama, a local server (`OLLAMA_HOST`).

use std::sync::Arc;

use async_trait::async_trait;
use rigger_domain::ModelRole;
use rigger_ollama_adapter::{
    DEADLINE_VAR, FIRST_TOKEN_TIMEOUT_VAR, HOST_VAR, IDLE_TIMEOUT_VAR, MODEL_VAR, OllamaAdapter,
    OllamaConfig,
};
use rigger_ports::{InferenceError, LanguageModel};

use super::{Backend, Setting};
use crate::Provider;
use crate::detect::{BackendStatus, PROBE_TIMEOUT, status};
use crate::vars::Vars;

pub(crate) struct Ollama;

#[async_trait]
impl Backend for Ollama {
    fn provider(&self) -> Provider {
        Provider::Ollama
    }

    fn model_var(&self) -> &'static str {
        MODEL_VAR
    }

    /// A fast model routes, a reasoning model decomposes (the guide's choices).
    fn role_default(&self, role: ModelRole) -> Option<&'static str> {
        Some(match role {
            ModelRole::Router => "phi3",
            ModelRole::Decomposer => "orca2",
            ModelRole::Enhancer => "llama3.1",
            ModelRole::Tester => "mistral",
        })
    }

    fn settings(&self) -> &'static [Setting] {
        const SETTINGS: &[Setting] = &[
            Setting::text("host", HOST_VAR),
            Setting::text("model", MODEL_VAR),
            Setting::count("first_token_timeout_secs", FIRST_TOKEN_TIMEOUT_VAR),
            Setting::count("idle_timeout_secs", IDLE_TIMEOUT_VAR),
            Setting::count("deadline_secs", DEADLINE_VAR),
        ];
        SETTINGS
    }

    fn build(&self, model: &str, vars: &Vars) -> Result<Arc<dyn LanguageModel>, InferenceError> {
        let config = OllamaConfig::from_vars(&vars.lookup_with(MODEL_VAR, model))?;
        Ok(Arc::new(OllamaAdapter::new(config)?))
    }

    async fn probe(&self, vars: &Vars) -> BackendStatus {
        let fix = Some(format!(
            "start Ollama (`ollama serve`), or point {HOST_VAR} at it"
        ));
        match OllamaConfig::from_vars(&vars.lookup()) {
            Err(e) => status(
                Provider::Ollama,
                false,
                e.message().to_owned(),
                Some(format!("fix {HOST_VAR}")),
            ),
            Ok(config) => match rigger_ollama_adapter::probe(&config, PROBE_TIMEOUT).await {
                Ok(found) => status(Provider::Ollama, true, found, None),
                Err(e) => status(Provider::Ollama, false, e.message().to_owned(), fix),
            },
        }
    }

    async fn list_models(&self, vars: &Vars) -> Result<Vec<String>, InferenceError> {
        rigger_ollama_adapter::list_models(&OllamaConfig::from_vars(&vars.lookup())?).await
    }
}
