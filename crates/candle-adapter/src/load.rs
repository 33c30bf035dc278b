//! Loading a model (blocking: call from a blocking thread): the tokenizer and its config, then
//! the weights — GGUF and safetensors on the CPU engine where it covers the model, on candle's
//! models otherwise (safetensors: candle's llama) — and the chat template.

use std::fs::File;
use std::path::Path;
use std::time::{Duration, Instant};

use candle_core::quantized::gguf_file;
use candle_core::{DType, Device};
use candle_nn::VarBuilder;
use candle_transformers::models::{
    llama, quantized_gemma3, quantized_llama, quantized_phi3, quantized_qwen2, quantized_qwen3,
};
use rigger_cpu_engine::Isa;
use rigger_ports::{ErrorKind, InferenceError};
use serde::Deserialize;
use tokenizers::Tokenizer;

use crate::gguf_tokenizer;
use crate::source::ModelFiles;
use crate::template::{self, ChatTemplate};
use crate::weights::Weights;
use crate::worker::Worker;
use crate::{BACKEND, DeviceKind, Kernels};

/// The GGUF architectures (`general.architecture`) the adapter runs.
const ARCHITECTURES: &[&str] = &["llama", "qwen2", "qwen3", "phi3", "gemma3"];

/// What the async side needs to know about a loaded model.
pub(crate) struct ModelInfo {
    pub(crate) context_length: u32,
    /// Which code runs the model, e.g. "rigger-cpu qwen2 Q4_0 avx512-vnni" or
    /// "candle quantized_llama".
    pub(crate) engine: String,
    pub(crate) load_duration: Duration,
    pub(crate) tokenizer: Tokenizer,
    pub(crate) template: ChatTemplate,
}

/// The weights and what their file says about the model.
struct LoadedWeights {
    weights: Weights,
    engine: String,
    context_length: u32,
    bos: Option<u32>,
    eos: Vec<u32>,
    /// The chat template the weights' file embeds (GGUF), if any.
    template: Option<String>,
}

fn load_error(what: &str, e: impl std::fmt::Display) -> InferenceError {
    InferenceError::new(ErrorKind::ModelLoadFailed, BACKEND, format!("{what}: {e}"))
}

