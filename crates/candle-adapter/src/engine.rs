//! A loaded model on its own thread. Requests queue on a channel and run one at a time with a
//! fresh KV cache; tokens go back through a bounded tokio channel, and a closed channel (the
//! stream was dropped) stops generation at the next token.

use std::path::Path;
use std::sync::mpsc as std_mpsc;
use std::time::{Duration, Instant};

use candle_core::quantized::gguf_file;
use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::generation::{LogitsProcessor, Sampling};
use candle_transformers::models::{llama, quantized_llama, quantized_phi3, quantized_qwen2};
use rigger_ports::{
    Completion, ErrorKind, FinishReason, InferenceError, StopMatcher, StopStep, StreamEvent,
    TimingSource, Timings, Usage,
};
use tokenizers::Tokenizer;
use tokio::sync::mpsc;

use crate::source::ModelFiles;
use crate::template::{self, ChatTemplate};
use crate::{BACKEND, DeviceKind, Kernels, cpu};

pub type EventSender = mpsc::Sender<Result<StreamEvent, InferenceError>>;

enum Weights {
    /// The adapter's own kernels (quantized Llama family on the CPU).
    Cpu(cpu::Llama),
    Quantized(quantized_llama::ModelWeights),
    Qwen2(quantized_qwen2::ModelWeights),
    Phi3(quantized_phi3::ModelWeights),
    Full {
        model: llama::Llama,
        config: llama::Config,
        dtype: DType,
    },
}

/// Per-request state of the weights: the KV cache.
enum Session {
    Cpu(cpu::KvCache),
    Quantized,
    Full(llama::Cache),
}

impl Weights {
    /// A fresh session with room for `positions` tokens.
    fn session(&self, device: &Device, positions: usize) -> candle_core::Result<Session> {
        Ok(match self {
            Weights::Cpu(model) => Session::Cpu(model.cache(positions)),
            Weights::Quantized(_) | Weights::Qwen2(_) | Weights::Phi3(_) => Session::Quantized,
            Weights::Full { config, dtype, .. } => {
                Session::Full(llama::Cache::new(true, *dtype, config, device)?)
            }
        })
    }

    /// Logits (f32, one row) for the last of `tokens`, which start at position `pos`.
    fn forward(
        &mut self,
        session: &mut Session,
        tokens: &[u32],
        pos: usize,
        device: &Device,
    ) -> candle_core::Result<Tensor> {
        if let (Weights::Cpu(model), Session::Cpu(cache)) = (&*self, &mut *session) {
            if cache.len() != pos {
                candle_core::bail!("position {pos} does not follow the cache's {}", cache.len());
            }
            let logits = model.forward(cache, tokens)?;
            let vocab = logits.len();
            return Tensor::from_vec(logits, vocab, device);
        }
        let input = Tensor::new(tokens, device)?.unsqueeze(0)?;
        let logits = match (self, session) {
            // Position 0 resets quantized_llama's internal KV cache: a fresh cache per request.
            (Weights::Quantized(m), Session::Quantized) => m.forward(&input, pos)?,
            (Weights::Qwen2(m), Session::Quantized) => m.forward(&input, pos)?,
            (Weights::Phi3(m), Session::Quantized) => m.forward(&input, pos)?,
            (Weights::Full { model, .. }, Session::Full(cache)) => {
                model.forward(&input, pos, cache)?
            }
            _ => candle_core::bail!("session does not match the weights"),
        };
        logits.squeeze(0)?.to_dtype(DType::F32)
    }
}

/// What the async side needs to know about a loaded model.
pub struct ModelInfo {
    pub context_length: u32,
    /// Which code runs the model, e.g. "rigger-cpu Q4_0 avx512-vnni" or "candle quantized_llama".
    pub engine: String,
    pub load_duration: Duration,
    pub tokenizer: Tokenizer,
    pub template: ChatTemplate,
}

pub struct Job {
    pub prompt: Vec<u32>,
    pub sampling: SamplingParams,
    pub events: EventSender,
    pub enqueued: Instant,
}

#[derive(Debug, Clone)]
pub struct SamplingParams {
    pub limit: u32,
    pub exact: bool,
    pub temperature: Option<f64>,
    pub top_k: Option<usize>,
    pub top_p: Option<f64>,
    pub seed: u64,
    pub stop: Vec<String>,
    pub repeat_penalty: f32,
    pub repeat_last_n: usize,
}

fn load_error(what: &str, e: impl std::fmt::Display) -> InferenceError {
    InferenceError::new(ErrorKind::ModelLoadFailed, BACKEND, format!("{what}: {e}"))
}

