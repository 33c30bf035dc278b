//! What each backend offers, for `rigger models`.

use std::path::PathBuf;

use rigger_ports::{ErrorKind, InferenceError};

use crate::vars::Vars;
use crate::{BACKEND, Provider};

/// Per compiled-in backend: its models, or why they cannot be listed.
pub async fn list_models(vars: &Vars) -> Vec<(Provider, Result<Vec<String>, InferenceError>)> {
    let mut out = Vec::new();
    for provider in Provider::compiled() {
        // Only compiled-in providers are listed, so the feature-gated arms below always exist.
        let listed = match provider {
            Provider::Mlx | Provider::Candle => Ok(hub_cache_models(vars)),
            Provider::Ollama => list_ollama(vars).await,
            Provider::OpenAi => list_openai(vars).await,
            Provider::Anthropic => list_anthropic(vars).await,
        };
        let listed = listed.map(|mut models| {
            if provider == Provider::Candle
                && let Some(m) = vars.get("CANDLE_MODEL")
            {
                models.insert(0, format!("{m} (CANDLE_MODEL)"));
            }
            models
        });
        out.push((provider, listed));
    }
    out
}

/// Models in the Hugging Face hub cache (`HF_HUB_CACHE`, `HF_HOME/hub`, or
/// `~/.cache/huggingface/hub`), which both MLX and Candle load hub ids from.
fn hub_cache_models(vars: &Vars) -> Vec<String> {
    let dir = vars
        .get("HF_HUB_CACHE")
        .map(PathBuf::from)
        .or_else(|| vars.get("HF_HOME").map(|h| PathBuf::from(h).join("hub")))
        .or_else(|| {
            vars.get("HOME")
                .map(|h| PathBuf::from(h).join(".cache/huggingface/hub"))
        });
    let Some(Ok(entries)) = dir.map(std::fs::read_dir) else {
        return Vec::new();
    };
    let mut models: Vec<String> = entries
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str().map(str::to_owned))
        .filter_map(|name| {
            name.strip_prefix("models--")
                .map(|id| id.replacen("--", "/", 1))
        })
        .map(|id| format!("{id} (hub cache)"))
        .collect();
    models.sort();
    models
}

#[cfg(feature = "ollama")]
async fn list_ollama(vars: &Vars) -> Result<Vec<String>, InferenceError> {
    let lookup = vars.lookup();
    let config = rigger_ollama_adapter::OllamaConfig::from_vars(&lookup)?;
    rigger_ollama_adapter::list_models(&config).await
}

#[cfg(feature = "openai")]
async fn list_openai(vars: &Vars) -> Result<Vec<String>, InferenceError> {
    if vars.get("OPENAI_API_KEY").is_none() && vars.get("OPENAI_BASE_URL").is_none() {
        return Err(InferenceError::new(
            ErrorKind::NotAvailable,
            BACKEND,
            "OPENAI_API_KEY and OPENAI_BASE_URL are not set",
        ));
    }
    let lookup = vars.lookup();
    let config = rigger_openai_adapter::OpenAiConfig::from_vars(&lookup)?;
    rigger_openai_adapter::list_models(&config).await
}

#[cfg(feature = "anthropic")]
async fn list_anthropic(vars: &Vars) -> Result<Vec<String>, InferenceError> {
    if vars.get("ANTHROPIC_API_KEY").is_none() {
        return Err(InferenceError::new(
            ErrorKind::NotAvailable,
            BACKEND,
            "ANTHROPIC_API_KEY is not set",
        ));
    }
    let lookup = vars.lookup();
    let config = rigger_anthropic_adapter::AnthropicConfig::from_vars(&lookup);
    rigger_anthropic_adapter::list_models(&config).await
}

#[cfg(not(feature = "ollama"))]
async fn list_ollama(_: &Vars) -> Result<Vec<String>, InferenceError> {
    Err(not_compiled(Provider::Ollama))
}

#[cfg(not(feature = "openai"))]
async fn list_openai(_: &Vars) -> Result<Vec<String>, InferenceError> {
    Err(not_compiled(Provider::OpenAi))
}

#[cfg(not(feature = "anthropic"))]
async fn list_anthropic(_: &Vars) -> Result<Vec<String>, InferenceError> {
    Err(not_compiled(Provider::Anthropic))
}

#[allow(dead_code)] // used only in builds without some adapters
fn not_compiled(provider: Provider) -> InferenceError {
    InferenceError::new(
        ErrorKind::NotAvailable,
        BACKEND,
        format!("{provider} is not compiled into this build"),
    )
}