pub(crate) fn device(kind: DeviceKind) -> Result<Device, InferenceError> {
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

/// Loads the model: the worker thread's half and what the async side keeps. `explicit_tokenizer`:
/// the tokenizer.json was configured (CANDLE_TOKENIZER), not merely found beside the model.
pub(crate) fn load(
    files: &ModelFiles,
    device: &Device,
    kernels: Kernels,
    explicit_tokenizer: bool,
) -> Result<(Worker, ModelInfo), InferenceError> {
    let started = Instant::now();
    let (tokenizer, loaded, tokenizer_config_path) = match files {
        ModelFiles::Gguf {
            weights,
            tokenizer,
            tokenizer_config,
        } => {
            let (file, content) = read_gguf(weights)?;
            // The tokenizer first: an uncovered vocabulary fails before the weights load.
            let tokenizer =
                gguf_tokenizer(weights, &content, tokenizer.as_deref(), explicit_tokenizer)?;
            let loaded = load_gguf(weights, file, content, device, kernels)?;
            (tokenizer, loaded, tokenizer_config.as_ref())
        }
        ModelFiles::Safetensors {
            weights,
            config,
            tokenizer,
            tokenizer_config,
        } => (
            read_tokenizer(tokenizer)?,
            load_safetensors(weights, config, device, kernels)?,
            tokenizer_config.as_ref(),
        ),
    };
    let tokenizer_config: serde_json::Value = match tokenizer_config_path {
        Some(p) => read_json(p)?,
        None => serde_json::Value::Null,
    };
    let mut eos = loaded.eos;
    if let Some(id) = template::special_token(&tokenizer_config, "eos_token")
        .and_then(|t| tokenizer.token_to_id(&t))
        && !eos.contains(&id)
    {
        eos.push(id);
    }
    let bos = template::special_token(&tokenizer_config, "bos_token")
        .or_else(|| loaded.bos.and_then(|id| tokenizer.id_to_token(id)))
        .unwrap_or_default();
    let eos_text = eos
        .first()
        .and_then(|id| tokenizer.id_to_token(*id))
        .unwrap_or_default();
    // A GGUF's own template wins, as its vocabulary does; tokenizer_config.json's is the fallback.
    let source = match files {
        ModelFiles::Gguf { .. } => loaded
            .template
            .or_else(|| template::from_tokenizer_config(&tokenizer_config)),
        ModelFiles::Safetensors { .. } => template::from_tokenizer_config(&tokenizer_config),
    };
    let template = ChatTemplate::new(source, bos, eos_text)?;
    tracing::info!("{} runs on {}", files.key().display(), loaded.engine);
    let info = ModelInfo {
        context_length: loaded.context_length,
        engine: loaded.engine,
        load_duration: started.elapsed(),
        tokenizer,
        template,
    };
    Ok((
        Worker {
            weights: loaded.weights,
            eos,
        },
        info,
    ))
}

fn read_tokenizer(path: &Path) -> Result<Tokenizer, InferenceError> {
    Tokenizer::from_file(path)
        .map_err(|e| load_error(&format!("cannot read the tokenizer {}", path.display()), e))
}

fn read_gguf(path: &Path) -> Result<(File, gguf_file::Content), InferenceError> {
    let mut file =
        File::open(path).map_err(|e| load_error(&format!("cannot open {}", path.display()), e))?;
    let content = gguf_file::Content::read(&mut file)
        .map_err(|e| load_error(&format!("{} is not a valid GGUF file", path.display()), e))?;
    Ok((file, content))
}

/// A GGUF's tokenizer. The vocabulary in its metadata wins over a `tokenizer.json` found beside
/// it: it is the one the weights were converted with. A configured `tokenizer.json`
/// (CANDLE_TOKENIZER) wins over both; one beside the file is used only when the GGUF has none.
fn gguf_tokenizer(
    path: &Path,
    content: &gguf_file::Content,
    sidecar: Option<&Path>,
    explicit: bool,
) -> Result<Tokenizer, InferenceError> {
    if let (Some(json), true) = (sidecar, explicit) {
        tracing::info!(
            "{}: using the configured tokenizer {}, not the GGUF's own",
            path.display(),
            json.display()
        );
        return read_tokenizer(json);
    }
    let embedded = match gguf_tokenizer::from_metadata(&content.metadata) {
        // A vocabulary we do not cover, with a tokenizer.json beside it: that one, said loudly.
        Err(e) if e.kind() == ErrorKind::Unsupported && sidecar.is_some() => {
            tracing::warn!(
                "{}: {e}; using the tokenizer.json beside it",
                path.display()
            );
            None
        }
        other => other?,
    };
    match (embedded, sidecar) {
        (Some(tokenizer), sidecar) => {
            if let Some(json) = sidecar {
                tracing::info!(
                    "{}: using the tokenizer in the GGUF's metadata; {} beside it is not used (set CANDLE_TOKENIZER to prefer it)",
                    path.display(),
                    json.display()
                );
            }
            Ok(tokenizer)
        }
        (None, Some(json)) => {
            tracing::info!(
                "{}: the GGUF has no tokenizer in its metadata; using {}",
                path.display(),
                json.display()
            );
            read_tokenizer(json)
        }
        (None, None) => Err(gguf_tokenizer::no_tokenizer(path)),
    }
}

fn load_gguf(
    path: &Path,
    mut file: File,
    content: gguf_file::Content,
    device: &Device,
    kernels: Kernels,
) -> Result<LoadedWeights, InferenceError> {
    let md = |k: &str| content.metadata.get(k);
    let arch = md("general.architecture")
        .and_then(|v| v.to_string().ok())
        .cloned()
        .unwrap_or_default();
    if !ARCHITECTURES.contains(&arch.as_str()) {
        return Err(InferenceError::unsupported(
            BACKEND,
            format!(
                "GGUF architecture {arch:?} is not supported yet; supported: llama (Llama, \
                 Mistral, SmolLM), qwen2 (Qwen2, Qwen2.5), qwen3 (Qwen3), phi3 (Phi-3), gemma3 \
                 (Gemma 3)"
            ),
        ));
    }
    // Before any model is built from the metadata: a file whose numbers disagree with its own
    // tensors (corrupt, or hand-edited) must fail here, typed, not size a model after them
    // (fuzzing found corrupted headers that made candle's path allocate until the OOM killer came).
    check_metadata(&arch, &content)
        .map_err(|why| load_error(&format!("{} is inconsistent", path.display()), why))?;
    let context_length = md(&format!("{arch}.context_length"))
        .and_then(|v| v.to_u32().ok())
        .unwrap_or(2048);
    let bos = md("tokenizer.ggml.bos_token_id").and_then(|v| v.to_u32().ok());
    // End of sequence, and the end-of-turn / end-of-message tokens chat models stop at.
    let eos: Vec<u32> = ["eos", "eot", "eom"]
        .iter()
        .filter_map(|k| md(&format!("tokenizer.ggml.{k}_token_id")).and_then(|v| v.to_u32().ok()))
        .collect();
    let template = md("tokenizer.chat_template")
        .and_then(|v| v.to_string().ok())
        .cloned();
    let cannot_load =
        |e: &dyn std::fmt::Display| load_error(&format!("cannot load {}", path.display()), e);
    let cpu = match cpu_engine_isa(kernels)? {
        Some(isa)
            if device.is_cpu() && rigger_cpu_engine::ARCHITECTURES.contains(&arch.as_str()) =>
        {
            match rigger_cpu_engine::Model::from_gguf(&content, &mut file, isa) {
                Ok(model) => Some(model),
                Err(rigger_cpu_engine::Error::NotCovered(why)) => {
                    tracing::info!(
                        "{}: {why}; running on {} instead of the CPU engine",
                        path.display(),
                        candle_model(&arch)
                    );
                    None
                }
                Err(e) => return Err(cannot_load(&e)),
            }
        }
        None if device.is_cpu()
            && kernels == Kernels::Auto
            && rigger_cpu_engine::ARCHITECTURES.contains(&arch.as_str()) =>
        {
            tracing::info!(
                "{}: this processor has neither AVX2 nor AVX-512 VNNI for the CPU engine; running on {}",
                path.display(),
                candle_model(&arch)
            );
            None
        }
        _ => None,
    };
    let (weights, engine) = match cpu {
        Some(model) => {
            let engine = model.describe();
            if !model.requantized().is_empty() {
                tracing::info!("{}: {engine}", path.display());
            }
            (Weights::Cpu(model), engine)
        }
        None => {
            let weights = match arch.as_str() {
                "qwen2" => quantized_qwen2::ModelWeights::from_gguf(content, &mut file, device)
                    .map(Weights::Qwen2),
                "qwen3" => quantized_qwen3::ModelWeights::from_gguf(content, &mut file, device)
                    .map(Weights::Qwen3),
                "gemma3" => quantized_gemma3::ModelWeights::from_gguf(content, &mut file, device)
                    .map(Weights::Gemma3),
                "phi3" => {
                    quantized_phi3::ModelWeights::from_gguf(false, content, &mut file, device)
                        .map(Weights::Phi3)
                }
                _ => quantized_llama::ModelWeights::from_gguf(content, &mut file, device)
                    .map(Weights::Quantized),
            };
            (
                weights.map_err(|e| cannot_load(&e))?,
                format!("candle {}", candle_model(&arch)),
            )
        }
    };
    Ok(LoadedWeights {
        weights,
        engine,
        context_length,
        bos,
        eos,
        template,
    })
}

/// candle's model of a GGUF architecture the adapter runs (the path where the CPU engine does
/// not run the file).
fn candle_model(arch: &str) -> &'static str {
    match arch {
        "qwen2" => "quantized_qwen2",
        "qwen3" => "quantized_qwen3",
        "gemma3" => "quantized_gemma3",
        "phi3" => "quantized_phi3",
        _ => "quantized_llama",
    }
}

