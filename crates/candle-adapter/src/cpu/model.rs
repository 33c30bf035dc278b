//! The Llama-family transformer (Llama, Mistral, TinyLlama: GGUF architecture `llama`) on the
//! CPU kernels: the same arithmetic as candle's `quantized_llama` — RMS norm, interleaved RoPE as
//! GGUF stores Q and K, grouped-query attention, SwiGLU — with Q/K/V and gate/up each fused into
//! one matrix, a preallocated f32 KV cache, and no tensor allocation per operation.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::sync::Arc;

use candle_core::quantized::{GgmlDType, gguf_file};
use candle_core::{Device, Result, bail};
use rayon::prelude::*;

use super::kernels::{
    BLOCK, GgufRows, HeadCache, Isa, QActs, QMatrix, WeightFormat, attend, matmul, quantize_q8_0,
};

/// Why a model stays on candle's own path.
#[derive(Debug)]
pub struct NotCovered(pub String);

struct Layer {
    attn_norm: Vec<f32>,
    qkv: QMatrix,
    wo: QMatrix,
    ffn_norm: Vec<f32>,
    gate_up: QMatrix,
    down: QMatrix,
}

pub struct Llama {
    isa: Isa,
    dim: usize,
    heads: usize,
    kv_heads: usize,
    head_dim: usize,
    ffn: usize,
    eps: f32,
    inv_freq: Vec<f32>,
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
    pub fn len(&self) -> usize {
        self.len
    }
}

fn weight_format(dtype: GgmlDType) -> Option<WeightFormat> {
    match dtype {
        GgmlDType::Q4_0 => Some(WeightFormat::Q4_0),
        GgmlDType::Q8_0 => Some(WeightFormat::Q8_0),
        _ => None,
    }
}

/// The one matrix that may come in a type the kernels do not read: llama.cpp's `Q4_0` files keep
/// the output projection in Q6_K. It is requantized to Q8_0 at load (and the engine says so).
const REQUANTIZABLE: &str = "output.weight";

struct Reader<'a> {
    content: &'a gguf_file::Content,
    file: &'a mut File,
    /// What was requantized, e.g. `output.weight Q6K → Q8_0`.
    requantized: Vec<String>,
}

impl<'a> Reader<'a> {
    fn info(&self, name: &str) -> Result<&'a gguf_file::TensorInfo> {
        match self.content.tensor_infos.get(name) {
            Some(info) => Ok(info),
            None => bail!("tensor {name} is missing"),
        }
    }

    /// Whether every matrix is in a format the kernels read.
    fn uncovered(&self) -> Option<String> {
        let mut names: Vec<_> = self.content.tensor_infos.iter().collect();
        names.sort_by_key(|(name, _)| name.as_str());
        names.into_iter().find_map(|(name, info)| {
            (info.shape.rank() == 2
                && name != REQUANTIZABLE
                && weight_format(info.ggml_dtype).is_none())
            .then(|| format!("{name} is {:?}", info.ggml_dtype))
        })
    }

    fn matrix(&mut self, name: &str, rows: usize, cols: usize) -> Result<GgufRows> {
        let info = self.info(name)?;
        let dims = info.shape.dims().to_vec();
        if dims != [rows, cols] {
            bail!("tensor {name} has shape {dims:?}, expected [{rows}, {cols}]");
        }
        let Some(format) = weight_format(info.ggml_dtype) else {
            if name != REQUANTIZABLE {
                bail!("tensor {name} is {:?}", info.ggml_dtype);
            }
            let values = self.vector(name, rows * cols)?;
            self.requantized
                .push(format!("{name} {:?} → Q8_0", info.ggml_dtype));
            return GgufRows::new(WeightFormat::Q8_0, rows, cols, quantize_q8_0(&values))
                .map_err(candle_core::Error::Msg);
        };
        let len = rows * cols / BLOCK * format.block_bytes();
        let start = self.content.tensor_data_offset + info.offset;
        let mut bytes = vec![0u8; len];
        self.file.seek(SeekFrom::Start(start))?;
        self.file.read_exact(&mut bytes)?;
        GgufRows::new(format, rows, cols, bytes).map_err(candle_core::Error::Msg)
    }

    fn vector(&mut self, name: &str, len: usize) -> Result<Vec<f32>> {
        let info = self.info(name)?;
        let t = info
            .read(self.file, self.content.tensor_data_offset, &Device::Cpu)?
            .dequantize(&Device::Cpu)?
            .flatten_all()?
            .to_vec1::<f32>()?;
        if t.len() != len {
            bail!("tensor {name} has {} values, expected {len}", t.len());
        }
        Ok(t)
    }
}

