//! The decoder-only transformer the architectures share: embedding, blocks of (norm, attention,
//! norm, gated feed-forward) with residual connections, a final norm and the output projection.
//! Each architecture's file reads its GGUF tensors into a [`Model`] and switches on the parts it
//! has (Q/K/V biases, per-head Q/K norms, post-norms, an embedding scale, GELU gating, sliding
//! windows); this file runs them, with Q/K/V and gate/up each fused into one matrix, a
//! preallocated f32 KV cache, and no tensor allocation per operation.

use std::fs::File;
use std::path::PathBuf;
use std::sync::Arc;

use candle_core::quantized::gguf_file;

use crate::attention::{Heads, causal_attention};
use crate::error::{Error, Result};
use crate::gguf::GgufFile;
use crate::isa::Isa;
use crate::layers::{
    Rope, add, add_bias, add_then_rms_norm, each_row, gelu_tanh_gate, rms_norm, rms_norm_row,
    swiglu,
};
use crate::matmul::{Stacked, product};
use crate::packing::QMatrix;
use crate::parallel::extended;
use crate::quant::{GgufRows, QActs, RowSink, WeightFormat};
use crate::reader::Reader;
use crate::safetensors::{HfConfig, HfFolder};
use crate::steps::{Step, StepClock};

/// The GGUF architectures (`general.architecture`) the engine runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Architecture {
    /// Llama, Mistral, TinyLlama, SmolLM.
    Llama,
    /// Qwen2, Qwen2.5.
    Qwen2,
    /// Qwen3 (dense).
    Qwen3,
    /// Phi-3.
    Phi3,
    /// Gemma 3 (text).
    Gemma3,
}

impl Architecture {
    pub const ALL: [Architecture; 5] = [
        Architecture::Llama,
        Architecture::Qwen2,
        Architecture::Qwen3,
        Architecture::Phi3,
        Architecture::Gemma3,
    ];

    /// The name GGUF's `general.architecture` gives it.
    pub const fn name(self) -> &'static str {
        match self {
            Architecture::Llama => "llama",
            Architecture::Qwen2 => "qwen2",
            Architecture::Qwen3 => "qwen3",
            Architecture::Phi3 => "phi3",
            Architecture::Gemma3 => "gemma3",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.name() == name)
    }
}

/// The feed-forward's gate activation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Gate {
    /// silu(gate) × up.
    Silu,
    /// gelu_tanh(gate) × up (Gemma).
    GeluTanh,
}

/// Per-head RMS norms of queries and keys, applied before the rotary embedding (Qwen3, Gemma 3).
pub(crate) struct QkNorm {
    pub(crate) q: Vec<f32>,
    pub(crate) k: Vec<f32>,
}

/// One transformer block's weights; the optional parts are the ones some architectures have.
pub(crate) struct Block {
    pub(crate) attn_norm: Vec<f32>,
    /// Q, K and V stacked: `q_dim + 2 × kv_dim` rows.
    pub(crate) qkv: Stacked,
    /// `[q | k | v]` biases (Qwen2).
    pub(crate) qkv_bias: Option<Vec<f32>>,
    pub(crate) qk_norm: Option<QkNorm>,
    pub(crate) rope: Rope,
    /// Sliding-window attention: positions each query sees, itself included.
    pub(crate) window: Option<usize>,
    pub(crate) wo: QMatrix,
    /// Norm of the attention's output before the residual add (Gemma).
    pub(crate) post_attn_norm: Option<Vec<f32>>,
    pub(crate) ffn_norm: Vec<f32>,
    /// Gate and up stacked: `2 × ffn` rows.
    pub(crate) gate_up: Stacked,
    pub(crate) down: QMatrix,
    /// Norm of the feed-forward's output before the residual add (Gemma).
    pub(crate) post_ffn_norm: Option<Vec<f32>>,
}

/// The shape and scalars a GGUF's metadata gives every architecture.
pub(crate) struct Hyper {
    pub(crate) dim: usize,
    pub(crate) layers: usize,
    pub(crate) heads: Heads,
    pub(crate) ffn: usize,
    pub(crate) eps: f32,
    /// `{arch}.rope.freq_base`, if the file gives it.
    pub(crate) rope_base: Option<f32>,
    pub(crate) vocab: usize,
}

