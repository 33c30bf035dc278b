//! Error bodies as the real servers send them, mapped onto the port's kinds.
//!
//! Shapes seen in the wild: OpenAI and vLLM `{"error": {"message", "type", "code", "param"}}`
//! (`code` a string or a number), mlx_lm.server `{"error": "text"}`, older vLLM
//! `{"object": "error", "message", "type", "code"}`, FastAPI `{"detail": …}`, and plain text.

use reqwest::StatusCode;
use rigger_http_support::{ErrorResponse, kind_for_status};
use rigger_ports::{ErrorKind, InferenceError};
use serde_json::Value;

use crate::BACKEND;
use crate::config::{API_KEY_VAR, BASE_URL_VAR, MODEL_VAR};

/// What an error body says, whatever its shape.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct ServerError {
    pub message: String,
    /// `type` or `code`, whichever names the error (`context_length_exceeded`, …).
    pub code: Option<String>,
    /// A numeric `code`: the HTTP status the server meant (errors inside a stream carry one).
    pub status: Option<u16>,
    /// The body was an API's JSON error, not a web server's page.
    pub structured: bool,
}

impl ServerError {
    /// Reads any known error shape out of a JSON value; `None` when it is not an error.
    pub fn from_json(value: &Value) -> Option<Self> {
        let text = |v: &Value| match v {
            Value::String(s) => Some(s.clone()),
            Value::Null => None,
            other => Some(other.to_string()),
        };
        let from_object = |o: &Value| {
            let named = |key: &str| o.get(key).and_then(Value::as_str).map(str::to_owned);
            Self {
                message: o
                    .get("message")
                    .and_then(text)
                    .unwrap_or_else(|| o.to_string()),
                code: named("code").or_else(|| named("type")),
                status: o
                    .get("code")
                    .and_then(Value::as_u64)
                    .and_then(|c| u16::try_from(c).ok()),
                structured: true,
            }
        };
        match value.get("error") {
            Some(Value::String(s)) => Some(Self {
                message: s.clone(),
                code: None,
                status: None,
                structured: true,
            }),
            Some(o @ Value::Object(_)) => Some(from_object(o)),
            Some(other) => Some(Self {
                message: other.to_string(),
                code: None,
                status: None,
                structured: true,
            }),
            None if value.get("object").and_then(Value::as_str) == Some("error") => {
                Some(from_object(value))
            }
            None => value.get("detail").map(|d| Self {
                message: text(d).unwrap_or_default(),
                code: None,
                status: None,
                structured: true,
            }),
        }
    }

    pub fn from_body(body: &str) -> Self {
        serde_json::from_str::<Value>(body)
            .ok()
            .and_then(|v| Self::from_json(&v))
            .unwrap_or_else(|| Self {
                message: body.trim().to_owned(),
                code: None,
                status: None,
                structured: false,
            })
    }

    fn mentions(&self, needles: &[&str]) -> bool {
        let hay = format!(
            "{} {}",
            self.message.to_ascii_lowercase(),
            self.code.as_deref().unwrap_or("").to_ascii_lowercase()
        );
        needles.iter().any(|n| hay.contains(n))
    }

    fn is_context_overflow(&self) -> bool {
        self.mentions(&[
            "context_length_exceeded",
            "context length",
            "context_length",
            "exceed_context_size",
            "exceeds the available context",
            "maximum context",
            "prompt is too long",
            "prompt exceeds",
            "too many tokens",
        ])
    }

    fn is_missing_model(&self) -> bool {
        self.mentions(&["model_not_found"])
            || (self.mentions(&["model"])
                && self.mentions(&["not found", "does not exist", "no such", "not exist"]))
    }
}

/// An error response from the server, in the port's terms.
pub(crate) fn from_response(response: ErrorResponse, model: &str) -> InferenceError {
    let server = ServerError::from_body(&response.body);
    let mut error = from_status(response.status, &server, model);
    if let Some(after) = response.retry_after {
        error = error.with_retry_after(after);
    }
    error
}

