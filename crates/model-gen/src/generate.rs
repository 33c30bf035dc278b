//! Writing a synthetic model: weights, HF folder, GGUF files, manifest.

use std::collections::HashMap;
use std::fmt;
use std::fs::File;
use std::io::{BufWriter, Read};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Mutex;

use candle_core::quantized::gguf_file::{self, Value};
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{DType, Device, Tensor};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::tokenizer::{self, Vocabulary};
use crate::{Family, GenError, Shape};

/// Bumped whenever the bytes written for a given shape and seed change.
pub const GENERATOR_REVISION: u32 = 6;

/// A file format to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Format {
    Safetensors,
    GgufF16,
    GgufQ8_0,
    GgufQ4_0,
    /// llama.cpp's Q4_K_M mix: Q4_K, with Q6_K for `output.weight` and for `attn_v` and
    /// `ffn_down` in the layers its `use_more_bits` picks.
    GgufQ4KM,
    /// llama.cpp's Q5_K_M mix: Q5_K, with Q6_K where Q4_K_M has it.
    GgufQ5KM,
    GgufQ6K,
    /// Q4_1 throughout (SmolLM2's published file is Q4_1).
    GgufQ4_1,
}

impl Format {
    pub const ALL: [Format; 8] = [
        Format::Safetensors,
        Format::GgufF16,
        Format::GgufQ8_0,
        Format::GgufQ4_0,
        Format::GgufQ4KM,
        Format::GgufQ5KM,
        Format::GgufQ6K,
        Format::GgufQ4_1,
    ];

    /// Whether `shape`'s matrices can be written in this format: K-quants quantize rows in
    /// super-blocks of 256 values, so some of its rows must be whole super-blocks (the others
    /// fall back as llama.cpp's do, [`Format::matrix_dtype`]).
    pub fn fits(self, shape: &Shape) -> bool {
        let k_quant = matches!(self, Format::GgufQ4KM | Format::GgufQ5KM | Format::GgufQ6K);
        !k_quant
            || shape.hidden_size.is_multiple_of(256)
            || shape.intermediate_size.is_multiple_of(256)
    }

    pub fn name(self) -> &'static str {
        match self {
            Format::Safetensors => "safetensors",
            Format::GgufF16 => "gguf-f16",
            Format::GgufQ8_0 => "gguf-q8_0",
            Format::GgufQ4_0 => "gguf-q4_0",
            Format::GgufQ4KM => "gguf-q4_k_m",
            Format::GgufQ5KM => "gguf-q5_k_m",
            Format::GgufQ6K => "gguf-q6_k",
            Format::GgufQ4_1 => "gguf-q4_1",
        }
    }

    pub fn file_name(self) -> &'static str {
        match self {
            Format::Safetensors => "model.safetensors",
            Format::GgufF16 => "model-f16.gguf",
            Format::GgufQ8_0 => "model-q8_0.gguf",
            Format::GgufQ4_0 => "model-q4_0.gguf",
            Format::GgufQ4KM => "model-q4_k_m.gguf",
            Format::GgufQ5KM => "model-q5_k_m.gguf",
            Format::GgufQ6K => "model-q6_k.gguf",
            Format::GgufQ4_1 => "model-q4_1.gguf",
        }
    }

    fn ggml(self) -> Option<(GgmlDType, u32)> {
        // (main tensor type, llama.cpp's general.file_type)
        match self {
            Format::Safetensors => None,
            Format::GgufF16 => Some((GgmlDType::F16, 1)),
            Format::GgufQ8_0 => Some((GgmlDType::Q8_0, 7)),
            Format::GgufQ4_0 => Some((GgmlDType::Q4_0, 2)),
            Format::GgufQ4KM => Some((GgmlDType::Q4K, 15)),
            Format::GgufQ5KM => Some((GgmlDType::Q5K, 17)),
            Format::GgufQ6K => Some((GgmlDType::Q6K, 18)),
            Format::GgufQ4_1 => Some((GgmlDType::Q4_1, 3)),
        }
    }

    /// The type of matrix `gguf_name` with rows of `cols` values in a model of `layers` layers
    /// (`tied`: the embedding table is the output projection too).
    fn matrix_dtype(
        self,
        gguf_name: &str,
        cols: usize,
        layers: usize,
        tied: bool,
    ) -> Option<GgmlDType> {
        // llama.cpp's fallbacks for rows that are not whole 256-value super-blocks.
        let fit = |dtype: GgmlDType| match dtype {
            GgmlDType::Q4K if !cols.is_multiple_of(256) => GgmlDType::Q5_0,
            GgmlDType::Q5K if !cols.is_multiple_of(256) => GgmlDType::Q5_1,
            GgmlDType::Q6K if !cols.is_multiple_of(256) => GgmlDType::Q8_0,
            other => other,
        };
        let (main, _) = self.ggml()?;
        if !matches!(self, Format::GgufQ4KM | Format::GgufQ5KM) {
            return Some(fit(main));
        }
        // The output projection (the embedding table where they are tied) gets Q6_K.
        if gguf_name == "output.weight" || (tied && gguf_name == "token_embd.weight") {
            return Some(fit(GgmlDType::Q6K));
        }
        let mut parts = gguf_name.split('.');
        let layer = match (parts.next(), parts.next(), parts.next()) {
            (Some("blk"), Some(layer), Some("attn_v" | "ffn_down")) => layer.parse::<usize>().ok(),
            _ => None,
        };
        Some(fit(match layer {
            Some(i) if use_more_bits(i, layers) => GgmlDType::Q6K,
            _ => main,
        }))
    }
}

