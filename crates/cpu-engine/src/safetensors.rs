//! A Hugging Face safetensors folder (shards too) as a [`TensorSource`], translated to what a
//! GGUF of the same model holds: `config.json`'s numbers as `{arch}.*` metadata, tensors under
//! GGUF's names, and Llama's Q and K rows permuted as llama.cpp's converter permutes them (each
//! head's two rotary halves interleaved), so the architectures read it as they read a GGUF. F16
//! and BF16 matrices go to the float kernels byte for byte; other types are not covered.

#![allow(unsafe_code)] // memory-mapping the files

use std::collections::HashMap;
use std::path::PathBuf;

use candle_core::quantized::gguf_file::Value;
use candle_core::safetensors::MmapedSafetensors;
use candle_core::{DType, Device};

use crate::error::{Error, Result};
use crate::models::Architecture;
use crate::quant::WeightFormat;
use crate::reader::{TensorInfo, TensorSource};

/// The numbers of a model's `config.json` the engine reads (the frontend parses the JSON).
#[derive(Debug, Clone, Default)]
pub struct HfConfig {
    /// `model_type`: `llama`, `mistral`, `qwen2` or `qwen3` run on the engine.
    pub model_type: String,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    /// Defaults to `num_attention_heads`.
    pub num_key_value_heads: Option<usize>,
    /// Defaults to `hidden_size / num_attention_heads`.
    pub head_dim: Option<usize>,
    pub rms_norm_eps: f64,
    /// Defaults to the architecture's.
    pub rope_theta: Option<f64>,
    /// Whether `rope_scaling` is set (scaled rotary embeddings are not covered).
    pub rope_scaling: bool,
    /// Llama's `attention_bias` / `mlp_bias` (biases Llama's blocks do not have here).
    pub attention_bias: bool,
    pub mlp_bias: bool,
}

/// The architecture the engine runs a `model_type` as.
fn architecture(model_type: &str) -> Option<Architecture> {
    match model_type {
        "llama" | "mistral" => Some(Architecture::Llama),
        "qwen2" => Some(Architecture::Qwen2),
        "qwen3" => Some(Architecture::Qwen3),
        _ => None,
    }
}

/// GGUF's name for a tensor of a Hugging Face checkpoint; `None` for one it has no place for.
fn gguf_name(hf: &str) -> Option<String> {
    let fixed = match hf {
        "model.embed_tokens.weight" => Some("token_embd.weight"),
        "lm_head.weight" => Some("output.weight"),
        "model.norm.weight" => Some("output_norm.weight"),
        _ => None,
    };
    if let Some(name) = fixed {
        return Some(name.to_owned());
    }
    let rest = hf.strip_prefix("model.layers.")?;
    let (layer, rest) = rest.split_once('.')?;
    let layer: usize = layer.parse().ok()?;
    let (part, kind) = rest.rsplit_once('.')?;
    let part = match part {
        "input_layernorm" => "attn_norm",
        "self_attn.q_proj" => "attn_q",
        "self_attn.k_proj" => "attn_k",
        "self_attn.v_proj" => "attn_v",
        "self_attn.o_proj" => "attn_output",
        "self_attn.q_norm" => "attn_q_norm",
        "self_attn.k_norm" => "attn_k_norm",
        "post_attention_layernorm" => "ffn_norm",
        "mlp.gate_proj" => "ffn_gate",
        "mlp.up_proj" => "ffn_up",
        "mlp.down_proj" => "ffn_down",
        _ => return None,
    };
    matches!(kind, "weight" | "bias").then(|| format!("blk.{layer}.{part}.{kind}"))
}

/// The metadata a GGUF of this model would carry, under `arch`'s keys.
fn metadata(config: &HfConfig, arch: Architecture) -> HashMap<String, Value> {
    let key = |k: &str| format!("{}.{k}", arch.name());
    let u32v = |n: usize| Value::U32(n as u32);
    let mut md = HashMap::from([
        (
            "general.architecture".to_owned(),
            Value::String(arch.name().into()),
        ),
        (key("embedding_length"), u32v(config.hidden_size)),
        (key("block_count"), u32v(config.num_hidden_layers)),
        (
            key("attention.head_count"),
            u32v(config.num_attention_heads),
        ),
        (
            key("attention.head_count_kv"),
            u32v(
                config
                    .num_key_value_heads
                    .unwrap_or(config.num_attention_heads),
            ),
        ),
        (key("feed_forward_length"), u32v(config.intermediate_size)),
        (
            key("attention.layer_norm_rms_epsilon"),
            Value::F32(config.rms_norm_eps as f32),
        ),
    ]);
    if let Some(theta) = config.rope_theta {
        md.insert(key("rope.freq_base"), Value::F32(theta as f32));
    }
    if let Some(head_dim) = config.head_dim {
        md.insert(key("attention.key_length"), u32v(head_dim));
        md.insert(key("attention.value_length"), u32v(head_dim));
    }
    md
}

