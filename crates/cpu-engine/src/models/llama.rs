//! The Llama-family transformer (Llama, Mistral, TinyLlama: GGUF architecture `llama`) on the
//! CPU kernels: the same arithmetic as candle's `quantized_llama` — RMS norm, interleaved RoPE as
//! GGUF stores Q and K, grouped-query attention, SwiGLU — with Q/K/V and gate/up each fused into
//! one matrix where their formats agree (side by side where they differ, as in Q4_K_M files), a
//! preallocated f32 KV cache, and no tensor allocation per operation.

use std::fs::File;
use std::sync::Arc;

use candle_core::quantized::gguf_file;

use crate::attention::{Heads, causal_attention};
use crate::error::{Error, Result};
use crate::gguf::Reader;
use crate::isa::Isa;
use crate::layers::{Rope, add, rms_norm, swiglu};
use crate::matmul::{Stacked, matmul};
use crate::packing::QMatrix;
use crate::quant::{QActs, WeightFormat};

struct Layer {
    attn_norm: Vec<f32>,
    qkv: Stacked,
    wo: QMatrix,
    ffn_norm: Vec<f32>,
    gate_up: Stacked,
    down: QMatrix,
}

/// A Llama-family model loaded for the kernels of one instruction set.
pub struct Llama {
    isa: Isa,
    heads: Heads,
    ffn: usize,
    eps: f32,
    rope: Rope,
    embed: Arc<QMatrix>,
    layers: Vec<Layer>,
    norm: Vec<f32>,
    /// The embedding table itself where the model ties them (shared, not copied).
    output: Arc<QMatrix>,
    requantized: Vec<String>,
}

/// One request's keys and values, per layer: `[position][kv_heads × head_dim]`.
pub struct KvCache {
    keys: Vec<Vec<f32>>,
    values: Vec<Vec<f32>>,
    len: usize,
}

impl KvCache {
    /// Positions held.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl Llama {
    /// Reads a GGUF `llama` model; [`Error::NotCovered`] says why the kernels do not run it.
    pub fn from_gguf(content: &gguf_file::Content, file: &mut File, isa: Isa) -> Result<Self> {
        if !isa.is_supported() {
            return Err(Error::InvalidInput(format!(
                "this processor lacks {} for the kernels asked for",
                isa.name()
            )));
        }
        let mut reader = Reader::new(content, file);
        if let Some(why) = reader.uncovered() {
            return Err(Error::NotCovered(why));
        }
        let dim = reader.metadata("llama.embedding_length")?.to_u32()? as usize;
        let layers = reader.metadata("llama.block_count")?.to_u32()? as usize;
        let heads = reader.metadata("llama.attention.head_count")?.to_u32()? as usize;
        let kv_heads = reader.u32_or("llama.attention.head_count_kv", heads as u32)? as usize;
        let ffn = reader.metadata("llama.feed_forward_length")?.to_u32()? as usize;
        let eps = reader
            .metadata("llama.attention.layer_norm_rms_epsilon")?
            .to_f32()?;
        let base = match content.metadata.get("llama.rope.freq_base") {
            Some(v) => v.to_f32()?,
            None => 10_000.0,
        };
        if heads == 0
            || kv_heads == 0
            || !dim.is_multiple_of(heads)
            || !heads.is_multiple_of(kv_heads)
        {
            return Err(Error::Malformed(format!(
                "inconsistent attention shape: {dim} wide, {heads} heads, {kv_heads} KV heads"
            )));
        }
        let head_dim = dim / heads;
        let rope_dim = reader.u32_or("llama.rope.dimension_count", head_dim as u32)? as usize;
        if rope_dim != head_dim {
            return Err(Error::NotCovered(format!(
                "partial rotary embedding ({rope_dim} of {head_dim} dimensions)"
            )));
        }
        if reader.has("blk.0.ffn_gate_inp.weight") {
            return Err(Error::NotCovered("mixture-of-experts layers".into()));
        }
        let vocab = reader.info("token_embd.weight")?.shape.dims()[0];
        let kv_dim = kv_heads * head_dim;
        let embed = Arc::new(QMatrix::pack(reader.matrix(
            "token_embd.weight",
            vocab,
            dim,
        )?));
        let output = if reader.has("output.weight") {
            Arc::new(QMatrix::pack(reader.matrix("output.weight", vocab, dim)?))
        } else {
            Arc::clone(&embed) // tied embeddings
        };
        let mut blocks = Vec::with_capacity(layers);
        for i in 0..layers {
            let name = |t: &str| format!("blk.{i}.{t}.weight");
            // Fused where the formats agree, side by side where they differ.
            let qkv = Stacked::new(vec![
                reader.matrix(&name("attn_q"), dim, dim)?,
                reader.matrix(&name("attn_k"), kv_dim, dim)?,
                reader.matrix(&name("attn_v"), kv_dim, dim)?,
            ]);
            let gate_up = Stacked::new(vec![
                reader.matrix(&name("ffn_gate"), ffn, dim)?,
                reader.matrix(&name("ffn_up"), ffn, dim)?,
            ]);
            let (qkv, gate_up) = match (qkv, gate_up) {
                (Ok(qkv), Ok(gate_up)) => (qkv, gate_up),
                (Err(why), _) | (_, Err(why)) => {
                    return Err(Error::NotCovered(format!("layer {i}: {why}")));
                }
            };
            blocks.push(Layer {
                attn_norm: reader.vector(&name("attn_norm"), dim)?,
                qkv,
                wo: QMatrix::pack(reader.matrix(&name("attn_output"), dim, dim)?),
                ffn_norm: reader.vector(&name("ffn_norm"), dim)?,
                gate_up,
                down: QMatrix::pack(reader.matrix(&name("ffn_down"), dim, ffn)?),
            });
        }
        let norm = reader.vector("output_norm.weight", dim)?;
        Ok(Self {
            isa,
            heads: Heads {
                heads,
                kv_heads,
                head_dim,
            },
            ffn,
            eps,
            rope: Rope::new(head_dim, base),
            embed,
            layers: blocks,
            norm,
            output,
            requantized: reader.requantized,
        })
    }

