//! The layers transformer architectures share, on f32 rows: RMS norm, rotary embedding,
//! gated feed-forward activations (SwiGLU, GELU-tanh), the residual add.
//!
//! Each works row by row, and a prompt's rows go across the engine's threads: run on one thread,
//! these element-wise passes (SwiGLU's `exp` above all) were about a third of a 2-thread
//! prompt and kept prompts from scaling with threads. A row's arithmetic is the same either
//! way, so the results are the same bits.

#![allow(unsafe_code)] // the AVX2 builds of the norms and gated activations, called after checking for AVX2; rows handed to the quantizer by the one task that made them.

use crate::parallel::{copied_rows_then, each_chunk_mut, updated_then_copied, zeroed_rows_then};
use crate::quant::RowSink;

/// Calls `f(row index, row)` on each `width`-wide row of `x`; rows across the threads when there
/// are several (one row, a decode step, stays on the calling thread: no section to pay).
pub(crate) fn each_row<F>(x: &mut [f32], width: usize, f: F)
where
    F: Fn(usize, &mut [f32]) + Sync,
{
    each_chunk_mut(x, width, f);
}

/// Rows a task of [`rms_norm`] sums side by side.
const NORM_ROWS: usize = 8;

/// Each `dim`-wide row of `x`, normalised by its root mean square and scaled by `weight`.
/// Eight rows' sums of squares run side by side, each in its own row's order (candle's, one
/// value after another), and the divisions run 8 wide in the AVX2 build: 128 × 2048 values on
/// 2 threads (AMD Zen 5) 97 → 52 µs, where one row per task summed in one chain of dependent
/// adds and divided 4 wide.
pub(crate) fn rms_norm(
    x: &[f32],
    weight: &[f32],
    dim: usize,
    eps: f32,
    sink: &RowSink<'_>,
) -> Vec<f32> {
    // Each task copies its rows, normalises them while they are in cache and quantizes them
    // into `sink`: one section.
    copied_rows_then(x, NORM_ROWS * dim, |i, rows| {
        norm_and_quantize(i, rows, dim, weight, eps, sink)
    })
}

/// The residual connection `x += y` and then [`rms_norm`] of the new `x`, each group of rows
/// added and normalised in one task (one section where there were two).
pub(crate) fn add_then_rms_norm(
    x: &mut [f32],
    y: &[f32],
    weight: &[f32],
    dim: usize,
    eps: f32,
    sink: &RowSink<'_>,
) -> Vec<f32> {
    let width = NORM_ROWS * dim;
    updated_then_copied(
        x,
        width,
        |i, rows| add_row(rows, &y[i * width..]),
        |i, rows| norm_and_quantize(i, rows, dim, weight, eps, sink),
    )
}

/// Group `i` of a norm's rows (rows `8i..`, as the section's task `i` holds them) normalised in
/// place, then quantized into `sink`.
fn norm_and_quantize(
    i: usize,
    rows: &mut [f32],
    dim: usize,
    weight: &[f32],
    eps: f32,
    sink: &RowSink<'_>,
) {
    norm_rows(rows, dim, weight, eps);
    // SAFETY: the section's task i alone makes rows 8i.. .
    unsafe { sink.put(i * NORM_ROWS, rows) };
}

/// Up to [`NORM_ROWS`] rows of [`rms_norm`], in place, in the AVX2 build where there is AVX2.
fn norm_rows(rows: &mut [f32], dim: usize, weight: &[f32], eps: f32) {
    #[cfg(target_arch = "x86_64")]
    if is_x86_feature_detected!("avx2") {
        // SAFETY: the processor has AVX2 (checked just above).
        unsafe { norm_rows_avx2(rows, dim, weight, eps) };
        return;
    }
    norm_rows_body(rows, dim, weight, eps);
}

/// [`norm_rows_body`] compiled for AVX2: the divisions 8 wide, the same operations, so the same
/// bits.
///
/// # Safety
/// The processor has AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn norm_rows_avx2(rows: &mut [f32], dim: usize, weight: &[f32], eps: f32) {
    norm_rows_body(rows, dim, weight, eps);
}

