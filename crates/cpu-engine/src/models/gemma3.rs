//! Gemma 3, text (GGUF architecture `gemma3`), as llama.cpp and Hugging Face run it: embeddings
//! scaled by √dim, per-head Q/K RMS norms before the NeoX rotary embedding, RMS norms after the
//! attention and after the feed-forward (before each residual add), a GELU-tanh gated
//! feed-forward, and five sliding-window layers (the last `attention.sliding_window` positions,
//! local rotary base `rope.local_freq_base`) for every global one (`rope.freq_base`, with linear
//! `rope.scaling.factor` where given). GGUF stores the norm weights with Gemma's `1 +` already
//! added (llama.cpp's converter does it), so they multiply as they are.
//!
//! candle's `quantized_gemma3` differs: SiLU gating, no rotary scaling, and a window of one more
//! position that it applies within a prompt only, never while decoding. Not covered: the 27B
//! model's query scale (1/√(dim/heads), not 1/√head_dim).

use super::decoder::{Architecture, Block, Gate, Hyper, Model};
use crate::error::{Error, Result};
use crate::isa::Isa;
use crate::layers::{Rope, RopeStyle};
use crate::reader::Reader;

/// One global layer in this many (`attention.sliding_window_type` where the file gives it).
const SLIDING_PATTERN: u32 = 6;
const GLOBAL_BASE: f32 = 1_000_000.0;
const LOCAL_BASE: f32 = 10_000.0;

pub(crate) fn load(mut reader: Reader<'_>, isa: Isa) -> Result<Model> {
    let h = Hyper::read(&reader, Architecture::Gemma3, true)?;
    if h.heads.dim() != h.dim && h.layers == 62 {
        return Err(Error::NotCovered(
            "Gemma 3 27B's query scale (1/sqrt(dim/heads))".into(),
        ));
    }
    let f32_or = |key: &str, default: f32| -> Result<f32> {
        match reader.get(&format!("gemma3.{key}")) {
            Some(v) => Ok(v.to_f32()?),
            None => Ok(default),
        }
    };
    let window = reader
        .metadata("gemma3.attention.sliding_window")?
        .to_u32()? as usize;
    let pattern = reader.u32_or("gemma3.attention.sliding_window_type", SLIDING_PATTERN)?;
    if pattern == 0 || window == 0 {
        return Err(Error::Malformed(format!(
            "sliding window of {window} positions, one global layer in {pattern}"
        )));
    }
    let hd = h.heads.head_dim;
    let global = Rope::new(hd, h.rope_base.unwrap_or(GLOBAL_BASE), RopeStyle::Neox)
        .scaled(f32_or("rope.scaling.factor", 1.0)?);
    let local = Rope::new(
        hd,
        f32_or("rope.local_freq_base", LOCAL_BASE)?,
        RopeStyle::Neox,
    );
    let softcap = match reader.get("gemma3.final_logit_softcapping") {
        Some(v) => Some(v.to_f32()?).filter(|cap| *cap > 0.0),
        None => None,
    };
    let embeddings = h.embeddings(&mut reader)?;
    let mut layers = Vec::with_capacity(h.layers);
    for i in 0..h.layers {
        let sliding = (i + 1) % pattern as usize != 0;
        layers.push(Block {
            attn_norm: h.norm(&mut reader, i, "attn_norm")?,
            qkv: h.qkv(&mut reader, i)?,
            qkv_bias: None,
            qk_norm: Some(h.qk_norm(&mut reader, i)?),
            rope: if sliding {
                local.clone()
            } else {
                global.clone()
            },
            window: sliding.then_some(window),
            wo: h.wo(&mut reader, i)?,
            post_attn_norm: Some(h.norm(&mut reader, i, "post_attention_norm")?),
            ffn_norm: h.norm(&mut reader, i, "ffn_norm")?,
            gate_up: h.gate_up(&mut reader, i)?,
            down: h.down(&mut reader, i)?,
            post_ffn_norm: Some(h.norm(&mut reader, i, "post_ffw_norm")?),
        });
    }
    let mut model = h.finish(
        Architecture::Gemma3,
        isa,
        Gate::GeluTanh,
        reader,
        embeddings,
        layers,
    )?;
    // f64 square root rounded to f32: candle's and llama.cpp's factor alike.
    model.embed_scale = Some((h.dim as f64).sqrt() as f32);
    model.logit_softcap = softcap;
    Ok(model)
}
