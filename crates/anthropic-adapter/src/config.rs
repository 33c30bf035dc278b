//! Configuration: public fields with defaults, read from the environment by one function that
//! also takes an explicit lookup (so the provider factory's tests never touch the process env).

use std::time::Duration;

use reqwest::Url;
use rigger_http_support::{ApiKey, RetryPolicy};
use rigger_ports::InferenceError;

use crate::{BACKEND, codes};

/// Anthropic's API; the adapter appends `/v1/messages` and `/v1/models`.
pub const DEFAULT_BASE_URL: &str = "https://api.anthropic.com";
/// The model used when none is configured. An alias that Anthropic points at its latest
/// snapshot; like every model id it ages: `rigger models` lists what the server offers now.
pub const DEFAULT_MODEL: &str = "claude-sonnet-4-5";
/// The `anthropic-version` header this adapter's wire types are written against.
pub const API_VERSION: &str = "2023-06-01";

/// The host that always needs a key.
const ANTHROPIC_HOST: &str = "api.anthropic.com";

pub const API_KEY_VAR: &str = "ANTHROPIC_API_KEY";
pub const BASE_URL_VAR: &str = "ANTHROPIC_BASE_URL";
pub const MODEL_VAR: &str = "ANTHROPIC_MODEL";
/// Seconds from sending a request to the message's start (retries included); also the limit
/// on the model lookup (`GET /v1/models/{id}`) that precedes the first request.
pub const FIRST_TOKEN_TIMEOUT_VAR: &str = "RIGGER_ANTHROPIC_FIRST_TOKEN_TIMEOUT_SECS";
/// Seconds without progress (text or the end of the message; `ping`s do not count).
pub const IDLE_TIMEOUT_VAR: &str = "RIGGER_ANTHROPIC_IDLE_TIMEOUT_SECS";
/// Seconds a whole generation may take, from sending the request to `message_stop`.
pub const DEADLINE_VAR: &str = "RIGGER_ANTHROPIC_DEADLINE_SECS";

/// How to reach an Anthropic Messages API server and which model to use.
///
/// `Debug` never shows the key ([`ApiKey`] redacts itself).
#[derive(Debug, Clone, PartialEq)]
pub struct AnthropicConfig {
    /// Scheme, host and optional path prefix, without `/v1` (e.g. `https://api.anthropic.com`,
    /// `http://127.0.0.1:8080` for llama-server).
    pub base_url: String,
    /// Sent as `x-api-key`. Required for [`DEFAULT_BASE_URL`]; optional for other servers.
    pub api_key: Option<ApiKey>,
    pub model: String,
    /// Sent as `anthropic-version`.
    pub api_version: String,
    /// Overrides the context length the Models API reports (`max_input_tokens`); needed for
    /// servers whose `/v1/models/{id}` does not report one.
    pub context_length: Option<u32>,
    /// Establishing a connection (TCP + TLS).
    pub connect_timeout: Duration,
    /// From sending the request to the message's start, retries included; also bounds the
    /// model lookup that precedes the first request.
    pub first_token_timeout: Duration,
    /// The longest time without progress (text, or the end of the message). Anthropic sends
    /// `ping`s while it works; they do not count, so a server that only pings is a stall.
    pub idle_timeout: Duration,
    /// The whole generation, from sending the request to `message_stop`, whatever the server
    /// sends meanwhile.
    pub deadline: Duration,
    /// Retries before the first token: connect errors, 429, 5xx, 529 and `overloaded_error`
    /// events that arrive before the message starts.
    pub retry: RetryPolicy,
}

impl Default for AnthropicConfig {
    fn default() -> Self {
        Self {
            base_url: DEFAULT_BASE_URL.to_owned(),
            api_key: None,
            model: DEFAULT_MODEL.to_owned(),
            api_version: API_VERSION.to_owned(),
            context_length: None,
            connect_timeout: Duration::from_secs(10),
            // A server that makes no progress is given up within a minute.
            first_token_timeout: Duration::from_secs(60),
            idle_timeout: Duration::from_secs(60),
            deadline: Duration::from_secs(600),
            retry: RetryPolicy::default(),
        }
    }
}

impl AnthropicConfig {
    /// The defaults with this model.
    pub fn new(model: impl Into<String>) -> Self {
        Self {
            model: model.into(),
            ..Self::default()
        }
    }

