//! Candle: GGUF or safetensors models run in-process, from a local path or a hub id.

use std::sync::Arc;

use async_trait::async_trait;
use rigger_candle_adapter::{
    CandleAdapter, CandleConfig, DEVICE_VAR, KERNELS_VAR, MODEL_VAR, THREADS_VAR, TOKENIZER_VAR,
};
use rigger_domain::ModelRole;
use rigger_ports::{InferenceError, LanguageModel};

use super::{Backend, Setting};
use crate::Provider;
use crate::detect::{BackendStatus, PROBE_TIMEOUT, status};
use crate::vars::Vars;

pub(crate) struct Candle;

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
            Setting::text("tokenizer", TOKENIZER_VAR),
            Setting::text("device", DEVICE_VAR),
            Setting::count("threads", THREADS_VAR),
            // auto, reference, avx2 or portable: the adapter parses it.
            Setting::text("kernels", KERNELS_VAR),
        ];
        SETTINGS
    }

    /// Lazy: the weights load on the first request.
    fn build(&self, model: &str, vars: &Vars) -> Result<Arc<dyn LanguageModel>, InferenceError> {
        let config = CandleConfig::from_vars(&vars.lookup_with(MODEL_VAR, model))?;
        Ok(Arc::new(CandleAdapter::new(config)?))
    }

    /// The adapter's own check (its one rule for "local path or hub id"), so that what is
    /// reported usable here is what the adapter then accepts.
    async fn probe(&self, vars: &Vars) -> BackendStatus {
        let fix = Some(format!(
            "set {MODEL_VAR} to a .gguf file, a safetensors folder or a hub id (owner/repo or owner/repo:file.gguf)"
        ));
        let found = match CandleConfig::from_vars(&vars.lookup()) {
            Ok(config) => rigger_candle_adapter::probe(&config, PROBE_TIMEOUT).await,
            Err(e) => Err(e),
        };
        match found {
            Ok(found) => status(Provider::Candle, true, found, None),
            Err(e) => status(Provider::Candle, false, e.message().to_owned(), fix),
        }
    }

    async fn list_models(&self, vars: &Vars) -> Result<Vec<String>, InferenceError> {
        rigger_candle_adapter::list_models(&CandleConfig::from_vars(&vars.lookup())?).await
    }
}