/// A safetensors checkpoint read by GGUF's names.
pub(crate) struct HfFolder {
    tensors: MmapedSafetensors,
    metadata: HashMap<String, Value>,
    /// GGUF name → the checkpoint's name.
    names: HashMap<String, String>,
    /// GGUF names of the matrices whose rows are permuted, with their head counts.
    permuted: HashMap<String, usize>,
}

impl HfFolder {
    /// Opens the checkpoint's files; [`Error::NotCovered`] for a model the engine does not run.
    pub(crate) fn open(files: &[PathBuf], config: &HfConfig) -> Result<(Self, Architecture)> {
        let Some(arch) = architecture(&config.model_type) else {
            return Err(Error::NotCovered(format!(
                "safetensors model_type {:?} (the engine runs llama, mistral, qwen2 and qwen3)",
                config.model_type
            )));
        };
        if config.rope_scaling {
            return Err(Error::NotCovered("scaled rotary embeddings".into()));
        }
        if config.mlp_bias || (arch != Architecture::Qwen2 && config.attention_bias) {
            return Err(Error::NotCovered(format!(
                "biases in {}'s {} layers",
                config.model_type,
                if config.mlp_bias {
                    "feed-forward"
                } else {
                    "attention"
                }
            )));
        }
        let heads = config.num_attention_heads.max(1);
        if let Some(width) = config.head_dim
            && arch == Architecture::Llama
            && width * heads != config.hidden_size
        {
            // The engine's Llama takes its heads as `hidden_size / heads` wide, as GGUF's does.
            return Err(Error::NotCovered(format!(
                "Llama heads {width} wide in a {}-wide model of {heads} heads",
                config.hidden_size
            )));
        }
        if files.is_empty() {
            return Err(Error::InvalidInput("no safetensors files".into()));
        }
        // SAFETY: the files are mapped read-only and copied out of at load; they are not expected
        // to change while mapped (a concurrent rewrite is a user error and yields wrong weights at
        // worst, as with any reader).
        let tensors = unsafe { MmapedSafetensors::multi(files) }?;
        let mut names = HashMap::new();
        for (hf, _) in tensors.tensors() {
            // Precomputed rotary tables some checkpoints carry; the engine computes its own.
            if hf.ends_with("rotary_emb.inv_freq") {
                continue;
            }
            let Some(gguf) = gguf_name(&hf) else {
                return Err(Error::NotCovered(format!(
                    "tensor {hf} has no place in the engine's {}",
                    arch.name()
                )));
            };
            names.insert(gguf, hf);
        }
        let kv_heads = config
            .num_key_value_heads
            .unwrap_or(config.num_attention_heads);
        let mut permuted = HashMap::new();
        if arch == Architecture::Llama {
            for layer in 0..config.num_hidden_layers {
                permuted.insert(
                    format!("blk.{layer}.attn_q.weight"),
                    config.num_attention_heads,
                );
                permuted.insert(format!("blk.{layer}.attn_k.weight"), kv_heads);
            }
        }
        let folder = Self {
            tensors,
            metadata: metadata(config, arch),
            names,
            permuted,
        };
        Ok((folder, arch))
    }

    fn hf_name(&self, name: &str) -> Result<&str> {
        self.names
            .get(name)
            .map(String::as_str)
            .ok_or_else(|| Error::Malformed(format!("tensor {name} is missing")))
    }
}

/// The kernels' format for a safetensors dtype, or its name.
fn format(dtype: DType) -> std::result::Result<WeightFormat, String> {
    match dtype {
        DType::F16 => Ok(WeightFormat::F16),
        DType::BF16 => Ok(WeightFormat::BF16),
        other => Err(format!("{other:?}")),
    }
}