/// The longest context a GGUF may declare (16 Mi tokens, beyond any model published).
const MAX_CONTEXT: usize = 1 << 24;

/// The metadata's shape numbers against the tensors they describe: the embedding width, the
/// number of blocks, the heads and their rotary part, the feed-forward width, the context length.
fn check_metadata(arch: &str, content: &gguf_file::Content) -> Result<(), String> {
    let number = |key: &str| -> Result<Option<usize>, String> {
        match content.metadata.get(&format!("{arch}.{key}")) {
            None => Ok(None),
            Some(v) => v
                .to_u32()
                .map(|n| Some(n as usize))
                .map_err(|_| format!("{arch}.{key} is not a number")),
        }
    };
    let dims = |name: &str| {
        content
            .tensor_infos
            .get(name)
            .map(|t| t.shape.dims().to_vec())
    };
    let embedding = dims("token_embd.weight").ok_or("tensor token_embd.weight is missing")?;
    let [_, width] = embedding[..] else {
        return Err(format!(
            "token_embd.weight has shape {embedding:?}, not a matrix"
        ));
    };
    if let Some(declared) = number("embedding_length")?
        && declared != width
    {
        return Err(format!(
            "{arch}.embedding_length is {declared}, token_embd.weight is {width} wide"
        ));
    }
    let blocks = number("block_count")?.ok_or(format!("{arch}.block_count is missing"))?;
    let present = (0..)
        .take_while(|i| dims(&format!("blk.{i}.attn_norm.weight")).is_some())
        .count();
    if blocks != present {
        return Err(format!(
            "{arch}.block_count is {blocks}, the file has {present} blocks"
        ));
    }
    let heads =
        number("attention.head_count")?.ok_or(format!("{arch}.attention.head_count is missing"))?;
    let kv_heads = number("attention.head_count_kv")?.unwrap_or(heads);
    let explicit_head_width = number("attention.key_length")?.is_some();
    if heads == 0
        || heads > width
        || kv_heads == 0
        || !heads.is_multiple_of(kv_heads)
        || (!explicit_head_width && !width.is_multiple_of(heads))
    {
        return Err(format!(
            "{heads} attention heads ({kv_heads} for keys and values) do not divide a width of {width}"
        ));
    }
    // One head's width, and the part of it that rotates: candle's models precompute rotary
    // tables of this width for every position.
    let head_width = number("attention.key_length")?.unwrap_or(width / heads);
    let value_width = number("attention.value_length")?.unwrap_or(head_width);
    if head_width == 0 || head_width > width || value_width == 0 || value_width > width {
        return Err(format!(
            "heads {head_width} wide (values {value_width}) do not fit a width of {width}"
        ));
    }
    if let Some(rotary) = number("rope.dimension_count")?
        && rotary > head_width
    {
        return Err(format!(
            "{arch}.rope.dimension_count is {rotary}, wider than a head ({head_width})"
        ));
    }
    if let (Some(declared), Some(down)) = (
        number("feed_forward_length")?,
        dims("blk.0.ffn_down.weight"),
    ) && down.last() != Some(&declared)
    {
        return Err(format!(
            "{arch}.feed_forward_length is {declared}, blk.0.ffn_down.weight has shape {down:?}"
        ));
    }
    if let Some(context) = number("context_length")?
        && context > MAX_CONTEXT
    {
        return Err(format!(
            "{arch}.context_length is {context}, beyond any model ({MAX_CONTEXT} at most)"
        ));
    }
    Ok(())
}

