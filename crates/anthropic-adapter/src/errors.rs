//! Anthropic's error shapes mapped onto the port's kinds, each with what to do about it.
//!
//! The error types and their statuses come from Anthropic's "Errors" page: 400
//! `invalid_request_error`, 401 `authentication_error`, 402 `billing_error`, 403
//! `permission_error`, 404 `not_found_error`, 413 `request_too_large`, 429 `rate_limit_error`,
//! 500 `api_error`, 504 `timeout_error`, 529 `overloaded_error`. The same body arrives as an
//! `error` event inside a stream that already answered 200.

use rigger_http_support::{ErrorResponse, kind_for_status};
use rigger_ports::{ErrorKind, InferenceError};

use crate::config::{API_KEY_VAR, BASE_URL_VAR, MODEL_VAR};
use crate::wire::{ApiError, ErrorBody};
use crate::{BACKEND, codes};

/// Turns a non-success HTTP response into the port's error. `model` is the model the request
/// named, so a 404 can say which model is missing.
pub(crate) fn from_response(response: ErrorResponse, model: &str) -> InferenceError {
    let status = response.status.as_u16();
    let parsed = serde_json::from_str::<ErrorBody>(&response.body).ok();
    let mut err = match parsed {
        Some(body) => from_api_error(&body.error, Some(status), model),
        // Not Anthropic's shape: a proxy, a load balancer, or not an Anthropic server at all.
        None => {
            let snippet: String = response.body.chars().take(200).collect();
            let kind = kind_for_status(response.status);
            let err = InferenceError::new(
                kind,
                BACKEND,
                format!("HTTP {status} with a body that is not an Anthropic error: {snippet:?}"),
            );
            match kind {
                ErrorKind::ModelNotFound => InferenceError::new(
                    ErrorKind::NotAvailable,
                    BACKEND,
                    format!("HTTP 404 from a server that does not speak the Messages API: {snippet:?}"),
                )
                .with_hint(format!(
                    "check {BASE_URL_VAR}: it must point at an Anthropic-compatible server, without /v1"
                )),
                _ => with_kind_hint(err, kind),
            }
        }
    };
    if let Some(after) = response.retry_after {
        err = err.with_retry_after(after);
    }
    err
}

/// Turns an `error` object (from an HTTP body or a stream event) into the port's error.
pub(crate) fn from_api_error(error: &ApiError, status: Option<u16>, model: &str) -> InferenceError {
    let message = if error.message.is_empty() {
        error.kind.clone()
    } else {
        format!("{} ({})", error.message, error.kind)
    };
    let kind = match error.kind.as_str() {
        "invalid_request_error" if is_context_overflow(&error.message) => {
            ErrorKind::ContextLengthExceeded
        }
        "invalid_request_error" => ErrorKind::InvalidRequest,
        "authentication_error" | "permission_error" | "billing_error" => ErrorKind::Unauthorized,
        "not_found_error" => ErrorKind::ModelNotFound,
        "request_too_large" => ErrorKind::ContextLengthExceeded,
        "rate_limit_error" | "overloaded_error" => ErrorKind::RateLimited,
        "api_error" => ErrorKind::BackendCrashed,
        "timeout_error" => ErrorKind::Timeout,
        _ => status
            .and_then(|s| reqwest::StatusCode::from_u16(s).ok())
            .map_or(ErrorKind::Protocol, kind_for_status),
    };
    let err = match kind {
        ErrorKind::ModelNotFound => InferenceError::new(
            kind,
            BACKEND,
            format!("model {model:?} not found: {message}"),
        )
        .with_hint(format!(
            "check {MODEL_VAR}; `rigger models` lists the models this key can use"
        )),
        _ => InferenceError::new(kind, BACKEND, message),
    };
    let err = match error.kind.as_str() {
        "authentication_error" => err
            .with_code(codes::ANTHROPIC_UNAUTHORIZED)
            .with_hint(format!("check {API_KEY_VAR}: the server rejected the key")),
        "permission_error" => err.with_code(codes::ANTHROPIC_UNAUTHORIZED).with_hint(
            "this key may not use this model or resource; check the workspace's permissions",
        ),
        "billing_error" => err
            .with_code(codes::ANTHROPIC_UNAUTHORIZED)
            .with_hint("check the account's billing in the Anthropic console"),
        "overloaded_error" => err
            .with_code(codes::ANTHROPIC_OVERLOADED)
            .with_hint("Anthropic is overloaded; retry later, or fall back to another backend"),
        "request_too_large" => err.with_hint("the request exceeds the API's size limit; send less"),
        _ => with_kind_hint(err, kind),
    };
    if kind == ErrorKind::ContextLengthExceeded {
        err.with_retryable(false)
    } else {
        err
    }
}

fn with_kind_hint(err: InferenceError, kind: ErrorKind) -> InferenceError {
    match kind {
        ErrorKind::ContextLengthExceeded => {
            err.with_hint("shorten the prompt or lower max_tokens; Rigger never truncates")
        }
        ErrorKind::RateLimited => err.with_hint("slow down or retry after the server's delay"),
        ErrorKind::Unauthorized => err.with_hint(format!("check {API_KEY_VAR}")),
        ErrorKind::InvalidRequest => err.with_hint("fix the request as the message says"),
        ErrorKind::BackendCrashed | ErrorKind::Timeout => {
            err.with_hint("a server-side failure; retrying may succeed")
        }
        _ => err,
    }
}

/// Anthropic reports a prompt that does not fit as a 400 `invalid_request_error`; only the
/// message tells it apart ("prompt is too long: 208310 tokens > 200000 maximum", "input length
/// and `max_tokens` exceed context limit: ...").
fn is_context_overflow(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    m.contains("prompt is too long")
        || m.contains("exceed context limit")
        || m.contains("context window")
        || m.contains("context length")
}
