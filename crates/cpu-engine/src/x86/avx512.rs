//! AVX-512 VNNI kernels: `dpbusd` over sixteen rows in the sixteen lanes of a 512-bit register,
//! up to eight tokens per call, and a one-token kernel in 256-bit halves.

#![allow(unsafe_code)] // SIMD loads; each unsafe block says why it stays inside its slices.

use std::arch::x86_64::*;

use super::{act_block, block_at, word};
use crate::matmul::MAX_TILE;
use crate::packing::{Group, ROWS};
use crate::quant::{ActRow, WeightFormat};

/// The sixteen rows' Q4_0 weights of one block, as unsigned nibbles: register `c` holds
/// values 4c..4c+4 of every row (low nibbles of words 0..4, then high nibbles).
///
/// # Safety
/// `block` points at a group's Q4_0 block payload (256 bytes).
#[target_feature(enable = "avx512f,avx512bw")]
#[inline]
unsafe fn q4_0_weights(block: *const u8) -> [__m512i; 8] {
    let mask = _mm512_set1_epi8(0x0f);
    let mut w = [_mm512_setzero_si512(); 8];
    for c in 0..4 {
        // SAFETY: the payload holds four 64-byte words.
        let raw = unsafe { _mm512_loadu_si512(block.add(64 * c).cast()) };
        w[c] = _mm512_and_si512(raw, mask);
        w[c + 4] = _mm512_and_si512(_mm512_srli_epi16(raw, 4), mask);
    }
    w
}

/// The sixteen rows' Q8_0 weights of one block, + 128 as stored: register `c` holds values
/// 4c..4c+4 of every row.
///
/// # Safety
/// `block` points at a group's Q8_0 block payload (512 bytes).
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn q8_0_weights(block: *const u8) -> [__m512i; 8] {
    let mut w = [_mm512_setzero_si512(); 8];
    for (c, w) in w.iter_mut().enumerate() {
        // SAFETY: the payload holds eight 64-byte words.
        *w = unsafe { _mm512_loadu_si512(block.add(64 * c).cast()) };
    }
    w
}

