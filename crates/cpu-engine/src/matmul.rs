//! Quantized matrix products: ggml's Q4_0 and Q8_0 weight blocks against activations quantized
//! to 8 bits per 32-value block, the scheme llama.cpp uses, on the repacked layout
//! ([`QMatrix`]). Per block an exact integer dot product per row, then one convert and one fused
//! multiply-add per sixteen rows. Weights stream from memory once per call whatever the number of
//! tokens.
//!
//! Three instruction sets share one layout and one order of operations, so they give the same
//! bits: the portable kernel here (the reference the tests compare against), AVX2 and AVX-512
//! VNNI (`x86`), picked at run time. candle sums each block in eight lanes instead, so results
//! differ from candle's in the last bits (within 1e-4 relative at the kernel, a few hundredths
//! in the logits of a deep model).

use half::f16;
use rayon::prelude::*;

use crate::isa::Isa;
use crate::packing::{Group, QMatrix, ROWS, weight};
use crate::quant::{ActRow, BLOCK, QActs};
#[cfg(target_arch = "x86_64")]
use crate::x86;

/// The most tokens one kernel call takes.
pub(crate) const MAX_TILE: usize = 8;

/// `out[t * w.rows() + r]` = row `r` of `w` · activation row `t`, row groups split across the
/// rayon pool in force.
pub fn matmul(isa: Isa, w: &QMatrix, a: &QActs, out: &mut [f32]) {
    assert_eq!(w.cols, a.cols, "matmul: inner dimensions differ");
    assert_eq!(out.len(), a.rows * w.rows, "matmul: output size");
    assert!(isa.is_supported(), "matmul: {isa:?} is not available here");
    let threads = rayon::current_num_threads().max(1);
    let groups = w.rows.div_ceil(ROWS);
    // Several chunks per thread so a slow core does not hold the others back; at most 256 rows
    // per chunk, whose weights stay in L2 while the token tiles pass over them.
    let chunk_groups = groups.div_ceil(threads * 8).clamp(1, 256 / ROWS);
    let tokens = a.rows;
    let tile = isa.tokens_per_tile();
    // Results land group by group, token by token ([group][token][row]) so each chunk owns one
    // contiguous slice; a single token over whole groups is already `out`'s order.
    let direct = tokens == 1 && w.rows.is_multiple_of(ROWS);
    let mut by_group = if direct {
        Vec::new()
    } else {
        vec![0f32; groups * tokens * ROWS]
    };
    let target: &mut [f32] = if direct { out } else { &mut by_group };
    target
        .par_chunks_mut(chunk_groups * tokens * ROWS)
        .enumerate()
        .for_each(|(c, out)| {
            let first_group = c * chunk_groups;
            let mut results = [[0f32; ROWS]; MAX_TILE];
            // Token tiles outside, row groups inside: one tile's activations stay in L1 while
            // the chunk's weights stay in L2.
            let mut t = 0;
            while t < tokens {
                let n = (tokens - t).min(tile);
                for (i, group_out) in out.chunks_mut(tokens * ROWS).enumerate() {
                    let group = w.group(first_group + i);
                    group_tile(isa, group, a, t, n, &mut results);
                    for (o, r) in group_out[t * ROWS..(t + n) * ROWS]
                        .chunks_exact_mut(ROWS)
                        .zip(&results)
                    {
                        o.copy_from_slice(r);
                    }
                }
                t += n;
            }
        });
    if !direct {
        for (g, per_token) in by_group.chunks_exact(tokens * ROWS).enumerate() {
            let rows = g * ROWS..((g + 1) * ROWS).min(w.rows);
            for (t, values) in per_token.chunks_exact(ROWS).enumerate() {
                let start = t * w.rows;
                out[start + rows.start..start + rows.end].copy_from_slice(&values[..rows.len()]);
            }
        }
    }
}

/// `out[k][j]` = row `j` of the group · activation row `t0 + k`, for `n` (1..=8) tokens.
fn group_tile(
    isa: Isa,
    group: Group<'_>,
    a: &QActs,
    t0: usize,
    n: usize,
    out: &mut [[f32; ROWS]; MAX_TILE],
) {
    let acts: [ActRow<'_>; MAX_TILE] = std::array::from_fn(|k| a.row((t0 + k).min(a.rows - 1)));
    match isa {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 | Isa::Avx512Vnni => x86::group_tile(isa, group, &acts, n, out),
        _ => {
            for (per_token, act) in out.iter_mut().zip(&acts).take(n) {
                for (j, o) in per_token.iter_mut().enumerate() {
                    *o = portable_dot(group, j, *act);
                }
            }
        }
    }
}

/// The reference every kernel matches to the bit: per block the exact integer dot product,
/// the product of the two scales, one fused multiply-add, blocks in order.
fn portable_dot(group: Group<'_>, j: usize, a: ActRow<'_>) -> f32 {
    let mut total = 0f32;
    for b in 0..group.blocks {
        let (scales, payloads) = (group.scales(b), group.payloads(b));
        let dw = f16::from_le_bytes([scales[2 * j], scales[2 * j + 1]]).to_f32();
        let qa = &a.qs[b * BLOCK..(b + 1) * BLOCK];
        let dot: i32 = qa
            .iter()
            .enumerate()
            .map(|(k, &x)| weight(group.format, payloads, j, k) * i32::from(x))
            .sum();
        total = (dw * a.scale[b]).mul_add(dot as f32, total);
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quant::{GgufRows, WeightFormat, quantize_q8_0};

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

    /// Quantizes rows the way ggml does, for weights (the activation rule, stored as blocks).
    fn quantize_weights(format: WeightFormat, x: &[f32], cols: usize) -> QMatrix {
        let mut bytes = Vec::new();
        for block in x.chunks_exact(BLOCK) {
            match format {
                WeightFormat::Q8_0 => bytes.extend(quantize_q8_0(block)),
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
        for (format, (rows, cols)) in [WeightFormat::Q4_0, WeightFormat::Q8_0]
            .into_iter()
            .flat_map(|f| [(f, (37, 256)), (f, (21, 96))])
        {
            let w = quantize_weights(format, &values(rows * cols, 1), cols);
            for tokens in [1, 2, 3, 4, 5, 6, 7, 8, 9, 17] {
                let a = QActs::quantize(&values(tokens * cols, 2), cols);
                let mut reference = vec![0f32; rows * tokens];
                matmul(Isa::Portable, &w, &a, &mut reference);
                for isa in [Isa::Avx2, Isa::Avx512Vnni] {
                    if !isa.is_supported() {
                        eprintln!(
                            "SKIPPED (declared): {isa:?} is not available on this processor, so it is not compared"
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
        for (format, tolerance) in [(WeightFormat::Q8_0, 0.02), (WeightFormat::Q4_0, 0.15)] {
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
        for format in [WeightFormat::Q4_0, WeightFormat::Q8_0] {
            let w = quantize_weights(format, &values(2 * cols, 5), cols);
            let x = values(cols, 6);
            let a = QActs::quantize(&x, cols);
            let mut row = vec![0f32; cols];
            w.dequantize_row(1, &mut row);
            // The dequantized row times the dequantized activations is the kernel's product.
            let mut xq = vec![0f32; cols];
            for (b, chunk) in xq.chunks_exact_mut(BLOCK).enumerate() {
                for (j, v) in chunk.iter_mut().enumerate() {
                    *v = f32::from(a.qs[b * BLOCK + j]) * a.scale[b];
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

    #[test]
    fn matrices_refuse_sizes_that_do_not_match_their_bytes() {
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
