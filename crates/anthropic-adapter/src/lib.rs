//! Anthropic backend: [`AnthropicAdapter`] implements the model port over the Messages API
//! (`POST /v1/messages` with `stream: true`, server-sent events).
//!
//! Role: turn the port's requests into Messages API bodies (system prompt at the top level,
//! the token budget as `max_tokens`, JSON schemas as a forced tool call), stream the reply's
//! events back as text deltas and one final record, and map Anthropic's error shapes onto the
//! port's kinds. Retries (429, 5xx, 529, and `overloaded_error` events that arrive before the
//! message starts) happen only before the first token; dropping the stream closes the
//! connection.
//!
//! Invariant: depends on `rigger-ports` and `rigger-http-support` only among Rigger's crates;
//! the wire types stay in this crate, and no reqwest type crosses the port.
//!
//! ```no_run
//! # async fn run() -> Result<(), rigger_ports::InferenceError> {
//! use rigger_anthropic_adapter::{AnthropicAdapter, AnthropicConfig};
//! use rigger_ports::{GenerationRequest, LanguageModel};
//!
//! let model = AnthropicAdapter::new(AnthropicConfig::from_env()?)?;
//! let reply = model.generate(GenerationRequest::prompt("Say hi").with_max_tokens(32)).await?;
//! println!("{}\n{}", reply.text, reply.completion.timings.summary());
//! # Ok(()) }
//! ```

mod config;
mod errors;
mod request;
mod stream;
mod structured;
mod wire;

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use futures::StreamExt;
use futures::stream::BoxStream;
use reqwest::header::{ACCEPT, CONTENT_TYPE, HeaderValue};
use reqwest::{Client, RequestBuilder, Url};
use rigger_http_support::{
    Limits, MAX_SSE_EVENT, RetryPolicy, SseEvent, Watchdog, send_with_retries, sse_events,
};
use rigger_ports::{
    Capabilities, Completion, ErrorKind, EventStream, GenerationRequest, InferenceError,
    LanguageModel, ModelDescriptor, StreamEvent, TimingSource, Timings, enforce_response_format,
};
use tokio::sync::OnceCell;

pub use config::{
    API_KEY_VAR, API_VERSION, AnthropicConfig, BASE_URL_VAR, DEADLINE_VAR, DEFAULT_BASE_URL,
    DEFAULT_MODEL, FIRST_TOKEN_TIMEOUT_VAR, IDLE_TIMEOUT_VAR, MODEL_VAR,
};
pub use stream::{Decoded, EventDecoder, Output};

/// The backend's name in descriptors and errors.
pub const BACKEND: &str = "anthropic";

/// Stable error codes.
pub mod codes {
    /// No key for `api.anthropic.com`.
    pub const ANTHROPIC_API_KEY_MISSING: &str = "ANTHROPIC_API_KEY_MISSING";
    /// `authentication_error`, `permission_error` or `billing_error`.
    pub const ANTHROPIC_UNAUTHORIZED: &str = "ANTHROPIC_UNAUTHORIZED";
    /// `overloaded_error` (HTTP 529 or a stream event).
    pub const ANTHROPIC_OVERLOADED: &str = "ANTHROPIC_OVERLOADED";
}

/// What Anthropic's Messages API can do beyond plain sampling, for any model. It has no seed and
/// no way to force N tokens. Structured output: Claude 4.5 and later constrain decoding to a
/// schema (`output_config.format`), and the adapter declares native structured output for them;
/// older models get a forced tool call, which steers but does not constrain, so their output is
/// validated, not guaranteed (this constant's `false`).
pub const CAPABILITIES: Capabilities = Capabilities {
    seed: false,
    top_k: true,
    top_p: true,
    stop_sequences: true,
    exact_token_budget: false,
    native_structured_output: false,
};

/// A Messages API model. Cheap to share as `Arc<dyn LanguageModel>`; requests run concurrently.
pub struct AnthropicAdapter {
    config: AnthropicConfig,
    client: Client,
    messages_url: Url,
    models_url: Url,
    initial: ModelDescriptor,
    /// The descriptor with what the Models API said, once it has been asked.
    resolved: OnceLock<ModelDescriptor>,
    limits: OnceCell<ModelLimits>,
}

