//! AVX2 kernels: the sixteen rows of a group as two halves of eight lanes, `maddubs` for the
//! integer products, up to two tokens per call.

#![allow(unsafe_code)] // SIMD loads; each unsafe block says why it stays inside its slices.

use std::arch::x86_64::*;

use super::{act_block, block_at, word};
use crate::matmul::MAX_TILE;
use crate::packing::{Group, ROWS};
use crate::quant::{ActRow, WeightFormat};

/// Q4_0 with AVX2: the sixteen rows as two halves of eight lanes; `maddubs` pairs summed in
/// 16 bits across the block (at most 8 × 2 × 15 × 127 = 30480, no saturation), then widened.
///
/// # Safety
/// The processor has AVX2, FMA and F16C; `group` holds `blocks` packed Q4_0 blocks and each
/// activation row at least `blocks` blocks.
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn q4_0_avx2<const N: usize>(
    group: Group<'_>,
    acts: &[ActRow<'_>; MAX_TILE],
    blocks: usize,
    out: &mut [[f32; ROWS]; MAX_TILE],
) {
    let mut acc = [[_mm256_setzero_ps(); N]; 2];
    let (mask, ones) = (_mm256_set1_epi8(0x0f), _mm256_set1_epi16(1));
    for b in 0..blocks {
        // SAFETY: block b lies inside `group` (checked by the caller).
        let (block, block_scales) = unsafe { block_at(&group, WeightFormat::Q4_0, b) };
        // Each activation word is broadcast once per block and serves both halves.
        let mut pairs = [[_mm256_setzero_si256(); N]; 2];
        for c in 0..4 {
            let x: [(__m256i, __m256i); N] = std::array::from_fn(|k| {
                // SAFETY: the activation row holds at least `blocks` blocks; c + 4 < 8.
                let (xl, xh) = unsafe {
                    let words = act_block(&acts[k], b).0;
                    (word(words, c), word(words, c + 4))
                };
                (_mm256_set1_epi32(xl), _mm256_set1_epi32(xh))
            });
            for (h, pairs) in pairs.iter_mut().enumerate() {
                // SAFETY: word c of half h lies inside the block's payload.
                let raw = unsafe { _mm256_loadu_si256(block.add(64 * c + 32 * h).cast()) };
                let lo = _mm256_and_si256(raw, mask);
                let hi = _mm256_and_si256(_mm256_srli_epi16(raw, 4), mask);
                for (pairs, (xl, xh)) in pairs.iter_mut().zip(x) {
                    let l = _mm256_maddubs_epi16(lo, xl);
                    let h = _mm256_maddubs_epi16(hi, xh);
                    *pairs = _mm256_add_epi16(*pairs, _mm256_add_epi16(l, h));
                }
            }
        }
        let dots = pairs.map(|half| {
            std::array::from_fn(|k| {
                // SAFETY: the activation row holds at least `blocks` blocks.
                let sum = unsafe { act_block(&acts[k], b).1 };
                _mm256_add_epi32(
                    _mm256_madd_epi16(half[k], ones),
                    _mm256_set1_epi32(-(sum << 3)),
                )
            })
        });
        // SAFETY: the block's scales and the activations' block b exist (as above).
        unsafe { scale_halves(&mut acc, block_scales, acts, b, &dots) };
    }
    store_halves(&acc, out);
}

/// Q8_0 with AVX2: `maddubs` would saturate on weights + 128, so |w| × (x · sign w), each
/// pair at most 2 × 128 × 127 = 32512, widened per word.
///
/// # Safety
/// As for [`q4_0_avx2`], with Q8_0 blocks.
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn q8_0_avx2<const N: usize>(
    group: Group<'_>,
    acts: &[ActRow<'_>; MAX_TILE],
    blocks: usize,
    out: &mut [[f32; ROWS]; MAX_TILE],
) {
    let mut acc = [[_mm256_setzero_ps(); N]; 2];
    let (flip, ones) = (_mm256_set1_epi8(-128), _mm256_set1_epi16(1));
    for b in 0..blocks {
        // SAFETY: block b lies inside `group` (checked by the caller).
        let (block, block_scales) = unsafe { block_at(&group, WeightFormat::Q8_0, b) };
        let mut dots = [[_mm256_setzero_si256(); N]; 2];
        for c in 0..8 {
            let x: [__m256i; N] = std::array::from_fn(|k| {
                // SAFETY: the activation row holds at least `blocks` blocks; c < 8.
                _mm256_set1_epi32(unsafe { word(act_block(&acts[k], b).0, c) })
            });
            for (h, dots) in dots.iter_mut().enumerate() {
                // SAFETY: word c of half h lies inside the block's payload.
                let raw = unsafe { _mm256_loadu_si256(block.add(64 * c + 32 * h).cast()) };
                let signed = _mm256_xor_si256(raw, flip);
                let magnitude = _mm256_abs_epi8(signed);
                for (dots, x) in dots.iter_mut().zip(x) {
                    let x = _mm256_sign_epi8(x, signed);
                    let p = _mm256_madd_epi16(_mm256_maddubs_epi16(magnitude, x), ones);
                    *dots = _mm256_add_epi32(*dots, p);
                }
            }
        }
        // SAFETY: the block's scales and the activations' block b exist (as above).
        unsafe { scale_halves(&mut acc, block_scales, acts, b, &dots) };
    }
    store_halves(&acc, out);
}

/// Adds one block's exact integer dot products (per half, per token) to the accumulators:
/// the product of the two scales, then one multiply-add, as the portable kernel does.
///
/// # Safety
/// `scales` points at the block's sixteen f16 scales; every activation row holds block `b`.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
unsafe fn scale_halves<const N: usize>(
    acc: &mut [[__m256; N]; 2],
    scales: *const u8,
    acts: &[ActRow<'_>; MAX_TILE],
    b: usize,
    dots: &[[__m256i; N]; 2],
) {
    for (h, (acc, dots)) in acc.iter_mut().zip(dots).enumerate() {
        // SAFETY: the half's eight scales lie inside the block's sixteen.
        let dw = _mm256_cvtph_ps(unsafe { _mm_loadu_si128(scales.add(16 * h).cast()) });
        for (k, (acc, dot)) in acc.iter_mut().zip(dots).enumerate() {
            // SAFETY: the caller's promise.
            let da = unsafe { act_block(&acts[k], b).2 };
            let d = _mm256_mul_ps(dw, _mm256_set1_ps(da));
            *acc = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(*dot), *acc);
        }
    }
}

#[target_feature(enable = "avx2")]
#[inline]
fn store_halves<const N: usize>(acc: &[[__m256; N]; 2], out: &mut [[f32; ROWS]; MAX_TILE]) {
    for (h, acc) in acc.iter().enumerate() {
        for (o, v) in out.iter_mut().zip(acc) {
            // SAFETY: `o` holds sixteen floats; half h is eight of them.
            unsafe { _mm256_storeu_ps(o.as_mut_ptr().add(8 * h), *v) };
        }
    }
}