/// llama.cpp's `use_more_bits(i, n)` (llama-quant.cpp): the first and last eighth of the layers
/// and every third between.
pub fn use_more_bits(i: usize, n: usize) -> bool {
    i < n / 8 || i >= 7 * n / 8 || (i as isize - (n / 8) as isize) % 3 == 2
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Format {
    type Err = GenError;
    fn from_str(s: &str) -> Result<Self, GenError> {
        Format::ALL
            .into_iter()
            .find(|f| f.name().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| GenError::UnknownFormat { name: s.to_owned() })
    }
}

/// What to generate.
#[derive(Debug, Clone)]
pub struct GenOptions {
    pub shape: &'static Shape,
    pub seed: u64,
    pub formats: Vec<Format>,
    /// The safetensors dtype: F16 (default), BF16 or F32.
    pub safetensors_dtype: DType,
    /// Overwrite the files of an existing, non-empty folder.
    pub force: bool,
}

impl GenOptions {
    pub fn new(shape: &'static Shape) -> Self {
        Self {
            shape,
            seed: 0,
            // Every format the shape fits (the tiny test shape is too narrow for K-quants).
            formats: Format::ALL.into_iter().filter(|f| f.fits(shape)).collect(),
            safetensors_dtype: DType::F16,
            force: false,
        }
    }

    pub fn parse_dtype(name: &str) -> Result<DType, GenError> {
        match name.trim().to_ascii_lowercase().as_str() {
            "f16" => Ok(DType::F16),
            "bf16" => Ok(DType::BF16),
            "f32" => Ok(DType::F32),
            _ => Err(GenError::UnknownDtype {
                name: name.to_owned(),
            }),
        }
    }
}

/// `rigger-model.json`: what was generated, with a checksum per file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub generator: String,
    pub shape: String,
    pub parameters: usize,
    pub seed: u64,
    pub safetensors_dtype: String,
    pub files: Vec<ManifestFile>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ManifestFile {
    pub path: String,
    pub format: String,
    pub bytes: u64,
    pub sha256: String,
}

impl Manifest {
    pub const FILE_NAME: &'static str = "rigger-model.json";

    pub fn read(dir: &Path) -> Result<Self, GenError> {
        let path = dir.join(Self::FILE_NAME);
        let text = std::fs::read_to_string(&path).map_err(|e| GenError::io(&path, e))?;
        Ok(serde_json::from_str(&text)?)
    }
}

/// Progress of a generation.
#[derive(Debug, Clone)]
pub enum GenEvent {
    TensorDone { done: usize, total: usize },
    FileWritten { path: PathBuf, bytes: u64 },
}

enum Init {
    Ones,
    Uniform { fan_in: usize },
}

struct Spec {
    hf: String,
    gguf: String,
    dims: Vec<usize>,
    init: Init,
    /// Heads to permute for GGUF's interleaved rope layout (q and k projections).
    rope_heads: Option<usize>,
    /// The output projection: rows of suppressed tokens are zeroed.
    is_output: bool,
}

fn specs(s: &Shape) -> Vec<Spec> {
    let (h, i, kv) = (s.hidden_size, s.intermediate_size, s.kv_dim());
    let matrix = |hf: String, gguf: String, rows: usize, cols: usize| Spec {
        hf,
        gguf,
        dims: vec![rows, cols],
        init: Init::Uniform { fan_in: cols },
        rope_heads: None,
        is_output: false,
    };
    let norm_of = |hf: String, gguf: String, width: usize| Spec {
        hf,
        gguf,
        dims: vec![width],
        init: Init::Ones,
        rope_heads: None,
        is_output: false,
    };
    let norm = |hf: String, gguf: String| norm_of(hf, gguf, h);
    let bias = |hf: String, gguf: String, width: usize| Spec {
        init: Init::Uniform { fan_in: h },
        ..norm_of(hf, gguf, width)
    };
    // Llama's GGUF interleaves each head's rotary halves; Qwen's keep HF's layout (NeoX).
    let permuted = |heads: usize| (s.family == Family::Llama).then_some(heads);
    let mut out = vec![Spec {
        is_output: s.tie_word_embeddings,
        ..matrix(
            "model.embed_tokens.weight".into(),
            "token_embd.weight".into(),
            s.vocab_size,
            h,
        )
    }];
    for l in 0..s.num_hidden_layers {
        let hf = |n: &str| format!("model.layers.{l}.{n}.weight");
        let gg = |n: &str| format!("blk.{l}.{n}.weight");
        out.push(norm(hf("input_layernorm"), gg("attn_norm")));
        out.push(Spec {
            rope_heads: permuted(s.num_attention_heads),
            ..matrix(hf("self_attn.q_proj"), gg("attn_q"), h, h)
        });
        out.push(Spec {
            rope_heads: permuted(s.num_key_value_heads),
            ..matrix(hf("self_attn.k_proj"), gg("attn_k"), kv, h)
        });
        out.push(matrix(hf("self_attn.v_proj"), gg("attn_v"), kv, h));
        match s.family {
            Family::Llama => {}
            Family::Qwen2 => {
                let hf = |n: &str| format!("model.layers.{l}.self_attn.{n}_proj.bias");
                let gg = |n: &str| format!("blk.{l}.attn_{n}.bias");
                out.push(bias(hf("q"), gg("q"), h));
                out.push(bias(hf("k"), gg("k"), kv));
                out.push(bias(hf("v"), gg("v"), kv));
            }
            Family::Qwen3 => {
                let hd = s.head_dim();
                out.push(norm_of(hf("self_attn.q_norm"), gg("attn_q_norm"), hd));
                out.push(norm_of(hf("self_attn.k_norm"), gg("attn_k_norm"), hd));
            }
        }
        out.push(matrix(hf("self_attn.o_proj"), gg("attn_output"), h, h));
        out.push(norm(hf("post_attention_layernorm"), gg("ffn_norm")));
        out.push(matrix(hf("mlp.gate_proj"), gg("ffn_gate"), i, h));
        out.push(matrix(hf("mlp.up_proj"), gg("ffn_up"), i, h));
        out.push(matrix(hf("mlp.down_proj"), gg("ffn_down"), h, i));
    }
    out.push(norm(
        "model.norm.weight".into(),
        "output_norm.weight".into(),
    ));
    if !s.tie_word_embeddings {
        out.push(Spec {
            is_output: true,
            ..matrix(
                "lm_head.weight".into(),
                "output.weight".into(),
                s.vocab_size,
                h,
            )
        });
    }
    out
}

/// SplitMix64: tiny, fast and the same on every platform; one independent stream per tensor.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

fn weights(spec: &Spec, index: usize, seed: u64, vocab: &Vocabulary) -> Vec<f32> {
    let n: usize = spec.dims.iter().product();
    let mut data = match spec.init {
        Init::Ones => vec![1.0f32; n],
        Init::Uniform { fan_in } => {
            // Uniform with standard deviation 1/sqrt(fan_in): logits spread enough that greedy
            // decoding is stable across formats and float orderings.
            let bound = (3.0 / fan_in as f32).sqrt();
            let mut rng = SplitMix64(seed ^ (index as u64 + 1).wrapping_mul(0xD1B5_4A32_D192_ED03));
            (0..n)
                .map(|_| ((rng.next() >> 40) as f32 / (1u64 << 24) as f32) * 2.0 * bound - bound)
                .collect()
        }
    };
    if spec.is_output {
        let cols = spec.dims[1];
        for (token, row) in data.chunks_mut(cols).enumerate() {
            if vocab.suppressed[token] {
                row.fill(0.0);
            }
        }
    }
    data
}

/// llama.cpp's rope permutation (convert_hf_to_gguf.py `permute`): HF's rotate-half layout of
/// q/k rows to GGUF's interleaved one.
fn permute_for_gguf(t: &Tensor, heads: usize) -> candle_core::Result<Tensor> {
    let (rows, cols) = t.dims2()?;
    t.reshape((heads, 2, rows / heads / 2, cols))?
        .transpose(1, 2)?
        .contiguous()?
        .reshape((rows, cols))
}

struct Converted {
    safetensors: Option<Tensor>,
    gguf: Vec<QTensor>,
}

fn convert(
    spec: &Spec,
    data: Vec<f32>,
    opts: &GenOptions,
    gguf: &[Format],
) -> Result<Converted, GenError> {
    let (layers, tied) = (opts.shape.num_hidden_layers, opts.shape.tie_word_embeddings);
    let cols = spec.dims.last().copied().unwrap_or(0);
    let t = Tensor::from_vec(data, spec.dims.as_slice(), &Device::Cpu)?;
    let safetensors = if opts.formats.contains(&Format::Safetensors) {
        Some(t.to_dtype(opts.safetensors_dtype)?)
    } else {
        None
    };
    let g = match spec.rope_heads {
        Some(heads) => permute_for_gguf(&t, heads)?,
        None => t,
    };
    let gguf = gguf
        .iter()
        .filter_map(|f| f.matrix_dtype(&spec.gguf, cols, layers, tied))
        .map(|dtype| {
            // 1-D tensors (norms) stay f32, as llama.cpp's converter writes them.
            let dtype = if spec.dims.len() == 1 {
                GgmlDType::F32
            } else {
                dtype
            };
            QTensor::quantize(&g, dtype)
        })
        .collect::<candle_core::Result<_>>()?;
    Ok(Converted { safetensors, gguf })
}

/// Generates a model into `out`.
pub fn generate(
    out: &Path,
    opts: &GenOptions,
    on_event: &(dyn Fn(GenEvent) + Sync),
) -> Result<Manifest, GenError> {
    let shape = opts.shape;
    if let Some(format) = opts.formats.iter().find(|f| !f.fits(shape)) {
        return Err(GenError::FormatDoesNotFit {
            format: format.name().to_owned(),
            shape: shape.name.to_owned(),
            row: shape.hidden_size.min(shape.intermediate_size),
        });
    }
    prepare_dir(out, opts.force)?;
    let vocab = tokenizer::vocabulary(shape.vocab_size);
    let specs = specs(shape);
    let gguf_formats: Vec<Format> = opts
        .formats
        .iter()
        .copied()
        .filter(|f| *f != Format::Safetensors)
        .collect();

    // Tensors are independent: generate and convert them on every core, keep them in order.
    let slots: Vec<Mutex<Option<Converted>>> = specs.iter().map(|_| Mutex::new(None)).collect();
    let next = Mutex::new(0usize);
    let done = Mutex::new(0usize);
    let failure: Mutex<Option<GenError>> = Mutex::new(None);
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
    std::thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| {
                loop {
                    let index = {
                        let mut n = lock(&next);
                        let i = *n;
                        *n += 1;
                        i
                    };
                    let Some(spec) = specs.get(index) else { break };
                    if lock(&failure).is_some() {
                        break;
                    }
                    let data = weights(spec, index, opts.seed, &vocab);
                    match convert(spec, data, opts, &gguf_formats) {
                        Ok(c) => *lock(&slots[index]) = Some(c),
                        Err(e) => {
                            lock(&failure).get_or_insert(e);
                            break;
                        }
                    }
                    let mut d = lock(&done);
                    *d += 1;
                    on_event(GenEvent::TensorDone {
                        done: *d,
                        total: specs.len(),
                    });
                }
            });
        }
    });
    if let Some(e) = lock(&failure).take() {
        return Err(e);
    }
    let converted: Vec<Converted> = slots
        .into_iter()
        .map(|s| s.into_inner().unwrap_or_else(|p| p.into_inner()))
        .map(|c| c.ok_or_else(|| GenError::Tokenizer("a tensor was not generated".into())))
        .collect::<Result<_, _>>()?;

    let mut written: Vec<(Format, PathBuf)> = Vec::new();
    let write_json = |name: &str, value: &serde_json::Value| -> Result<(), GenError> {
        let path = out.join(name);
        let text = serde_json::to_string_pretty(value)?;
        std::fs::write(&path, text + "\n").map_err(|e| GenError::io(&path, e))
    };
    write_json("config.json", &hf_config(shape, opts.safetensors_dtype))?;
    write_json(
        "generation_config.json",
        &serde_json::json!({
            "bos_token_id": tokenizer::BOS_ID,
            "eos_token_id": tokenizer::EOS_ID,
            "max_length": shape.max_position_embeddings,
        }),
    )?;
    write_json(
        "tokenizer_config.json",
        &tokenizer::tokenizer_config(shape.max_position_embeddings),
    )?;
    write_json(
        "special_tokens_map.json",
        &serde_json::json!({
            "bos_token": tokenizer::BOS, "eos_token": tokenizer::EOS, "unk_token": tokenizer::UNK,
        }),
    )?;
    tokenizer::save(&tokenizer::build(&vocab)?, &out.join("tokenizer.json"))?;

    if opts.formats.contains(&Format::Safetensors) {
        let path = out.join(Format::Safetensors.file_name());
        let tensors: HashMap<String, Tensor> = specs
            .iter()
            .zip(&converted)
            .filter_map(|(s, c)| c.safetensors.clone().map(|t| (s.hf.clone(), t)))
            .collect();
        candle_core::safetensors::save(&tensors, &path)?;
        written.push((Format::Safetensors, path));
    }
    for (k, format) in gguf_formats.iter().enumerate() {
        let path = out.join(format.file_name());
        let file_type = format.ggml().map_or(0, |(_, t)| t);
        let metadata = gguf_metadata(shape, &vocab, file_type);
        let metadata: Vec<(&str, &Value)> = metadata.iter().map(|(k, v)| (k.as_str(), v)).collect();
        let tensors: Vec<(&str, &QTensor)> = specs
            .iter()
            .zip(&converted)
            .map(|(s, c)| (s.gguf.as_str(), &c.gguf[k]))
            .collect();
        let file = File::create(&path).map_err(|e| GenError::io(&path, e))?;
        let mut w = BufWriter::new(file);
        gguf_file::write(&mut w, &metadata, &tensors)?;
        w.into_inner()
            .map_err(|e| GenError::io(&path, e.into_error()))?
            .sync_all()
            .map_err(|e| GenError::io(&path, e))?;
        written.push((*format, path));
    }

    let mut files = Vec::new();
    for (format, path) in written {
        let (bytes, sha256) = checksum(&path)?;
        on_event(GenEvent::FileWritten {
            path: path.clone(),
            bytes,
        });
        files.push(ManifestFile {
            path: format.file_name().to_owned(),
            format: format.name().to_owned(),
            bytes,
            sha256,
        });
    }
    let manifest = Manifest {
        generator: format!(
            "rigger-model-gen {} (revision {GENERATOR_REVISION})",
            env!("CARGO_PKG_VERSION")
        ),
        shape: shape.name.to_owned(),
        parameters: shape.parameter_count(),
        seed: opts.seed,
        safetensors_dtype: format!("{:?}", opts.safetensors_dtype).to_lowercase(),
        files,
    };
    write_json(Manifest::FILE_NAME, &serde_json::to_value(&manifest)?)?;
    Ok(manifest)
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn prepare_dir(out: &Path, force: bool) -> Result<(), GenError> {
    if out.exists() {
        let mut entries = std::fs::read_dir(out).map_err(|e| GenError::io(out, e))?;
        if entries.next().is_some() && !force {
            return Err(GenError::Exists {
                path: out.display().to_string(),
            });
        }
    }
    std::fs::create_dir_all(out).map_err(|e| GenError::io(out, e))
}

