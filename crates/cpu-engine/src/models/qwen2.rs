//! Qwen2 and Qwen2.5 (GGUF architecture `qwen2`), the same arithmetic as candle's
//! `quantized_qwen2` and llama.cpp: the Llama block with biases on Q, K and V, and the NeoX
//! rotary embedding (dimension `i` with `i + head_dim / 2`), since GGUF keeps qwen2's Q/K rows
//! as trained. The output projection is `output.weight` or the tied embedding table.

use super::decoder::{Architecture, Block, Gate, Hyper, Model};
use crate::error::Result;
use crate::isa::Isa;
use crate::layers::{Rope, RopeStyle};
use crate::reader::Reader;

pub(crate) fn load(mut reader: Reader<'_>, isa: Isa) -> Result<Model> {
    let h = Hyper::read(&reader, Architecture::Qwen2, false)?;
    let base = h.rope_base.unwrap_or(10_000.0);
    let rope = Rope::new(h.heads.head_dim, base, RopeStyle::Neox);
    let (q_dim, kv_dim) = (h.heads.dim(), h.heads.kv_dim());
    let embeddings = h.embeddings(&mut reader)?;
    let mut layers = Vec::with_capacity(h.layers);
    for i in 0..h.layers {
        let bias = |t: &str| format!("blk.{i}.{t}.bias");
        // One `[q | k | v]` row, as the fused product lays out its results.
        let mut qkv_bias = reader.vector(&bias("attn_q"), q_dim)?;
        qkv_bias.extend(reader.vector(&bias("attn_k"), kv_dim)?);
        qkv_bias.extend(reader.vector(&bias("attn_v"), kv_dim)?);
        layers.push(Block {
            attn_norm: h.norm(&mut reader, i, "attn_norm")?,
            qkv: h.qkv(&mut reader, i)?,
            qkv_bias: Some(qkv_bias),
            qk_norm: None,
            rope: rope.clone(),
            window: None,
            wo: h.wo(&mut reader, i)?,
            post_attn_norm: None,
            ffn_norm: h.norm(&mut reader, i, "ffn_norm")?,
            gate_up: h.gate_up(&mut reader, i)?,
            down: h.down(&mut reader, i)?,
            post_ffn_norm: None,
        });
    }
    h.finish(
        Architecture::Qwen2,
        isa,
        Gate::Silu,
        reader,
        embeddings,
        layers,
    )
}
