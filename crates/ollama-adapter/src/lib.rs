//! Ollama backend: a client of Ollama's REST API implementing the model port.
//!
//! Role: chat over `/api/chat` (NDJSON streaming) with Ollama's own figures (nanosecond durations,
//! token counts) mapped into the port's [`Usage`](rigger_ports::Usage) and
//! [`Timings`](rigger_ports::Timings); raw prompts over `/api/generate`; model management
//! ([`OllamaClient`]: list, loaded, show, pull, create from a local GGUF, version). Prompts are
//! never truncated: `num_ctx` is sized from a conservative prompt estimate and the model's
//! context length, and a prompt that does not fit is a `ContextLengthExceeded` error.
//!
//! Invariant: depends on `rigger-ports` and `rigger-http-support` only among Rigger's crates;
//! wire types stay private and no reqwest type crosses the port.
//!
//! ```no_run
//! # async fn demo() -> Result<(), rigger_ports::InferenceError> {
//! use rigger_ollama_adapter::{OllamaAdapter, OllamaConfig};
//! use rigger_ports::{GenerationRequest, LanguageModel};
//! let model = OllamaAdapter::new(OllamaConfig::from_env()?)?;
//! let answer = model.generate(GenerationRequest::prompt("Hello").with_max_tokens(16)).await?;
//! println!("{} [{}]", answer.text, answer.completion.timings.summary());
//! # Ok(()) }
//! ```

mod client;
mod config;
mod context;
mod errors;
mod models;
mod request;
mod stream;
mod wire;

use std::time::{Duration, Instant};

use async_trait::async_trait;
use reqwest::Method;
use rigger_http_support::{Limits, Watchdog};
use rigger_ports::{
    Capabilities, ChatMessage, EventStream, GenerationRequest, InferenceError, LanguageModel,
    ModelDescriptor, enforce_response_format,
};
use tokio::sync::OnceCell;

pub use client::OllamaClient;
pub use config::{
    API_KEY_VAR, DEADLINE_VAR, DEFAULT_BASE_URL, DEFAULT_MODEL, DEFAULT_PORT,
    FIRST_TOKEN_TIMEOUT_VAR, HOST_VAR, IDLE_TIMEOUT_VAR, KeepAlive, MODEL_VAR, OllamaConfig,
    parse_ollama_host,
};
pub use context::{MIN_NUM_CTX, estimate_prompt_tokens};
pub use errors::codes;
pub use models::{ModelDetails, ModelInfo, ModelSummary, Progress, ProgressStream, RunningModel};

/// The backend's name in descriptors and errors.
pub const BACKEND: &str = "ollama";

/// Seeds travel as JSON numbers, which Ollama reads as 64-bit floats: larger ones would change.
const MAX_EXACT_SEED: u64 = (1 << 53) - 1;

/// What Ollama honours, per its API reference: `seed`, `top_k`, `top_p`, `stop` options and
/// `format` (JSON or a JSON schema, enforced by the engine). It has no documented way to ignore
/// end-of-sequence, so exact budgets are not declared.
pub const CAPABILITIES: Capabilities = Capabilities {
    seed: true,
    top_k: true,
    top_p: true,
    stop_sequences: true,
    exact_token_budget: false,
    native_structured_output: true,
};

/// Whether the engine serving a model enforces `format`. Ollama runs GGUF models on llama.cpp,
/// which masks the sampler with the schema's grammar; models in other formats (`safetensors`)
/// run on its MLX engine, which silently drops `format` (ollama/ollama#16563, #17013, #17933).
fn engine_honours_format(details: &ModelDetails) -> bool {
    details.format.is_empty() || details.format.eq_ignore_ascii_case("gguf")
}

/// A quick availability check for `rigger doctor`: one `GET /api/version` within `timeout`, no
/// retries. Returns e.g. `Ollama 0.5.1 at http://127.0.0.1:11434`.
pub async fn probe(config: &OllamaConfig, timeout: Duration) -> Result<String, InferenceError> {
    let client = OllamaClient::new(config)?;
    let version = client.probe_version(timeout).await?;
    Ok(format!("Ollama {version} at {}", client.base_url()))
}

