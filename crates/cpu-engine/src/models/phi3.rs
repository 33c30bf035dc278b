//! Phi-3 (GGUF architecture `phi3`), the same arithmetic as candle's `quantized_phi3` and
//! llama.cpp: the Llama block with Q/K/V stored fused (`attn_qkv`) and gate/up stored fused
//! (`ffn_up`, gate first), and the NeoX rotary embedding. Not covered (another path runs them):
//! partial rotary embeddings (`rope.dimension_count` below the head width; candle's model lacks
//! them too) and LongRoPE scaling (`rope_factors_*`, the 128k-context variants). Like candle,
//! the engine attends over the whole context (Phi-3 mini's 2047-position sliding window only
//! matters past that length).

use super::decoder::{Architecture, Block, Gate, Hyper, Model, fused};
use crate::error::{Error, Result};
use crate::isa::Isa;
use crate::layers::{Rope, RopeStyle};
use crate::reader::Reader;

pub(crate) fn load(mut reader: Reader<'_>, isa: Isa) -> Result<Model> {
    let h = Hyper::read(&reader, Architecture::Phi3, false)?;
    if let Some(name) = ["rope_factors_long.weight", "rope_factors_short.weight"]
        .into_iter()
        .find(|name| reader.has(name))
    {
        return Err(Error::NotCovered(format!("LongRoPE scaling ({name})")));
    }
    let base = h.rope_base.unwrap_or(10_000.0);
    let rope = Rope::new(h.heads.head_dim, base, RopeStyle::Neox);
    let qkv_rows = h.heads.dim() + 2 * h.heads.kv_dim();
    let embeddings = h.embeddings(&mut reader)?;
    let mut layers = Vec::with_capacity(h.layers);
    for i in 0..h.layers {
        let name = |t: &str| format!("blk.{i}.{t}.weight");
        layers.push(Block {
            attn_norm: h.norm(&mut reader, i, "attn_norm")?,
            qkv: fused(i, vec![reader.matrix(&name("attn_qkv"), qkv_rows, h.dim)?])?,
            qkv_bias: None,
            qk_norm: None,
            rope: rope.clone(),
            window: None,
            wo: h.wo(&mut reader, i)?,
            post_attn_norm: None,
            ffn_norm: h.norm(&mut reader, i, "ffn_norm")?,
            gate_up: fused(i, vec![reader.matrix(&name("ffn_up"), 2 * h.ffn, h.dim)?])?,
            down: h.down(&mut reader, i)?,
            post_ffn_norm: None,
        });
    }
    h.finish(
        Architecture::Phi3,
        isa,
        Gate::Silu,
        reader,
        embeddings,
        layers,
    )
}
