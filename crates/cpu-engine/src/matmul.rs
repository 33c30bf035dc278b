//! Quantized matrix products: ggml's Q4_0, Q8_0, Q4_1, Q5_0 and Q5_1 weight blocks against
//! activations quantized to 8 bits per 32-value block, and its Q4_K, Q5_K and Q6_K super-blocks
//! against activations quantized per 256 values (Q8_K), the schemes llama.cpp uses, on the
//! repacked layout ([`QMatrix`]). Per block an exact integer dot product per row, then one
//! convert and one fused multiply-add per sixteen rows. F16 and BF16 weights meet the activations
//! unquantized: per row two chains of fused multiply-adds (even and odd columns). Weights stream
//! from memory once per call whatever the number of tokens.
//!
//! Three instruction sets share one layout and one order of operations, so they give the same
//! bits: the portable kernel here (the reference the tests compare against), AVX2 and AVX-512
//! VNNI (`x86`), picked at run time. The K-quants likewise (AVX-512 VNNI up to eight tokens per
//! call, AVX2 two; no 256-bit one-token path yet). candle sums each block in eight lanes
//! instead, so results differ from candle's in the last bits (within 1e-4 relative at the
//! kernel, a few hundredths in the logits of a deep model).

use half::f16;

use crate::isa::Isa;
use crate::packing::{
    Group, QMatrix, ROWS, float_weight, q4_k_quant, q4_k_scales, q5_k_quant, q6_k_quant,
    q6_k_scales, weight,
};
use crate::parallel::{DisjointWrites, written};
use crate::pool;
use crate::quant::{ActRow, BLOCK, GgufRows, QActs, SUPER, SuperRow, WeightFormat};
#[cfg(target_arch = "x86_64")]
use crate::x86;

/// The most tokens one kernel call takes.
pub(crate) const MAX_TILE: usize = 8;

/// From how many tokens a product goes to AMX tiles (where the ISA has them): one tile's worth
/// (fewer would leave most of each tile product padding).
#[cfg(target_arch = "x86_64")]
const AMX_FROM_TOKENS: usize = 16;

/// `out[t * w.rows() + r]` = row `r` of `w` · activation row `t`, row groups split across the
/// engine's threads (as many as the rayon pool in force has).
pub fn matmul(isa: Isa, w: &QMatrix, a: &QActs, out: &mut [f32]) {
    assert_eq!(out.len(), a.rows * w.rows, "matmul: output size");
    matmul_into(isa, w, a, &DisjointWrites::new(out), w.rows, 0);
}