/// Which instruction set the CPU engine would use under `kernels` (None: candle's models),
/// refusing one this processor lacks.
fn cpu_engine_isa(kernels: Kernels) -> Result<Option<Isa>, InferenceError> {
    let isa = match kernels {
        // Without SIMD kernels (e.g. on ARM, for now) candle's own path, which has NEON
        // kernels, is the faster one.
        Kernels::Auto => Some(Isa::detect()).filter(|isa| *isa != Isa::Portable),
        Kernels::Avx512 => Some(Isa::Avx512Vnni),
        Kernels::Avx2 => Some(Isa::Avx2),
        Kernels::Portable => Some(Isa::Portable),
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
    Ok(isa)
}

/// The numbers of a `config.json` the CPU engine reads.
#[derive(Deserialize)]
struct EngineConfig {
    #[serde(default = "llama_type")]
    model_type: String,
    hidden_size: usize,
    intermediate_size: usize,
    num_hidden_layers: usize,
    num_attention_heads: usize,
    num_key_value_heads: Option<usize>,
    head_dim: Option<usize>,
    rms_norm_eps: f64,
    rope_theta: Option<f64>,
    #[serde(default)]
    rope_scaling: Option<serde_json::Value>,
    #[serde(default)]
    attention_bias: bool,
    #[serde(default)]
    mlp_bias: bool,
}

fn llama_type() -> String {
    "llama".into()
}

impl From<EngineConfig> for rigger_cpu_engine::HfConfig {
    fn from(c: EngineConfig) -> Self {
        Self {
            model_type: c.model_type,
            hidden_size: c.hidden_size,
            intermediate_size: c.intermediate_size,
            num_hidden_layers: c.num_hidden_layers,
            num_attention_heads: c.num_attention_heads,
            num_key_value_heads: c.num_key_value_heads,
            head_dim: c.head_dim,
            rms_norm_eps: c.rms_norm_eps,
            rope_theta: c.rope_theta,
            rope_scaling: c.rope_scaling.is_some_and(|v| !v.is_null()),
            attention_bias: c.attention_bias,
            mlp_bias: c.mlp_bias,
        }
    }
}

/// `model_type`s candle's `llama` runs (the path where the CPU engine does not run a checkpoint).
const CANDLE_SAFETENSORS_TYPES: [&str; 2] = ["llama", "mistral"];

fn load_safetensors(
    weights: &[std::path::PathBuf],
    config: &Path,
    device: &Device,
    kernels: Kernels,
) -> Result<LoadedWeights, InferenceError> {
    let json = read_json(config)?;
    let not_llama = |e: serde_json::Error| {
        load_error(
            &format!("{} is not a Llama-family config", config.display()),
            e,
        )
    };
    let engine_config: rigger_cpu_engine::HfConfig =
        EngineConfig::deserialize(&json).map_err(not_llama)?.into();
    let raw: llama::LlamaConfig = serde_json::from_value(json).map_err(not_llama)?;
    let config = raw.into_config(false);
    let eos = match &config.eos_token_id {
        Some(llama::LlamaEosToks::Single(id)) => vec![*id],
        Some(llama::LlamaEosToks::Multiple(ids)) => ids.clone(),
        None => Vec::new(),
    };
    let model_type = engine_config.model_type.clone();
    // Why the CPU engine does not run it, where it does not.
    let not_on_engine = match cpu_engine_isa(kernels)? {
        Some(isa) if device.is_cpu() => {
            match rigger_cpu_engine::load_safetensors(weights, &engine_config, isa) {
                Ok(model) => {
                    let engine = model.describe();
                    return Ok(LoadedWeights {
                        bos: config.bos_token_id,
                        context_length: config.max_position_embeddings as u32,
                        engine,
                        weights: Weights::Cpu(model),
                        eos,
                        template: None,
                    });
                }
                Err(rigger_cpu_engine::Error::NotCovered(why)) => why,
                Err(e) => return Err(load_error("cannot load the safetensors weights", e)),
            }
        }
        None if device.is_cpu() && kernels == Kernels::Auto => {
            "this processor has neither AVX2 nor AVX-512 VNNI for the CPU engine".into()
        }
        _ if !device.is_cpu() => "the engine runs on the CPU, the model on an accelerator".into(),
        _ => "CANDLE_KERNELS=reference asks for candle's path".into(),
    };
    if !CANDLE_SAFETENSORS_TYPES.contains(&model_type.as_str()) {
        return Err(InferenceError::unsupported(
            BACKEND,
            format!(
                "a {model_type:?} safetensors checkpoint runs only on the CPU engine, which does \
                 not run this one ({not_on_engine}); candle's path runs Llama-family \
                 checkpoints. Use a GGUF of the model, or F16/BF16 weights on an x86-64 CPU \
                 with AVX2"
            ),
        ));
    }
    tracing::info!("safetensors: {not_on_engine}; running on candle's llama");
    // f32 on the CPU (candle's f16/bf16 CPU paths are far slower), f16 on accelerators.
    let dtype = if device.is_cpu() {
        DType::F32
    } else {
        DType::F16
    };
    let vb = mmap_safetensors(weights, dtype, device)?;
    let model = llama::Llama::load(vb, &config)
        .map_err(|e| load_error("cannot build the Llama model", e))?;
    Ok(LoadedWeights {
        bos: config.bos_token_id,
        context_length: config.max_position_embeddings as u32,
        engine: format!("candle llama {dtype:?}"),
        weights: Weights::Full {
            model,
            config,
            dtype,
        },
        eos,
        template: None,
    })
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