pub fn device(kind: DeviceKind) -> Result<Device, InferenceError> {
    let unavailable = |e: candle_core::Error| {
        InferenceError::new(
            ErrorKind::NotAvailable,
            BACKEND,
            format!("device {kind:?} is not usable: {e}"),
        )
        .with_hint(
            "build with the matching cargo feature (cuda or metal), or set CANDLE_DEVICE=cpu",
        )
    };
    match kind {
        DeviceKind::Cpu => Ok(Device::Cpu),
        DeviceKind::Cuda(ordinal) => Device::new_cuda(ordinal).map_err(unavailable),
        DeviceKind::Metal => Device::new_metal(0).map_err(unavailable),
    }
}

/// Loads the model (blocking: call from a blocking thread).
pub fn load(
    files: &ModelFiles,
    device: &Device,
    kernels: Kernels,
) -> Result<(Worker, ModelInfo), InferenceError> {
    let started = Instant::now();
    let (tokenizer_path, tokenizer_config_path) = match files {
        ModelFiles::Gguf {
            tokenizer,
            tokenizer_config,
            ..
        }
        | ModelFiles::Safetensors {
            tokenizer,
            tokenizer_config,
            ..
        } => (tokenizer, tokenizer_config),
    };
    let tokenizer = Tokenizer::from_file(tokenizer_path).map_err(|e| {
        load_error(
            &format!("cannot read the tokenizer {}", tokenizer_path.display()),
            e,
        )
    })?;
    let tokenizer_config: serde_json::Value = match tokenizer_config_path {
        Some(p) => read_json(p)?,
        None => serde_json::Value::Null,
    };
    let token_text = |id: Option<u32>| {
        id.and_then(|id| tokenizer.id_to_token(id))
            .unwrap_or_default()
    };

    let (weights, engine, context_length, bos, eos, embedded_template) = match files {
        ModelFiles::Gguf { weights, .. } => {
            let mut file = std::fs::File::open(weights)
                .map_err(|e| load_error(&format!("cannot open {}", weights.display()), e))?;
            let content = gguf_file::Content::read(&mut file).map_err(|e| {
                load_error(
                    &format!("{} is not a valid GGUF file", weights.display()),
                    e,
                )
            })?;
            let md = |k: &str| content.metadata.get(k);
            let arch = md("general.architecture")
                .and_then(|v| v.to_string().ok())
                .cloned()
                .unwrap_or_default();
            if !["llama", "qwen2", "phi3"].contains(&arch.as_str()) {
                return Err(InferenceError::unsupported(
                    BACKEND,
                    format!(
                        "GGUF architecture {arch:?} is not supported yet; supported: llama (Llama, \
                         Mistral), qwen2 (Qwen2, Qwen2.5), phi3 (Phi-3)"
                    ),
                ));
            }
            let ctx = md(&format!("{arch}.context_length"))
                .and_then(|v| v.to_u32().ok())
                .unwrap_or(2048);
            let bos = md("tokenizer.ggml.bos_token_id").and_then(|v| v.to_u32().ok());
            let eos = md("tokenizer.ggml.eos_token_id").and_then(|v| v.to_u32().ok());
            let tmpl = md("tokenizer.chat_template")
                .and_then(|v| v.to_string().ok())
                .cloned();
            let cannot_load = |e| load_error(&format!("cannot load {}", weights.display()), e);
            let isa = match kernels {
                // Without SIMD kernels (e.g. on ARM, for now) candle's own path, which has
                // NEON kernels, is the faster one.
                Kernels::Auto => Some(cpu::Isa::detect()).filter(|isa| *isa != cpu::Isa::Portable),
                Kernels::Avx2 => Some(cpu::Isa::Avx2),
                Kernels::Portable => Some(cpu::Isa::Portable),
                Kernels::Reference => None,
            };
            if let Some(isa) = isa.filter(|isa| !isa.is_supported()) {
                return Err(InferenceError::invalid_request(
                    BACKEND,
                    format!(
                        "CANDLE_KERNELS={} needs a processor with {}; this one lacks it (use auto)",
                        isa.name(),
                        isa.name()
                    ),
                ));
            }
            let own = match (isa, device.is_cpu()) {
                (Some(isa), true) if arch == "llama" => {
                    match cpu::Llama::from_gguf(&content, &mut file, isa).map_err(cannot_load)? {
                        Ok(model) => Some(model),
                        Err(cpu::NotCovered(why)) => {
                            tracing::info!(
                                "{}: {why}; running on candle's quantized_llama instead of the adapter's CPU kernels",
                                weights.display()
                            );
                            None
                        }
                    }
                }
                (None, true) if kernels == Kernels::Auto && arch == "llama" => {
                    tracing::info!(
                        "{}: this processor has neither AVX2 nor AVX-512 VNNI for the adapter's CPU kernels; running on candle's quantized_llama",
                        weights.display()
                    );
                    None
                }
                _ => None,
            };
            let (model, engine) = match own {
                Some(model) => {
                    let mut engine = format!(
                        "rigger-cpu {:?} {}",
                        model.weight_format(),
                        model.isa().name()
                    );
                    if !model.requantized().is_empty() {
                        engine += &format!(" (requantized: {})", model.requantized().join(", "));
                        tracing::info!("{}: {engine}", weights.display());
                    }
                    (Weights::Cpu(model), engine)
                }
                None if arch == "qwen2" => (
                    Weights::Qwen2(
                        quantized_qwen2::ModelWeights::from_gguf(content, &mut file, device)
                            .map_err(cannot_load)?,
                    ),
                    "candle quantized_qwen2".to_owned(),
                ),
                None if arch == "phi3" => (
                    Weights::Phi3(
                        quantized_phi3::ModelWeights::from_gguf(false, content, &mut file, device)
                            .map_err(cannot_load)?,
                    ),
                    "candle quantized_phi3".to_owned(),
                ),
                None => (
                    Weights::Quantized(
                        quantized_llama::ModelWeights::from_gguf(content, &mut file, device)
                            .map_err(cannot_load)?,
                    ),
                    "candle quantized_llama".to_owned(),
                ),
            };
            (
                model,
                engine,
                ctx,
                token_text(bos),
                eos.into_iter().collect::<Vec<_>>(),
                tmpl,
            )
        }
        ModelFiles::Safetensors {
            weights, config, ..
        } => {
            let raw: llama::LlamaConfig =
                serde_json::from_value(read_json(config)?).map_err(|e| {
                    load_error(&format!("{} is not a Llama config", config.display()), e)
                })?;
            let config = raw.into_config(false);
            // f32 on the CPU (candle's f16/bf16 CPU paths are far slower), f16 on accelerators.
            let dtype = if device.is_cpu() {
                DType::F32
            } else {
                DType::F16
            };
            let vb = mmap_safetensors(weights, dtype, device)?;
            let model = llama::Llama::load(vb, &config)
                .map_err(|e| load_error("cannot build the Llama model", e))?;
            let eos = match &config.eos_token_id {
                Some(llama::LlamaEosToks::Single(id)) => vec![*id],
                Some(llama::LlamaEosToks::Multiple(ids)) => ids.clone(),
                None => Vec::new(),
            };
            let bos = token_text(config.bos_token_id);
            let ctx = config.max_position_embeddings as u32;
            (
                Weights::Full {
                    model,
                    config,
                    dtype,
                },
                format!("candle llama {dtype:?}"),
                ctx,
                bos,
                eos,
                None,
            )
        }
    };
    let mut eos = eos;
    if let Some(id) = template::special_token(&tokenizer_config, "eos_token")
        .and_then(|t| tokenizer.token_to_id(&t))
        && !eos.contains(&id)
    {
        eos.push(id);
    }
    let bos = template::special_token(&tokenizer_config, "bos_token").unwrap_or(bos);
    let eos_text = eos
        .first()
        .and_then(|id| tokenizer.id_to_token(*id))
        .unwrap_or_default();
    let source = template::from_tokenizer_config(&tokenizer_config).or(embedded_template);
    let template = ChatTemplate::new(source, bos, eos_text)?;
    tracing::debug!("{} runs on {engine}", files.key().display());
    let info = ModelInfo {
        context_length,
        engine,
        load_duration: started.elapsed(),
        tokenizer,
        template,
    };
    Ok((Worker { weights, eos }, info))
}

