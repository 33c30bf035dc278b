//! The HTTP side: one `reqwest` client per adapter, sending with retries and reading JSON
//! answers. Model management on the same client is in `models.rs`; error mapping in
//! `errors.rs`.

use std::sync::Arc;
use std::time::Duration;

use reqwest::{Method, RequestBuilder, Response};
use rigger_http_support::{RetryPolicy, send_with_retries};
use rigger_ports::{ErrorKind, InferenceError};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::BACKEND;
use crate::config::{HOST_VAR, OllamaConfig};
use crate::errors::{codes, error_from_response};
use crate::wire;

/// A client of one Ollama server. Cheap to clone.
#[derive(Clone)]
pub struct OllamaClient {
    http: reqwest::Client,
    base_url: Arc<str>,
    config: Arc<OllamaConfig>,
}

impl std::fmt::Debug for OllamaClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OllamaClient")
            .field("base_url", &self.base_url)
            .finish()
    }
}

impl OllamaClient {
    /// Builds the client; no network. An unusable base URL is an InvalidRequest.
    pub fn new(config: &OllamaConfig) -> Result<Self, InferenceError> {
        let base_url = config.base_url.trim_end_matches('/').to_owned();
        let parsed = reqwest::Url::parse(&base_url).map_err(|e| {
            InferenceError::invalid_request(
                BACKEND,
                format!("base URL {base_url:?} is not a URL: {e}"),
            )
            .with_hint(format!("set {HOST_VAR} to host:port, e.g. 127.0.0.1:11434"))
        })?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(InferenceError::invalid_request(
                BACKEND,
                format!("base URL {base_url:?} is not http or https"),
            )
            .with_hint(format!("set {HOST_VAR} to host:port, e.g. 127.0.0.1:11434")));
        }
        if config.model.trim().is_empty() {
            return Err(
                InferenceError::invalid_request(BACKEND, "the model name is empty").with_hint(
                    "set OLLAMA_MODEL to a model tag, e.g. llama3.2 (`ollama list` shows them)",
                ),
            );
        }
        let http = reqwest::Client::builder()
            .connect_timeout(config.connect_timeout)
            .build()
            .map_err(|e| {
                InferenceError::internal(BACKEND, format!("cannot build the HTTP client: {e}"))
            })?;
        Ok(Self {
            http,
            base_url: base_url.into(),
            config: Arc::new(config.clone()),
        })
    }

    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    pub(crate) fn config(&self) -> &OllamaConfig {
        &self.config
    }

    pub(crate) fn request(&self, method: Method, path: &str) -> RequestBuilder {
        let builder = self
            .http
            .request(method, format!("{}{path}", self.base_url));
        match &self.config.api_key {
            Some(key) => builder.bearer_auth(key.expose()),
            None => builder,
        }
    }

    /// Sends with the configured retries; an error status becomes an [`InferenceError`] in
    /// Ollama's terms (`model` names the model the call is about, for not-found errors).
    pub(crate) async fn send(
        &self,
        policy: &RetryPolicy,
        model: Option<&str>,
        build: impl Fn() -> RequestBuilder,
    ) -> Result<Response, InferenceError> {
        send_with_retries(BACKEND, policy, build, |response| {
            error_from_response(response, model)
        })
        .await
        .map_err(|e| self.explain_unavailable(e))
    }

    /// Adds where and how to start Ollama to a connection failure.
    pub(crate) fn explain_unavailable(&self, error: InferenceError) -> InferenceError {
        if error.kind() != ErrorKind::NotAvailable {
            return error;
        }
        let message = format!(
            "no Ollama server answers at {}: {}",
            self.base_url,
            error.message()
        );
        InferenceError::new(ErrorKind::NotAvailable, BACKEND, message)
            .with_code(codes::OLLAMA_NOT_AVAILABLE)
            .with_retryable(error.is_retryable())
            .with_hint(format!(
                "start it with `ollama serve` (or the Ollama app), or set {HOST_VAR} to where it listens"
            ))
            .with_source(error)
    }

    pub(crate) async fn get_json<T: DeserializeOwned>(
        &self,
        path: &str,
        policy: &RetryPolicy,
        timeout: Duration,
    ) -> Result<T, InferenceError> {
        let response = self
            .send(policy, None, || {
                self.request(Method::GET, path).timeout(timeout)
            })
            .await?;
        read_json(response, path).await
    }

    pub(crate) async fn post_json<T: DeserializeOwned>(
        &self,
        path: &str,
        body: &impl Serialize,
        model: Option<&str>,
    ) -> Result<T, InferenceError> {
        let timeout = self.config.request_timeout;
        let response = self
            .send(&self.config.retry, model, || {
                self.request(Method::POST, path).json(body).timeout(timeout)
            })
            .await?;
        read_json(response, path).await
    }

    /// `GET /api/version`: the server's version.
    pub async fn version(&self) -> Result<String, InferenceError> {
        let v: wire::VersionResponse = self
            .get_json(
                "/api/version",
                &self.config.retry,
                self.config.request_timeout,
            )
            .await?;
        Ok(v.version)
    }

    /// `GET /api/version` once, without retries, within `timeout`: the availability probe.
    pub async fn probe_version(&self, timeout: Duration) -> Result<String, InferenceError> {
        let once = RetryPolicy::none();
        let call = self.get_json::<wire::VersionResponse>("/api/version", &once, timeout);
        match tokio::time::timeout(timeout, call).await {
            Ok(v) => v.map(|v| v.version),
            Err(_) => Err(InferenceError::new(
                ErrorKind::NotAvailable,
                BACKEND,
                format!("no answer from {} within {timeout:?}", self.base_url),
            )
            .with_code(codes::OLLAMA_NOT_AVAILABLE)
            .with_hint(format!(
                "start it with `ollama serve`, or set {HOST_VAR} to where it listens"
            ))),
        }
    }
}

pub(crate) async fn read_json<T: DeserializeOwned>(
    response: Response,
    path: &str,
) -> Result<T, InferenceError> {
    let bytes = response
        .bytes()
        .await
        .map_err(|e| rigger_http_support::transport_error(BACKEND, &e))?;
    serde_json::from_slice(&bytes).map_err(|e| {
        let preview: String = String::from_utf8_lossy(&bytes).chars().take(200).collect();
        InferenceError::protocol(
            BACKEND,
            format!("{path} answered with unexpected JSON ({e}): {preview}"),
        )
        .with_hint("check that OLLAMA_HOST points at an Ollama server")
    })
}
