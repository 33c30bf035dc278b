//! Candle backend: in-process, pure-Rust inference behind the model port.
//!
//! Role: load a local model — GGUF (quantized Llama family: Llama, Mistral; Qwen2; Phi-3) or safetensors
//! (Llama, f32 on the CPU, f16 on accelerators) with its `tokenizer.json` — or a hub id resolved
//! through `hf-hub`'s cache, and serve [`LanguageModel`] requests from a dedicated thread.
//! Requests queue and run one at a time with a fresh KV cache; tokens stream back through a
//! channel; dropping the stream stops generation at the next token. Adapters for the same model
//! file share one loaded copy. On the CPU, Q4_0/Q8_0 Llama-family GGUF runs on the CPU engine
//! (`rigger-cpu-engine`), everything else on candle's models ([`Kernels`]).
//!
//! Invariant: depends on `rigger-ports` and the CPU engine only among Rigger's crates; no candle
//! or engine type crosses the port (errors become [`InferenceError`]s).
//!
//! ```no_run
//! # async fn demo() -> Result<(), rigger_ports::InferenceError> {
//! use rigger_candle_adapter::{CandleAdapter, CandleConfig};
//! use rigger_ports::{GenerationRequest, LanguageModel};
//! let model = CandleAdapter::load(CandleConfig::new("models/tiny/model-q4_0.gguf")).await?;
//! let answer = model.generate(GenerationRequest::prompt("Hello").with_max_tokens(16)).await?;
//! println!("{} [{}]", answer.text, answer.completion.timings.summary());
//! # Ok(()) }
//! ```

mod detokenize;
mod load;
mod loaded;
mod sampling;
mod source;
pub mod template;
mod weights;
mod worker;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use futures::StreamExt;
use rigger_ports::{
    Capabilities, ErrorKind, EventStream, GenerationRequest, InferenceError, LanguageModel,
    ModelDescriptor, TokenBudget, enforce_response_format,
};
use tokio::sync::mpsc;

use loaded::LoadedModel;
pub use sampling::DEFAULT_TEMPERATURE;
pub use source::ModelFiles;

/// The backend's name in descriptors and errors.
pub const BACKEND: &str = "candle";

/// Where the model runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeviceKind {
    Cpu,
    Cuda(usize),
    Metal,
}

impl std::str::FromStr for DeviceKind {
    type Err = InferenceError;
    fn from_str(s: &str) -> Result<Self, InferenceError> {
        match s.trim().to_ascii_lowercase().as_str() {
            "cpu" => Ok(DeviceKind::Cpu),
            "metal" => Ok(DeviceKind::Metal),
            "cuda" => Ok(DeviceKind::Cuda(0)),
            other => other
                .strip_prefix("cuda:")
                .and_then(|n| n.parse().ok())
                .map(DeviceKind::Cuda)
                .ok_or_else(|| {
                    InferenceError::invalid_request(
                        BACKEND,
                        format!("unknown device {s:?}; use cpu, cuda, cuda:N or metal"),
                    )
                }),
        }
    }
}

/// Which code runs quantized models on the CPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Kernels {
    /// The CPU engine where it covers the model (Llama-family GGUF in Q4_0/Q8_0)
    /// and the processor has their SIMD instructions (x86-64 with AVX2 or AVX-512 VNNI),
    /// candle's models otherwise (said in the log).
    #[default]
    Auto,
    /// Always candle's models (`quantized_llama` for Llama-family GGUF: the reference path).
    Reference,
    /// The CPU engine limited to AVX2 (no AVX-512), as on an AVX2-only processor: for
    /// comparisons and for isolating a kernel problem. Refused where the processor lacks AVX2.
    Avx2,
    /// The CPU engine without SIMD (the portable reference kernel; slow).
    Portable,
}

impl std::str::FromStr for Kernels {
    type Err = InferenceError;
    fn from_str(s: &str) -> Result<Self, InferenceError> {
        match s.trim().to_ascii_lowercase().as_str() {
            "auto" => Ok(Kernels::Auto),
            "reference" | "candle" => Ok(Kernels::Reference),
            "avx2" => Ok(Kernels::Avx2),
            "portable" => Ok(Kernels::Portable),
            _ => Err(InferenceError::invalid_request(
                BACKEND,
                format!("unknown kernels {s:?}; use auto, reference, avx2 or portable"),
            )),
        }
    }
}