/// The names of the models the server has (`/api/tags`), for `rigger models`.
pub async fn list_models(config: &OllamaConfig) -> Result<Vec<String>, InferenceError> {
    let models = OllamaClient::new(config)?.list_models().await?;
    Ok(models.into_iter().map(|m| m.name).collect())
}

/// What is learned from `/api/show` on first use.
#[derive(Debug)]
struct Resolved {
    descriptor: ModelDescriptor,
    /// The Modelfile's system prompt, counted when the request brings none of its own.
    default_system_bytes: usize,
}

/// The Ollama adapter: one model on one server. Cheap to share as `Arc<dyn LanguageModel>`.
#[derive(Debug)]
pub struct OllamaAdapter {
    client: OllamaClient,
    model: String,
    /// Until `/api/show` has answered: the descriptor without a context length.
    initial: ModelDescriptor,
    resolved: OnceCell<Resolved>,
}

impl OllamaAdapter {
    /// Builds the adapter without touching the network. The model's details (context length)
    /// are fetched on first use and cached. An unusable configuration is an InvalidRequest.
    pub fn new(config: OllamaConfig) -> Result<Self, InferenceError> {
        let client = OllamaClient::new(&config)?;
        let initial = ModelDescriptor {
            backend: BACKEND.to_owned(),
            model_id: config.model.clone(),
            context_length: config.num_ctx,
            capabilities: CAPABILITIES,
        };
        Ok(Self {
            client,
            model: config.model,
            initial,
            resolved: OnceCell::new(),
        })
    }

    /// Builds the adapter and checks now that the server answers and has the model (fetching
    /// its context length), so that [`LanguageModel::descriptor`] is complete from the start.
    pub async fn connect(config: OllamaConfig) -> Result<Self, InferenceError> {
        let adapter = Self::new(config)?;
        adapter.resolve().await?;
        Ok(adapter)
    }

    /// The HTTP client, for model management on the same server.
    pub fn client(&self) -> &OllamaClient {
        &self.client
    }

    async fn resolve(&self) -> Result<&Resolved, InferenceError> {
        self.resolved
            .get_or_try_init(|| async {
                let info = self.client.show(&self.model).await?;
                let context_length = match self.client.config().num_ctx {
                    // A fixed num_ctx is the window every request gets; the model's trained
                    // length is the ceiling that window cannot usefully exceed.
                    Some(fixed) => Some(info.context_length.map_or(fixed, |c| c.min(fixed))),
                    None => info.context_length,
                };
                let mut capabilities = self.initial.capabilities;
                if !engine_honours_format(&info.details) {
                    // Ollama's MLX engine (safetensors models) accepts `format` and ignores it:
                    // the pipeline must describe the JSON itself and rely on validation.
                    tracing::warn!(
                        target: "rigger::ollama",
                        "{} runs on Ollama's {} engine, which ignores `format`: structured \
                         output is validated only, not enforced",
                        self.model,
                        info.details.format
                    );
                    capabilities.native_structured_output = false;
                }
                Ok(Resolved {
                    descriptor: ModelDescriptor {
                        context_length,
                        capabilities,
                        ..self.initial.clone()
                    },
                    default_system_bytes: info.system.len(),
                })
            })
            .await
    }

    /// Streams a raw prompt over `/api/generate` with `raw: true`: no chat template is applied,
    /// so the caller's prompt reaches the model byte for byte (e.g. to run the same templated
    /// prompt on every backend). `request` gives the budget, sampling and format; its messages
    /// must be empty, since the prompt is the argument.
    pub async fn stream_raw(
        &self,
        prompt: &str,
        request: GenerationRequest,
    ) -> Result<EventStream, InferenceError> {
        if !request.messages.is_empty() {
            return Err(InferenceError::invalid_request(
                BACKEND,
                "stream_raw takes the prompt as its argument, but the request also has messages",
            )
            .with_hint("leave GenerationRequest::messages empty for a raw prompt"));
        }
        let as_messages = GenerationRequest {
            messages: vec![ChatMessage::user(prompt)],
            ..request
        };
        self.start(as_messages, Some(prompt)).await
    }