fn from_status(status: StatusCode, server: &ServerError, model: &str) -> InferenceError {
    let said = if server.message.is_empty() {
        status.to_string()
    } else {
        server.message.clone()
    };
    let with_code = match &server.code {
        Some(code) => format!("HTTP {}: {said} ({code})", status.as_u16()),
        None => format!("HTTP {}: {said}", status.as_u16()),
    };
    let mut kind = kind_for_status(status);
    if server.is_context_overflow() {
        kind = ErrorKind::ContextLengthExceeded;
    } else if server.is_missing_model() {
        kind = ErrorKind::ModelNotFound;
    } else if status == StatusCode::NOT_FOUND && !server.structured {
        // A bare 404 page: the path does not exist, so the base URL is wrong, not the model.
        kind = ErrorKind::NotAvailable;
    }
    let error = InferenceError::new(kind, BACKEND, with_code.clone());
    match kind {
        ErrorKind::ContextLengthExceeded => error
            .with_retryable(false)
            .with_hint("shorten the prompt or lower max_tokens; the prompt is never truncated"),
        ErrorKind::ModelNotFound => InferenceError::new(
            kind,
            BACKEND,
            format!("model `{model}` not found: {with_code}"),
        )
        .with_hint(format!(
            "set {MODEL_VAR} to a model the server has (`rigger models` lists them)"
        )),
        ErrorKind::NotAvailable => error.with_hint(format!(
            "check {BASE_URL_VAR}: it must be the server's /v1 base (…/v1/chat/completions must exist)"
        )),
        ErrorKind::Unauthorized => error.with_hint(format!(
            "set {API_KEY_VAR} to a valid key for this server"
        )),
        ErrorKind::RateLimited if server.mentions(&["insufficient_quota"]) => error
            .with_retryable(false)
            .with_hint("the account is out of quota; retrying will not help"),
        ErrorKind::RateLimited => {
            error.with_hint("the server is busy; retry later or lower the concurrency")
        }
        ErrorKind::InvalidRequest => {
            error.with_hint("the server rejected the request; its message says which field")
        }
        _ => error,
    }
}

/// An error the server sent inside a 200 stream (`data: {"error": …}` or `event: error`).
pub(crate) fn from_stream_event(server: ServerError, model: &str) -> InferenceError {
    let status = server
        .status
        .and_then(|c| StatusCode::from_u16(c).ok())
        .filter(|s| s.is_client_error() || s.is_server_error())
        .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let error = from_status(status, &server, model);
    let message = format!("the stream failed: {}", error.message());
    let mut rebuilt = InferenceError::new(error.kind(), BACKEND, message)
        // Text may already have been delivered: the caller decides whether to start over.
        .with_retryable(false);
    if let Some(hint) = error.hint() {
        rebuilt = rebuilt.with_hint(hint.to_owned());
    }
    rebuilt
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_every_error_shape() {
        let cases = [
            (
                json!({"error": "model failed to load"}),
                "model failed to load",
                None,
            ),
            (
                json!({"error": {"message": "Bad key", "type": "invalid_request_error", "code": "invalid_api_key"}}),
                "Bad key",
                Some("invalid_api_key"),
            ),
            (
                json!({"error": {"message": "busy", "type": "server_error", "code": 503}}),
                "busy",
                Some("server_error"),
            ),
            (
                json!({"object": "error", "message": "too long", "type": "BadRequestError", "code": 400}),
                "too long",
                Some("BadRequestError"),
            ),
            (
                json!({"detail": "Not authenticated"}),
                "Not authenticated",
                None,
            ),
        ];
        for (body, message, code) in cases {
            let e = ServerError::from_json(&body).unwrap();
            assert_eq!(e.message, message, "{body}");
            assert_eq!(e.code.as_deref(), code, "{body}");
        }
        assert!(ServerError::from_json(&json!({"choices": []})).is_none());
        assert_eq!(ServerError::from_body("Not Found").message, "Not Found");
    }
}