/// How to load a model.
#[derive(Debug, Clone, PartialEq)]
pub struct CandleConfig {
    /// A `.gguf` file, a folder (config.json + safetensors, or one `.gguf`), or a hub id:
    /// `owner/repo` (safetensors) or `owner/repo:file.gguf`.
    pub model: String,
    /// `tokenizer.json`, when it is not beside the model.
    pub tokenizer: Option<PathBuf>,
    pub device: DeviceKind,
    /// Compute threads; `None` uses every core.
    pub threads: Option<usize>,
    /// Penalty on tokens seen in the last `repeat_last_n` (1.0 = off).
    pub repeat_penalty: f32,
    pub repeat_last_n: usize,
    /// Which code runs quantized models on the CPU (`CANDLE_KERNELS`).
    pub kernels: Kernels,
}

impl CandleConfig {
    pub fn new(model: impl Into<String>) -> Self {
        Self {
            model: model.into(),
            tokenizer: None,
            device: DeviceKind::Cpu,
            threads: None,
            repeat_penalty: 1.0,
            repeat_last_n: 64,
            kernels: Kernels::Auto,
        }
    }

    /// `CANDLE_MODEL` (required), `CANDLE_TOKENIZER`, `CANDLE_DEVICE` (`cpu`, `cuda`, `cuda:N`, `metal`),
    /// `CANDLE_THREADS`, `CANDLE_KERNELS` (auto | reference | avx2 | portable), `CANDLE_REPEAT_PENALTY`.
    pub fn from_env() -> Result<Self, InferenceError> {
        Self::from_vars(|k| std::env::var(k).ok())
    }

    /// Like [`Self::from_env`], reading variables through `get` (tests pass a map).
    pub fn from_vars(get: impl Fn(&str) -> Option<String>) -> Result<Self, InferenceError> {
        let model = get("CANDLE_MODEL")
            .filter(|m| !m.trim().is_empty())
            .ok_or_else(|| {
                InferenceError::new(ErrorKind::NotAvailable, BACKEND, "CANDLE_MODEL is not set")
                    .with_hint("set CANDLE_MODEL to a .gguf file, a safetensors folder or a hub id")
            })?;
        let mut config = Self::new(model);
        config.tokenizer = get("CANDLE_TOKENIZER").map(PathBuf::from);
        if let Some(device) = get("CANDLE_DEVICE") {
            config.device = device.parse()?;
        }
        if let Some(kernels) = get("CANDLE_KERNELS") {
            config.kernels = kernels.parse()?;
        }
        if let Some(threads) = get("CANDLE_THREADS") {
            config.threads = Some(threads.trim().parse().ok().filter(|n| *n > 0).ok_or_else(
                || {
                    InferenceError::invalid_request(
                        BACKEND,
                        format!("CANDLE_THREADS must be a positive number, got {threads:?}"),
                    )
                },
            )?);
        }
        if let Some(p) = get("CANDLE_REPEAT_PENALTY") {
            config.repeat_penalty = p
                .trim()
                .parse()
                .ok()
                .filter(|p: &f32| *p > 0.0)
                .ok_or_else(|| {
                    InferenceError::invalid_request(
                        BACKEND,
                        format!("CANDLE_REPEAT_PENALTY must be a positive number, got {p:?}"),
                    )
                })?;
        }
        Ok(config)
    }
}

/// The Candle adapter: one model, served in-process.
pub struct CandleAdapter {
    descriptor: ModelDescriptor,
    model: Arc<LoadedModel>,
    repeat_penalty: f32,
    repeat_last_n: usize,
}

impl CandleAdapter {
    /// What the adapter supports, known before any model is loaded: every sampling control and
    /// the exact token budget; JSON output is validated, not constrained during decoding.
    pub fn capabilities() -> Capabilities {
        Capabilities {
            native_structured_output: false,
            ..Capabilities::all()
        }
    }

