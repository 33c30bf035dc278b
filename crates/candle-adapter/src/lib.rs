//! Candle backend: in-process, pure-Rust inference behind the model port.
//!
//! Role: load a local model — GGUF (quantized Llama family: Llama, Mistral; Qwen2; Qwen3; Phi-3;
//! Gemma 3) or safetensors (Llama, Mistral, Qwen2, Qwen3) with its `tokenizer.json` — or a hub id resolved
//! through `hf-hub`'s cache, and serve [`LanguageModel`] requests from a dedicated thread.
//! Requests queue and run one at a time with a fresh KV cache; tokens stream back through a
//! channel; dropping the stream stops generation at the next token. Adapters for the same model
//! file share one loaded copy. On the CPU, GGUF files of the architectures the CPU engine
//! (`rigger-cpu-engine`) runs (llama, qwen2, qwen3, phi3, gemma3) whose matrices are Q4_0, Q8_0,
//! Q4_1, Q5_0, Q5_1, Q4_K, Q5_K, Q6_K, F16 or BF16 run on it, and so do safetensors checkpoints
//! (llama, mistral, qwen2, qwen3) in F16 or BF16; everything else runs on candle's models
//! (safetensors: candle's `llama`, f32 on the CPU, f16 on accelerators; [`Kernels`]).
//!
//! Invariant: depends on `rigger-ports` and the CPU engine only among Rigger's crates; no candle
//! or engine type crosses the port (errors become [`InferenceError`]s).
//!
//! ```no_run
//! # async fn demo() -> Result<(), rigger_ports::InferenceError> {
//! use rigger_candle_adapter::{CandleAdapter, CandleConfig};
//! use rigger_ports::{GenerationRequest, LanguageModel};
//! let model = CandleAdapter::connect(CandleConfig::new("models/tiny/model-q4_0.gguf")).await?;
//! let answer = model.generate(GenerationRequest::prompt("Hello").with_max_tokens(16)).await?;
//! println!("{} [{}]", answer.text, answer.completion.timings.summary());
//! # Ok(()) }
//! ```

mod config;
mod constrain;
mod detokenize;
pub mod gguf_tokenizer;
pub mod hub;
mod load;
mod loaded;
mod sampling;
mod source;
pub mod template;
mod weights;
mod worker;

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use futures::StreamExt;
use rigger_ports::{
    Capabilities, ErrorKind, EventStream, GenerationRequest, InferenceError, LanguageModel,
    ModelDescriptor, ResponseFormat, TokenBudget, enforce_response_format,
};
use tokio::sync::mpsc;

use loaded::LoadedModel;

pub use config::{
    CandleConfig, DEVICE_VAR, DeviceKind, KERNELS_VAR, Kernels, MODEL_VAR, REPEAT_PENALTY_VAR,
    THREADS_VAR, TOKENIZER_VAR,
};
pub use constrain::{Grammar, GrammarCompiler, token_bytes};
pub use hub::{
    CachedRepo, DEFAULT_QUANT, DownloadEvent, HF_ENDPOINT_VAR, HF_HOME_VAR, HF_HUB_CACHE_VAR,
    HF_HUB_OFFLINE_VAR, HF_TOKEN_VAR, HubSettings, ProgressSink, cached_repos, no_progress,
    stderr_progress,
};
pub use sampling::DEFAULT_TEMPERATURE;
pub use source::{HubFile, ModelFiles, ModelSource, cached_weights};

/// The backend's name in descriptors and errors.
pub const BACKEND: &str = "candle";

/// The Candle adapter: one model, served in-process, loaded by [`connect`](Self::connect) or
/// on the first request after [`new`](Self::new).
pub struct CandleAdapter {
    config: CandleConfig,
    /// Until the model is loaded: the context length is unknown.
    provisional: ModelDescriptor,
    loaded: tokio::sync::OnceCell<Loaded>,
}

/// What loading adds: the loaded model (weights and worker thread), and the descriptor with the
/// model's context length.
struct Loaded {
    descriptor: ModelDescriptor,
    model: Arc<LoadedModel>,
}

impl CandleAdapter {
    /// What the adapter supports, known before any model is loaded: every sampling control, the
    /// exact token budget, and native structured output (JSON and JSON-schema requests are
    /// decoded under an llguidance grammar, so the answer conforms by construction).
    pub fn capabilities() -> Capabilities {
        Capabilities::all()
    }