/// Up to [`NORM_ROWS`] rows of [`rms_norm`], in place.
#[inline(always)]
fn norm_rows_body(rows: &mut [f32], dim: usize, weight: &[f32], eps: f32) {
    let mut sums = [0f32; NORM_ROWS];
    let n = rows.len() / dim;
    for i in 0..dim {
        for (r, sum) in sums.iter_mut().enumerate().take(n) {
            let v = rows[r * dim + i];
            *sum += v * v;
        }
    }
    for (row, sum) in rows.chunks_exact_mut(dim).zip(sums) {
        scale_row(row, sum, weight, eps);
    }
}

/// [`rms_norm`] of one row, in place, on the calling thread.
pub(crate) fn rms_norm_row(row: &mut [f32], weight: &[f32], eps: f32) {
    let sum = row.iter().map(|v| v * v).sum::<f32>();
    scale_row(row, sum, weight, eps);
}

/// A row divided by its root mean square (from `sum`, its values' squares summed in order) and
/// scaled by `weight`.
#[inline(always)]
fn scale_row(row: &mut [f32], sum: f32, weight: &[f32], eps: f32) {
    // Divided, not multiplied by the inverse: candle's rounding, so 8-bit activation
    // quantization downstream sees the same values.
    let rms = (sum / row.len() as f32 + eps).sqrt();
    row.iter_mut()
        .zip(weight)
        .for_each(|(v, w)| *v = *v / rms * w);
}

/// How a rotary embedding pairs a head's dimensions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RopeStyle {
    /// Adjacent pairs `(2i, 2i + 1)`: GGUF's `llama` files, whose Q/K rows the converter
    /// permuted for it.
    Interleaved,
    /// Dimension `i` with `i + head_dim / 2` (GPT-NeoX's layout): qwen2, qwen3, phi3, gemma3,
    /// whose Q/K rows GGUF keeps as trained.
    Neox,
}

/// Rotary position embedding over whole heads.
#[derive(Debug, Clone)]
pub(crate) struct Rope {
    head_dim: usize,
    style: RopeStyle,
    inv_freq: Vec<f32>,
}

impl Rope {
    /// Frequencies `base^(-2i/head_dim)` as candle computes them for most models: f32 powers,
    /// then f32 angles.
    pub(crate) fn new(head_dim: usize, base: f32, style: RopeStyle) -> Self {
        let inv_freq = (0..head_dim)
            .step_by(2)
            .map(|i| 1.0 / base.powf(i as f32 / head_dim as f32))
            .collect();
        Self {
            head_dim,
            style,
            inv_freq,
        }
    }

    /// The same frequencies from f64 powers rounded to f32 (candle's `quantized_qwen3`).
    pub(crate) fn new_f64(head_dim: usize, base: f64, style: RopeStyle) -> Self {
        let inv_freq = (0..head_dim)
            .step_by(2)
            .map(|i| 1.0 / base.powf(i as f64 / head_dim as f64) as f32)
            .collect();
        Self {
            head_dim,
            style,
            inv_freq,
        }
    }

    /// Linear position scaling: positions divided by `factor` (1: none).
    pub(crate) fn scaled(mut self, factor: f32) -> Self {
        if factor != 1.0 {
            self.inv_freq.iter_mut().for_each(|f| *f /= factor);
        }
        self
    }

    /// Rotates the pairs of every head in `x` to `position`.
    pub(crate) fn apply(&self, x: &mut [f32], position: usize) {
        let angles: Vec<(f32, f32)> = self
            .inv_freq
            .iter()
            .map(|f| (position as f32 * f).sin_cos())
            .collect();
        match self.style {
            RopeStyle::Interleaved => {
                for head in x.chunks_exact_mut(self.head_dim) {
                    for (pair, (sin, cos)) in head.chunks_exact_mut(2).zip(&angles) {
                        let (a, b) = (pair[0], pair[1]);
                        pair[0] = a * cos - b * sin;
                        pair[1] = a * sin + b * cos;
                    }
                }
            }
            RopeStyle::Neox => {
                for head in x.chunks_exact_mut(self.head_dim) {
                    let (low, high) = head.split_at_mut(self.head_dim / 2);
                    for ((a, b), (sin, cos)) in low.iter_mut().zip(high).zip(&angles) {
                        let (x1, x2) = (*a, *b);
                        *a = x1 * cos - x2 * sin;
                        *b = x1 * sin + x2 * cos;
                    }
                }
            }
        }
    }
}

