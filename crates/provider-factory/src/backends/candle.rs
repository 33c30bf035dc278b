//! Candle: GGUF or safetensors models run in-process, from a local path or a hub id.

use std::sync::Arc;

use async_trait::async_trait;
use rigger_candle_adapter::{CandleAdapter, CandleConfig};
use rigger_domain::ModelRole;
use rigger_ports::{InferenceError, LanguageModel, ModelDescriptor};

use super::{Backend, Setting};
use crate::Provider;
use crate::detect::{BackendStatus, status};
use crate::lazy::LazyModel;
use crate::models::hub_cache_models;
use crate::vars::Vars;

pub(crate) struct Candle;

const MODEL_VAR: &str = "CANDLE_MODEL";

/// `CANDLE_MODEL`, when set.
fn configured_model(vars: &Vars) -> Option<String> {
    vars.get(MODEL_VAR)
}

#[async_trait]
impl Backend for Candle {
    fn provider(&self) -> Provider {
        Provider::Candle
    }

    fn model_var(&self) -> &'static str {
        MODEL_VAR
    }

    /// None: Candle needs a local file or a hub id with a GGUF, named by `CANDLE_MODEL`.
    fn role_default(&self, _role: ModelRole) -> Option<&'static str> {
        None
    }

    fn settings(&self) -> &'static [Setting] {
        const SETTINGS: &[Setting] = &[
            Setting::text("model", MODEL_VAR),
            Setting::text("tokenizer", "CANDLE_TOKENIZER"),
            Setting::text("device", "CANDLE_DEVICE"),
            Setting::count("threads", "CANDLE_THREADS"),
            // auto, reference, avx2 or portable: the adapter parses it.
            Setting::text("kernels", "CANDLE_KERNELS"),
        ];
        SETTINGS
    }

    fn build(&self, model: &str, vars: &Vars) -> Result<Arc<dyn LanguageModel>, InferenceError> {
        let lookup = vars.lookup();
        let link_model = model.to_owned();
        let config = CandleConfig::from_vars(move |k| {
            if k == MODEL_VAR {
                Some(link_model.clone())
            } else {
                lookup(k)
            }
        })?;
        let provisional = ModelDescriptor {
            backend: "candle".into(),
            model_id: model.to_owned(),
            context_length: None,
            capabilities: CandleAdapter::capabilities(),
        };
        Ok(Arc::new(LazyModel::new(
            provisional,
            Box::new(move || {
                let config = config.clone();
                Box::pin(async move {
                    let adapter = CandleAdapter::load(config).await?;
                    Ok(Arc::new(adapter) as Arc<dyn LanguageModel>)
                })
            }),
        )))
    }

    async fn probe(&self, vars: &Vars) -> BackendStatus {
        let fix =
            Some("set CANDLE_MODEL to a .gguf file, a safetensors folder or a hub id".to_owned());
        let Some(model) = configured_model(vars) else {
            return status(Provider::Candle, false, "CANDLE_MODEL is not set", fix);
        };
        let path = std::path::Path::new(&model);
        let looks_local = path.is_absolute() || model.starts_with('.') || model.ends_with(".gguf");
        if path.exists() {
            status(
                Provider::Candle,
                true,
                format!("CANDLE_MODEL={model} (loaded on first use)"),
                None,
            )
        } else if looks_local {
            status(
                Provider::Candle,
                false,
                format!("CANDLE_MODEL={model} does not exist"),
                fix,
            )
        } else {
            status(
                Provider::Candle,
                true,
                format!(
                    "CANDLE_MODEL={model}: a hub id, resolved through the hub cache on first use"
                ),
                None,
            )
        }
    }

    /// The configured model first, then the Hugging Face cache (hub ids load from it).
    async fn list_models(&self, vars: &Vars) -> Result<Vec<String>, InferenceError> {
        let mut models = hub_cache_models(vars);
        if let Some(m) = configured_model(vars) {
            models.insert(0, format!("{m} (CANDLE_MODEL)"));
        }
        Ok(models)
    }
}
