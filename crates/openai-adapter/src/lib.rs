//! OpenAI-compatible backend: `/v1/chat/completions` with SSE streaming and `/v1/models`, for
//! OpenAI, vLLM, llama.cpp's `llama-server`, `mlx_lm.server` and other compatible servers.
//! This is Rigger's scale-out path: a serving cluster behind one URL (docs/scaling.md).
//!
//! Role: [`OpenAiAdapter`] implements the [`LanguageModel`] port over HTTP. What a server
//! honours differs, so a [`ServerKind`] declares the capabilities (a request for anything else
//! is refused, never silently dropped), and every answer is checked: stop sequences are matched
//! on the text by the adapter, structured output is validated, exact budgets are verified
//! against the usage.
//!
//! Invariant: depends on `rigger-ports` and `rigger-http-support` only; wire types (the JSON
//! bodies) stay in this crate, and no reqwest type crosses the port.

mod config;
mod errors;
mod request;
mod stream;
mod wire;

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use rigger_http_support::{
    Limits, MAX_SSE_EVENT, RetryPolicy, Watchdog, send_with_retries, sse_events, transport_error,
};
use rigger_ports::{
    ErrorKind, EventStream, GenerationRequest, InferenceError, LanguageModel, ModelDescriptor,
    enforce_response_format,
};
use tokio::sync::{OnceCell, Semaphore};

pub use config::{
    API_KEY_VAR, BASE_URL_VAR, CONTEXT_LENGTH_VAR, DEADLINE_VAR, DEFAULT_BASE_URL,
    IDLE_TIMEOUT_VAR, MAX_CONCURRENT_VAR, MODEL_VAR, OpenAiConfig, RESPONSE_TIMEOUT_VAR,
    SERVER_VAR, ServerKind,
};
#[doc(hidden)]
pub use stream::decode_payloads_for_bench;

/// The backend name in descriptors and errors.
pub const BACKEND: &str = "openai";

/// A model behind an OpenAI-compatible endpoint. Cheap to clone and share.
#[derive(Clone)]
pub struct OpenAiAdapter {
    inner: Arc<Inner>,
}

struct Inner {
    client: reqwest::Client,
    config: OpenAiConfig,
    kind: ServerKind,
    model: String,
    chat_url: String,
    models_url: String,
    /// What is known without asking the server.
    base: ModelDescriptor,
    /// Completed on first use (vLLM reports the context length).
    resolved: OnceCell<ModelDescriptor>,
    slots: Option<Arc<Semaphore>>,
}

impl std::fmt::Debug for OpenAiAdapter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenAiAdapter")
            .field("config", &self.inner.config)
            .field("kind", &self.inner.kind)
            .finish_non_exhaustive()
    }
}

impl OpenAiAdapter {
    /// Checks the configuration and prepares the client; no network. What needs the server is
    /// fetched on first use.
    pub fn new(config: OpenAiConfig) -> Result<Self, InferenceError> {
        let base_url = config.parsed_base_url()?;
        let model = config
            .model
            .clone()
            .map(|m| m.trim().to_owned())
            .filter(|m| !m.is_empty())
            .ok_or_else(|| {
                InferenceError::invalid_request(BACKEND, "no model is configured").with_hint(
                    format!("set {MODEL_VAR} (`rigger models` lists what the server has)"),
                )
            })?;
        if config.max_concurrent_requests == Some(0) {
            return Err(InferenceError::invalid_request(
                BACKEND,
                "max_concurrent_requests is 0: no request could ever run",
            )
            .with_hint(format!(
                "set {MAX_CONCURRENT_VAR} to 1 or more, or unset it"
            )));
        }
        let client = http_client(&config, None)?;
        let kind = config.server_kind();
        let base = ModelDescriptor {
            backend: BACKEND.to_owned(),
            model_id: model.clone(),
            context_length: config.context_length,
            capabilities: kind.capabilities(),
        };
        Ok(Self {
            inner: Arc::new(Inner {
                client,
                kind,
                model,
                chat_url: format!("{base_url}/chat/completions"),
                models_url: format!("{base_url}/models"),
                base,
                resolved: OnceCell::new(),
                slots: config
                    .max_concurrent_requests
                    .map(|n| Arc::new(Semaphore::new(n))),
                config,
            }),
        })
    }

