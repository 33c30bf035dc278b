//! What each backend offers, for `rigger models`.

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