/// Sixteen rows in the sixteen lanes of one 512-bit register: per block and token eight
/// `dpbusd` (weights unsigned, four broadcast activation bytes), started from the offset
/// correction −2^shift × the activation sum, then one convert and one multiply-add.
macro_rules! vnni_kernel {
    ($name:ident, $weights:ident, $format:ident, $shift:literal) => {
        /// # Safety
        /// The processor has AVX-512 F/BW/VNNI; `group` holds `blocks` packed blocks and
        /// each activation row at least `blocks` blocks.
        #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
        pub(super) unsafe fn $name<const N: usize>(
            group: Group<'_>,
            acts: &[ActRow<'_>; MAX_TILE],
            blocks: usize,
            out: &mut [[f32; ROWS]; MAX_TILE],
        ) {
            let mut acc = [_mm512_setzero_ps(); N];
            for b in 0..blocks {
                // SAFETY: block b lies inside `group` (checked by the caller).
                let (block, scales) = unsafe { block_at(&group, WeightFormat::$format, b) };
                // SAFETY: as above.
                let dw = _mm512_cvtph_ps(unsafe { _mm256_loadu_si256(scales.cast()) });
                // SAFETY: as above.
                let w = unsafe { $weights(block) };
                for (k, acc) in acc.iter_mut().enumerate() {
                    // SAFETY: the activation row holds at least `blocks` blocks.
                    let (words, sum, da) = unsafe { act_block(&acts[k], b) };
                    let mut dot = _mm512_set1_epi32(-(sum << $shift));
                    for (c, w) in w.iter().enumerate() {
                        // SAFETY: c < 8 words of this block.
                        let x = _mm512_set1_epi32(unsafe { word(words, c) });
                        dot = _mm512_dpbusd_epi32(dot, *w, x);
                    }
                    let d = _mm512_mul_ps(dw, _mm512_set1_ps(da));
                    *acc = _mm512_fmadd_ps(d, _mm512_cvtepi32_ps(dot), *acc);
                }
            }
            for (o, acc) in out.iter_mut().zip(acc) {
                // SAFETY: `o` holds sixteen floats.
                unsafe { _mm512_storeu_ps(o.as_mut_ptr(), acc) };
            }
        }
    };
}

/// One token: the same arithmetic in 256-bit halves (rows 0..8, 8..16 of each 64-byte word).
/// Decoding streams the weights from memory, and on AMD Zen 4 the 512-bit loads of the
/// multi-token kernel reached half the bandwidth 256-bit loads do for Q8_0 (13–15 against
/// 24–33 GB/s, 1.1B shape, 2 threads); for Q4_0 the two were level.
macro_rules! vnni_one_kernel {
    ($name:ident, $format:ident, $shift:literal, $words:literal,
     |$block:ident, $c:ident, $act:ident, $dots:ident| $body:block) => {
        /// # Safety
        /// The processor has AVX-512 VL/VNNI; `group` holds its blocks and the activation
        /// row at least as many.
        #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512vl,avx512vnni")]
        pub(super) unsafe fn $name(group: Group<'_>, act: &ActRow<'_>, out: &mut [f32; ROWS]) {
            let mut acc = [_mm256_setzero_ps(); 2];
            for b in 0..group.blocks {
                // SAFETY: block b lies inside `group` (checked by the caller).
                let ($block, scales) = unsafe { block_at(&group, WeightFormat::$format, b) };
                // SAFETY: the activation row holds at least `blocks` blocks.
                let ($act, sum, da) = unsafe { act_block(act, b) };
                // One accumulator per half; each activation word is broadcast once.
                let mut $dots = [_mm256_set1_epi32(-(sum << $shift)); 2];
                for $c in 0..$words $body
                for (h, (acc, dot)) in acc.iter_mut().zip($dots).enumerate() {
                    // SAFETY: the half's eight scales lie inside the block's scales.
                    let dw = _mm256_cvtph_ps(unsafe {
                        _mm_loadu_si128(scales.add(16 * h).cast())
                    });
                    let d = _mm256_mul_ps(dw, _mm256_set1_ps(da));
                    *acc = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(dot), *acc);
                }
            }
            for (h, acc) in acc.iter().enumerate() {
                // SAFETY: `out` holds sixteen floats; half h is eight of them.
                unsafe { _mm256_storeu_ps(out.as_mut_ptr().add(8 * h), *acc) };
            }
        }
    };
}

vnni_one_kernel!(q4_0_vnni_one, Q4_0, 3, 4, |block, c, words, dots| {
    let mask = _mm256_set1_epi8(0x0f);
    // SAFETY: c + 4 < 8 words of the activation block.
    let (xl, xh) = unsafe { (word(words, c), word(words, c + 4)) };
    let (xl, xh) = (_mm256_set1_epi32(xl), _mm256_set1_epi32(xh));
    for (h, dot) in dots.iter_mut().enumerate() {
        // SAFETY: word c of half h lies inside the block's payload.
        let raw = unsafe { _mm256_loadu_si256(block.add(64 * c + 32 * h).cast()) };
        let lo = _mm256_and_si256(raw, mask);
        let hi = _mm256_and_si256(_mm256_srli_epi16(raw, 4), mask);
        *dot = _mm256_dpbusd_epi32(_mm256_dpbusd_epi32(*dot, lo, xl), hi, xh);
    }
});

vnni_one_kernel!(q8_0_vnni_one, Q8_0, 7, 8, |block, c, words, dots| {
    // SAFETY: c < 8 words of the activation block.
    let x = _mm256_set1_epi32(unsafe { word(words, c) });
    for (h, dot) in dots.iter_mut().enumerate() {
        // SAFETY: word c of half h lies inside the block's payload.
        let w = unsafe { _mm256_loadu_si256(block.add(64 * c + 32 * h).cast()) };
        *dot = _mm256_dpbusd_epi32(*dot, w, x);
    }
});

vnni_kernel!(q4_0_vnni, q4_0_weights, Q4_0, 3);
vnni_kernel!(q8_0_vnni, q8_0_weights, Q8_0, 7);
