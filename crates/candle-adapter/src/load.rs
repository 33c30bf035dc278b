//! Loading a model (blocking: call from a blocking thread): the tokenizer and its config, then
//! the weights — GGUF on the CPU engine where it covers the model, on candle's models otherwise;
//! safetensors on candle's llama — and the chat template.

use std::fs::File;
use std::path::Path;
use std::time::{Duration, Instant};

use candle_core::quantized::gguf_file;
use candle_core::{DType, Device};
use candle_nn::VarBuilder;
use candle_transformers::models::{llama, quantized_llama, quantized_phi3, quantized_qwen2};
use rigger_cpu_engine::Isa;
use rigger_ports::{ErrorKind, InferenceError};
use tokenizers::Tokenizer;

use crate::source::ModelFiles;
use crate::template::{self, ChatTemplate};
use crate::weights::Weights;
use crate::worker::Worker;
use crate::{BACKEND, DeviceKind, Kernels};

/// What the async side needs to know about a loaded model.
pub(crate) struct ModelInfo {
    pub(crate) context_length: u32,
    /// Which code runs the model, e.g. "rigger-cpu Q4_0 avx512-vnni" or "candle quantized_llama".
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
    bos: String,
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

/// Loads the model: the worker thread's half and what the async side keeps.
pub(crate) fn load(
    files: &ModelFiles,
    device: &Device,
    kernels: Kernels,
) -> Result<(Worker, ModelInfo), InferenceError> {
    let started = Instant::now();
    let (tokenizer_path, tokenizer_config_path) = match files {
        ModelFiles::Gguf {
            weights,
            tokenizer,
            tokenizer_config,
        } => (
            tokenizer.as_deref().ok_or_else(|| {
                InferenceError::new(
                    ErrorKind::ModelLoadFailed,
                    BACKEND,
                    format!(
                        "{} has no tokenizer.json beside it, and the tokenizer in the GGUF's metadata is not read yet",
                        weights.display()
                    ),
                )
                .with_hint("set CANDLE_TOKENIZER to the model's tokenizer.json")
            })?,
            tokenizer_config,
        ),
        ModelFiles::Safetensors {
            tokenizer,
            tokenizer_config,
            ..
        } => (tokenizer.as_path(), tokenizer_config),
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
    let loaded = match files {
        ModelFiles::Gguf { weights, .. } => load_gguf(weights, device, kernels, &token_text)?,
        ModelFiles::Safetensors {
            weights, config, ..
        } => load_safetensors(weights, config, device, &token_text)?,
    };
    let mut eos = loaded.eos;
    if let Some(id) = template::special_token(&tokenizer_config, "eos_token")
        .and_then(|t| tokenizer.token_to_id(&t))
        && !eos.contains(&id)
    {
        eos.push(id);
    }
    let bos = template::special_token(&tokenizer_config, "bos_token").unwrap_or(loaded.bos);
    let eos_text = eos
        .first()
        .and_then(|id| tokenizer.id_to_token(*id))
        .unwrap_or_default();
    let source = template::from_tokenizer_config(&tokenizer_config).or(loaded.template);
    let template = ChatTemplate::new(source, bos, eos_text)?;
    tracing::debug!("{} runs on {}", files.key().display(), loaded.engine);
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

fn load_gguf(
    path: &Path,
    device: &Device,
    kernels: Kernels,
    token_text: &dyn Fn(Option<u32>) -> String,
) -> Result<LoadedWeights, InferenceError> {
    let mut file =
        File::open(path).map_err(|e| load_error(&format!("cannot open {}", path.display()), e))?;
    let content = gguf_file::Content::read(&mut file)
        .map_err(|e| load_error(&format!("{} is not a valid GGUF file", path.display()), e))?;
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
    let context_length = md(&format!("{arch}.context_length"))
        .and_then(|v| v.to_u32().ok())
        .unwrap_or(2048);
    let bos = md("tokenizer.ggml.bos_token_id").and_then(|v| v.to_u32().ok());
    let eos = md("tokenizer.ggml.eos_token_id").and_then(|v| v.to_u32().ok());
    let template = md("tokenizer.chat_template")
        .and_then(|v| v.to_string().ok())
        .cloned();
    let cannot_load =
        |e: &dyn std::fmt::Display| load_error(&format!("cannot load {}", path.display()), e);
    let cpu = match cpu_engine_isa(kernels)? {
        Some(isa)
            if device.is_cpu() && rigger_cpu_engine::ARCHITECTURES.contains(&arch.as_str()) =>
        {
            match rigger_cpu_engine::Llama::from_gguf(&content, &mut file, isa) {
                Ok(model) => Some(model),
                Err(rigger_cpu_engine::Error::NotCovered(why)) => {
                    tracing::info!(
                        "{}: {why}; running on candle's quantized_llama instead of the CPU engine",
                        path.display()
                    );
                    None
                }
                Err(e) => return Err(cannot_load(&e)),
            }
        }
        None if device.is_cpu() && kernels == Kernels::Auto && arch == "llama" => {
            tracing::info!(
                "{}: this processor has neither AVX2 nor AVX-512 VNNI for the CPU engine; running on candle's quantized_llama",
                path.display()
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
        None if arch == "qwen2" => (
            Weights::Qwen2(
                quantized_qwen2::ModelWeights::from_gguf(content, &mut file, device)
                    .map_err(|e| cannot_load(&e))?,
            ),
            "candle quantized_qwen2".to_owned(),
        ),
        None if arch == "phi3" => (
            Weights::Phi3(
                quantized_phi3::ModelWeights::from_gguf(false, content, &mut file, device)
                    .map_err(|e| cannot_load(&e))?,
            ),
            "candle quantized_phi3".to_owned(),
        ),
        None => (
            Weights::Quantized(
                quantized_llama::ModelWeights::from_gguf(content, &mut file, device)
                    .map_err(|e| cannot_load(&e))?,
            ),
            "candle quantized_llama".to_owned(),
        ),
    };
    Ok(LoadedWeights {
        weights,
        engine,
        context_length,
        bos: token_text(bos),
        eos: eos.into_iter().collect(),
        template,
    })
}

/// Which instruction set the CPU engine would use under `kernels` (None: candle's models),
/// refusing one this processor lacks.
fn cpu_engine_isa(kernels: Kernels) -> Result<Option<Isa>, InferenceError> {
    let isa = match kernels {
        // Without SIMD kernels (e.g. on ARM, for now) candle's own path, which has NEON
        // kernels, is the faster one.
        Kernels::Auto => Some(Isa::detect()).filter(|isa| *isa != Isa::Portable),
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

fn load_safetensors(
    weights: &[std::path::PathBuf],
    config: &Path,
    device: &Device,
    token_text: &dyn Fn(Option<u32>) -> String,
) -> Result<LoadedWeights, InferenceError> {
    let raw: llama::LlamaConfig = serde_json::from_value(read_json(config)?)
        .map_err(|e| load_error(&format!("{} is not a Llama config", config.display()), e))?;
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
    Ok(LoadedWeights {
        bos: token_text(config.bos_token_id),
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
