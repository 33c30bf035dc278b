//! Ollama's errors in the port's terms: error bodies and `{"error": …}` stream lines mapped
//! onto [`ErrorKind`]s with the fix, plus the adapter's own timeout and parse errors.

use std::time::Duration;

use reqwest::StatusCode;
use rigger_http_support::{ErrorResponse, kind_for_status};
use rigger_ports::{ErrorKind, InferenceError};

use crate::{BACKEND, wire};

/// Stable codes for scripts and docs.
pub mod codes {
    /// Nothing answers at the configured address.
    pub const OLLAMA_NOT_AVAILABLE: &str = "OLLAMA_NOT_AVAILABLE";
    /// The server does not have the model.
    pub const OLLAMA_MODEL_NOT_FOUND: &str = "OLLAMA_MODEL_NOT_FOUND";
    /// The server sent `{"error": …}`.
    pub const OLLAMA_ERROR: &str = "OLLAMA_ERROR";
}

pub(crate) fn unparseable(line: &str, e: &serde_json::Error) -> InferenceError {
    let preview: String = line.chars().take(200).collect();
    InferenceError::protocol(
        BACKEND,
        format!("a streamed line is not Ollama's JSON ({e}): {preview}"),
    )
}

pub(crate) fn idle_timeout_error(idle: Duration, what: &str) -> InferenceError {
    InferenceError::timeout(BACKEND, format!("no {what} from Ollama for {idle:?}")).with_hint(
        format!(
            "raise {} (OllamaConfig::idle_timeout), or check the server's load",
            crate::config::IDLE_TIMEOUT_VAR
        ),
    )
}

/// An HTTP error response in Ollama's terms. Ollama answers errors as `{"error": "…"}`.
pub(crate) fn error_from_response(response: ErrorResponse, model: Option<&str>) -> InferenceError {
    let message = serde_json::from_str::<wire::ErrorBody>(&response.body)
        .map(|b| b.error)
        .unwrap_or_else(|_| response.body.trim().to_owned());
    let mut error = error_from_message(&message, response.status, model);
    if let Some(after) = response.retry_after {
        error = error.with_retry_after(after);
    }
    error
}

/// Classifies one of Ollama's error messages; `status` is 200 for an error line inside a stream.
pub(crate) fn error_from_message(
    message: &str,
    status: StatusCode,
    model: Option<&str>,
) -> InferenceError {
    let lower = message.to_ascii_lowercase();
    let about_model =
        lower.contains("model") && (lower.contains("not found") || lower.contains("pull"));
    let kind = if about_model {
        ErrorKind::ModelNotFound
    } else if status == StatusCode::NOT_FOUND {
        // A 404 that is not about a model: the server lacks the endpoint ("404 page not found").
        ErrorKind::Unsupported
    } else if lower.contains("context")
        && (lower.contains("exceed") || lower.contains("too long") || lower.contains("length"))
    {
        ErrorKind::ContextLengthExceeded
    } else if lower.contains("memory")
        || lower.contains("unable to load")
        || lower.contains("failed to load")
    {
        ErrorKind::ModelLoadFailed
    } else if status == StatusCode::OK {
        // A failure after the stream began: the runner died or gave up.
        ErrorKind::BackendCrashed
    } else {
        kind_for_status(status)
    };
    let shown = if message.is_empty() {
        status.to_string()
    } else {
        message.to_owned()
    };
    let base = InferenceError::new(kind, BACKEND, format!("Ollama: {shown}"))
        .with_code(codes::OLLAMA_ERROR);
    match kind {
        ErrorKind::ModelNotFound => {
            let model = model.unwrap_or("<model>");
            InferenceError::new(kind, BACKEND, format!("model '{model}' not found: {shown}"))
                .with_code(codes::OLLAMA_MODEL_NOT_FOUND)
                .with_hint(format!(
                    "run `ollama pull {model}` (or `ollama list` to see the models the server has)"
                ))
        }
        ErrorKind::ContextLengthExceeded => base
            .with_retryable(false)
            .with_hint("shorten the prompt or lower max_tokens"),
        ErrorKind::ModelLoadFailed => {
            base.with_hint("check the server log; the model may need more memory than is free")
        }
        ErrorKind::BackendCrashed => base.with_hint(
            "see the Ollama server log (`journalctl -u ollama`, or ~/.ollama/logs/server.log)",
        ),
        ErrorKind::Unauthorized => {
            base.with_hint("set OLLAMA_API_KEY to a valid key for this server")
        }
        ErrorKind::RateLimited => {
            base.with_hint("the server is busy; retry later or lower the concurrency")
        }
        ErrorKind::InvalidRequest => {
            base.with_hint("the server refused the request; check the options sent")
        }
        ErrorKind::Unsupported => base.with_hint(
            "this Ollama lacks the endpoint; upgrade Ollama (https://ollama.com/download)",
        ),
        _ => base,
    }
}