/// `out[t * stride + offset + r]` = row `r` of `w` · activation row `t`: each chunk of row
/// groups writes its rows of every token's output in place, so no pass reorders them after.
/// Every one of those places is written (the products' buffers are not zeroed first).
#[allow(unsafe_code)] // the chunks' writes into one buffer, at places that do not overlap
fn matmul_into(
    isa: Isa,
    w: &QMatrix,
    a: &QActs,
    out: &DisjointWrites<'_>,
    stride: usize,
    offset: usize,
) {
    assert_eq!(w.cols, a.cols, "matmul: inner dimensions differ");
    assert!(
        offset + w.rows <= stride && out.len() == a.rows * stride,
        "matmul: output size"
    );
    assert!(isa.is_supported(), "matmul: {isa:?} is not available here");
    // The activations' form for this format, quantized now (once) rather than in the pool.
    a.prepare(isa, w.format());
    let threads = pool::threads();
    let groups = w.rows.div_ceil(ROWS);
    // Several chunks per thread so a slow core does not hold the others back; at most 256 rows
    // per chunk, whose weights stay in L2 while the token tiles pass over them.
    let chunk_groups = groups.div_ceil(threads * 8).clamp(1, 256 / ROWS);
    let tokens = a.rows;
    #[cfg(target_arch = "x86_64")]
    if isa == Isa::Amx && tokens >= AMX_FROM_TOKENS && x86::amx::covers(w.format()) {
        let acts = x86::amx::TileActs::new(a, w.format(), isa);
        pool::for_each_init(
            groups.div_ceil(chunk_groups),
            x86::amx::Tiles::new,
            |tiles, c| {
                for g in c * chunk_groups..((c + 1) * chunk_groups).min(groups) {
                    let rows = (w.rows - g * ROWS).min(ROWS);
                    tiles.group_product(w.group(g), &acts, |t0, n, results| {
                        for (m, r) in results.iter().take(n).enumerate() {
                            // SAFETY: chunks hold different row groups, so rows g·16.. of each
                            // token's output are this task's alone.
                            unsafe { out.write((t0 + m) * stride + offset + g * ROWS, &r[..rows]) };
                        }
                    });
                }
            },
        );
        return;
    }
    let isa = isa.vector();
    let tile = isa.tokens_per_tile();
    #[cfg(target_arch = "x86_64")]
    if tokens > tile && x86::UnpackedGroup::pays_for(isa, w.format()) {
        let supers = a.supers(isa);
        let tiles: Vec<[SuperRow<'_>; MAX_TILE]> = (0..tokens)
            .step_by(tile)
            .map(|t| std::array::from_fn(|k| supers.row((t + k).min(tokens - 1))))
            .collect();
        pool::for_each_init(
            groups.div_ceil(chunk_groups),
            x86::UnpackedGroup::new,
            |unpacked, c| {
                let mut results = [[0f32; ROWS]; MAX_TILE];
                // Row groups outside, token tiles inside: each group unpacked once, its values
                // in L1 while every tile passes.
                for g in c * chunk_groups..((c + 1) * chunk_groups).min(groups) {
                    let group = w.group(g);
                    unpacked.unpack(group);
                    let rows = (w.rows - g * ROWS).min(ROWS);
                    for (t, acts) in (0..tokens).step_by(tile).zip(&tiles) {
                        let n = (tokens - t).min(tile);
                        x86::k_unpacked_tile(isa, group, unpacked, acts, n, &mut results);
                        for (k, r) in results.iter().take(n).enumerate() {
                            // SAFETY: chunks hold different row groups, so rows g·16.. of each
                            // token's output are this task's alone.
                            unsafe { out.write((t + k) * stride + offset + g * ROWS, &r[..rows]) };
                        }
                    }
                }
            },
        );
        return;
    }
    pool::for_each(groups.div_ceil(chunk_groups), |c| {
        let chunk = c * chunk_groups..((c + 1) * chunk_groups).min(groups);
        let mut results = [[0f32; ROWS]; MAX_TILE];
        // Token tiles outside, row groups inside: one tile's activations stay in L1 while
        // the chunk's weights stay in L2.
        let mut t = 0;
        while t < tokens {
            let n = (tokens - t).min(tile);
            let acts = TileActs::new(isa, w.format(), a, t);
            for g in chunk.clone() {
                group_tile(isa, w.group(g), &acts, n, &mut results);
                let rows = (w.rows - g * ROWS).min(ROWS);
                for (k, r) in results.iter().take(n).enumerate() {
                    // SAFETY: chunks hold different row groups, so rows g·16.. of each
                    // token's output are this task's alone.
                    unsafe { out.write((t + k) * stride + offset + g * ROWS, &r[..rows]) };
                }
            }
            t += n;
        }
    });
}

/// `w · a` for every token of `a`, `[token][row]`, in a new buffer.
#[allow(unsafe_code)] // a buffer the product fills without a zeroing pass first
pub(crate) fn product(isa: Isa, w: &QMatrix, a: &QActs) -> Vec<f32> {
    // SAFETY: `matmul_into` writes every row of every token, and the stride is the rows.
    unsafe {
        written(a.rows * w.rows, |out| {
            matmul_into(isa, w, a, out, w.rows, 0)
        })
    }
}

/// Matrices that take the same input and whose outputs sit side by side (Q | K | V, gate |
/// up): one stacked matrix where their formats agree (one pass over the activations, one
/// parallel section), one matrix per part where they differ (llama.cpp's Q4_K_M files keep
/// `attn_v` in Q6_K in some layers, Q4_K in the others).
pub struct Stacked {
    parts: Vec<QMatrix>,
}

impl Stacked {
    pub fn new(parts: Vec<GgufRows>) -> Result<Self, String> {
        let first = parts.first().ok_or("nothing to stack")?;
        let (format, cols) = (first.format, first.cols);
        if parts.iter().all(|p| p.format == format) {
            return Ok(Self {
                parts: vec![QMatrix::pack(GgufRows::stack(parts)?)],
            });
        }
        if let Some(odd) = parts.iter().find(|p| p.cols != cols) {
            return Err(format!(
                "cannot put rows of {} values beside rows of {cols}",
                odd.cols
            ));
        }
        Ok(Self {
            parts: parts.into_iter().map(QMatrix::pack).collect(),
        })
    }

    /// The first part's format (the file's main one).
    pub fn format(&self) -> WeightFormat {
        self.parts[0].format()
    }

    /// `[token][row]` of the parts stacked, as [`matmul`] on them, in a new buffer.
    #[allow(unsafe_code)] // a buffer the products fill without a zeroing pass first
    pub fn product(&self, isa: Isa, a: &QActs) -> Vec<f32> {
        let width: usize = self.parts.iter().map(QMatrix::rows).sum();
        let parts = |out: &DisjointWrites<'_>| {
            let mut offset = 0;
            for part in &self.parts {
                matmul_into(isa, part, a, out, width, offset);
                offset += part.rows;
            }
        };
        // SAFETY: each part writes its rows of every token, and the parts' rows side by side
        // are the whole width.
        unsafe { written(a.rows * width, parts) }
    }
}