impl std::fmt::Debug for AnthropicAdapter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AnthropicAdapter")
            .field("config", &self.config)
            .field("descriptor", self.descriptor())
            .finish_non_exhaustive()
    }
}

/// What the Models API told about the model.
#[derive(Debug, Clone, Copy)]
struct ModelLimits {
    max_output_tokens: Option<u32>,
}

impl AnthropicAdapter {
    /// Checks the configuration and builds the client; no network. The model is looked up
    /// (`GET /v1/models/{id}`, for its context length and output limit) on first use.
    pub fn new(config: AnthropicConfig) -> Result<Self, InferenceError> {
        let base = config.checked_base_url()?;
        let client = http_client(&config)?;
        let messages_url = endpoint(&base, &["v1", "messages"])?;
        let models_url = endpoint(&base, &["v1", "models"])?;
        let initial = ModelDescriptor {
            backend: BACKEND.to_owned(),
            model_id: config.model.clone(),
            context_length: config.context_length,
            capabilities: Capabilities {
                native_structured_output: structured::has_native_structured_output(&config.model),
                ..CAPABILITIES
            },
        };
        Ok(Self {
            config,
            client,
            messages_url,
            models_url,
            initial,
            resolved: OnceLock::new(),
            limits: OnceCell::new(),
        })
    }

    /// [`new`](Self::new), then looks the model up now: an unreachable server, a rejected key
    /// or an unknown model fail here rather than on the first request.
    pub async fn connect(config: AnthropicConfig) -> Result<Self, InferenceError> {
        let adapter = Self::new(config)?;
        adapter.limits().await?;
        Ok(adapter)
    }

    fn request(&self, builder: RequestBuilder) -> RequestBuilder {
        with_headers(builder, &self.config)
    }

    /// Looks the model up once; concurrent first requests share the one lookup.
    async fn limits(&self) -> Result<ModelLimits, InferenceError> {
        let limits = self
            .limits
            .get_or_try_init(|| async {
                // The client has only a connect timeout (a generation's body may take minutes),
                // so the lookup gets the first-token limit: a stalled lookup must not hang the
                // request before its own clocks start.
                let limit = self.config.first_token_timeout;
                let lookup = model_info(&self.client, &self.config, &self.models_url);
                let info = tokio::time::timeout(limit, lookup).await.map_err(|_| {
                    InferenceError::timeout(
                        BACKEND,
                        format!(
                            "the model lookup GET {}/{} did not answer within {limit:?}",
                            self.models_url, self.config.model
                        ),
                    )
                    .with_retryable(false)
                    .with_hint(format!(
                        "raise {FIRST_TOKEN_TIMEOUT_VAR}, or check the server at {BASE_URL_VAR}"
                    ))
                })??;
                let context_length = self
                    .config
                    .context_length
                    .or(info.as_ref().and_then(|i| i.max_input_tokens));
                let _ = self.resolved.set(ModelDescriptor {
                    context_length,
                    ..self.initial.clone()
                });
                Ok::<_, InferenceError>(ModelLimits {
                    max_output_tokens: info.and_then(|i| i.max_tokens),
                })
            })
            .await?;
        Ok(*limits)
    }