/// SwiGLU on rows of `[gate | up]`, each half `ffn` wide: silu(gate) × up.
pub(crate) fn swiglu(gate_up: &[f32], ffn: usize, sink: &RowSink<'_>) -> Vec<f32> {
    gated(gate_up, ffn, |g| g / (1.0 + crate::math::exp(-g)), sink)
}

/// GELU (tanh approximation) gating on rows of `[gate | up]`, each half `ffn` wide:
/// gelu(gate) × up (Gemma's feed-forward).
pub(crate) fn gelu_tanh_gate(gate_up: &[f32], ffn: usize, sink: &RowSink<'_>) -> Vec<f32> {
    gated(gate_up, ffn, gelu_tanh, sink)
}

/// `activation(gate) × up` on rows of `[gate | up]`, each row quantized into `sink` by the task
/// that made it.
fn gated<F>(gate_up: &[f32], ffn: usize, activation: F, sink: &RowSink<'_>) -> Vec<f32>
where
    F: Fn(f32) -> f32 + Send + Sync,
{
    zeroed_rows_then(gate_up.len() / 2, ffn, |i, row| {
        let (gate, up) = gate_up[2 * ffn * i..2 * ffn * (i + 1)].split_at(ffn);
        #[cfg(target_arch = "x86_64")]
        if is_x86_feature_detected!("avx2") {
            // SAFETY: the processor has AVX2 (checked just above).
            unsafe { gated_row_avx2(row, gate, up, &activation) };
        } else {
            gated_row(row, gate, up, &activation);
        }
        #[cfg(not(target_arch = "x86_64"))]
        gated_row(row, gate, up, &activation);
        // SAFETY: task i alone makes row i.
        unsafe { sink.put(i, row) };
    })
}

/// [`gated_row`] compiled for AVX2: the activation inlined and 8 wide where it is arithmetic
/// (SiLU with [`crate::math::exp`]), the same operations, so the same bits.
///
/// # Safety
/// The processor has AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn gated_row_avx2<F: Fn(f32) -> f32>(out: &mut [f32], gate: &[f32], up: &[f32], f: &F) {
    gated_row(out, gate, up, f);
}

#[inline(always)]
fn gated_row<F: Fn(f32) -> f32>(out: &mut [f32], gate: &[f32], up: &[f32], activation: &F) {
    for ((o, &g), u) in out.iter_mut().zip(gate).zip(up) {
        *o = activation(g) * u;
    }
}

/// GELU's tanh approximation, in candle's order of operations.
fn gelu_tanh(v: f32) -> f32 {
    const SQRT_TWO_OVER_PI: f32 = 0.797_884_6;
    0.5 * v * (1.0 + (SQRT_TWO_OVER_PI * v * (1.0 + 0.044715 * v * v)).tanh())
}

/// Each row of `x` plus `bias` (one value per column).
pub(crate) fn add_bias(x: &mut [f32], bias: &[f32]) {
    each_row(x, bias.len(), |_, row| add_row(row, bias));
}

/// The residual connection: `x += y`, rows of `width`.
pub(crate) fn add(x: &mut [f32], y: &[f32], width: usize) {
    each_row(x, width, |i, row| {
        add_row(row, &y[i * width..(i + 1) * width])
    });
}

fn add_row(x: &mut [f32], y: &[f32]) {
    for (a, b) in x.iter_mut().zip(y) {
        *a += b;
    }
}

#[cfg(test)]
mod tests {
    use candle_core::{Device, Tensor};

    use super::*;

    /// The same bits as candle's `gelu` (its tanh approximation) times `up`.
    #[test]
    fn gelu_tanh_gating_matches_candles_gelu() {
        let ffn = 64;
        let gate: Vec<f32> = (0..ffn).map(|i| (i as f32 - 32.0) * 0.21).collect();
        let up: Vec<f32> = (0..ffn).map(|i| 1.0 + i as f32 * 0.01).collect();
        let ours = gelu_tanh_gate(&[gate.clone(), up.clone()].concat(), ffn, &RowSink::NONE);
        let candle = Tensor::new(gate.as_slice(), &Device::Cpu)
            .and_then(|g| g.gelu())
            .and_then(|g| g * Tensor::new(up.as_slice(), &Device::Cpu)?)
            .and_then(|t| t.to_vec1::<f32>())
            .expect("candle's gelu");
        for (i, (a, b)) in ours.iter().zip(&candle).enumerate() {
            assert_eq!(a.to_bits(), b.to_bits(), "value {i}: {a} vs {b}");
        }
    }