/// The activation rows of a tile of up to eight tokens in the form its weights' kernels take
/// (past the tile's tokens, the last token repeated, where no kernel reads it). Made once per
/// tile and shared by the row groups; they were made per group, in `group_tile`, which with
/// the dispatch held 5% of a 2-thread TinyLlama-1.1B Q5_K_M prompt's profile (AMD Zen 5).
enum TileActs<'a> {
    Floats([&'a [f32]; MAX_TILE]),
    Blocks([ActRow<'a>; MAX_TILE]),
    Supers([SuperRow<'a>; MAX_TILE]),
}

impl<'a> TileActs<'a> {
    fn new(isa: Isa, format: WeightFormat, a: &'a QActs, t0: usize) -> Self {
        let token = |k: usize| (t0 + k).min(a.rows - 1);
        if format.is_float() {
            Self::Floats(std::array::from_fn(|k| a.values(token(k))))
        } else if format.is_k_quant() {
            let supers = a.supers(isa);
            Self::Supers(std::array::from_fn(|k| supers.row(token(k))))
        } else {
            let blocks = a.blocks(isa);
            Self::Blocks(std::array::from_fn(|k| blocks.row(token(k))))
        }
    }
}

/// `out[k][j]` = row `j` of the group · activation row `k` of the tile, for `n` (1..=8)
/// tokens.
fn group_tile(
    isa: Isa,
    group: Group<'_>,
    acts: &TileActs<'_>,
    n: usize,
    out: &mut [[f32; ROWS]; MAX_TILE],
) {
    match acts {
        TileActs::Floats(acts) => match isa {
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 | Isa::Avx512Vnni => x86::float_group_tile(isa, group, acts, n, out),
            _ => portable_tile(group, acts, n, out, portable_float_dot),
        },
        TileActs::Supers(acts) => match isa {
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 | Isa::Avx512Vnni => x86::k_group_tile(isa, group, acts, n, out),
            _ => portable_tile(group, acts, n, out, portable_k_dot),
        },
        TileActs::Blocks(acts) => match isa {
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 | Isa::Avx512Vnni => x86::group_tile(isa, group, acts, n, out),
            _ => portable_tile(group, acts, n, out, portable_dot),
        },
    }
}

/// The portable kernel over a tile: `dot` of each of the group's rows with each of the first
/// `n` tokens' activations.
fn portable_tile<A: Copy>(
    group: Group<'_>,
    acts: &[A; MAX_TILE],
    n: usize,
    out: &mut [[f32; ROWS]; MAX_TILE],
    dot: impl Fn(Group<'_>, usize, A) -> f32,
) {
    for (per_token, act) in out.iter_mut().zip(acts).take(n) {
        for (j, o) in per_token.iter_mut().enumerate() {
            *o = dot(group, j, *act);
        }
    }
}

/// The reference every kernel matches to the bit: per block the exact integer dot product,
/// the product of the two scales, one fused multiply-add, blocks in order (Q4_1: then the
/// product of the min and the activation scale times the activations' sum, a second one).
fn portable_dot(group: Group<'_>, j: usize, a: ActRow<'_>) -> f32 {
    let f16_at = |bytes: &[u8]| f16::from_le_bytes([bytes[2 * j], bytes[2 * j + 1]]).to_f32();
    let mut total = 0f32;
    for b in 0..group.blocks {
        let (scales, payloads) = (group.scales(b), group.payloads(b));
        let dw = f16_at(scales);
        let qa = &a.qs[b * BLOCK..(b + 1) * BLOCK];
        let dot: i32 = qa
            .iter()
            .enumerate()
            .map(|(k, &x)| weight(group.format, payloads, j, k) * i32::from(x))
            .sum();
        total = (dw * a.scale[b]).mul_add(dot as f32, total);
        if group.format.has_min() {
            let m = f16_at(group.mins(b));
            total = (m * a.scale[b]).mul_add(a.sums[b] as f32, total);
        }
    }
    total
}

/// The float reference: two running sums per row, of the even and of the odd columns (two
/// chains of fused multiply-adds, so a one-token kernel is not held up by their latency),
/// added at the end.
fn portable_float_dot(group: Group<'_>, j: usize, x: &[f32]) -> f32 {
    let mut sums = [0f32; 2];
    for (k, &x) in x.iter().enumerate() {
        sums[k % 2] = float_weight(group, j, k).mul_add(x, sums[k % 2]);
    }
    sums[0] + sums[1]
}

/// The K-quant reference: per super-block the exact integer sum over its sub-blocks of scale ×
/// dot product (and for Q4_K of min × activation sum), then per super-block one multiply-add
/// (Q4_K: two, the min's subtracted). Bounds, with |x| ≤ 128 and sums of 32 at most 4096:
/// Q4_K |Σ sc·dot| ≤ 8 × 63 × 32 × 15 × 128 < 2^25 (Q5_K, values to 31: < 2^26),
/// Σ m·sum ≤ 8 × 63 × 4096 < 2^22; Q6_K each
/// 16-value dot of (q − 32) is at most 16 × 32 × 128 = 2^16, times |sc| ≤ 128 over 16 groups
/// < 2^27: i32 holds them all, so every kernel may sum in any order and get the same integer.
fn portable_k_dot(group: Group<'_>, j: usize, a: SuperRow<'_>) -> f32 {
    let mut total = 0f32;
    for b in 0..group.blocks {
        let (sb, qa, dx) = (
            group.super_block(b),
            &a.qs[b * SUPER..(b + 1) * SUPER],
            a.scale[b],
        );
        match group.format {
            WeightFormat::Q4_K | WeightFormat::Q5_K => {
                let quant = if group.format == WeightFormat::Q4_K {
                    q4_k_quant
                } else {
                    q5_k_quant
                };
                let (mut isum, mut msum) = (0i32, 0i32);
                let mut scales = (0f32, 0f32);
                for s in 0..8 {
                    let (d, dmin, sc, m) = q4_k_scales(sb, j, s);
                    scales = (d, dmin);
                    let dot: i32 = (32 * s..32 * (s + 1))
                        .map(|k| quant(sb, j, k) * i32::from(qa[k]))
                        .sum();
                    isum += sc * dot;
                    msum += m * i32::from(a.sums32[8 * b + s]);
                }
                let (d, dmin) = scales;
                total = (d * dx).mul_add(isum as f32, total);
                total = (dmin * dx).mul_add(-(msum as f32), total);
            }
            _ => {
                let mut isum = 0i32;
                let mut d = 0f32;
                for g in 0..16 {
                    let (dw, sc) = q6_k_scales(sb, j, g);
                    d = dw;
                    let dot: i32 = (16 * g..16 * (g + 1))
                        .map(|k| (q6_k_quant(sb, j, k) - 32) * i32::from(qa[k]))
                        .sum();
                    isum += sc * dot;
                }
                total = (d * dx).mul_add(isum as f32, total);
            }
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quant::quantize_q8_0;

    /// Deterministic pseudo-random floats in [-1, 1).
    fn values(n: usize, seed: u64) -> Vec<f32> {
        let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        (0..n)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                (s >> 40) as f32 / (1u64 << 23) as f32 - 1.0
            })
            .collect()
    }

    /// Quantizes rows the way ggml does, for weights (the activation rule, stored as blocks;
    /// Q4_1, Q5_0, Q5_1 and the floats by candle itself).
    fn quantize_weights(format: WeightFormat, x: &[f32], cols: usize) -> QMatrix {
        if format.has_min() || format.has_fifth_bit() || format.is_float() {
            return candle_quantized(format, x, cols).0;
        }
        let mut bytes = Vec::new();
        for block in x.chunks_exact(BLOCK) {
            match format {
                WeightFormat::Q8_0 => bytes.extend(quantize_q8_0(block)),
                WeightFormat::Q4_K
                | WeightFormat::Q5_K
                | WeightFormat::Q6_K
                | WeightFormat::Q4_1
                | WeightFormat::Q5_0
                | WeightFormat::Q5_1
                | WeightFormat::F16
                | WeightFormat::BF16 => {
                    unreachable!("see candle_quantized")
                }
                WeightFormat::Q4_0 => {
                    // ggml: the value of largest magnitude maps to -8.
                    let max = block
                        .iter()
                        .fold(0f32, |m, v| if v.abs() > m.abs() { *v } else { m });
                    let d = max / -8.0;
                    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
                    bytes.extend(f16::from_f32(d).to_le_bytes());
                    let q = |v: f32| ((v * id + 8.5) as i32).clamp(0, 15) as u8;
                    for j in 0..16 {
                        bytes.push(q(block[j]) | (q(block[j + 16]) << 4));
                    }
                }
            }
        }
        QMatrix::pack(GgufRows::new(format, x.len() / cols, cols, bytes).unwrap())
    }

    fn float_matmul(w: &[f32], x: &[f32], cols: usize) -> Vec<f32> {
        let rows = w.len() / cols;
        x.chunks_exact(cols)
            .flat_map(|xr| {
                w.chunks_exact(cols)
                    .map(move |wr| wr.iter().zip(xr).map(|(a, b)| a * b).sum::<f32>())
            })
            .take(rows * (x.len() / cols))
            .collect()
    }

    #[test]
    fn every_isa_matches_the_portable_kernel_for_every_tile_size() {
        // A partial row group; an odd number of blocks (the last pair half empty).
        for (format, (rows, cols)) in [
            WeightFormat::Q4_0,
            WeightFormat::Q8_0,
            WeightFormat::Q4_1,
            WeightFormat::Q5_0,
            WeightFormat::Q5_1,
            WeightFormat::F16,
            WeightFormat::BF16,
        ]
        .into_iter()
        .flat_map(|f| [(f, (37, 256)), (f, (21, 96))])
        {
            let w = quantize_weights(format, &values(rows * cols, 1), cols);
            // 16 and up: AMX's tiles, whole and partial.
            for tokens in [1, 2, 3, 4, 5, 6, 7, 8, 9, 16, 17, 33] {
                let a = QActs::quantize(&values(tokens * cols, 2), cols);
                let mut reference = vec![0f32; rows * tokens];
                matmul(Isa::Portable, &w, &a, &mut reference);
                for isa in [Isa::Avx2, Isa::Avx512Vnni, Isa::Amx] {
                    if !isa.is_supported() {
                        rigger_model_gen::declare_skip(
                            "cpu-engine matmul: every ISA equals the portable kernel",
                            &format!("{isa:?} is not available on this processor"),
                        );
                        continue;
                    }
                    let mut got = vec![0f32; rows * tokens];
                    matmul(isa, &w, &a, &mut got);
                    // Same integer sums, same float operations in the same order: same bits.
                    for (i, (g, r)) in got.iter().zip(&reference).enumerate() {
                        assert_eq!(
                            g.to_bits(),
                            r.to_bits(),
                            "{format:?} {isa:?} tokens={tokens} output {i}: {g} vs {r}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn quantized_products_approximate_the_float_product() {
        let (rows, cols, tokens) = (16, 512, 3);
        let wf = values(rows * cols, 3);
        let xf = values(tokens * cols, 4);
        let exact = float_matmul(&wf, &xf, cols);
        for (format, tolerance) in [
            (WeightFormat::Q8_0, 0.02),
            (WeightFormat::Q4_0, 0.15),
            (WeightFormat::Q4_1, 0.15),
        ] {
            let w = quantize_weights(format, &wf, cols);
            let a = QActs::quantize(&xf, cols);
            let mut got = vec![0f32; rows * tokens];
            matmul(Isa::detect(), &w, &a, &mut got);
            let err = got
                .iter()
                .zip(&exact)
                .map(|(g, e)| (g - e).abs())
                .fold(0f32, f32::max);
            let scale = exact.iter().fold(0f32, |m, e| m.max(e.abs()));
            assert!(
                err <= tolerance * scale,
                "{format:?}: error {err}, scale {scale}"
            );
        }
    }

    #[test]
    fn rows_dequantize_to_what_the_kernels_multiply() {
        let cols = 64;
        for format in [WeightFormat::Q4_0, WeightFormat::Q8_0, WeightFormat::Q4_1] {
            let w = quantize_weights(format, &values(2 * cols, 5), cols);
            let x = values(cols, 6);
            let a = QActs::quantize(&x, cols);
            let mut row = vec![0f32; cols];
            w.dequantize_row(1, &mut row);
            // The dequantized row times the dequantized activations is the kernel's product.
            let mut xq = vec![0f32; cols];
            for (b, chunk) in xq.chunks_exact_mut(BLOCK).enumerate() {
                for (j, v) in chunk.iter_mut().enumerate() {
                    *v = f32::from(a.blocks(Isa::Portable).qs[b * BLOCK + j])
                        * a.blocks(Isa::Portable).scale[b];
                }
            }
            let expected: f32 = row.iter().zip(&xq).map(|(a, b)| a * b).sum();
            let mut got = [0f32; 2];
            matmul(Isa::Portable, &w, &a, &mut got);
            assert!(
                (got[1] - expected).abs() < 1e-3,
                "{format:?}: {} vs {expected}",
                got[1]
            );
        }
    }

    fn candle_dtype(format: WeightFormat) -> candle_core::quantized::GgmlDType {
        use candle_core::quantized::GgmlDType;
        match format {
            WeightFormat::Q4_0 => GgmlDType::Q4_0,
            WeightFormat::Q8_0 => GgmlDType::Q8_0,
            WeightFormat::Q4_1 => GgmlDType::Q4_1,
            WeightFormat::Q5_0 => GgmlDType::Q5_0,
            WeightFormat::Q5_1 => GgmlDType::Q5_1,
            WeightFormat::Q4_K => GgmlDType::Q4K,
            WeightFormat::Q5_K => GgmlDType::Q5K,
            WeightFormat::Q6_K => GgmlDType::Q6K,
            WeightFormat::F16 => GgmlDType::F16,
            WeightFormat::BF16 => GgmlDType::BF16,
        }
    }

    /// Rows quantized by candle (genuine ggml blocks), packed, and candle's own dequantization
    /// of them.
    fn candle_quantized(format: WeightFormat, x: &[f32], cols: usize) -> (QMatrix, Vec<f32>) {
        use candle_core::quantized::QTensor;
        use candle_core::{Device, Tensor};
        let dtype = candle_dtype(format);
        let rows = x.len() / cols;
        let t = Tensor::from_vec(x.to_vec(), (rows, cols), &Device::Cpu).unwrap();
        let q = QTensor::quantize(&t, dtype).unwrap();
        let bytes = q.data().unwrap().into_owned();
        let dequantized = q.dequantize(&Device::Cpu).unwrap();
        let dequantized = dequantized.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let packed = QMatrix::pack(GgufRows::new(format, rows, cols, bytes).unwrap());
        (packed, dequantized)
    }

    const K_QUANTS: [WeightFormat; 3] =
        [WeightFormat::Q4_K, WeightFormat::Q5_K, WeightFormat::Q6_K];

    #[test]
    fn every_isa_matches_the_portable_kernel_for_k_quants() {
        // A partial row group, one and three super-blocks.
        for (format, (rows, cols)) in K_QUANTS
            .into_iter()
            .flat_map(|f| [(f, (37, 768)), (f, (21, 256))])
        {
            let (w, _) = candle_quantized(format, &values(rows * cols, 7), cols);
            // 3 and up: AVX2's Q5_K and Q6_K on unpacked groups; 16 and up: AMX's tiles,
            // whole and partial.
            for tokens in [1, 2, 3, 4, 5, 6, 7, 8, 9, 16, 17, 33] {
                let a = QActs::quantize(&values(tokens * cols, 8), cols);
                let mut reference = vec![0f32; rows * tokens];
                matmul(Isa::Portable, &w, &a, &mut reference);
                assert!(reference.iter().any(|v| *v != 0.0), "degenerate products");
                for isa in [Isa::Avx2, Isa::Avx512Vnni, Isa::Amx] {
                    if !isa.is_supported() {
                        rigger_model_gen::declare_skip(
                            "cpu-engine matmul: every ISA equals the portable kernel",
                            &format!("{isa:?} is not available on this processor"),
                        );
                        continue;
                    }
                    let mut got = vec![0f32; rows * tokens];
                    matmul(isa, &w, &a, &mut got);
                    for (i, (g, r)) in got.iter().zip(&reference).enumerate() {
                        assert_eq!(
                            g.to_bits(),
                            r.to_bits(),
                            "{format:?} {isa:?} tokens={tokens} output {i}: {g} vs {r}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn products_approximate_the_float_product_of_candles_dequantization() {
        let (rows, cols, tokens) = (24, 512, 3);
        let xf = values(tokens * cols, 10);
        for format in [
            WeightFormat::Q4_K,
            WeightFormat::Q5_K,
            WeightFormat::Q6_K,
            WeightFormat::Q4_1,
            WeightFormat::Q5_0,
            WeightFormat::Q5_1,
            WeightFormat::F16,
            WeightFormat::BF16,
        ] {
            let (w, dequantized) = candle_quantized(format, &values(rows * cols, 9), cols);
            let exact = float_matmul(&dequantized, &xf, cols);
            let a = QActs::quantize(&xf, cols);
            let mut got = vec![0f32; rows * tokens];
            matmul(Isa::detect(), &w, &a, &mut got);
            let err = got
                .iter()
                .zip(&exact)
                .map(|(g, e)| (g - e).abs())
                .fold(0f32, f32::max);
            let scale = exact.iter().fold(0f32, |m, e| m.max(e.abs()));
            // Only the activations' 8-bit rounding separates them: ~1/254 per value; float
            // weights meet the activations unrounded, so only the order of the sums.
            let bound = if format.is_float() { 1e-5 } else { 0.01 };
            assert!(
                err <= bound * scale,
                "{format:?}: error {err}, scale {scale}"
            );
            // And the rows dequantize as candle does.
            let mut row = vec![0f32; cols];
            for r in [0, 17, rows - 1] {
                w.dequantize_row(r, &mut row);
                assert_eq!(
                    row,
                    dequantized[r * cols..(r + 1) * cols],
                    "{format:?} row {r}"
                );
            }
        }
    }

    #[test]
    fn products_match_candles_quantized_matmul() {
        use candle_core::quantized::{QMatMul, QTensor};
        use candle_core::{Device, Module, Tensor};
        let (rows, cols, tokens) = (32, 768, 2);
        for format in [
            WeightFormat::Q4_K,
            WeightFormat::Q5_K,
            WeightFormat::Q6_K,
            WeightFormat::Q4_1,
            WeightFormat::Q5_0,
            WeightFormat::Q5_1,
        ] {
            let dtype = candle_dtype(format);
            let wf = values(rows * cols, 15);
            let xf = values(tokens * cols, 16);
            let t = Tensor::from_vec(wf, (rows, cols), &Device::Cpu).unwrap();
            let q = QTensor::quantize(&t, dtype).unwrap();
            let bytes = q.data().unwrap().into_owned();
            let w = QMatrix::pack(GgufRows::new(format, rows, cols, bytes.clone()).unwrap());
            let theirs = QMatMul::from_qtensor(q).unwrap();
            let x = Tensor::from_vec(xf.clone(), (tokens, cols), &Device::Cpu).unwrap();
            let want = theirs
                .forward(&x)
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap();
            let mut got = vec![0f32; rows * tokens];
            matmul(Isa::detect(), &w, &QActs::quantize(&xf, cols), &mut got);
            for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                let (t, r) = (i / rows, i % rows);
                // Q4_1 and Q5_1 against candle's Q8_1, which keeps each block's activation sum
                // times its scale in f16: each block's min term m × Σx is off by up to 2^-11 of itself
                // (2^-10 here, for the rounding of the scale too); the K-quants share our
                // integer sums, only the float order differs.
                let min_terms: f32 = if format.has_min() {
                    (0..cols / BLOCK)
                        .map(|b| {
                            let block = &bytes[(r * cols / BLOCK + b) * format.block_bytes()..];
                            let m = f16::from_le_bytes([block[2], block[3]]).to_f32();
                            let sum: f32 = xf[t * cols + b * BLOCK..][..BLOCK].iter().sum();
                            (m * sum).abs() / 1024.0
                        })
                        .sum()
                } else {
                    0.0
                };
                assert!(
                    (g - w).abs() <= 1e-4 * w.abs().max(1.0) + min_terms,
                    "{format:?} output {i}: {g} vs {w} (min terms allow {min_terms})"
                );
            }
        }
    }

    #[test]
    fn k_quant_activations_follow_candles_q8_k() {
        use candle_core::quantized::{GgmlDType, QTensor};
        use candle_core::{Device, Tensor};
        let x = values(512, 11);
        let t = Tensor::from_vec(x.clone(), 512, &Device::Cpu).unwrap();
        // Q8_K blocks: f32 scale, 256 bytes, 16 sums (i16).
        let theirs = QTensor::quantize(&t, GgmlDType::Q8K)
            .unwrap()
            .data()
            .unwrap()
            .into_owned();
        let ours = QActs::quantize(&x, 512);
        let ours = ours.supers(Isa::Portable);
        for (b, block) in theirs.chunks_exact(4 + 256 + 32).enumerate() {
            let d = f32::from_le_bytes([block[0], block[1], block[2], block[3]]);
            assert_eq!(d, ours.scale[b]);
            let qs: Vec<i8> = block[4..260].iter().map(|&q| q as i8).collect();
            assert_eq!(qs[..], ours.qs[256 * b..256 * (b + 1)]);
            let sums: Vec<i16> = block[260..]
                .chunks_exact(2)
                .map(|s| i16::from_le_bytes([s[0], s[1]]))
                .collect();
            assert_eq!(sums[..], ours.sums16[16 * b..16 * (b + 1)]);
        }
    }

    #[test]
    fn stacked_parts_of_different_formats_equal_their_separate_products() {
        let cols = 256;
        let (q6, _) = candle_quantized(WeightFormat::Q6_K, &values(20 * cols, 12), cols);
        let (q4, _) = candle_quantized(WeightFormat::Q4_K, &values(40 * cols, 13), cols);
        let rows_of = |format, n, seed| {
            let bytes = {
                use candle_core::quantized::{GgmlDType, QTensor};
                use candle_core::{Device, Tensor};
                let dtype = if format == WeightFormat::Q4_K {
                    GgmlDType::Q4K
                } else {
                    GgmlDType::Q6K
                };
                let t = Tensor::from_vec(values(n * cols, seed), (n, cols), &Device::Cpu).unwrap();
                QTensor::quantize(&t, dtype)
                    .unwrap()
                    .data()
                    .unwrap()
                    .into_owned()
            };
            GgufRows::new(format, n, cols, bytes).unwrap()
        };
        let stacked = Stacked::new(vec![
            rows_of(WeightFormat::Q4_K, 40, 13),
            rows_of(WeightFormat::Q6_K, 20, 12),
        ])
        .unwrap();
        assert_eq!(stacked.parts.len(), 2);
        let a = QActs::quantize(&values(3 * cols, 14), cols);
        let got = stacked.product(Isa::detect(), &a);
        let (mut first, mut second) = (vec![0f32; 3 * 40], vec![0f32; 3 * 20]);
        matmul(Isa::detect(), &q4, &a, &mut first);
        matmul(Isa::detect(), &q6, &a, &mut second);
        for t in 0..3 {
            assert_eq!(got[60 * t..60 * t + 40], first[40 * t..40 * (t + 1)]);
            assert_eq!(got[60 * t + 40..60 * (t + 1)], second[20 * t..20 * (t + 1)]);
        }
    }

    #[test]
    fn matrices_refuse_sizes_that_do_not_match_their_bytes() {
        assert!(GgufRows::new(WeightFormat::Q4_K, 1, 128, vec![0; 72]).is_err());
        assert!(GgufRows::new(WeightFormat::Q4_0, 2, 33, vec![0; 36]).is_err());
        assert!(GgufRows::new(WeightFormat::Q4_0, 2, 32, vec![0; 35]).is_err());
        let a = GgufRows::new(WeightFormat::Q4_0, 1, 32, vec![0; 18]).unwrap();
        let b = GgufRows::new(WeightFormat::Q8_0, 1, 32, vec![0; 34]).unwrap();
        assert!(GgufRows::stack(vec![a.clone(), b]).is_err());
        assert_eq!(
            QMatrix::pack(GgufRows::stack(vec![a.clone(), a]).unwrap()).rows(),
            2
        );
    }
}