    /// As [`new`](Self::new), then asks the server now: it must answer `/v1/models` and list
    /// the model (llama-server excepted: it serves its one model under any name).
    pub async fn connect(config: OpenAiConfig) -> Result<Self, InferenceError> {
        let adapter = Self::new(config)?;
        let inner = &adapter.inner;
        let models = inner.models().await?;
        let listed = models.data.iter().any(|m| m.id == inner.model);
        if !listed && inner.kind != ServerKind::LlamaServer {
            let ids: Vec<&str> = models.data.iter().map(|m| m.id.as_str()).collect();
            return Err(InferenceError::new(
                ErrorKind::ModelNotFound,
                BACKEND,
                format!(
                    "model `{}` is not served at {}",
                    inner.model, inner.models_url
                ),
            )
            .with_hint(format!("set {MODEL_VAR} to one of: {}", ids.join(", "))));
        }
        let descriptor = inner.descriptor_from(&models);
        let _ = inner.resolved.set(descriptor);
        Ok(adapter)
    }

    pub fn server_kind(&self) -> ServerKind {
        self.inner.kind
    }

    async fn resolve(&self) -> Result<&ModelDescriptor, InferenceError> {
        let inner = &self.inner;
        inner
            .resolved
            .get_or_try_init(|| async {
                if inner.kind != ServerKind::Vllm || inner.base.context_length.is_some() {
                    return Ok(inner.base.clone());
                }
                let models = inner.models().await?;
                Ok(inner.descriptor_from(&models))
            })
            .await
    }
}

impl Inner {
    async fn models(&self) -> Result<wire::ModelList, InferenceError> {
        let fetch = get_models(
            &self.client,
            &self.config,
            &self.models_url,
            &self.config.retry,
        );
        tokio::time::timeout(self.config.response_timeout, fetch)
            .await
            .map_err(|_| {
                InferenceError::timeout(
                    BACKEND,
                    format!(
                        "no answer from {} within {:?}",
                        self.models_url, self.config.response_timeout
                    ),
                )
            })?
    }

    fn descriptor_from(&self, models: &wire::ModelList) -> ModelDescriptor {
        let reported = models
            .data
            .iter()
            .find(|m| m.id == self.model)
            .and_then(|m| m.max_model_len);
        ModelDescriptor {
            context_length: self.base.context_length.or(reported),
            ..self.base.clone()
        }
    }
}

#[async_trait]
impl LanguageModel for OpenAiAdapter {
    fn descriptor(&self) -> &ModelDescriptor {
        self.inner.resolved.get().unwrap_or(&self.inner.base)
    }

    async fn stream(&self, request: GenerationRequest) -> Result<EventStream, InferenceError> {
        let descriptor = self.resolve().await?;
        request.validate(descriptor)?;
        let inner = &self.inner;
        let permit =
            match &inner.slots {
                Some(slots) => Some(slots.clone().acquire_owned().await.map_err(|_| {
                    InferenceError::internal(BACKEND, "the request slots were closed")
                })?),
                None => None,
            };
        let body = request::body(&request, &inner.model, inner.kind)?;
        let started = Instant::now();
        let watchdog = Watchdog::new(
            BACKEND,
            Limits {
                total: inner.config.deadline,
                total_setting: DEADLINE_VAR,
                stall: inner.config.idle_timeout,
                stall_setting: IDLE_TIMEOUT_VAR,
            },
            started,
        );
        let send = send_with_retries(
            BACKEND,
            &inner.config.retry,
            || {
                authorized(inner.client.post(&inner.chat_url), &inner.config)
                    .header(reqwest::header::ACCEPT, "text/event-stream")
                    .header(reqwest::header::CONTENT_TYPE, "application/json")
                    .body(body.clone())
            },
            |response| errors::from_response(response, &inner.model),
        );
        let response = watchdog
            .within(
                send,
                inner.config.response_timeout,
                RESPONSE_TIMEOUT_VAR,
                &format!("the response headers from {}", inner.chat_url),
            )
            .await??;
        let content_type = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        if !content_type.starts_with("text/event-stream") {
            return Err(InferenceError::protocol(
                BACKEND,
                format!(
                    "the server answered a streaming request with {content_type:?} instead of an event stream"
                ),
            )
            .with_hint("the server does not stream chat completions; use a server that does"));
        }
        let exact = request.budget.is_exact();
        let decoder = stream::Decoder::new(
            stream::Expectations {
                model: inner.model.clone(),
                budget: request.budget,
                stops: if exact {
                    Vec::new()
                } else {
                    request.stop.clone()
                },
                stops_sent: !exact
                    && !request.stop.is_empty()
                    && request::stops_sent(&request, inner.kind),
                reports_stop_reason: inner.kind == ServerKind::Vllm,
                context_length: descriptor.context_length,
            },
            started,
        );
        let events = stream::event_stream(
            sse_events(BACKEND, response, MAX_SSE_EVENT),
            decoder,
            watchdog,
            permit,
        );
        // A server that ignores max_tokens is stopped once the text is clearly past it.
        let budget = request.budget.limit();
        Ok(enforce_response_format(
            BACKEND,
            request.response_format,
            rigger_ports::bound_answer(BACKEND, budget, events),
        ))
    }
}

