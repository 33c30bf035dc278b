//! The model under test: a cached synthetic model, a local folder, or a hub id already in the
//! Hugging Face cache, with its files per format and the bytes a token reads from each.

use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use anyhow::{Context, bail};
use rigger_model_gen::{GenEvent, GenOptions, Manifest, generate, shape};

/// A GGUF weight format of the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
pub enum WeightFormat {
    #[serde(rename = "q4_0")]
    Q4_0,
    #[serde(rename = "q8_0")]
    Q8_0,
    #[serde(rename = "f16")]
    F16,
    /// llama.cpp's Q4_K_M mix (Q4_K, Q6_K for the output and some attn_v/ffn_down).
    #[serde(rename = "q4_k_m")]
    Q4KM,
    /// llama.cpp's Q5_K_M mix (Q5_K, Q6_K where Q4_K_M has it).
    #[serde(rename = "q5_k_m")]
    Q5KM,
    #[serde(rename = "q6_k")]
    Q6K,
    #[serde(rename = "q4_1")]
    Q4_1,
}

impl WeightFormat {
    pub const ALL: [WeightFormat; 7] = [
        WeightFormat::Q4_0,
        WeightFormat::Q8_0,
        WeightFormat::F16,
        WeightFormat::Q4KM,
        WeightFormat::Q5KM,
        WeightFormat::Q6K,
        WeightFormat::Q4_1,
    ];

    pub fn name(self) -> &'static str {
        match self {
            WeightFormat::Q4_0 => "q4_0",
            WeightFormat::Q8_0 => "q8_0",
            WeightFormat::F16 => "f16",
            WeightFormat::Q4KM => "q4_k_m",
            WeightFormat::Q5KM => "q5_k_m",
            WeightFormat::Q6K => "q6_k",
            WeightFormat::Q4_1 => "q4_1",
        }
    }
}

impl fmt::Display for WeightFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for WeightFormat {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> anyhow::Result<Self> {
        let wanted = s.trim().to_ascii_lowercase();
        WeightFormat::ALL
            .into_iter()
            .find(|f| f.name() == wanted)
            .ok_or_else(|| {
                anyhow::anyhow!(
                    "unknown format {s:?}; use q4_0, q8_0, f16, q4_k_m, q5_k_m, q6_k or q4_1"
                )
            })
    }
}

/// How many bytes of weights one decoded token reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct WeightBytes {
    pub file_bytes: u64,
    /// Every tensor's data.
    pub tensor_bytes: u64,
    /// The token-embedding table: a token reads one row of it, unless it is also the output
    /// projection (tied embeddings), which is read whole.
    pub embedding_bytes: u64,
    pub read_per_token: u64,
}

/// Every file the benchmark needs, resolved on disk.
#[derive(Debug, Clone)]
pub struct BenchModel {
    /// For the tables, e.g. `tinyllama-1.1b (synthetic, seed 0)`.
    pub label: String,
    /// An HF folder (config.json, safetensors, tokenizer): what MLX loads.
    pub hf_folder: Option<PathBuf>,
    pub ggufs: Vec<(WeightFormat, PathBuf)>,
    pub tokenizer: PathBuf,
    pub tokenizer_config: PathBuf,
    pub context_length: Option<u32>,
}

impl BenchModel {
    pub fn gguf(&self, format: WeightFormat) -> Option<&Path> {
        self.ggufs
            .iter()
            .find(|(f, _)| *f == format)
            .map(|(_, p)| p.as_path())
    }
}