/// Rows of `row_bytes` each, `heads` heads of them: in each head, row `2i + j` of the result is
/// row `j × half + i` of `bytes` (llama.cpp's converter's permutation for the interleaved
/// rotary embedding).
fn interleave_rotary_halves(bytes: &[u8], heads: usize, row_bytes: usize) -> Result<Vec<u8>> {
    let rows = bytes.len() / row_bytes;
    if heads == 0 || !rows.is_multiple_of(heads) || !(rows / heads).is_multiple_of(2) {
        return Err(Error::Malformed(format!(
            "{rows} rows do not split into {heads} heads of rotary pairs"
        )));
    }
    let (head_rows, half) = (rows / heads, rows / heads / 2);
    let mut out = Vec::with_capacity(bytes.len());
    for head in 0..heads {
        for i in 0..half {
            for j in 0..2 {
                let from = head * head_rows + j * half + i;
                out.extend_from_slice(&bytes[from * row_bytes..][..row_bytes]);
            }
        }
    }
    Ok(out)
}

impl TensorSource for HfFolder {
    fn metadata(&self, key: &str) -> Option<&Value> {
        self.metadata.get(key)
    }

    fn tensors(&self) -> Vec<TensorInfo> {
        self.names.keys().filter_map(|n| self.tensor(n)).collect()
    }

    fn tensor(&self, name: &str) -> Option<TensorInfo> {
        let view = self.tensors.get(self.names.get(name)?).ok()?;
        Some(TensorInfo {
            name: name.to_owned(),
            dims: view.shape().to_vec(),
            format: DType::try_from(view.dtype())
                .map_err(|e| e.to_string())
                .and_then(format),
        })
    }

    fn matrix_bytes(&mut self, name: &str, _format: WeightFormat) -> Result<Vec<u8>> {
        let view = self.tensors.get(self.hf_name(name)?)?;
        let bytes = view.data();
        match (self.permuted.get(name), view.shape()) {
            (Some(&heads), &[_, cols]) => interleave_rotary_halves(bytes, heads, 2 * cols),
            _ => Ok(bytes.to_vec()),
        }
    }

    fn values(&mut self, name: &str) -> Result<Vec<f32>> {
        Ok(self
            .tensors
            .load(self.hf_name(name)?, &Device::Cpu)?
            .to_dtype(DType::F32)?
            .flatten_all()?
            .to_vec1::<f32>()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_tensor_of_a_llama_layer_has_its_gguf_name() {
        let pairs = [
            ("model.embed_tokens.weight", "token_embd.weight"),
            ("lm_head.weight", "output.weight"),
            ("model.norm.weight", "output_norm.weight"),
            (
                "model.layers.3.input_layernorm.weight",
                "blk.3.attn_norm.weight",
            ),
            (
                "model.layers.3.self_attn.q_proj.weight",
                "blk.3.attn_q.weight",
            ),
            ("model.layers.3.self_attn.q_proj.bias", "blk.3.attn_q.bias"),
            (
                "model.layers.12.self_attn.o_proj.weight",
                "blk.12.attn_output.weight",
            ),
            (
                "model.layers.0.self_attn.k_norm.weight",
                "blk.0.attn_k_norm.weight",
            ),
            (
                "model.layers.0.post_attention_layernorm.weight",
                "blk.0.ffn_norm.weight",
            ),
            (
                "model.layers.0.mlp.down_proj.weight",
                "blk.0.ffn_down.weight",
            ),
        ];
        for (hf, gguf) in pairs {
            assert_eq!(gguf_name(hf).as_deref(), Some(gguf), "{hf}");
        }
        for hf in [
            "model.layers.x.mlp.up_proj.weight",
            "model.layers.0.mlp.experts.0.weight",
            "model.layers.0.mlp.up_proj.scales",
            "vision_tower.weight",
        ] {
            assert_eq!(gguf_name(hf), None, "{hf}");
        }
    }

    #[test]
    fn rotary_halves_interleave_within_each_head() {
        // Two heads of four one-byte rows: per head, rows [a0 a1 b0 b1] → [a0 b0 a1 b1].
        let rows = [0u8, 1, 2, 3, 10, 11, 12, 13];
        let out = interleave_rotary_halves(&rows, 2, 1).expect("permutes");
        assert_eq!(out, [0, 2, 1, 3, 10, 12, 11, 13]);
        assert!(interleave_rotary_halves(&rows, 3, 1).is_err());
    }
}