fn checksum(path: &Path) -> Result<(u64, String), GenError> {
    let mut file = File::open(path).map_err(|e| GenError::io(path, e))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut bytes = 0u64;
    loop {
        let n = file.read(&mut buf).map_err(|e| GenError::io(path, e))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        bytes += n as u64;
    }
    let hex = hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    Ok((bytes, hex))
}

fn hf_config(s: &Shape, dtype: DType) -> serde_json::Value {
    let (architecture, model_type) = match s.family {
        Family::Llama => ("LlamaForCausalLM", "llama"),
        Family::Qwen2 => ("Qwen2ForCausalLM", "qwen2"),
        Family::Qwen3 => ("Qwen3ForCausalLM", "qwen3"),
    };
    serde_json::json!({
        "architectures": [architecture],
        "model_type": model_type,
        "hidden_act": "silu",
        "hidden_size": s.hidden_size,
        "intermediate_size": s.intermediate_size,
        "num_hidden_layers": s.num_hidden_layers,
        "num_attention_heads": s.num_attention_heads,
        "num_key_value_heads": s.num_key_value_heads,
        "head_dim": s.head_dim(),
        "vocab_size": s.vocab_size,
        "max_position_embeddings": s.max_position_embeddings,
        "rms_norm_eps": s.rms_norm_eps,
        "rope_theta": s.rope_theta,
        "tie_word_embeddings": s.tie_word_embeddings,
        "attention_bias": s.family == Family::Qwen2,
        "mlp_bias": false,
        "bos_token_id": tokenizer::BOS_ID,
        "eos_token_id": tokenizer::EOS_ID,
        "torch_dtype": match dtype { DType::BF16 => "bfloat16", DType::F32 => "float32", _ => "float16" },
        "rigger_synthetic": true,
    })
}