fn http_client(
    config: &OpenAiConfig,
    overall: Option<Duration>,
) -> Result<reqwest::Client, InferenceError> {
    let mut builder = reqwest::Client::builder()
        .connect_timeout(config.connect_timeout)
        .user_agent(concat!("rigger-openai-adapter/", env!("CARGO_PKG_VERSION")));
    if let Some(timeout) = overall {
        builder = builder.timeout(timeout);
    }
    builder.build().map_err(|e| {
        InferenceError::internal(BACKEND, format!("cannot build the HTTP client: {e}"))
    })
}

fn authorized(request: reqwest::RequestBuilder, config: &OpenAiConfig) -> reqwest::RequestBuilder {
    match &config.api_key {
        Some(key) => request.bearer_auth(key.expose()),
        None => request,
    }
}

/// A quick availability check for `rigger doctor`: one `GET /v1/models`, no retries, within
/// `timeout`. Returns a one-line description.
pub async fn probe(config: &OpenAiConfig, timeout: Duration) -> Result<String, InferenceError> {
    let base_url = config.parsed_base_url()?;
    let client = http_client(config, Some(timeout))?;
    let url = format!("{base_url}/models");
    let models = get_models(&client, config, &url, &RetryPolicy::none()).await?;
    let kind = config.server_kind();
    let model_note = match config.model.as_deref() {
        Some(m) if models.data.iter().any(|e| e.id == m) => format!(", `{m}` listed"),
        Some(m) => format!(", `{m}` not listed"),
        None => format!(", {MODEL_VAR} not set"),
    };
    Ok(format!(
        "{kind} server at {base_url}: {} model(s){model_note}",
        models.data.len()
    ))
}

/// The ids `/v1/models` lists, for `rigger models`.
pub async fn list_models(config: &OpenAiConfig) -> Result<Vec<String>, InferenceError> {
    let base_url = config.parsed_base_url()?;
    let client = http_client(config, Some(config.response_timeout))?;
    let models = get_models(
        &client,
        config,
        &format!("{base_url}/models"),
        &config.retry,
    )
    .await?;
    Ok(models.data.into_iter().map(|m| m.id).collect())
}

async fn get_models(
    client: &reqwest::Client,
    config: &OpenAiConfig,
    url: &str,
    retry: &RetryPolicy,
) -> Result<wire::ModelList, InferenceError> {
    let model = config.model.clone().unwrap_or_default();
    let response = send_with_retries(
        BACKEND,
        retry,
        || authorized(client.get(url), config),
        |response| errors::from_response(response, &model),
    )
    .await?;
    let bytes = response
        .bytes()
        .await
        .map_err(|e| transport_error(BACKEND, &e))?;
    serde_json::from_slice(&bytes).map_err(|e| {
        InferenceError::protocol(BACKEND, format!("{url} did not answer a model list: {e}"))
            .with_raw_output(String::from_utf8_lossy(&bytes).into_owned())
            .with_hint(format!(
                "check {BASE_URL_VAR}: it must be the server's /v1 base"
            ))
    })
}