impl Hyper {
    /// Reads `{arch}.*` metadata; the head width is `attention.key_length` where `key_length`
    /// says the architecture may give it, `dim / heads` otherwise.
    pub(crate) fn read(reader: &Reader<'_>, arch: Architecture, key_length: bool) -> Result<Self> {
        let key = |k: &str| format!("{}.{k}", arch.name());
        let dim = reader.metadata(&key("embedding_length"))?.to_u32()? as usize;
        let layers = reader.metadata(&key("block_count"))?.to_u32()? as usize;
        let heads = reader.metadata(&key("attention.head_count"))?.to_u32()? as usize;
        let kv_heads = reader.u32_or(&key("attention.head_count_kv"), heads as u32)? as usize;
        let ffn = reader.metadata(&key("feed_forward_length"))?.to_u32()? as usize;
        let eps = reader
            .metadata(&key("attention.layer_norm_rms_epsilon"))?
            .to_f32()?;
        let rope_base = match reader.get(&key("rope.freq_base")) {
            Some(v) => Some(v.to_f32()?),
            None => None,
        };
        if heads == 0 || kv_heads == 0 || !heads.is_multiple_of(kv_heads) {
            return Err(Error::Malformed(format!(
                "inconsistent attention shape: {heads} heads, {kv_heads} KV heads"
            )));
        }
        let given = match key_length {
            true => reader.get(&key("attention.key_length")),
            false => None,
        };
        let head_dim = match given {
            Some(v) => v.to_u32()? as usize,
            None if dim.is_multiple_of(heads) => dim / heads,
            None => {
                return Err(Error::Malformed(format!(
                    "inconsistent attention shape: {dim} wide, {heads} heads"
                )));
            }
        };
        if head_dim == 0 || !head_dim.is_multiple_of(2) {
            return Err(Error::Malformed(format!("a head {head_dim} wide")));
        }
        if key_length {
            let value_length = reader.u32_or(&key("attention.value_length"), head_dim as u32)?;
            if value_length as usize != head_dim {
                return Err(Error::NotCovered(format!(
                    "values {value_length} wide with keys {head_dim} wide"
                )));
            }
        }
        let rope_dim = reader.u32_or(&key("rope.dimension_count"), head_dim as u32)? as usize;
        if rope_dim != head_dim {
            return Err(Error::NotCovered(format!(
                "partial rotary embedding ({rope_dim} of {head_dim} dimensions)"
            )));
        }
        if reader.has("blk.0.ffn_gate_inp.weight") {
            return Err(Error::NotCovered("mixture-of-experts layers".into()));
        }
        let vocab = match reader.dims("token_embd.weight")?[..] {
            [rows, _] => rows,
            ref dims => {
                return Err(Error::Malformed(format!(
                    "token_embd.weight has shape {dims:?}"
                )));
            }
        };
        Ok(Self {
            dim,
            layers,
            heads: Heads {
                heads,
                kv_heads,
                head_dim,
            },
            ffn,
            eps,
            rope_base,
            vocab,
        })
    }

    /// The embedding table and the output projection: `output.weight`, or the table itself
    /// where the model ties them (shared, not copied).
    pub(crate) fn embeddings(
        &self,
        reader: &mut Reader<'_>,
    ) -> Result<(Arc<QMatrix>, Arc<QMatrix>)> {
        let embed = Arc::new(QMatrix::pack(reader.matrix(
            "token_embd.weight",
            self.vocab,
            self.dim,
        )?));
        let output = if reader.has("output.weight") {
            Arc::new(QMatrix::pack(reader.matrix(
                "output.weight",
                self.vocab,
                self.dim,
            )?))
        } else {
            Arc::clone(&embed)
        };
        Ok((embed, output))
    }

    /// Layer `i`'s `attn_q`, `attn_k` and `attn_v`, stacked.
    pub(crate) fn qkv(&self, reader: &mut Reader<'_>, i: usize) -> Result<Stacked> {
        let (q_dim, kv_dim) = (self.heads.dim(), self.heads.kv_dim());
        let name = |t: &str| format!("blk.{i}.{t}.weight");
        fused(
            i,
            vec![
                reader.matrix(&name("attn_q"), q_dim, self.dim)?,
                reader.matrix(&name("attn_k"), kv_dim, self.dim)?,
                reader.matrix(&name("attn_v"), kv_dim, self.dim)?,
            ],
        )
    }