/// `synthetic:SHAPE`, a local folder, or a hub id (`owner/name`) in the Hugging Face cache.
pub fn resolve(spec: &str, seed: u64, models_root: &Path) -> anyhow::Result<BenchModel> {
    if let Some(shape_name) = spec.strip_prefix("synthetic:") {
        let dir = synthetic(shape_name, seed, models_root)?;
        return from_folder(&dir, format!("{shape_name} (synthetic, seed {seed})"));
    }
    let path = Path::new(spec);
    if path.is_dir() {
        return from_folder(path, spec.to_owned());
    }
    if path.exists() {
        bail!(
            "{spec} is a file; give the folder that holds it with tokenizer.json and \
             tokenizer_config.json (the prompt is built with the model's own tokenizer)"
        );
    }
    match hub_snapshot(spec) {
        Some(dir) => from_folder(&dir, spec.to_owned()),
        None => bail!(
            "{spec} is neither synthetic:SHAPE, a folder, nor a hub id in the Hugging Face cache; \
             download it first (`hf download {spec}`) or pass a local folder"
        ),
    }
}

fn from_folder(dir: &Path, label: String) -> anyhow::Result<BenchModel> {
    let need = |name: &str| -> anyhow::Result<PathBuf> {
        let p = dir.join(name);
        if p.is_file() {
            Ok(p)
        } else {
            bail!(
                "{} has no {name}; the benchmark needs the model's tokenizer and chat template",
                dir.display()
            )
        }
    };
    let tokenizer = need("tokenizer.json")?;
    let tokenizer_config = need("tokenizer_config.json")?;
    let has_safetensors = std::fs::read_dir(dir)
        .with_context(|| format!("cannot list {}", dir.display()))?
        .filter_map(Result::ok)
        .any(|e| e.path().extension().is_some_and(|x| x == "safetensors"));
    let hf_folder = (dir.join("config.json").is_file() && has_safetensors).then(|| dir.to_owned());
    let mut ggufs = Vec::new();
    for entry in std::fs::read_dir(dir)?.filter_map(Result::ok) {
        let path = entry.path();
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().to_ascii_lowercase())
            .unwrap_or_default();
        if !name.ends_with(".gguf") {
            continue;
        }
        if let Some(format) = WeightFormat::ALL
            .into_iter()
            .find(|f| name.contains(f.name()))
            && !ggufs.iter().any(|(f, _)| *f == format)
        {
            ggufs.push((format, path));
        }
    }
    let context_length = std::fs::read_to_string(dir.join("config.json"))
        .ok()
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        .and_then(|c| c["max_position_embeddings"].as_u64())
        .and_then(|n| u32::try_from(n).ok());
    Ok(BenchModel {
        label,
        hf_folder,
        ggufs,
        tokenizer,
        tokenizer_config,
        context_length,
    })
}

/// The folder of a hub id in the Hugging Face cache (`refs/main` → `snapshots/<commit>`).
fn hub_snapshot(id: &str) -> Option<PathBuf> {
    let (owner, name) = id.split_once('/')?;
    let cache = rigger_ports::hf_hub_cache(&|name| std::env::var(name).ok())?;
    let repo = cache.join(format!("models--{owner}--{name}"));
    let commit = std::fs::read_to_string(repo.join("refs/main")).ok()?;
    let dir = repo.join("snapshots").join(commit.trim());
    dir.is_dir().then_some(dir)
}

/// The generator revision, read from the shared tiny fixture's manifest (generated in well under
/// a second): `rigger-model-gen` writes it there but does not export the constant.
fn generator_revision() -> anyhow::Result<String> {
    let tiny = rigger_model_gen::tiny_model()?;
    let generator = Manifest::read(&tiny)?.generator;
    Ok(generator
        .rsplit_once("revision ")
        .map(|(_, r)| r.trim_end_matches(')').to_owned())
        .unwrap_or(generator))
}