    /// Resolves and loads the model (or reuses the copy another adapter already loaded).
    pub async fn load(config: CandleConfig) -> Result<Self, InferenceError> {
        let files = source::resolve(&config.model, config.tokenizer.as_deref()).await?;
        let model = LoadedModel::start(files, &config).await?;
        Ok(Self {
            descriptor: ModelDescriptor {
                backend: BACKEND.into(),
                model_id: config.model.clone(),
                context_length: Some(model.info.context_length),
                capabilities: Self::capabilities(),
            },
            model,
            repeat_penalty: config.repeat_penalty,
            repeat_last_n: config.repeat_last_n,
        })
    }

    /// [`CandleConfig::from_env`], then [`Self::load`].
    pub async fn from_env() -> Result<Self, InferenceError> {
        Self::load(CandleConfig::from_env()?).await
    }

    /// How long loading the model took (for an adapter sharing an already loaded model: the
    /// time of that first load).
    pub fn load_duration(&self) -> Duration {
        self.model.info.load_duration
    }

    /// Which code runs the model, e.g. `rigger-cpu Q4_0 avx512-vnni` (the CPU engine) or
    /// `candle quantized_llama`.
    pub fn engine(&self) -> &str {
        &self.model.info.engine
    }

    /// Whether the model came without a chat template (the plain fallback is used).
    pub fn uses_fallback_template(&self) -> bool {
        self.model.info.template.is_fallback()
    }

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

#[async_trait]
impl LanguageModel for CandleAdapter {
    fn descriptor(&self) -> &ModelDescriptor {
        &self.descriptor
    }

    async fn stream(&self, request: GenerationRequest) -> Result<EventStream, InferenceError> {
        let enqueued = Instant::now();
        request.validate(&self.descriptor)?;
        let prompt = self.prompt_tokens(&request)?;
        let context = self.model.info.context_length as usize;
        let budget = request.budget.limit() as usize;
        if prompt.len() + budget > context {
            return Err(InferenceError::new(
                ErrorKind::ContextLengthExceeded,
                BACKEND,
                format!(
                    "the prompt has {} tokens and the budget asks for {budget} more, but {} holds {context}",
                    prompt.len(),
                    self.descriptor.model_id
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
                repeat_penalty: self.repeat_penalty,
                repeat_last_n: self.repeat_last_n,
            },
            events,
            enqueued,
        };
        self.model.submit(job)?;
        let mut receiver = receiver;
        let stream = futures::stream::poll_fn(move |cx| receiver.poll_recv(cx)).boxed();
        Ok(enforce_response_format(
            BACKEND,
            request.response_format,
            stream,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_from_vars_validates_and_explains() {
        let vars = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                pairs
                    .iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| v.to_string())
            }
        };
        let err = CandleConfig::from_vars(vars(&[])).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::NotAvailable);
        assert!(err.hint().is_some_and(|h| h.contains("CANDLE_MODEL")));
        let c = CandleConfig::from_vars(vars(&[
            ("CANDLE_MODEL", "m.gguf"),
            ("CANDLE_DEVICE", "cuda:1"),
            ("CANDLE_THREADS", "2"),
        ]))
        .unwrap();
        assert_eq!((c.device, c.threads), (DeviceKind::Cuda(1), Some(2)));
        assert_eq!(c.kernels, Kernels::Auto);
        let c = CandleConfig::from_vars(vars(&[
            ("CANDLE_MODEL", "m.gguf"),
            ("CANDLE_KERNELS", " Reference "),
        ]))
        .unwrap();
        assert_eq!(c.kernels, Kernels::Reference);
        assert_eq!("AVX2".parse::<Kernels>().unwrap(), Kernels::Avx2);
        assert_eq!("portable".parse::<Kernels>().unwrap(), Kernels::Portable);
        for bad in [
            [("CANDLE_MODEL", "m"), ("CANDLE_DEVICE", "tpu")],
            [("CANDLE_MODEL", "m"), ("CANDLE_THREADS", "0")],
            [("CANDLE_MODEL", "m"), ("CANDLE_KERNELS", "fast")],
        ] {
            let leaked: &'static [(&str, &str)] = Box::leak(Box::new(bad));
            assert_eq!(
                CandleConfig::from_vars(vars(leaked)).unwrap_err().kind(),
                ErrorKind::InvalidRequest
            );
        }
    }
}