    /// An adapter that loads the model on its first request; checks only that the model names
    /// a source ([`ModelSource::parse`]). A failed load is not remembered: the next request
    /// tries again. Until then [`descriptor`](LanguageModel::descriptor) is provisional (no
    /// context length).
    pub fn new(config: CandleConfig) -> Result<Self, InferenceError> {
        ModelSource::parse(&config.model)?;
        Ok(Self {
            provisional: ModelDescriptor {
                backend: BACKEND.into(),
                model_id: config.model.clone(),
                context_length: None,
                capabilities: Self::capabilities(),
            },
            config,
            loaded: tokio::sync::OnceCell::new(),
        })
    }

    /// Resolves and loads the model now (or reuses the copy another adapter already loaded).
    pub async fn connect(config: CandleConfig) -> Result<Self, InferenceError> {
        let adapter = Self::new(config)?;
        adapter.loaded().await?;
        Ok(adapter)
    }

    /// [`CandleConfig::from_env`], then [`Self::new`].
    pub fn from_env() -> Result<Self, InferenceError> {
        Self::new(CandleConfig::from_env()?)
    }

    /// How long loading the model took (for an adapter sharing an already loaded model: the
    /// time of that first load); `None` until loaded.
    pub fn load_duration(&self) -> Option<Duration> {
        self.loaded.get().map(|l| l.model.info.load_duration)
    }

    /// Which code runs the model, e.g. `rigger-cpu qwen2 Q4_0 avx512-vnni` (the CPU engine's kernels) or
    /// `candle quantized_llama`; `None` until loaded.
    pub fn engine(&self) -> Option<&str> {
        self.loaded.get().map(|l| l.model.info.engine.as_str())
    }

    /// Whether the model came without a chat template (the plain fallback is used); `None`
    /// until loaded.
    pub fn uses_fallback_template(&self) -> Option<bool> {
        self.loaded
            .get()
            .map(|l| l.model.info.template.is_fallback())
    }

    /// The loaded model, loading it first if needed (concurrent first requests load once), and
    /// how long loading took when this call loaded it (for the request's `Timings.load`).
    async fn loaded(&self) -> Result<(&Loaded, Option<Duration>), InferenceError> {
        let mut load = None;
        let loaded = self
            .loaded
            .get_or_try_init(|| async {
                // A hub model not yet cached is downloaded here, its progress on stderr.
                let files = source::resolve(
                    &self.config.model,
                    self.config.tokenizer.as_deref(),
                    &self.config.hub,
                    hub::stderr_progress(),
                )
                .await?;
                let (model, fresh) = LoadedModel::start(files, &self.config).await?;
                load = fresh.then_some(model.info.load_duration);
                Ok::<_, InferenceError>(Loaded {
                    descriptor: ModelDescriptor {
                        context_length: Some(model.info.context_length),
                        ..self.provisional.clone()
                    },
                    model,
                })
            })
            .await?;
        Ok((loaded, load))
    }
}

impl Loaded {
    fn prompt_tokens(&self, request: &GenerationRequest) -> Result<Vec<u32>, InferenceError> {
        let rendered = self.model.info.template.render(&request.messages)?;
        let encoding = self
            .model
            .info
            .tokenizer
            .encode(rendered.text, rendered.add_special_tokens)
            .map_err(|e| {
                InferenceError::invalid_request(
                    BACKEND,
                    format!("the prompt could not be tokenized: {e}"),
                )
            })?;
        Ok(encoding.get_ids().to_vec())
    }
}

/// Resolves the configured model now, downloading a hub model into the cache with its progress
/// going to `progress` (`rigger pull`); loads no weights.
pub async fn pull(
    config: &CandleConfig,
    progress: ProgressSink,
) -> Result<ModelFiles, InferenceError> {
    source::resolve(
        &config.model,
        config.tokenizer.as_deref(),
        &config.hub,
        progress,
    )
    .await
}

