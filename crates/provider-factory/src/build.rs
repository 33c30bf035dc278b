//! Building one adapter for one (provider, model) link. The only place that names adapter types.

use std::sync::Arc;

use rigger_ports::{ErrorKind, InferenceError, LanguageModel};

use crate::plan::Link;
use crate::vars::Vars;
use crate::{BACKEND, Provider};

pub(crate) fn build(link: &Link, vars: &Vars) -> Result<Arc<dyn LanguageModel>, InferenceError> {
    match link.provider {
        #[cfg(feature = "mlx")]
        Provider::Mlx => {
            let mut config = rigger_mlx_adapter::MlxConfig::new(link.model.clone());
            config.python = vars.get("PYTHON_PATH").map(std::path::PathBuf::from);
            Ok(Arc::new(rigger_mlx_adapter::MlxSubprocessAdapter::new(
                config,
            )?))
        }
        #[cfg(feature = "candle")]
        Provider::Candle => {
            let model = link.model.clone();
            let lookup = vars.lookup();
            let config = rigger_candle_adapter::CandleConfig::from_vars(move |k| {
                if k == "CANDLE_MODEL" {
                    Some(model.clone())
                } else {
                    lookup(k)
                }
            })?;
            let provisional = rigger_ports::ModelDescriptor {
                backend: "candle".into(),
                model_id: link.model.clone(),
                context_length: None,
                capabilities: rigger_candle_adapter::CandleAdapter::capabilities(),
            };
            Ok(Arc::new(crate::lazy::LazyModel::new(
                provisional,
                Box::new(move || {
                    let config = config.clone();
                    Box::pin(async move {
                        let adapter = rigger_candle_adapter::CandleAdapter::load(config).await?;
                        Ok(Arc::new(adapter) as Arc<dyn LanguageModel>)
                    })
                }),
            )))
        }
        #[cfg(feature = "ollama")]
        Provider::Ollama => {
            let lookup = vars.lookup();
            let mut config = rigger_ollama_adapter::OllamaConfig::from_vars(&lookup)?;
            config.model = link.model.clone();
            Ok(Arc::new(rigger_ollama_adapter::OllamaAdapter::new(config)?))
        }
        #[cfg(feature = "openai")]
        Provider::OpenAi => {
            let lookup = vars.lookup();
            let mut config = rigger_openai_adapter::OpenAiConfig::from_vars(&lookup)?;
            config.model = Some(link.model.clone());
            Ok(Arc::new(rigger_openai_adapter::OpenAiAdapter::new(config)?))
        }
        #[cfg(feature = "anthropic")]
        Provider::Anthropic => {
            let lookup = vars.lookup();
            let mut config = rigger_anthropic_adapter::AnthropicConfig::from_vars(&lookup);
            config.model = link.model.clone();
            Ok(Arc::new(rigger_anthropic_adapter::AnthropicAdapter::new(
                config,
            )?))
        }
        #[allow(unreachable_patterns)] // every arm above is behind a feature
        other => Err(InferenceError::new(
            ErrorKind::NotAvailable,
            BACKEND,
            format!("the {other} adapter is not available in this build"),
        )
        .with_hint("pick another provider (rigger doctor lists them)")),
    }
}