/// The synthetic model's folder under `models_root`, keyed by shape, seed and generator revision;
/// generated (every format) on first use, reused afterwards when every file is still whole.
fn synthetic(shape_name: &str, seed: u64, models_root: &Path) -> anyhow::Result<PathBuf> {
    let shape = shape(shape_name)?;
    let dir = models_root.join(format!(
        "{}-seed{seed}-r{}",
        shape.name,
        generator_revision()?
    ));
    if let Ok(manifest) = Manifest::read(&dir)
        && manifest
            .files
            .iter()
            .all(|f| std::fs::metadata(dir.join(&f.path)).is_ok_and(|m| m.len() == f.bytes))
    {
        return Ok(dir);
    }
    std::fs::create_dir_all(models_root)
        .with_context(|| format!("cannot create {}", models_root.display()))?;
    let scratch = models_root.join(format!("{}-tmp-{}", shape.name, std::process::id()));
    let _ = std::fs::remove_dir_all(&scratch);
    println!(
        "bench: generating the synthetic {} model ({} parameters, seed {seed}) once into {}",
        shape.name,
        shape.parameter_count(),
        dir.display()
    );
    let bar = super::report::bar(0, "{elapsed_precise} [{bar:30}] {pos}/{len} tensors {msg}");
    let opts = GenOptions {
        seed,
        ..GenOptions::new(shape)
    };
    generate(&scratch, &opts, &|event| {
        if let GenEvent::TensorDone { done, total } = event {
            bar.set_length(total as u64);
            bar.set_position(done as u64);
            if done == total {
                bar.set_message("writing files");
            }
        }
    })?;
    bar.finish_and_clear();
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::rename(&scratch, &dir)
        .with_context(|| format!("cannot move the model into {}", dir.display()))?;
    Ok(dir)
}

/// Tensor bytes of a GGUF file, from its tensor table.
pub fn gguf_bytes(path: &Path) -> anyhow::Result<WeightBytes> {
    use candle_core::quantized::gguf_file::Content;
    let mut file =
        std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let file_bytes = file.metadata()?.len();
    let content = Content::read(&mut file)
        .map_err(|e| anyhow::anyhow!("{} is not a readable GGUF file: {e}", path.display()))?;
    let size = |info: &candle_core::quantized::gguf_file::TensorInfo| -> u64 {
        let blocks = info.shape.elem_count() / info.ggml_dtype.block_size();
        (blocks * info.ggml_dtype.type_size()) as u64
    };
    let tensor_bytes = content.tensor_infos.values().map(size).sum();
    let embedding_bytes = content
        .tensor_infos
        .get("token_embd.weight")
        .map_or(0, size);
    let tied = !content.tensor_infos.contains_key("output.weight");
    Ok(weight_bytes(
        file_bytes,
        tensor_bytes,
        embedding_bytes,
        tied,
    ))
}

/// Tensor bytes of a safetensors file, from its JSON header.
pub fn safetensors_bytes(path: &Path) -> anyhow::Result<WeightBytes> {
    let mut file =
        std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let file_bytes = file.metadata()?.len();
    let mut len = [0u8; 8];
    file.read_exact(&mut len)?;
    let header_len = usize::try_from(u64::from_le_bytes(len))?;
    if header_len > 100 << 20 {
        bail!("{} has an implausible header size", path.display());
    }
    let mut header = vec![0u8; header_len];
    file.read_exact(&mut header)?;
    let header: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(&header)
        .with_context(|| format!("{} has no JSON header", path.display()))?;
    let size = |v: &serde_json::Value| -> u64 {
        let offsets = &v["data_offsets"];
        offsets[1]
            .as_u64()
            .unwrap_or(0)
            .saturating_sub(offsets[0].as_u64().unwrap_or(0))
    };
    let tensor_bytes = header
        .iter()
        .filter(|(k, _)| *k != "__metadata__")
        .map(|(_, v)| size(v))
        .sum();
    let embedding_bytes = header.get("model.embed_tokens.weight").map_or(0, size);
    let tied = !header.contains_key("lm_head.weight");
    Ok(weight_bytes(
        file_bytes,
        tensor_bytes,
        embedding_bytes,
        tied,
    ))
}

