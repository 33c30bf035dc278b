//! Candle: GGUF or safetensors models run in-process, from a local path or a hub id; with no
//! `CANDLE_MODEL`, the built-in default models below, downloaded from the hub on first use, are
//! what runs when no other backend is usable (the last resort of auto-detection).

use std::sync::Arc;

use async_trait::async_trait;
use rigger_candle_adapter::{
    CandleAdapter, CandleConfig, DEVICE_VAR, HubSettings, KERNELS_VAR, MODEL_VAR, THREADS_VAR,
    TOKENIZER_VAR, cached_weights,
};
use rigger_domain::ModelRole;
use rigger_ports::{InferenceError, LanguageModel};

use super::{Backend, Setting};
use crate::Provider;
use crate::detect::{BackendStatus, PROBE_TIMEOUT, status};
use crate::vars::Vars;

pub(crate) struct Candle;

/// The Router's default: Qwen2.5-0.5B-Instruct (Apache-2.0), Q4_K_M, about 0.5 GB. Routing is one
/// short JSON answer, so the smallest model that still follows a schema keeps it quick.
pub(crate) const DEFAULT_ROUTER_MODEL: &str =
    "Qwen/Qwen2.5-0.5B-Instruct-GGUF:qwen2.5-0.5b-instruct-q4_k_m.gguf";
/// The other roles' default: Qwen2.5-1.5B-Instruct (Apache-2.0), Q4_K_M, about 1.1 GB: the
/// best JSON and instruction following among openly licensed models of this size.
pub(crate) const DEFAULT_MODEL: &str =
    "Qwen/Qwen2.5-1.5B-Instruct-GGUF:qwen2.5-1.5b-instruct-q4_k_m.gguf";

#[async_trait]
impl Backend for Candle {
    fn provider(&self) -> Provider {
        Provider::Candle
    }

    fn model_var(&self) -> &'static str {
        MODEL_VAR
    }

    /// The built-in hub models (see docs/configuration.md for the choice).
    fn role_default(&self, role: ModelRole) -> Option<&'static str> {
        Some(match role {
            ModelRole::Router => DEFAULT_ROUTER_MODEL,
            _ => DEFAULT_MODEL,
        })
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
    /// reported usable here is what the adapter then accepts. Without `CANDLE_MODEL`, the
    /// built-in defaults: a last resort, usable unless offline with them not cached.
    async fn probe(&self, vars: &Vars) -> BackendStatus {
        let fix = Some(format!(
            "set {MODEL_VAR} to a .gguf file, a safetensors folder or a hub id (owner/repo or owner/repo:file.gguf)"
        ));
        if vars.get(MODEL_VAR).is_none() {
            return defaults_status(&HubSettings::from_vars(&vars.lookup()));
        }
        let found = match CandleConfig::from_vars(&vars.lookup()) {
            Ok(config) => rigger_candle_adapter::probe(&config, PROBE_TIMEOUT).await,
            Err(e) => Err(e),
        };
        match found {
            Ok(found) => status(Provider::Candle, true, found, None),
            Err(e) => status(Provider::Candle, false, e.message().to_owned(), fix),
        }
    }

    /// The configured model, then every model in the hub cache (`owner/repo:file.gguf`, or
    /// `owner/repo` for a cached safetensors repo).
    async fn list_models(&self, vars: &Vars) -> Result<Vec<String>, InferenceError> {
        let mut models = match vars.get(MODEL_VAR) {
            Some(_) => {
                rigger_candle_adapter::list_models(&CandleConfig::from_vars(&vars.lookup())?)
                    .await?
            }
            None => Vec::new(),
        };
        let cached =
            rigger_candle_adapter::cached_repos(&HubSettings::from_vars(&vars.lookup())).await?;
        for repo in cached {
            for (file, _) in &repo.files {
                if file.to_ascii_lowercase().ends_with(".gguf") {
                    models.push(format!("{}:{file}", repo.repo));
                } else if file == "config.json" {
                    models.push(repo.repo.clone());
                }
            }
        }
        models.dedup();
        Ok(models)
    }
}

/// The defaults' state: which are cached; usable as the last resort unless offline with one of
/// them missing from the cache.
fn defaults_status(hub: &HubSettings) -> BackendStatus {
    let mut missing = Vec::new();
    let mut parts = Vec::new();
    for model in [DEFAULT_ROUTER_MODEL, DEFAULT_MODEL] {
        match cached_weights(model, hub) {
            Ok(Some(_)) => parts.push(format!("{model} (cached)")),
            _ => {
                missing.push(model);
                parts.push(format!("{model} (not cached)"));
            }
        }
    }
    let usable = !hub.offline || missing.is_empty();
    let detail = if usable {
        format!(
            "{MODEL_VAR} is not set: the built-in models run when no other backend is usable, \
             downloaded into {} on first use: {}",
            hub.cache_dir.display(),
            parts.join(", ")
        )
    } else {
        format!(
            "{MODEL_VAR} is not set, and the built-in models are not in the hub cache ({}) \
             while HF_HUB_OFFLINE is set: {}",
            hub.cache_dir.display(),
            parts.join(", ")
        )
    };
    let mut s = status(
        Provider::Candle,
        usable,
        detail,
        Some(format!(
            "download them while online (rigger pull --all), or set {MODEL_VAR} to a .gguf file"
        )),
    );
    s.auto_selectable = false;
    s.last_resort = usable;
    s
}
