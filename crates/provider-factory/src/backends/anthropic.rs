//! Anthropic's Messages API.

use std::sync::Arc;

use async_trait::async_trait;
use rigger_anthropic_adapter::{
    AnthropicAdapter, AnthropicConfig, DEFAULT_MODEL, ENV_BASE_URL, ENV_MODEL,
};
use rigger_domain::ModelRole;
use rigger_ports::{InferenceError, LanguageModel};

use super::{Backend, Setting, not_configured};
use crate::Provider;
use crate::detect::{BackendStatus, PROBE_TIMEOUT, status};
use crate::vars::Vars;

pub(crate) struct Anthropic;

const NOT_SET: &str = "ANTHROPIC_API_KEY is not set";

fn config(vars: &Vars) -> AnthropicConfig {
    AnthropicConfig::from_vars(&vars.lookup())
}

#[async_trait]
impl Backend for Anthropic {
    fn provider(&self) -> Provider {
        Provider::Anthropic
    }

    fn model_var(&self) -> &'static str {
        ENV_MODEL
    }

    /// The adapter's default, a current model id (which will age), for every role.
    fn role_default(&self, _role: ModelRole) -> Option<&'static str> {
        Some(DEFAULT_MODEL)
    }

    fn settings(&self) -> &'static [Setting] {
        const SETTINGS: &[Setting] = &[
            Setting::text("base_url", ENV_BASE_URL),
            Setting::text("model", ENV_MODEL),
        ];
        SETTINGS
    }

    fn build(&self, model: &str, vars: &Vars) -> Result<Arc<dyn LanguageModel>, InferenceError> {
        let mut config = config(vars);
        config.model = model.to_owned();
        Ok(Arc::new(AnthropicAdapter::new(config)?))
    }

    /// Usable when `ANTHROPIC_API_KEY` is set and the API answers.
    async fn probe(&self, vars: &Vars) -> BackendStatus {
        let config = config(vars);
        if config.api_key.is_none() {
            return status(
                Provider::Anthropic,
                false,
                NOT_SET,
                Some("set ANTHROPIC_API_KEY".into()),
            );
        }
        match rigger_anthropic_adapter::probe(&config, PROBE_TIMEOUT).await {
            Ok(found) => status(Provider::Anthropic, true, found, None),
            Err(e) => status(
                Provider::Anthropic,
                false,
                e.message().to_owned(),
                Some("check ANTHROPIC_API_KEY, ANTHROPIC_BASE_URL and the network".into()),
            ),
        }
    }

    async fn list_models(&self, vars: &Vars) -> Result<Vec<String>, InferenceError> {
        let config = config(vars);
        if config.api_key.is_none() {
            return Err(not_configured(NOT_SET));
        }
        rigger_anthropic_adapter::list_models(&config).await
    }
}
