//! Anthropic's Messages API.

use std::sync::Arc;

use async_trait::async_trait;
use rigger_anthropic_adapter::{
    API_KEY_VAR, AnthropicAdapter, AnthropicConfig, BASE_URL_VAR, DEADLINE_VAR, DEFAULT_MODEL,
    FIRST_TOKEN_TIMEOUT_VAR, IDLE_TIMEOUT_VAR, MODEL_VAR,
};
use rigger_domain::ModelRole;
use rigger_ports::{InferenceError, LanguageModel};

use super::{Backend, Setting, not_configured};
use crate::Provider;
use crate::detect::{BackendStatus, PROBE_TIMEOUT, status};
use crate::vars::Vars;

pub(crate) struct Anthropic;

fn not_set() -> String {
    format!("{API_KEY_VAR} is not set")
}

fn config(vars: &Vars) -> Result<AnthropicConfig, InferenceError> {
    AnthropicConfig::from_vars(&vars.lookup())
}

#[async_trait]
impl Backend for Anthropic {
    fn provider(&self) -> Provider {
        Provider::Anthropic
    }

    fn model_var(&self) -> &'static str {
        MODEL_VAR
    }

    /// The adapter's default, a current model id (which will age), for every role.
    fn role_default(&self, _role: ModelRole) -> Option<&'static str> {
        Some(DEFAULT_MODEL)
    }

    fn settings(&self) -> &'static [Setting] {
        const SETTINGS: &[Setting] = &[
            Setting::text("base_url", BASE_URL_VAR),
            Setting::text("model", MODEL_VAR),
            Setting::count("first_token_timeout_secs", FIRST_TOKEN_TIMEOUT_VAR),
            Setting::count("idle_timeout_secs", IDLE_TIMEOUT_VAR),
            Setting::count("deadline_secs", DEADLINE_VAR),
        ];
        SETTINGS
    }

    fn build(&self, model: &str, vars: &Vars) -> Result<Arc<dyn LanguageModel>, InferenceError> {
        let config = AnthropicConfig::from_vars(&vars.lookup_with(MODEL_VAR, model))?;
        Ok(Arc::new(AnthropicAdapter::new(config)?))
    }

    /// Usable when `ANTHROPIC_API_KEY` is set and the API answers.
    async fn probe(&self, vars: &Vars) -> BackendStatus {
        let fix = Some(format!(
            "check {API_KEY_VAR}, {BASE_URL_VAR} and the network"
        ));
        let config = match config(vars) {
            Ok(config) => config,
            Err(e) => return status(Provider::Anthropic, false, e.message().to_owned(), fix),
        };
        if config.api_key.is_none() {
            return status(
                Provider::Anthropic,
                false,
                not_set(),
                Some(format!("set {API_KEY_VAR}")),
            );
        }
        match rigger_anthropic_adapter::probe(&config, PROBE_TIMEOUT).await {
            Ok(found) => status(Provider::Anthropic, true, found, None),
            Err(e) => status(Provider::Anthropic, false, e.message().to_owned(), fix),
        }
    }

    async fn list_models(&self, vars: &Vars) -> Result<Vec<String>, InferenceError> {
        let config = config(vars)?;
        if config.api_key.is_none() {
            return Err(not_configured(&not_set()));
        }
        rigger_anthropic_adapter::list_models(&config).await
    }
}