    /// [`Self::stream_raw`], collected.
    pub async fn generate_raw(
        &self,
        prompt: &str,
        request: GenerationRequest,
    ) -> Result<rigger_ports::Generation, InferenceError> {
        rigger_ports::collect_stream(BACKEND, self.stream_raw(prompt, request).await?).await
    }

    async fn start(
        &self,
        request: GenerationRequest,
        raw_prompt: Option<&str>,
    ) -> Result<EventStream, InferenceError> {
        request.validate(self.descriptor())?;
        if let Some(seed) = request.seed
            && seed > MAX_EXACT_SEED
        {
            return Err(InferenceError::invalid_request(
                BACKEND,
                format!("seed {seed} is larger than Ollama can take exactly (2^53 - 1)"),
            )
            .with_hint("use a seed below 9007199254740992"));
        }
        let resolved = self.resolve().await?;
        let config = self.client.config();
        let has_system = request
            .messages
            .iter()
            .any(|m| m.role == rigger_ports::ChatRole::System);
        let default_system = if has_system || raw_prompt.is_some() {
            0
        } else {
            resolved.default_system_bytes
        };
        let num_ctx = context::size_num_ctx(
            estimate_prompt_tokens(&request.messages, raw_prompt.is_some())
                .saturating_add(u32::try_from(default_system).unwrap_or(u32::MAX)),
            request.budget.limit(),
            resolved.descriptor.context_length,
            config.num_ctx,
        )?;
        let (path, body) = request::body(
            &self.model,
            &request,
            raw_prompt,
            num_ctx,
            config.keep_alive.as_ref(),
        )?;

        let started = Instant::now();
        // Until the first text the stall limit is the first-token timeout (it includes loading
        // the model); the stream switches to the idle timeout once text flows.
        let watchdog = Watchdog::new(
            BACKEND,
            Limits {
                total: config.deadline,
                total_setting: DEADLINE_VAR,
                stall: config.first_token_timeout,
                stall_setting: FIRST_TOKEN_TIMEOUT_VAR,
            },
            started,
        );
        let send = self.client.send(&config.retry, Some(&self.model), || {
            self.client
                .request(Method::POST, path)
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body.clone())
        });
        let response = watchdog
            .within(
                send,
                config.first_token_timeout,
                FIRST_TOKEN_TIMEOUT_VAR,
                "Ollama's answer (loading the model included)",
            )
            .await??;
        let events = stream::events(
            response,
            stream::Expect {
                started,
                watchdog,
                idle_timeout: config.idle_timeout,
                num_predict: request.budget.limit(),
                has_stops: !request.stop.is_empty(),
                model: self.model.clone(),
            },
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

/// For the criterion bench only: turns NDJSON lines already in memory into port events through
/// the adapter's own decoding (JSON parse, deltas, the final record), and counts the events.
/// Needs a tokio runtime (the per-line timeouts are tokio timers).
#[doc(hidden)]
pub async fn decode_lines_for_bench(lines: &[String]) -> usize {
    use futures::StreamExt;
    let now = Instant::now();
    // Owned lines, as the line codec yields them.
    let owned: Vec<Result<String, InferenceError>> = lines.iter().cloned().map(Ok).collect();
    let lines = futures::stream::iter(owned).boxed();
    let expect = stream::Expect {
        started: now,
        watchdog: Watchdog::new(
            BACKEND,
            Limits {
                total: Duration::from_secs(3600),
                total_setting: DEADLINE_VAR,
                stall: Duration::from_secs(60),
                stall_setting: IDLE_TIMEOUT_VAR,
            },
            now,
        ),
        idle_timeout: Duration::from_secs(60),
        num_predict: u32::MAX,
        has_stops: false,
        model: String::new(),
    };
    stream::events_from_lines(lines, expect).count().await
}

#[async_trait]
impl LanguageModel for OllamaAdapter {
    fn descriptor(&self) -> &ModelDescriptor {
        self.resolved.get().map_or(&self.initial, |r| &r.descriptor)
    }

    async fn stream(&self, request: GenerationRequest) -> Result<EventStream, InferenceError> {
        self.start(request, None).await
    }
}