    /// Sends the request and reads up to `message_start`, retrying under the policy while
    /// nothing of the reply has arrived: HTTP errors (in `send_with_retries`), and `error`
    /// events before `message_start`, which stand for the HTTP status they would have had.
    async fn open(
        &self,
        prepared: &request::Prepared,
        watchdog: &Watchdog,
    ) -> Result<
        (
            BoxStream<'static, Result<SseEvent, InferenceError>>,
            EventDecoder,
            Option<Decoded>,
        ),
        InferenceError,
    > {
        let policy = &self.config.retry;
        let model = self.config.model.as_str();
        let mut retry = 0;
        loop {
            let response = send_with_retries(
                BACKEND,
                policy,
                || {
                    self.request(self.client.post(self.messages_url.clone()))
                        .header(ACCEPT, "text/event-stream")
                        .header(CONTENT_TYPE, "application/json")
                        .body(prepared.body.clone())
                },
                |e| errors::from_response(e, model),
            )
            .await?;
            check_event_stream(&response)?;
            let mut events = sse_events(BACKEND, response, MAX_SSE_EVENT);
            let mut decoder = EventDecoder::new(prepared.output.clone(), model);
            let outcome = loop {
                let Some(event) = next_event(&mut events, &decoder, watchdog).await? else {
                    break Err(InferenceError::new(
                        ErrorKind::Io,
                        BACKEND,
                        "the stream ended before the message started",
                    ));
                };
                match decoder.decode(&event.data) {
                    Ok(Decoded::Nothing) if !decoder.has_started() => continue,
                    Ok(Decoded::Nothing) => break Ok(None),
                    Ok(decoded) => break Ok(Some(decoded)),
                    Err(e) => break Err(e),
                }
            };
            match outcome {
                Ok(pending) => return Ok((events, decoder, pending)),
                Err(e) if e.is_retryable() && !decoder.has_started() => {
                    let Some(delay) = (retry < policy.max_retries)
                        .then(|| policy.delay(retry, e.retry_after()))
                        .flatten()
                    else {
                        return Err(e);
                    };
                    tracing::warn!(backend = BACKEND, retry = retry + 1, ?delay, error = %e, "retrying after an error event");
                    tokio::time::sleep(delay).await;
                    retry += 1;
                }
                Err(e) => return Err(e),
            }
        }
    }
}

/// The next event, within the watchdog's limits; an error keeps the text received so far.
async fn next_event(
    events: &mut BoxStream<'static, Result<SseEvent, InferenceError>>,
    decoder: &EventDecoder,
    watchdog: &Watchdog,
) -> Result<Option<SseEvent>, InferenceError> {
    let keep = |e: InferenceError| {
        if decoder.text().is_empty() {
            e
        } else {
            e.with_raw_output(decoder.text().to_owned())
        }
    };
    match watchdog.next(events).await {
        Err(e) => Err(keep(e)),
        Ok(None) => Ok(None),
        Ok(Some(Ok(event))) => Ok(Some(event)),
        Ok(Some(Err(e))) => Err(keep(e)),
    }
}

#[async_trait]
impl LanguageModel for AnthropicAdapter {
    fn descriptor(&self) -> &ModelDescriptor {
        self.resolved.get().unwrap_or(&self.initial)
    }

    async fn stream(&self, request: GenerationRequest) -> Result<EventStream, InferenceError> {
        request.validate(&self.initial)?;
        let prepared = request::prepare(&self.config.model, &request)?;
        let limits = self.limits().await?;
        if let Some(max) = limits.max_output_tokens
            && request.budget.limit() > max
        {
            return Err(InferenceError::invalid_request(
                BACKEND,
                format!(
                    "max_tokens {} is over {}'s output limit of {max}",
                    request.budget.limit(),
                    self.config.model
                ),
            )
            .with_hint(format!("ask for at most {max} tokens")));
        }

        let started = Instant::now();
        // `ping`s never count as progress: only the message's start, text and its end do.
        let mut watchdog = Watchdog::new(
            BACKEND,
            Limits {
                total: self.config.deadline,
                total_setting: DEADLINE_VAR,
                stall: self.config.idle_timeout,
                stall_setting: IDLE_TIMEOUT_VAR,
            },
            started,
        );
        let (events, decoder, pending) = watchdog
            .within(
                self.open(&prepared, &watchdog),
                self.config.first_token_timeout,
                FIRST_TOKEN_TIMEOUT_VAR,
                "the message's start",
            )
            .await??;
        watchdog.progressed();

        let state = Live {
            events,
            decoder,
            pending,
            watchdog,
            started,
            first_token: None,
            done: false,
        };
        let stream = futures::stream::unfold(state, Live::step).boxed();
        // A server that ignores max_tokens is stopped once the text is clearly past it.
        let budget = request.budget.limit();
        Ok(enforce_response_format(
            BACKEND,
            request.response_format,
            rigger_ports::bound_answer(BACKEND, budget, stream),
        ))
    }
}

/// A reply being streamed. Dropping it drops the response body, which closes the connection
/// (HTTP/1.1) or resets the stream (HTTP/2): the server stops generating.
struct Live {
    events: BoxStream<'static, Result<SseEvent, InferenceError>>,
    decoder: EventDecoder,
    pending: Option<Decoded>,
    watchdog: Watchdog,
    started: Instant,
    first_token: Option<Instant>,
    done: bool,
}