/// Whether the configured model can be served: its source resolves (an existing local model
/// with its tokenizer, or a well-formed hub id: cached, or fetched on first use). Loads no
/// weights and touches no network; `timeout` bounds the filesystem checks (a network mount can
/// hang).
pub async fn probe(config: &CandleConfig, timeout: Duration) -> Result<String, InferenceError> {
    let (model, tokenizer, hub) = (
        config.model.clone(),
        config.tokenizer.clone(),
        config.hub.clone(),
    );
    let checked = tokio::time::timeout(
        timeout,
        tokio::task::spawn_blocking(move || match ModelSource::parse(&model)? {
            ModelSource::Local(path) => {
                let files = source::resolve_local(&model, &path, tokenizer.as_deref())?;
                let kind = match files {
                    ModelFiles::Gguf { .. } => "GGUF",
                    ModelFiles::Safetensors { .. } => "safetensors",
                };
                Ok(format!("{model} ({kind}, loaded on first use)"))
            }
            ModelSource::Hub { .. } => match source::cached_weights(&model, &hub)? {
                Some(path) => Ok(format!("{model} (hub id, cached: {})", path.display())),
                None if hub.offline => Err(InferenceError::new(
                    ErrorKind::NotAvailable,
                    BACKEND,
                    format!(
                        "{model} is not in the hub cache ({}) and HF_HUB_OFFLINE is set",
                        hub.cache_dir.display()
                    ),
                )
                .with_code("HUB_OFFLINE")
                .with_hint(format!(
                    "download it while online with `rigger pull {model}`, or set CANDLE_MODEL=/path/to/file.gguf"
                ))),
                None => Ok(format!(
                    "{model} (hub id, not cached: downloaded into {} on first use)",
                    hub.cache_dir.display()
                )),
            },
        }),
    )
    .await
    .map_err(|_| {
        InferenceError::timeout(
            BACKEND,
            format!("checking {} took longer than {timeout:?}", config.model),
        )
    })?;
    checked.map_err(|e| InferenceError::internal(BACKEND, format!("the check panicked: {e}")))?
}

/// The models this configuration serves: the configured one.
pub async fn list_models(config: &CandleConfig) -> Result<Vec<String>, InferenceError> {
    Ok(vec![config.model.clone()])
}

#[async_trait]
impl LanguageModel for CandleAdapter {
    fn descriptor(&self) -> &ModelDescriptor {
        self.loaded
            .get()
            .map_or(&self.provisional, |l| &l.descriptor)
    }

    async fn stream(&self, request: GenerationRequest) -> Result<EventStream, InferenceError> {
        // Refuse a bad request before paying for a load; the loaded descriptor adds the
        // context length.
        request.validate(self.descriptor())?;
        let (loaded, load) = self.loaded().await?;
        let enqueued = Instant::now(); // after loading: load time is not time to first token
        request.validate(&loaded.descriptor)?;
        let prompt = loaded.prompt_tokens(&request)?;
        let context = loaded.model.info.context_length as usize;
        let budget = request.budget.limit() as usize;
        if prompt.len() + budget > context {
            return Err(InferenceError::new(
                ErrorKind::ContextLengthExceeded,
                BACKEND,
                format!(
                    "the prompt has {} tokens and the budget asks for {budget} more, but {} holds {context}",
                    prompt.len(),
                    loaded.descriptor.model_id
                ),
            )
            .with_hint("shorten the messages or lower max_tokens; nothing is truncated silently")
            .with_retryable(false));
        }
        let seed = request.seed.unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64)
        });
        let grammar = match &request.response_format {
            ResponseFormat::Text => None,
            format => {
                if matches!(request.budget, TokenBudget::Exactly(_)) {
                    return Err(InferenceError::invalid_request(
                        BACKEND,
                        "an exact token budget cannot be combined with structured output: the \
                         grammar ends the answer where the JSON ends",
                    )
                    .with_hint("use max_tokens (an upper bound) with a JSON response format"));
                }
                // The first structured request builds the vocabulary's token trie: off the
                // async threads.
                let (model, format) = (loaded.model.clone(), format.clone());
                tokio::task::spawn_blocking(move || model.grammars.compile(&format))
                    .await
                    .map_err(|e| {
                        InferenceError::internal(
                            BACKEND,
                            format!("grammar compilation panicked: {e}"),
                        )
                    })??
            }
        };
        let (events, receiver) = mpsc::channel(64);
        let job = worker::Job {
            prompt,
            sampling: worker::SamplingParams {
                limit: request.budget.limit(),
                exact: matches!(request.budget, TokenBudget::Exactly(_)),
                temperature: request.temperature.map(f64::from),
                top_k: request.top_k.map(|k| k as usize),
                top_p: request.top_p.map(f64::from),
                seed,
                stop: request.stop.clone(),
                repeat_penalty: self.config.repeat_penalty,
                repeat_last_n: self.config.repeat_last_n,
            },
            grammar,
            events,
            enqueued,
            load,
        };
        loaded.model.submit(job)?;
        let mut receiver = receiver;
        let stream = futures::stream::poll_fn(move |cx| receiver.poll_recv(cx)).boxed();
        Ok(enforce_response_format(
            BACKEND,
            request.response_format,
            stream,
        ))
    }
}