    pub fn isa(&self) -> Isa {
        self.isa
    }

    /// The matrices requantized at load, e.g. `output.weight Q6K → Q8_0`.
    pub fn requantized(&self) -> &[String] {
        &self.requantized
    }

    pub fn vocab(&self) -> usize {
        self.embed.rows()
    }

    pub fn weight_format(&self) -> WeightFormat {
        self.layers
            .first()
            .map_or(self.embed.format(), |l| l.qkv.format())
    }

    /// What runs the model, for logs and reports: e.g. `rigger-cpu Q4_0 avx512-vnni`, with
    /// `(requantized: output.weight Q6K → Q8_0)` where a matrix was.
    pub fn describe(&self) -> String {
        let mut text = format!("rigger-cpu {:?} {}", self.weight_format(), self.isa.name());
        if !self.requantized.is_empty() {
            text += &format!(" (requantized: {})", self.requantized.join(", "));
        }
        text
    }

    /// An empty cache with room for `capacity` positions (it grows past that if needed).
    pub fn cache(&self, capacity: usize) -> KvCache {
        let kv_dim = self.heads.kv_dim();
        let per_layer = || {
            (0..self.layers.len())
                .map(|_| Vec::with_capacity(capacity * kv_dim))
                .collect()
        };
        KvCache {
            keys: per_layer(),
            values: per_layer(),
            len: 0,
        }
    }

    /// Runs `tokens` at the cache's next positions and returns the logits of the last one.
    pub fn forward(&self, cache: &mut KvCache, tokens: &[u32]) -> Result<Vec<f32>> {
        let (dim, t) = (self.heads.dim(), tokens.len());
        if t == 0 {
            return Err(Error::InvalidInput("nothing to run: no tokens".into()));
        }
        let mut x = vec![0f32; t * dim];
        for (&token, row) in tokens.iter().zip(x.chunks_exact_mut(dim)) {
            if token as usize >= self.vocab() {
                return Err(Error::InvalidInput(format!(
                    "token {token} is outside the vocabulary of {}",
                    self.vocab()
                )));
            }
            self.embed.dequantize_row(token as usize, row);
        }
        let kv_dim = self.heads.kv_dim();
        let qkv_width = dim + 2 * kv_dim;
        let start = cache.len;
        for (l, layer) in self.layers.iter().enumerate() {
            // Attention.
            let acts = QActs::quantize(&rms_norm(&x, &layer.attn_norm, dim, self.eps), dim);
            let mut qkv = vec![0f32; t * qkv_width];
            layer.qkv.matmul(self.isa, &acts, &mut qkv);
            for (i, row) in qkv.chunks_exact_mut(qkv_width).enumerate() {
                let (q, kv) = row.split_at_mut(dim);
                let (k, v) = kv.split_at_mut(kv_dim);
                self.rope.apply(q, start + i);
                self.rope.apply(k, start + i);
                cache.keys[l].extend_from_slice(k);
                cache.values[l].extend_from_slice(v);
            }
            let attended =
                causal_attention(self.heads, &qkv, &cache.keys[l], &cache.values[l], start, t);
            let mut out = vec![0f32; t * dim];
            matmul(
                self.isa,
                &layer.wo,
                &QActs::quantize(&attended, dim),
                &mut out,
            );
            add(&mut x, &out);
            // Feed-forward (SwiGLU).
            let acts = QActs::quantize(&rms_norm(&x, &layer.ffn_norm, dim, self.eps), dim);
            let mut gate_up = vec![0f32; t * 2 * self.ffn];
            layer.gate_up.matmul(self.isa, &acts, &mut gate_up);
            let hidden = swiglu(&gate_up, self.ffn);
            matmul(
                self.isa,
                &layer.down,
                &QActs::quantize(&hidden, self.ffn),
                &mut out,
            );
            add(&mut x, &out);
        }
        cache.len += t;
        let last = rms_norm(&x[(t - 1) * dim..], &self.norm, dim, self.eps);
        let mut logits = vec![0f32; self.vocab()];
        matmul(
            self.isa,
            &self.output,
            &QActs::quantize(&last, dim),
            &mut logits,
        );
        Ok(logits)
    }
}