impl Live {
    async fn step(mut self) -> Option<(Result<StreamEvent, InferenceError>, Self)> {
        if self.done {
            return None;
        }
        loop {
            let decoded = match self.pending.take() {
                Some(decoded) => Ok(decoded),
                None => match next_event(&mut self.events, &self.decoder, &self.watchdog).await {
                    Ok(Some(event)) => self.decoder.decode(&event.data),
                    Ok(None) => Err(InferenceError::new(
                        ErrorKind::Io,
                        BACKEND,
                        "the stream ended before message_stop",
                    )
                    .with_raw_output(self.decoder.text().to_owned())),
                    Err(e) => Err(e),
                },
            };
            match decoded {
                Ok(Decoded::Nothing) => continue,
                Ok(Decoded::Text(text)) => {
                    self.watchdog.progressed();
                    self.first_token.get_or_insert_with(Instant::now);
                    return Some((Ok(StreamEvent::Delta(text)), self));
                }
                Ok(Decoded::Finished {
                    finish_reason,
                    usage,
                }) => {
                    self.done = true;
                    let end = Instant::now();
                    let first = self.first_token.unwrap_or(end);
                    let timings = Timings {
                        load: None,
                        time_to_first_token: self
                            .first_token
                            .map(|t| t.duration_since(self.started)),
                        prompt_tokens: usage.prompt_tokens,
                        prompt_duration: first.duration_since(self.started),
                        generated_tokens: usage.completion_tokens,
                        generation_duration: end.duration_since(first),
                        source: TimingSource::Client,
                        grammar: None,
                    };
                    let completion = Completion {
                        finish_reason,
                        usage,
                        timings,
                    };
                    return Some((Ok(StreamEvent::Done(completion)), self));
                }
                Err(e) => {
                    self.done = true;
                    return Some((Err(e), self));
                }
            }
        }
    }
}

/// A server that ignored `stream: true` (or a proxy's error page with status 200) is not an
/// event stream; say so instead of parsing it as one.
fn check_event_stream(response: &reqwest::Response) -> Result<(), InferenceError> {
    let content_type = response
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if content_type.starts_with("text/event-stream") {
        Ok(())
    } else {
        Err(InferenceError::protocol(
            BACKEND,
            format!("expected an event stream, got content-type {content_type:?}"),
        )
        .with_hint(format!(
            "check {BASE_URL_VAR}: the server must speak Anthropic's Messages API with streaming"
        )))
    }
}

fn http_client(config: &AnthropicConfig) -> Result<Client, InferenceError> {
    Client::builder()
        .connect_timeout(config.connect_timeout)
        .build()
        .map_err(|e| {
            InferenceError::internal(BACKEND, format!("cannot build the HTTP client: {e}"))
                .with_source(e)
        })
}

fn endpoint(base: &Url, segments: &[&str]) -> Result<Url, InferenceError> {
    let mut url = base.clone();
    url.path_segments_mut()
        .map_err(|()| {
            InferenceError::invalid_request(BACKEND, format!("{base} cannot take a path"))
                .with_hint(format!("set {BASE_URL_VAR} to an http(s) URL"))
        })?
        .pop_if_empty()
        .extend(segments);
    Ok(url)
}

fn with_headers(builder: RequestBuilder, config: &AnthropicConfig) -> RequestBuilder {
    let builder = builder.header("anthropic-version", config.api_version.as_str());
    match &config.api_key {
        Some(key) => match HeaderValue::from_str(key.expose()) {
            Ok(mut value) => {
                value.set_sensitive(true);
                builder.header("x-api-key", value)
            }
            // Refused by `AnthropicConfig::checked_base_url` before any adapter exists.
            Err(_) => builder,
        },
        None => builder,
    }
}