    /// [`from_vars`](Self::from_vars) over the process environment.
    pub fn from_env() -> Result<Self, InferenceError> {
        Self::from_vars(&|name| std::env::var(name).ok())
    }

    /// [`ANTHROPIC_API_KEY`](API_KEY_VAR), [`ANTHROPIC_BASE_URL`](BASE_URL_VAR),
    /// [`ANTHROPIC_MODEL`](MODEL_VAR), read through `lookup`. Unset and blank variables mean
    /// the default; a base URL that is not an http(s) URL, or ends with `/v1`, is an
    /// `InvalidRequest` naming the variable. A missing key is refused later, by
    /// [`AnthropicAdapter::new`](crate::AnthropicAdapter::new), and only for Anthropic's host.
    pub fn from_vars(lookup: &dyn Fn(&str) -> Option<String>) -> Result<Self, InferenceError> {
        let var = |name: &str| rigger_ports::setting(lookup, name);
        let defaults = Self::default();
        let base_url = match var(BASE_URL_VAR) {
            Some(url) => {
                parse_base_url(&url)?;
                url
            }
            None => defaults.base_url.clone(),
        };
        let seconds = |name: &str| rigger_http_support::seconds_setting(BACKEND, lookup, name);
        Ok(Self {
            base_url,
            api_key: lookup(API_KEY_VAR).and_then(ApiKey::new),
            model: var(MODEL_VAR).unwrap_or(defaults.model.clone()),
            first_token_timeout: seconds(FIRST_TOKEN_TIMEOUT_VAR)?
                .unwrap_or(defaults.first_token_timeout),
            idle_timeout: seconds(IDLE_TIMEOUT_VAR)?.unwrap_or(defaults.idle_timeout),
            deadline: seconds(DEADLINE_VAR)?.unwrap_or(defaults.deadline),
            ..defaults
        })
    }

    /// Checks the configuration without any network; returns the base URL without a trailing
    /// slash.
    pub(crate) fn checked_base_url(&self) -> Result<Url, InferenceError> {
        let invalid = |message: String, hint: &str| {
            Err(InferenceError::invalid_request(BACKEND, message).with_hint(hint))
        };
        let url = parse_base_url(&self.base_url)?;
        if self.model.trim().is_empty() {
            return invalid(
                "no model is configured".to_owned(),
                &format!("set {MODEL_VAR}, e.g. to {DEFAULT_MODEL}"),
            );
        }
        if self.api_version.trim().is_empty() {
            return invalid(
                "the anthropic-version is empty".to_owned(),
                &format!("leave api_version at its default, {API_VERSION}"),
            );
        }
        if let Some(key) = &self.api_key
            && reqwest::header::HeaderValue::from_str(key.expose()).is_err()
        {
            return invalid(
                "the API key contains characters that cannot be sent in a header".to_owned(),
                &format!("check {API_KEY_VAR} for stray characters"),
            );
        }
        if self.api_key.is_none() && url.host_str() == Some(ANTHROPIC_HOST) {
            return Err(InferenceError::invalid_request(
                BACKEND,
                "no API key is configured for the Anthropic API",
            )
            .with_code(codes::ANTHROPIC_API_KEY_MISSING)
            .with_hint(format!(
                "set {API_KEY_VAR} (console.anthropic.com → API keys)"
            )));
        }
        Ok(url)
    }
}

/// An http(s) URL with a host and without a trailing `/v1` (the adapter appends `/v1/...`).
fn parse_base_url(base_url: &str) -> Result<Url, InferenceError> {
    let invalid = |message: String, hint: String| {
        Err(InferenceError::invalid_request(BACKEND, message).with_hint(hint))
    };
    let trimmed = base_url.trim().trim_end_matches('/');
    let url = match Url::parse(trimmed) {
        Ok(url) if matches!(url.scheme(), "http" | "https") && url.has_host() => url,
        Ok(_) | Err(_) => {
            return invalid(
                format!("the base URL {trimmed:?} is not an http(s) URL"),
                format!("set {BASE_URL_VAR} to e.g. {DEFAULT_BASE_URL}"),
            );
        }
    };
    if url.path().trim_end_matches('/').ends_with("/v1") {
        return invalid(
            format!("the base URL {trimmed:?} ends with /v1"),
            format!("remove the /v1 from {BASE_URL_VAR}: the adapter appends /v1/messages"),
        );
    }
    Ok(url)
}