/// The worker thread's half of a loaded model.
pub struct Worker {
    weights: Weights,
    eos: Vec<u32>,
}

/// Memory-maps the safetensors files (shards included) instead of copying gigabytes into RAM.
#[allow(unsafe_code)]
fn mmap_safetensors<'a>(
    files: &[std::path::PathBuf],
    dtype: DType,
    device: &'a Device,
) -> Result<VarBuilder<'a>, InferenceError> {
    // SAFETY: the files are mapped read-only; candle's contract is that they are not modified
    // while mapped, which holds for model files in place (a concurrent rewrite would be a user
    // error, and would at worst yield wrong weights, as with any reader).
    unsafe { VarBuilder::from_mmaped_safetensors(files, dtype, device) }
        .map_err(|e| load_error("cannot read the safetensors weights", e))
}

fn read_json(path: &Path) -> Result<serde_json::Value, InferenceError> {
    let bytes = std::fs::read(path)
        .map_err(|e| load_error(&format!("cannot read {}", path.display()), e))?;
    serde_json::from_slice(&bytes)
        .map_err(|e| load_error(&format!("{} is not valid JSON", path.display()), e))
}

/// A loaded model run one token at a time, outside the engine thread: the criterion bench of
/// the decode step and the tests that compare the two CPU paths' logits use it.
pub struct DecodeStepper {
    worker: Worker,
    engine: String,
    session: Session,
    device: Device,
    prompt: Vec<u32>,
    position: usize,
}

