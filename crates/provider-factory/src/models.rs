//! What each backend offers, for `rigger models`.

use std::path::PathBuf;

use rigger_ports::InferenceError;

use crate::Provider;
use crate::backends;
use crate::vars::Vars;

/// Per compiled-in backend: its models, or why they cannot be listed.
pub async fn list_models(vars: &Vars) -> Vec<(Provider, Result<Vec<String>, InferenceError>)> {
    let mut out = Vec::new();
    for backend in backends::compiled() {
        out.push((backend.provider(), backend.list_models(vars).await));
    }
    out
}

/// Models in the Hugging Face hub cache (`HF_HUB_CACHE`, `HF_HOME/hub`, or
/// `~/.cache/huggingface/hub`), which both MLX and Candle load hub ids from.
pub(crate) fn hub_cache_models(vars: &Vars) -> Vec<String> {
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