    /// Layer `i`'s `ffn_gate` and `ffn_up`, stacked.
    pub(crate) fn gate_up(&self, reader: &mut Reader<'_>, i: usize) -> Result<Stacked> {
        let name = |t: &str| format!("blk.{i}.{t}.weight");
        fused(
            i,
            vec![
                reader.matrix(&name("ffn_gate"), self.ffn, self.dim)?,
                reader.matrix(&name("ffn_up"), self.ffn, self.dim)?,
            ],
        )
    }

    /// Layer `i`'s `attn_output`.
    pub(crate) fn wo(&self, reader: &mut Reader<'_>, i: usize) -> Result<QMatrix> {
        let name = format!("blk.{i}.attn_output.weight");
        Ok(QMatrix::pack(reader.matrix(
            &name,
            self.dim,
            self.heads.dim(),
        )?))
    }

    /// Layer `i`'s `ffn_down`.
    pub(crate) fn down(&self, reader: &mut Reader<'_>, i: usize) -> Result<QMatrix> {
        let name = format!("blk.{i}.ffn_down.weight");
        Ok(QMatrix::pack(reader.matrix(&name, self.dim, self.ffn)?))
    }

    /// Layer `i`'s norm `t` (e.g. `attn_norm`), `dim` wide.
    pub(crate) fn norm(&self, reader: &mut Reader<'_>, i: usize, t: &str) -> Result<Vec<f32>> {
        reader.vector(&format!("blk.{i}.{t}.weight"), self.dim)
    }

    /// Layer `i`'s per-head Q and K norms.
    pub(crate) fn qk_norm(&self, reader: &mut Reader<'_>, i: usize) -> Result<QkNorm> {
        let hd = self.heads.head_dim;
        Ok(QkNorm {
            q: reader.vector(&format!("blk.{i}.attn_q_norm.weight"), hd)?,
            k: reader.vector(&format!("blk.{i}.attn_k_norm.weight"), hd)?,
        })
    }
}

impl Hyper {
    /// The model of `layers`, with the final norm read and no embedding scale or logit
    /// soft-capping (the architectures that have them set them after).
    #[allow(clippy::too_many_arguments)] // the parts of one model, each said by name
    pub(crate) fn finish(
        &self,
        arch: Architecture,
        isa: Isa,
        gate: Gate,
        mut reader: Reader<'_>,
        (embed, output): (Arc<QMatrix>, Arc<QMatrix>),
        layers: Vec<Block>,
    ) -> Result<Model> {
        Ok(Model {
            arch,
            isa,
            dim: self.dim,
            heads: self.heads,
            ffn: self.ffn,
            eps: self.eps,
            gate,
            embed_scale: None,
            logit_softcap: None,
            embed,
            layers,
            norm: reader.vector("output_norm.weight", self.dim)?,
            output,
            requantized: reader.requantized,
        })
    }
}

/// Matrices that run as one product over the same input: fused where their formats agree, side
/// by side where they differ (Q4_K_M files keep some layers' `attn_v` in Q6_K).
pub(crate) fn fused(layer: usize, parts: Vec<GgufRows>) -> Result<Stacked> {
    Stacked::new(parts).map_err(|why| Error::NotCovered(format!("layer {layer}: {why}")))
}