impl DecodeStepper {
    pub fn new(gguf: &Path, kernels: Kernels, prompt: Vec<u32>) -> Result<Self, InferenceError> {
        if prompt.is_empty() {
            return Err(InferenceError::invalid_request(
                BACKEND,
                "the prompt is empty",
            ));
        }
        let files = crate::source::resolve_local(&gguf.display().to_string(), gguf, None)?;
        let device = Device::Cpu;
        let (worker, info) = load(&files, &device, kernels)?;
        let session = worker.weights.session(&device, 0).map_err(engine_error)?;
        Ok(Self {
            worker,
            engine: info.engine,
            session,
            device,
            prompt,
            position: 0,
        })
    }

    /// Which code runs the model.
    pub fn engine(&self) -> &str {
        &self.engine
    }

    /// A fresh session holding only the prompt; returns the logits after it.
    pub fn restart(&mut self) -> Result<Vec<f32>, InferenceError> {
        self.session = self
            .worker
            .weights
            .session(&self.device, self.prompt.len() + 1024)
            .map_err(engine_error)?;
        self.position = 0;
        let prompt = self.prompt.clone();
        self.run(&prompt)
    }

    /// Runs `token` at the next position; returns its logits.
    pub fn feed(&mut self, token: u32) -> Result<Vec<f32>, InferenceError> {
        self.run(&[token])
    }

    /// One decode step on a token taken from the prompt; returns how many positions the
    /// session holds.
    pub fn step(&mut self) -> Result<usize, InferenceError> {
        if self.position == 0 {
            self.restart()?;
        }
        let token = self.prompt[self.position % self.prompt.len()];
        self.feed(token)?;
        Ok(self.position)
    }

    fn run(&mut self, tokens: &[u32]) -> Result<Vec<f32>, InferenceError> {
        let logits = self
            .worker
            .weights
            .forward(&mut self.session, tokens, self.position, &self.device)
            .and_then(|l| l.to_vec1::<f32>())
            .map_err(engine_error)?;
        self.position += tokens.len();
        Ok(logits)
    }
}

/// The worker thread's loop: one job at a time, until every sender is gone.
pub fn serve(
    mut worker: Worker,
    tokenizer: Tokenizer,
    device: Device,
    pool: Option<rayon::ThreadPool>,
    jobs: std_mpsc::Receiver<Job>,
) {
    for job in jobs {
        if job.events.is_closed() {
            continue; // cancelled while queued
        }
        let events = job.events.clone();
        let run = std::panic::AssertUnwindSafe(|| generate(&mut worker, &tokenizer, &device, job));
        let outcome = match &pool {
            Some(pool) => pool.install(|| std::panic::catch_unwind(run)),
            None => std::panic::catch_unwind(run),
        };
        let error = match outcome {
            Ok(Ok(())) => continue,
            Ok(Err(e)) => e,
            Err(panic) => {
                let what = panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                InferenceError::new(
                    ErrorKind::BackendCrashed,
                    BACKEND,
                    format!("the engine panicked: {what}"),
                )
            }
        };
        let _ = events.blocking_send(Err(error));
    }
}

fn engine_error(e: candle_core::Error) -> InferenceError {
    InferenceError::new(
        ErrorKind::Internal,
        BACKEND,
        format!("the engine failed: {e}"),
    )
}

/// The temperature when a request names none (llama.cpp's default).
pub const DEFAULT_TEMPERATURE: f64 = 0.8;