/// `GET /v1/models/{id}`. `Ok(None)` when the server has no such endpoint (llama-server and
/// other compatible servers): the adapter then works without the limits.
async fn model_info(
    client: &Client,
    config: &AnthropicConfig,
    models_url: &Url,
) -> Result<Option<wire::ModelInfo>, InferenceError> {
    const NO_ENDPOINT: &str = "NO_MODELS_ENDPOINT";
    let mut url = models_url.clone();
    if let Ok(mut segments) = url.path_segments_mut() {
        segments.push(&config.model);
    }
    let model = config.model.as_str();
    let sent = send_with_retries(
        BACKEND,
        &config.retry,
        || with_headers(client.get(url.clone()), config),
        |e| {
            let status = e.status.as_u16();
            let parsed = serde_json::from_str::<wire::ErrorBody>(&e.body).ok();
            let names_model = parsed.as_ref().is_some_and(|b| {
                b.error.kind == "not_found_error" && b.error.message.contains(model)
            });
            if matches!(status, 404 | 405 | 501) && !names_model {
                InferenceError::new(ErrorKind::Unsupported, BACKEND, "no models endpoint")
                    .with_code(NO_ENDPOINT)
                    .with_retryable(false)
            } else {
                errors::from_response(e, model)
            }
        },
    )
    .await;
    let response = match sent {
        Ok(response) => response,
        Err(e) if e.code() == Some(NO_ENDPOINT) => {
            tracing::info!(backend = BACKEND, %url, "the server has no model lookup; context length and output limit unknown");
            return Ok(None);
        }
        Err(e) => return Err(e),
    };
    let info: wire::ModelInfo = response.json().await.map_err(|e| {
        InferenceError::protocol(BACKEND, format!("undecodable model info from {url}: {e}"))
    })?;
    Ok(Some(info))
}

/// A quick availability check for `rigger doctor`: one `GET /v1/models`, no retries. Returns a
/// one-line description.
pub async fn probe(config: &AnthropicConfig, timeout: Duration) -> Result<String, InferenceError> {
    let base = config.checked_base_url()?;
    let client = http_client(config)?;
    let url = endpoint(&base, &["v1", "models"])?;
    let page = tokio::time::timeout(
        timeout,
        models_page(&client, config, &url, None, &RetryPolicy::none()),
    )
    .await
    .map_err(|_| {
        InferenceError::timeout(BACKEND, format!("{url} did not answer within {timeout:?}"))
            .with_hint(format!("check {BASE_URL_VAR} and the network"))
    })??;
    let listed = page.data.iter().any(|m| m.id == config.model);
    Ok(format!(
        "{base}: {}{} models; {} {}",
        page.data.len(),
        if page.has_more { "+" } else { "" },
        config.model,
        if listed {
            "listed"
        } else {
            "not in the first page"
        }
    ))
}

/// Every model the server lists (`GET /v1/models`, all pages), for `rigger models`.
pub async fn list_models(config: &AnthropicConfig) -> Result<Vec<String>, InferenceError> {
    const MAX_PAGES: usize = 100;
    let base = config.checked_base_url()?;
    let client = http_client(config)?;
    let url = endpoint(&base, &["v1", "models"])?;
    let mut ids = Vec::new();
    let mut after = None;
    for _ in 0..MAX_PAGES {
        let page = models_page(&client, config, &url, after.as_deref(), &config.retry).await?;
        ids.extend(page.data.into_iter().map(|m| m.id));
        match (page.has_more, page.last_id) {
            (true, Some(last)) => after = Some(last),
            _ => return Ok(ids),
        }
    }
    Err(InferenceError::protocol(
        BACKEND,
        format!("{url} kept saying has_more after {MAX_PAGES} pages"),
    ))
}

async fn models_page(
    client: &Client,
    config: &AnthropicConfig,
    url: &Url,
    after: Option<&str>,
    policy: &RetryPolicy,
) -> Result<wire::ModelPage, InferenceError> {
    let mut url = url.clone();
    url.query_pairs_mut().append_pair("limit", "1000");
    if let Some(after) = after {
        url.query_pairs_mut().append_pair("after_id", after);
    }
    let response = send_with_retries(
        BACKEND,
        policy,
        || with_headers(client.get(url.clone()), config),
        |e| {
            if e.status == reqwest::StatusCode::NOT_FOUND {
                InferenceError::new(ErrorKind::NotAvailable, BACKEND, format!("{url} has no model list (HTTP 404)"))
                    .with_hint(format!("check {BASE_URL_VAR}: it must point at an Anthropic-compatible server, without /v1"))
            } else {
                errors::from_response(e, &config.model)
            }
        },
    )
    .await?;
    response.json().await.map_err(|e| {
        InferenceError::protocol(BACKEND, format!("undecodable model list from {url}: {e}"))
    })
}