fn gguf_metadata(s: &Shape, vocab: &Vocabulary, file_type: u32) -> Vec<(String, Value)> {
    let u32v = |n: usize| Value::U32(n as u32);
    let arch = s.family.gguf_name();
    let mut metadata: Vec<(&str, Value)> = vec![
        ("general.architecture", Value::String(arch.into())),
        (
            "general.name",
            Value::String(format!("rigger synthetic {}", s.name)),
        ),
        ("general.file_type", Value::U32(file_type)),
        ("general.quantization_version", Value::U32(2)),
        ("{arch}.vocab_size", u32v(s.vocab_size)),
        ("{arch}.context_length", u32v(s.max_position_embeddings)),
        ("{arch}.embedding_length", u32v(s.hidden_size)),
        ("{arch}.block_count", u32v(s.num_hidden_layers)),
        ("{arch}.feed_forward_length", u32v(s.intermediate_size)),
        ("{arch}.attention.head_count", u32v(s.num_attention_heads)),
        (
            "{arch}.attention.head_count_kv",
            u32v(s.num_key_value_heads),
        ),
        ("{arch}.rope.dimension_count", u32v(s.head_dim())),
        ("{arch}.rope.freq_base", Value::F32(s.rope_theta as f32)),
        (
            "{arch}.attention.layer_norm_rms_epsilon",
            Value::F32(s.rms_norm_eps as f32),
        ),
        ("tokenizer.ggml.model", Value::String("gpt2".into())),
        ("tokenizer.ggml.pre", Value::String("default".into())),
        (
            "tokenizer.ggml.tokens",
            Value::Array(vocab.tokens.iter().cloned().map(Value::String).collect()),
        ),
        (
            "tokenizer.ggml.token_type",
            Value::Array(vocab.token_types.iter().copied().map(Value::I32).collect()),
        ),
        (
            "tokenizer.ggml.merges",
            Value::Array(
                vocab
                    .merges
                    .iter()
                    .map(|(a, b)| Value::String(format!("{a} {b}")))
                    .collect(),
            ),
        ),
        ("tokenizer.ggml.bos_token_id", Value::U32(tokenizer::BOS_ID)),
        ("tokenizer.ggml.eos_token_id", Value::U32(tokenizer::EOS_ID)),
        ("tokenizer.ggml.unknown_token_id", Value::U32(0)),
        ("tokenizer.ggml.add_bos_token", Value::Bool(true)),
        ("tokenizer.ggml.add_eos_token", Value::Bool(false)),
        (
            "tokenizer.chat_template",
            Value::String(tokenizer::CHAT_TEMPLATE.into()),
        ),
    ];
    if s.family == Family::Qwen3 {
        metadata.push(("{arch}.attention.key_length", u32v(s.head_dim())));
        metadata.push(("{arch}.attention.value_length", u32v(s.head_dim())));
    }
    metadata
        .into_iter()
        .map(|(key, value)| (key.replace("{arch}", arch), value))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shape;

    #[test]
    fn q4_k_m_gives_the_layers_llama_cpp_picks_more_bits() {
        let f = Format::GgufQ4KM;
        let q6: Vec<usize> = (0..22)
            .filter(|i| {
                f.matrix_dtype(&format!("blk.{i}.ffn_down.weight"), 2048, 22, false)
                    == Some(GgmlDType::Q6K)
            })
            .collect();
        assert_eq!(q6, [0, 1, 4, 7, 10, 13, 16, 19, 20, 21]);
        assert_eq!(
            f.matrix_dtype("blk.4.attn_v.weight", 2048, 22, false),
            Some(GgmlDType::Q6K)
        );
        assert_eq!(
            f.matrix_dtype("blk.4.attn_k.weight", 2048, 22, false),
            Some(GgmlDType::Q4K)
        );
        assert_eq!(
            f.matrix_dtype("blk.5.attn_v.weight", 2048, 22, false),
            Some(GgmlDType::Q4K)
        );
        assert_eq!(
            f.matrix_dtype("output.weight", 2048, 22, false),
            Some(GgmlDType::Q6K)
        );
        assert_eq!(
            f.matrix_dtype("token_embd.weight", 2048, 22, false),
            Some(GgmlDType::Q4K)
        );
        // Q5_K_M: the same layers get Q6_K, the rest Q5_K.
        let f = Format::GgufQ5KM;
        assert_eq!(
            f.matrix_dtype("blk.4.attn_v.weight", 2048, 22, false),
            Some(GgmlDType::Q6K)
        );
        assert_eq!(
            f.matrix_dtype("blk.5.ffn_down.weight", 2048, 22, false),
            Some(GgmlDType::Q5K)
        );
        assert_eq!(
            f.matrix_dtype("output.weight", 2048, 22, false),
            Some(GgmlDType::Q6K)
        );
    }

    #[test]
    fn every_hyperparameter_key_carries_the_architectures_prefix() {
        for (name, prefix) in [("qwen2.5-0.5b", "qwen2."), ("qwen3-1.7b", "qwen3.")] {
            let shape = shape(name).unwrap();
            let vocab = tokenizer::vocabulary(shape.vocab_size);
            let metadata = gguf_metadata(shape, &vocab, 15);
            let keys: Vec<&str> = metadata.iter().map(|(k, _)| k.as_str()).collect();
            assert!(keys.iter().all(|k| !k.starts_with("llama.")), "{keys:?}");
            for key in [
                "attention.layer_norm_rms_epsilon",
                "rope.freq_base",
                "block_count",
            ] {
                assert!(
                    keys.contains(&format!("{prefix}{key}").as_str()),
                    "{name}: {key}"
                );
            }
        }
    }

    #[test]
    fn rows_that_are_not_whole_super_blocks_fall_back_as_llama_cpps_do() {
        // Qwen2.5-0.5B: 896-wide rows, 4864-wide ffn_down rows, tied embeddings.
        let f = Format::GgufQ4KM;
        let dtype = |name: &str, cols| f.matrix_dtype(name, cols, 24, true);
        assert_eq!(dtype("blk.1.attn_q.weight", 896), Some(GgmlDType::Q5_0));
        assert_eq!(dtype("blk.0.attn_v.weight", 896), Some(GgmlDType::Q8_0));
        assert_eq!(dtype("blk.4.ffn_down.weight", 4864), Some(GgmlDType::Q4K));
        assert_eq!(dtype("blk.0.ffn_down.weight", 4864), Some(GgmlDType::Q6K));
        assert_eq!(dtype("token_embd.weight", 896), Some(GgmlDType::Q8_0));
        let q5 = Format::GgufQ5KM.matrix_dtype("blk.1.attn_q.weight", 896, 24, true);
        assert_eq!(q5, Some(GgmlDType::Q5_1));
        let q6 = Format::GgufQ6K.matrix_dtype("blk.1.attn_q.weight", 896, 24, true);
        assert_eq!(q6, Some(GgmlDType::Q8_0));
        assert!(Format::GgufQ4KM.fits(shape("qwen2.5-0.5b").unwrap()));
    }

    #[test]
    fn k_quants_are_left_out_of_shapes_too_narrow_for_them_and_refused_when_asked() {
        let tiny = shape("tiny").unwrap();
        let defaults = GenOptions::new(tiny).formats;
        assert!(!defaults.contains(&Format::GgufQ4KM) && defaults.contains(&Format::GgufQ4_0));
        assert!(
            GenOptions::new(shape("tinyllama-1.1b").unwrap())
                .formats
                .contains(&Format::GgufQ4KM)
        );
        let opts = GenOptions {
            formats: vec![Format::GgufQ6K],
            ..GenOptions::new(tiny)
        };
        let dir = std::env::temp_dir().join(format!("rigger-gen-narrow-{}", std::process::id()));
        let err = generate(&dir, &opts, &|_| {}).unwrap_err().to_string();
        assert!(err.contains("gguf-q6_k") && err.contains("256"), "{err}");
        assert!(!dir.exists(), "nothing is written for a refused format");
        assert_eq!("gguf-q4_k_m".parse::<Format>().unwrap(), Format::GgufQ4KM);
    }
}