fn sampler(p: &SamplingParams) -> LogitsProcessor {
    let temperature = p.temperature.unwrap_or(DEFAULT_TEMPERATURE);
    let sampling = match (p.top_k, p.top_p) {
        _ if temperature <= 0.0 => Sampling::ArgMax,
        (None, None) => Sampling::All { temperature },
        (Some(k), None) => Sampling::TopK { k, temperature },
        (None, Some(p)) => Sampling::TopP { p, temperature },
        (Some(k), Some(p)) => Sampling::TopKThenTopP { k, p, temperature },
    };
    LogitsProcessor::from_sampling(p.seed, sampling)
}

/// Emits text as tokens arrive, holding back bytes that do not yet form whole characters.
struct Detokenizer<'a> {
    tokenizer: &'a Tokenizer,
    tokens: Vec<u32>,
    emitted: usize,
}

impl Detokenizer<'_> {
    fn push(&mut self, token: u32) -> Result<String, InferenceError> {
        self.tokens.push(token);
        let text = self.tokenizer.decode(&self.tokens, true).map_err(|e| {
            InferenceError::new(
                ErrorKind::Internal,
                BACKEND,
                format!("decoding failed: {e}"),
            )
        })?;
        if text.ends_with('\u{FFFD}')
            || text.len() < self.emitted
            || !text.is_char_boundary(self.emitted)
        {
            return Ok(String::new());
        }
        let new = text[self.emitted..].to_owned();
        self.emitted = text.len();
        // Keep the window short: decode cost stays flat however long the generation runs.
        if self.tokens.len() > 64 {
            let keep = self.tokens[self.tokens.len() - 8..].to_vec();
            if let Ok(tail) = self.tokenizer.decode(&keep, true)
                && !tail.contains('\u{FFFD}')
            {
                self.tokens = keep;
                self.emitted = tail.len();
            }
        }
        Ok(new)
    }
}

fn generate(
    loaded: &mut Worker,
    tokenizer: &Tokenizer,
    device: &Device,
    job: Job,
) -> Result<(), InferenceError> {
    let p = &job.sampling;
    let started = Instant::now();
    let positions = job.prompt.len() + p.limit as usize;
    let mut session = loaded
        .weights
        .session(device, positions)
        .map_err(engine_error)?;
    let mut logits = loaded
        .weights
        .forward(&mut session, &job.prompt, 0, device)
        .map_err(engine_error)?;
    let prompt_duration = started.elapsed();
    let mut sampler = sampler(p);
    let mut stops = StopMatcher::new(if p.exact { &[] } else { &p.stop });
    let mut detok = Detokenizer {
        tokenizer,
        tokens: Vec::new(),
        emitted: 0,
    };
    let mut history = job.prompt.clone();
    let mut generated = 0u32;
    let mut first_token = None;
    let finish = loop {
        if p.repeat_penalty != 1.0 {
            let start = history.len().saturating_sub(p.repeat_last_n);
            logits = candle_transformers::utils::apply_repeat_penalty(
                &logits,
                p.repeat_penalty,
                &history[start..],
            )
            .map_err(engine_error)?;
        }
        let next = sampler.sample(&logits).map_err(engine_error)?;
        generated += 1;
        first_token.get_or_insert_with(|| job.enqueued.elapsed());
        history.push(next);
        if !p.exact && loaded.eos.contains(&next) {
            break FinishReason::EndOfSequence;
        }
        let (text, stopped) = match stops.push(&detok.push(next)?) {
            StopStep::Emit(t) => (t, false),
            StopStep::Stop(t) => (t, true),
        };
        if !text.is_empty()
            && job
                .events
                .blocking_send(Ok(StreamEvent::Delta(text)))
                .is_err()
        {
            return Ok(()); // the stream was dropped: stop here
        }
        if stopped {
            break FinishReason::StopSequence;
        }
        if generated >= p.limit {
            break FinishReason::MaxTokens;
        }
        if job.events.is_closed() {
            return Ok(());
        }
        let pos = history.len() - 1;
        logits = loaded
            .weights
            .forward(&mut session, &[next], pos, device)
            .map_err(engine_error)?;
    };
    let rest = stops.finish();
    if !rest.is_empty() {
        let _ = job.events.blocking_send(Ok(StreamEvent::Delta(rest)));
    }
    let prompt_tokens = job.prompt.len() as u32;
    let done = Completion {
        finish_reason: finish,
        usage: Usage {
            prompt_tokens,
            completion_tokens: generated,
        },
        timings: Timings {
            load: None,
            time_to_first_token: first_token,
            prompt_tokens,
            prompt_duration,
            generated_tokens: generated,
            generation_duration: started.elapsed() - prompt_duration,
            source: TimingSource::Backend,
        },
    };
    let _ = job.events.blocking_send(Ok(StreamEvent::Done(done)));
    Ok(())
}