    /// Rows normalised side by side give each row's own bits: as one row alone, and as
    /// candle's `rms_norm`.
    #[test]
    fn rows_normalised_together_equal_each_row_alone_and_candles() {
        let (dim, rows) = (96, 19); // two whole tasks of eight rows and a partial one
        let noise = |i: usize| ((i * 7919 % 1009) as f32 / 1009.0 - 0.5) * (1.0 + (i % 13) as f32);
        let x: Vec<f32> = (0..dim * rows).map(noise).collect();
        let weight: Vec<f32> = (0..dim).map(|i| 0.5 + i as f32 * 0.01).collect();
        let together = rms_norm(&x, &weight, dim, 1e-5, &RowSink::NONE);
        let candle = Tensor::from_vec(x.clone(), (rows, dim), &Device::Cpu)
            .and_then(|t| {
                candle_nn::ops::rms_norm(&t, &Tensor::new(weight.as_slice(), &Device::Cpu)?, 1e-5)
            })
            .and_then(|t| t.flatten_all()?.to_vec1::<f32>())
            .expect("candle's rms_norm");
        for (r, row) in x.chunks_exact(dim).enumerate() {
            let mut alone = row.to_vec();
            rms_norm_row(&mut alone, &weight, 1e-5);
            let got = &together[r * dim..(r + 1) * dim];
            let theirs = &candle[r * dim..(r + 1) * dim];
            for (i, ((a, b), c)) in got.iter().zip(&alone).zip(theirs).enumerate() {
                assert_eq!(a.to_bits(), b.to_bits(), "row {r} value {i}: {a} vs {b}");
                assert_eq!(
                    a.to_bits(),
                    c.to_bits(),
                    "row {r} value {i}: {a} vs candle's {c}"
                );
            }
        }
    }

    /// The fused residual add and norm give what the add and then the norm give, to the bit, and
    /// leave the sum in `x`.
    #[test]
    fn add_then_norm_equals_the_add_and_then_the_norm() {
        let (dim, rows) = (64, 21); // two whole groups of eight rows and a partial one
        let x: Vec<f32> = (0..dim * rows)
            .map(|i| ((i * 37 % 101) as f32 - 50.0) / 7.0)
            .collect();
        let y: Vec<f32> = (0..dim * rows)
            .map(|i| ((i * 53 % 97) as f32 - 48.0) / 5.0)
            .collect();
        let weight: Vec<f32> = (0..dim).map(|i| 0.75 + i as f32 * 0.02).collect();
        let mut fused_x = x.clone();
        let fused = add_then_rms_norm(&mut fused_x, &y, &weight, dim, 1e-6, &RowSink::NONE);
        let mut apart_x = x;
        add(&mut apart_x, &y, dim);
        let apart = rms_norm(&apart_x, &weight, dim, 1e-6, &RowSink::NONE);
        assert_eq!(fused_x, apart_x);
        assert_eq!(fused.len(), apart.len());
        for (i, (a, b)) in fused.iter().zip(&apart).enumerate() {
            assert_eq!(a.to_bits(), b.to_bits(), "value {i}: {a} vs {b}");
        }
    }

    /// NeoX pairs dimension `i` with `i + half`; interleaved pairs neighbours.
    #[test]
    fn rope_styles_pair_different_dimensions() {
        let x: Vec<f32> = (0..8).map(|i| i as f32 + 1.0).collect();
        let (mut neox, mut interleaved) = (x.clone(), x.clone());
        Rope::new(8, 10_000.0, RopeStyle::Neox).apply(&mut neox, 3);
        Rope::new(8, 10_000.0, RopeStyle::Interleaved).apply(&mut interleaved, 3);
        let (sin, cos) = 3f32.sin_cos(); // first frequency is 1
        assert_eq!(neox[0], x[0] * cos - x[4] * sin);
        assert_eq!(neox[4], x[0] * sin + x[4] * cos);
        assert_eq!(interleaved[0], x[0] * cos - x[1] * sin);
        assert_eq!(interleaved[1], x[0] * sin + x[1] * cos);
    }
}