impl Llama {
    /// Reads a GGUF `llama` model, or says why the kernels do not cover it.
    pub fn from_gguf(
        content: &gguf_file::Content,
        file: &mut File,
        isa: Isa,
    ) -> Result<std::result::Result<Self, NotCovered>> {
        let md = |key: &str| match content.metadata.get(key) {
            Some(v) => Ok(v),
            None => bail!("metadata {key} is missing"),
        };
        let mut reader = Reader {
            content,
            file,
            requantized: Vec::new(),
        };
        if let Some(why) = reader.uncovered() {
            return Ok(Err(NotCovered(why)));
        }
        let dim = md("llama.embedding_length")?.to_u32()? as usize;
        let layers = md("llama.block_count")?.to_u32()? as usize;
        let heads = md("llama.attention.head_count")?.to_u32()? as usize;
        let kv_heads = match content.metadata.get("llama.attention.head_count_kv") {
            Some(v) => v.to_u32()? as usize,
            None => heads,
        };
        let ffn = md("llama.feed_forward_length")?.to_u32()? as usize;
        let eps = md("llama.attention.layer_norm_rms_epsilon")?.to_f32()?;
        let base = match content.metadata.get("llama.rope.freq_base") {
            Some(v) => v.to_f32()?,
            None => 10_000.0,
        };
        if heads == 0
            || kv_heads == 0
            || !dim.is_multiple_of(heads)
            || !heads.is_multiple_of(kv_heads)
        {
            bail!("inconsistent attention shape: {dim} wide, {heads} heads, {kv_heads} KV heads");
        }
        let head_dim = dim / heads;
        let rope_dim = match content.metadata.get("llama.rope.dimension_count") {
            Some(v) => v.to_u32()? as usize,
            None => head_dim,
        };
        if rope_dim != head_dim {
            return Ok(Err(NotCovered(format!(
                "partial rotary embedding ({rope_dim} of {head_dim} dimensions)"
            ))));
        }
        if content
            .tensor_infos
            .contains_key("blk.0.ffn_gate_inp.weight")
        {
            return Ok(Err(NotCovered("mixture-of-experts layers".into())));
        }
        let vocab = reader.info("token_embd.weight")?.shape.dims()[0];
        let kv_dim = kv_heads * head_dim;
        let embed = Arc::new(QMatrix::pack(reader.matrix(
            "token_embd.weight",
            vocab,
            dim,
        )?));
        let output = if content.tensor_infos.contains_key("output.weight") {
            Arc::new(QMatrix::pack(reader.matrix("output.weight", vocab, dim)?))
        } else {
            Arc::clone(&embed) // tied embeddings
        };
        let mut blocks = Vec::with_capacity(layers);
        for i in 0..layers {
            let name = |t: &str| format!("blk.{i}.{t}.weight");
            // Fused matrices need one format; a file that mixes them stays on candle.
            let qkv = GgufRows::stack(vec![
                reader.matrix(&name("attn_q"), dim, dim)?,
                reader.matrix(&name("attn_k"), kv_dim, dim)?,
                reader.matrix(&name("attn_v"), kv_dim, dim)?,
            ]);
            let gate_up = GgufRows::stack(vec![
                reader.matrix(&name("ffn_gate"), ffn, dim)?,
                reader.matrix(&name("ffn_up"), ffn, dim)?,
            ]);
            let (qkv, gate_up) = match (qkv, gate_up) {
                (Ok(qkv), Ok(gate_up)) => (QMatrix::pack(qkv), QMatrix::pack(gate_up)),
                (Err(why), _) | (_, Err(why)) => {
                    return Ok(Err(NotCovered(format!("layer {i}: {why}"))));
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
        // As candle computes them: f32 powers, then f32 angles.
        let inv_freq = (0..head_dim)
            .step_by(2)
            .map(|i| 1.0 / base.powf(i as f32 / head_dim as f32))
            .collect();
        Ok(Ok(Self {
            isa,
            dim,
            heads,
            kv_heads,
            head_dim,
            ffn,
            eps,
            inv_freq,
            embed,
            layers: blocks,
            norm: reader.vector("output_norm.weight", dim)?,
            output,
            requantized: reader.requantized,
        }))
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

    /// An empty cache with room for `capacity` positions (it grows past that if needed).
    pub fn cache(&self, capacity: usize) -> KvCache {
        let kv_dim = self.kv_heads * self.head_dim;
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
        let (dim, t) = (self.dim, tokens.len());
        if t == 0 {
            bail!("nothing to run: no tokens");
        }
        let mut x = vec![0f32; t * dim];
        for (&token, row) in tokens.iter().zip(x.chunks_exact_mut(dim)) {
            if token as usize >= self.vocab() {
                bail!(
                    "token {token} is outside the vocabulary of {}",
                    self.vocab()
                );
            }
            self.embed.dequantize_row(token as usize, row);
        }
        let kv_dim = self.kv_heads * self.head_dim;
        let qkv_width = dim + 2 * kv_dim;
        let start = cache.len;
        for (l, layer) in self.layers.iter().enumerate() {
            // Attention.
            let acts = QActs::quantize(&self.rms_norm(&x, &layer.attn_norm), dim);
            let mut qkv = vec![0f32; t * qkv_width];
            matmul(self.isa, &layer.qkv, &acts, &mut qkv);
            for (i, row) in qkv.chunks_exact_mut(qkv_width).enumerate() {
                let (q, kv) = row.split_at_mut(dim);
                let (k, v) = kv.split_at_mut(kv_dim);
                self.rope(q, start + i);
                self.rope(k, start + i);
                cache.keys[l].extend_from_slice(k);
                cache.values[l].extend_from_slice(v);
            }
            let attended = self.attention(&qkv, &cache.keys[l], &cache.values[l], start, t);
            let mut out = vec![0f32; t * dim];
            matmul(
                self.isa,
                &layer.wo,
                &QActs::quantize(&attended, dim),
                &mut out,
            );
            add(&mut x, &out);
            // Feed-forward (SwiGLU).
            let acts = QActs::quantize(&self.rms_norm(&x, &layer.ffn_norm), dim);
            let mut gate_up = vec![0f32; t * 2 * self.ffn];
            matmul(self.isa, &layer.gate_up, &acts, &mut gate_up);
            let hidden: Vec<f32> = gate_up
                .chunks_exact(2 * self.ffn)
                .flat_map(|row| {
                    let (gate, up) = row.split_at(self.ffn);
                    gate.iter().zip(up).map(|(g, u)| g / (1.0 + (-g).exp()) * u)
                })
                .collect();
            matmul(
                self.isa,
                &layer.down,
                &QActs::quantize(&hidden, self.ffn),
                &mut out,
            );
            add(&mut x, &out);
        }
        cache.len += t;
        let last = self.rms_norm(&x[(t - 1) * dim..], &self.norm);
        let mut logits = vec![0f32; self.vocab()];
        matmul(
            self.isa,
            &self.output,
            &QActs::quantize(&last, dim),
            &mut logits,
        );
        Ok(logits)
    }

    fn rms_norm(&self, x: &[f32], weight: &[f32]) -> Vec<f32> {
        let mut out = Vec::with_capacity(x.len());
        for row in x.chunks_exact(self.dim) {
            // Divided, not multiplied by the inverse: candle's rounding, so 8-bit activation
            // quantization downstream sees the same values.
            let rms = (row.iter().map(|v| v * v).sum::<f32>() / self.dim as f32 + self.eps).sqrt();
            out.extend(row.iter().zip(weight).map(|(v, w)| v / rms * w));
        }
        out
    }

    /// Rotates adjacent pairs, head by head (GGUF's Q/K layout).
    fn rope(&self, x: &mut [f32], position: usize) {
        let angles: Vec<(f32, f32)> = self
            .inv_freq
            .iter()
            .map(|f| (position as f32 * f).sin_cos())
            .collect();
        for head in x.chunks_exact_mut(self.head_dim) {
            for (pair, (sin, cos)) in head.chunks_exact_mut(2).zip(&angles) {
                let (a, b) = (pair[0], pair[1]);
                pair[0] = a * cos - b * sin;
                pair[1] = a * sin + b * cos;
            }
        }
    }

    /// Causal attention of the `t` new queries (inside `qkv` rows) over the cache; heads in
    /// parallel. Returns `[t][dim]`.
    fn attention(
        &self,
        qkv: &[f32],
        keys: &[f32],
        values: &[f32],
        start: usize,
        t: usize,
    ) -> Vec<f32> {
        let (hd, dim) = (self.head_dim, self.dim);
        let kv_dim = self.kv_heads * hd;
        let qkv_width = dim + 2 * kv_dim;
        let group = self.heads / self.kv_heads;
        let scale = 1.0 / (hd as f32).sqrt();
        let per_head: Vec<Vec<f32>> = (0..self.heads)
            .into_par_iter()
            .map(|h| {
                let head = HeadCache {
                    keys,
                    values,
                    kv_dim,
                    offset: (h / group) * hd,
                };
                let mut out = vec![0f32; t * hd];
                let mut scores = Vec::with_capacity(start + t);
                for (i, o) in out.chunks_exact_mut(hd).enumerate() {
                    let q = &qkv[i * qkv_width + h * hd..][..hd];
                    attend(q, head, start + i + 1, scale, &mut scores, o);
                }
                out
            })
            .collect();
        let mut out = vec![0f32; t * dim];
        for (h, head) in per_head.iter().enumerate() {
            for (i, values) in head.chunks_exact(hd).enumerate() {
                out[i * dim + h * hd..][..hd].copy_from_slice(values);
            }
        }
        out
    }
}

fn add(x: &mut [f32], y: &[f32]) {
    for (a, b) in x.iter_mut().zip(y) {
        *a += b;
    }
}