/// A model's tensors opened for the kernels of `isa`: refuses a processor without them and a
/// model with matrices in formats the kernels do not read.
pub(crate) fn open(reader: Reader<'_>, isa: Isa) -> Result<Reader<'_>> {
    if !isa.is_supported() {
        return Err(Error::InvalidInput(format!(
            "this processor lacks {} for the kernels asked for",
            isa.name()
        )));
    }
    if let Some(why) = reader.uncovered() {
        return Err(Error::NotCovered(why));
    }
    Ok(reader)
}

fn load(arch: Architecture, reader: Reader<'_>, isa: Isa) -> Result<Model> {
    match arch {
        Architecture::Llama => super::llama::load(reader, isa),
        Architecture::Qwen2 => super::qwen2::load(reader, isa),
        Architecture::Qwen3 => super::qwen3::load(reader, isa),
        Architecture::Phi3 => super::phi3::load(reader, isa),
        Architecture::Gemma3 => super::gemma3::load(reader, isa),
    }
}

/// A model loaded for the kernels of one instruction set, whichever its architecture.
pub struct Model {
    pub(crate) arch: Architecture,
    pub(crate) isa: Isa,
    pub(crate) dim: usize,
    pub(crate) heads: Heads,
    pub(crate) ffn: usize,
    pub(crate) eps: f32,
    pub(crate) gate: Gate,
    /// Multiplies the embeddings (Gemma: √dim).
    pub(crate) embed_scale: Option<f32>,
    /// `cap × tanh(logit / cap)` on the output (Gemma 2 style final soft-capping).
    pub(crate) logit_softcap: Option<f32>,
    pub(crate) embed: Arc<QMatrix>,
    pub(crate) layers: Vec<Block>,
    pub(crate) norm: Vec<f32>,
    /// The embedding table itself where the model ties them (shared, not copied).
    pub(crate) output: Arc<QMatrix>,
    pub(crate) requantized: Vec<String>,
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

impl Model {
    /// Reads a GGUF model of any architecture the engine runs; [`Error::NotCovered`] says why the
    /// kernels do not run it.
    pub fn from_gguf(content: &gguf_file::Content, file: &mut File, isa: Isa) -> Result<Self> {
        let name = content
            .metadata
            .get("general.architecture")
            .and_then(|v| v.to_string().ok())
            .map_or("", String::as_str);
        let Some(arch) = Architecture::from_name(name) else {
            return Err(Error::NotCovered(format!("GGUF architecture {name:?}")));
        };
        load(
            arch,
            open(Reader::new(GgufFile { content, file }), isa)?,
            isa,
        )
    }

    /// Reads a Hugging Face safetensors checkpoint (its `.safetensors` files, shards too, and
    /// the numbers of its `config.json`) of a Llama, Mistral, Qwen2 or Qwen3 model whose matrices
    /// are F16 or BF16; [`Error::NotCovered`] for any other.
    pub fn from_safetensors(files: &[PathBuf], config: &HfConfig, isa: Isa) -> Result<Self> {
        let (folder, arch) = HfFolder::open(files, config)?;
        load(arch, open(Reader::new(folder), isa)?, isa)
    }

    pub fn architecture(&self) -> Architecture {
        self.arch
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

    /// What runs the model, for logs and reports: e.g. `rigger-cpu qwen2 Q4_0 avx512-vnni`,
    /// with `(requantized: output.weight Q6K → Q8_0)` where a matrix was.
    pub fn describe(&self) -> String {
        let mut text = format!(
            "rigger-cpu {} {:?} {}",
            self.arch.name(),
            self.weight_format(),
            self.isa.name()
        );
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
    #[allow(unsafe_code)] // the cache's new rows written by the tasks that make them
    pub fn forward(&self, cache: &mut KvCache, tokens: &[u32]) -> Result<Vec<f32>> {
        let (dim, t) = (self.dim, tokens.len());
        if t == 0 {
            return Err(Error::InvalidInput("nothing to run: no tokens".into()));
        }
        if let Some(&token) = tokens.iter().find(|&&token| token as usize >= self.vocab()) {
            return Err(Error::InvalidInput(format!(
                "token {token} is outside the vocabulary of {}",
                self.vocab()
            )));
        }
        let mut clock = StepClock::start(t);
        let mut x = clock.time(Step::Embedding, || {
            let mut x = vec![0f32; t * dim];
            for (&token, row) in tokens.iter().zip(x.chunks_exact_mut(dim)) {
                self.embed.dequantize_row(token as usize, row);
            }
            if let Some(scale) = self.embed_scale {
                x.iter_mut().for_each(|v| *v *= scale);
            }
            x
        });
        let (q_dim, kv_dim, hd) = (self.heads.dim(), self.heads.kv_dim(), self.heads.head_dim);
        let qkv_width = q_dim + 2 * kv_dim;
        let start = cache.len;
        // Each residual add runs with the norm after it (the next block's or the feed-forward's)
        // in one section.
        let (isa, eps) = (self.isa, self.eps);
        let mut acts = match self.layers.first() {
            Some(first) => clock.time(Step::Norms, || {
                QActs::made(isa, first.qkv.format(), t, dim, |sink| {
                    rms_norm(&x, &first.attn_norm, dim, eps, sink)
                })
            }),
            None => QActs::default(),
        };
        for (l, layer) in self.layers.iter().enumerate() {
            // Attention.
            let mut qkv = clock.time(Step::Qkv, || {
                let mut qkv = layer.qkv.product(self.isa, &acts);
                if let Some(bias) = &layer.qkv_bias {
                    add_bias(&mut qkv, bias);
                }
                qkv
            });
            clock.time(Step::Rope, || {
                let (keys, values) = (&mut cache.keys[l], &mut cache.values[l]);
                // Each row's task writes its key and value into the cache, so the cache's new
                // pages are first touched across the threads: copied in by the calling thread,
                // rope and the writes took 4.4-5.9 ms of a 128-token TinyLlama prompt at 2
                // threads, 3.2-3.4 this way.
                // SAFETY: the tasks of all `t` rows write their key and value rows, `kv_dim`
                // values each.
                unsafe {
                    extended(keys, t * kv_dim, |keys| {
                        extended(values, t * kv_dim, |values| {
                            each_row(&mut qkv, qkv_width, |i, row| {
                                let (q, kv) = row.split_at_mut(q_dim);
                                let (k, v) = kv.split_at_mut(kv_dim);
                                if let Some(norm) = &layer.qk_norm {
                                    q.chunks_exact_mut(hd)
                                        .for_each(|head| rms_norm_row(head, &norm.q, eps));
                                    k.chunks_exact_mut(hd)
                                        .for_each(|head| rms_norm_row(head, &norm.k, eps));
                                }
                                layer.rope.apply(q, start + i);
                                layer.rope.apply(k, start + i);
                                keys.write(i * kv_dim, k);
                                values.write(i * kv_dim, &v[..kv_dim]);
                            })
                        })
                    })
                }
            });
            let attended = clock.time(Step::Attention, || {
                causal_attention(
                    isa,
                    self.heads,
                    &qkv,
                    &cache.keys[l],
                    &cache.values[l],
                    start,
                    t,
                    layer.window,
                )
            });
            let attended = clock.time(Step::AttentionQuantize, || {
                let attended = QActs::from_rows(attended, q_dim);
                attended.prepare(isa, layer.wo.format());
                attended
            });
            let mut out = clock.time(Step::Wo, || product(isa, &layer.wo, &attended));
            if let Some(norm) = &layer.post_attn_norm {
                out = clock.time(Step::Norms, || {
                    rms_norm(&out, norm, dim, eps, &RowSink::NONE)
                });
            }
            let ffn_acts = clock.time(Step::Norms, || {
                QActs::made(isa, layer.gate_up.format(), t, dim, |sink| {
                    add_then_rms_norm(&mut x, &out, &layer.ffn_norm, dim, eps, sink)
                })
            });
            // Gated feed-forward.
            let gate_up = clock.time(Step::GateUp, || layer.gate_up.product(isa, &ffn_acts));
            let hidden = clock.time(Step::Gate, || {
                QActs::made(isa, layer.down.format(), t, self.ffn, |sink| {
                    match self.gate {
                        Gate::Silu => swiglu(&gate_up, self.ffn, sink),
                        Gate::GeluTanh => gelu_tanh_gate(&gate_up, self.ffn, sink),
                    }
                })
            });
            out = clock.time(Step::Down, || product(isa, &layer.down, &hidden));
            if let Some(norm) = &layer.post_ffn_norm {
                out = clock.time(Step::Norms, || {
                    rms_norm(&out, norm, dim, eps, &RowSink::NONE)
                });
            }
            acts = match self.layers.get(l + 1) {
                Some(next) => clock.time(Step::Norms, || {
                    QActs::made(isa, next.qkv.format(), t, dim, |sink| {
                        add_then_rms_norm(&mut x, &out, &next.attn_norm, dim, eps, sink)
                    })
                }),
                None => {
                    clock.time(Step::Norms, || add(&mut x, &out, dim));
                    QActs::default()
                }
            };
        }
        cache.len += t;
        let logits = clock.time(Step::Logits, || {
            let last = rms_norm(&x[(t - 1) * dim..], &self.norm, dim, eps, &RowSink::NONE);
            let mut logits = product(isa, &self.output, &QActs::from_rows(last, dim));
            if let Some(cap) = self.logit_softcap {
                logits.iter_mut().for_each(|v| *v = (*v / cap).tanh() * cap);
            }
            logits
        });
        clock.finish();
        Ok(logits)
    }
}