fn weight_bytes(
    file_bytes: u64,
    tensor_bytes: u64,
    embedding_bytes: u64,
    tied: bool,
) -> WeightBytes {
    WeightBytes {
        file_bytes,
        tensor_bytes,
        embedding_bytes,
        read_per_token: if tied {
            tensor_bytes
        } else {
            tensor_bytes - embedding_bytes.min(tensor_bytes)
        },
    }
}

/// The decode ceiling: every token reads the weights once, so tokens/s cannot exceed the memory
/// bandwidth divided by the bytes read per token (the KV cache, small at these lengths, is left
/// out, so the true ceiling is a little lower).
pub fn ceiling_tokens_per_second(
    bandwidth_bytes_per_second: f64,
    read_per_token: u64,
) -> Option<f64> {
    (read_per_token > 0).then(|| bandwidth_bytes_per_second / read_per_token as f64)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // a panic is how a test reports failure

    use super::*;

    #[test]
    fn ceiling_is_bandwidth_over_bytes_read_per_token() {
        // 20 GB/s over 600 MB a token: 33.3 tokens/s.
        let c = ceiling_tokens_per_second(20e9, 600_000_000).unwrap();
        assert!((c - 33.333).abs() < 0.01, "{c}");
        assert_eq!(ceiling_tokens_per_second(20e9, 0), None);
    }

    #[test]
    fn untied_embeddings_are_not_read_whole_but_tied_ones_are() {
        assert_eq!(weight_bytes(1100, 1000, 300, false).read_per_token, 700);
        assert_eq!(weight_bytes(1100, 1000, 300, true).read_per_token, 1000);
    }

    #[test]
    fn the_tiny_models_formats_read_the_bytes_their_tensor_tables_say() {
        let dir = rigger_model_gen::tiny_model().unwrap();
        let model = from_folder(&dir, "tiny".into()).unwrap();
        assert!(model.hf_folder.is_some());
        let shape = shape("tiny").unwrap();
        let embedding_weights = (shape.vocab_size * shape.hidden_size) as u64;
        let f16 = gguf_bytes(model.gguf(WeightFormat::F16).unwrap()).unwrap();
        let params = shape.parameter_count() as u64;
        // GGUF keeps the norm vectors in f32 (llama.cpp's convention): 2 per layer + the final.
        let norm_weights = ((2 * shape.num_hidden_layers + 1) * shape.hidden_size) as u64;
        assert_eq!(f16.embedding_bytes, embedding_weights * 2);
        assert_eq!(f16.tensor_bytes, params * 2 + norm_weights * 2);
        assert_eq!(f16.read_per_token, f16.tensor_bytes - f16.embedding_bytes);
        assert!(
            f16.file_bytes > f16.tensor_bytes,
            "metadata and tokenizer are not weights"
        );
        let q4 = gguf_bytes(model.gguf(WeightFormat::Q4_0).unwrap()).unwrap();
        assert!(
            q4.read_per_token < f16.read_per_token / 3,
            "{q4:?} vs {f16:?}"
        );
        let st = safetensors_bytes(&dir.join("model.safetensors")).unwrap();
        assert_eq!(st.tensor_bytes, params * 2);
        assert_eq!(st.read_per_token, (params - embedding_weights) * 2);
        assert_eq!(
            model.context_length,
            Some(shape.max_position_embeddings as u32)
        );
    }

    #[test]
    fn formats_parse_and_unknown_ones_say_which_exist() {
        assert_eq!("Q8_0".parse::<WeightFormat>().unwrap(), WeightFormat::Q8_0);
        let err = "q5_k".parse::<WeightFormat>().unwrap_err().to_string();
        assert!(
            err.contains("q4_0, q8_0, f16, q4_k_m, q5_k_m, q6_k or q4_1"),
            "{err}"
        );
        assert_eq!(
            "Q4_K_M".parse::<WeightFormat>().unwrap(),
            WeightFormat::Q4KM
        );
    }
}
