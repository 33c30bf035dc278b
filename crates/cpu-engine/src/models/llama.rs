//! The Llama family (Llama, Mistral, TinyLlama, SmolLM: GGUF architecture `llama`), the same
//! arithmetic as candle's `quantized_llama`: RMS norm, interleaved RoPE as GGUF stores Q and K
//! (the converter permuted their rows for it), grouped-query attention, SwiGLU.

use super::decoder::{Architecture, Block, Gate, Hyper, Model};
use crate::error::Result;
use crate::isa::Isa;
use crate::layers::{Rope, RopeStyle};
use crate::reader::Reader;

pub(crate) fn load(mut reader: Reader<'_>, isa: Isa) -> Result<Model> {
    let h = Hyper::read(&reader, Architecture::Llama, false)?;
    let base = h.rope_base.unwrap_or(10_000.0);
    let rope = Rope::new(h.heads.head_dim, base, RopeStyle::Interleaved);
    let embeddings = h.embeddings(&mut reader)?;
    let mut layers = Vec::with_capacity(h.layers);
    for i in 0..h.layers {
        layers.push(Block {
            attn_norm: h.norm(&mut reader, i, "attn_norm")?,
            qkv: h.qkv(&mut reader, i)?,
            qkv_bias: None,
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
        Architecture::Llama,
        isa,
        Gate::Silu,
        reader,
        embeddings,
        layers,
    )
}
