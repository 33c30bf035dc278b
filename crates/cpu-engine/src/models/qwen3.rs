//! Qwen3, dense (GGUF architecture `qwen3`), the same arithmetic as candle's `quantized_qwen3`
//! and llama.cpp: the Llama block without Q/K/V biases, a per-head RMS norm of queries and keys
//! before the NeoX rotary embedding, and heads `attention.key_length` wide (Qwen3's Q projection
//! may be wider than the model). Frequencies from f64 powers, as candle computes them; candle
//! then rounds its sine/cosine tables to f16 unless the file says `general.dtype` = 0 (f32),
//! where the engine keeps f32 as llama.cpp does.

use super::decoder::{Architecture, Block, Gate, Hyper, Model};
use crate::error::Result;
use crate::isa::Isa;
use crate::layers::{Rope, RopeStyle};
use crate::reader::Reader;

pub(crate) fn load(mut reader: Reader<'_>, isa: Isa) -> Result<Model> {
    let h = Hyper::read(&reader, Architecture::Qwen3, true)?;
    let base = h.rope_base.unwrap_or(10_000.0);
    let rope = Rope::new_f64(h.heads.head_dim, f64::from(base), RopeStyle::Neox);
    let embeddings = h.embeddings(&mut reader)?;
    let mut layers = Vec::with_capacity(h.layers);
    for i in 0..h.layers {
        layers.push(Block {
            attn_norm: h.norm(&mut reader, i, "attn_norm")?,
            qkv: h.qkv(&mut reader, i)?,
            qkv_bias: None,
            qk_norm: Some(h.qk_norm(&mut reader, i)?),
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
        Architecture::Qwen3,
        isa,
        Gate::Silu,
        reader,
        embeddings,
        layers,
    )
}
