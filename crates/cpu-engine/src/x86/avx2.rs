//! AVX2 kernels: the sixteen rows of a group as two halves of eight lanes, `maddubs` for the
//! integer products, up to two tokens per call.

#![allow(unsafe_code)] // SIMD loads; each unsafe block says why it stays inside its slices.

use std::arch::x86_64::*;

use super::{
    UNPACKED_SUPER_BYTES, act_block, block_at, prefetch, prefetch_blocks_ahead, sum_pair,
    unpacked_at, word,
};
use crate::matmul::MAX_TILE;
use crate::packing::{
    FLOAT_COLUMN_BYTES, Group, MINS_AFTER_SCALES, Q5_0_HI, ROWS, group_stride, q4_k, q5_k, q6_k,
};
use crate::quant::{ActRow, SUPER, SuperRow, WeightFormat};

/// Q4_0 with AVX2.
///
/// # Safety
/// As for [`q4_avx2`].
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn q4_0_avx2<const N: usize>(
    group: Group<'_>,
    acts: &[ActRow<'_>; MAX_TILE],
    blocks: usize,
    out: &mut [[f32; ROWS]; MAX_TILE],
) {
    // SAFETY: the caller's promise.
    unsafe { q4_avx2::<N, false, false>(group, acts, blocks, out) }
}

/// Q4_1 with AVX2.
///
/// # Safety
/// As for [`q4_avx2`].
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn q4_1_avx2<const N: usize>(
    group: Group<'_>,
    acts: &[ActRow<'_>; MAX_TILE],
    blocks: usize,
    out: &mut [[f32; ROWS]; MAX_TILE],
) {
    // SAFETY: the caller's promise.
    unsafe { q4_avx2::<N, true, false>(group, acts, blocks, out) }
}

/// Q5_0 with AVX2.
///
/// # Safety
/// As for [`q4_avx2`].
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn q5_0_avx2<const N: usize>(
    group: Group<'_>,
    acts: &[ActRow<'_>; MAX_TILE],
    blocks: usize,
    out: &mut [[f32; ROWS]; MAX_TILE],
) {
    // SAFETY: the caller's promise.
    unsafe { q4_avx2::<N, false, true>(group, acts, blocks, out) }
}

/// Q5_1 with AVX2.
///
/// # Safety
/// As for [`q4_avx2`].
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn q5_1_avx2<const N: usize>(
    group: Group<'_>,
    acts: &[ActRow<'_>; MAX_TILE],
    blocks: usize,
    out: &mut [[f32; ROWS]; MAX_TILE],
) {
    // SAFETY: the caller's promise.
    unsafe { q4_avx2::<N, true, true>(group, acts, blocks, out) }
}

/// The fifth bits of nibble word `c` (`hi`: half of a Q5_0 block's fifth-bit word, or of a Q5_K
/// word's, where `c` counts within its four nibble words) moved to bit 4 of each byte: for the
/// low nibbles, for the high nibbles ([`crate::packing::Q5_0_HI`], [`crate::packing::q5_k`]).
#[target_feature(enable = "avx2")]
#[inline]
pub(super) fn fifth_bits_256(hi: __m256i, c: usize) -> (__m256i, __m256i) {
    let bit = _mm256_set1_epi8(0x10);
    let (low, high) = match c {
        0 => (_mm256_slli_epi16(hi, 4), _mm256_slli_epi16(hi, 3)),
        1 => (_mm256_slli_epi16(hi, 2), _mm256_slli_epi16(hi, 1)),
        2 => (hi, _mm256_srli_epi16(hi, 1)),
        _ => (_mm256_srli_epi16(hi, 2), _mm256_srli_epi16(hi, 3)),
    };
    (_mm256_and_si256(low, bit), _mm256_and_si256(high, bit))
}

/// Q4_0 (nibbles stored + 8), Q4_1 (`MIN`: the block's min added), Q5_0 (`FIVE`: each
/// nibble's fifth bit put back, values stored + 16) and Q5_1 (both) with AVX2: the sixteen rows
/// as two halves of eight lanes; `maddubs` pairs summed in 16 bits (four-bit values across the
/// block, at most 8 × 2 × 15 × 127 = 30480; five-bit ones across two words, at most
/// 4 × 2 × 31 × 127 = 31496: no saturation), then widened.
///
/// # Safety
/// The processor has AVX2, FMA and F16C; `group` holds `blocks` packed Q4_0 (Q4_1, Q5_0, Q5_1)
/// blocks and each activation row at least `blocks` blocks.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
unsafe fn q4_avx2<const N: usize, const MIN: bool, const FIVE: bool>(
    group: Group<'_>,
    acts: &[ActRow<'_>; MAX_TILE],
    blocks: usize,
    out: &mut [[f32; ROWS]; MAX_TILE],
) {
    let (format, offset) = match (MIN, FIVE) {
        (true, false) => (WeightFormat::Q4_1, 0),
        (true, true) => (WeightFormat::Q5_1, 0),
        (false, true) => (WeightFormat::Q5_0, 16),
        (false, false) => (WeightFormat::Q4_0, 8),
    };
    let mut acc = [[_mm256_setzero_ps(); N]; 2];
    let (mask, ones) = (_mm256_set1_epi8(0x0f), _mm256_set1_epi16(1));
    for b in 0..blocks {
        // SAFETY: block b lies inside `group` (checked by the caller).
        let (block, block_scales) = unsafe { block_at(&group, format, b) };
        if N == 1 {
            prefetch_blocks_ahead(&group, format, b);
        }
        // Each activation word is broadcast once per block and serves both halves.
        let mut pairs = [[_mm256_setzero_si256(); N]; 2];
        let mut wide = [[_mm256_setzero_si256(); N]; 2];
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
                let mut lo = _mm256_and_si256(raw, mask);
                let mut hi = _mm256_and_si256(_mm256_srli_epi16(raw, 4), mask);
                if FIVE {
                    // SAFETY: half h of the block's fifth bits lies inside its payload.
                    let fifth = unsafe { _mm256_loadu_si256(block.add(Q5_0_HI + 32 * h).cast()) };
                    let (fl, fh) = fifth_bits_256(fifth, c);
                    lo = _mm256_or_si256(lo, fl);
                    hi = _mm256_or_si256(hi, fh);
                }
                for (pairs, (xl, xh)) in pairs.iter_mut().zip(x) {
                    let l = _mm256_maddubs_epi16(lo, xl);
                    let h = _mm256_maddubs_epi16(hi, xh);
                    *pairs = _mm256_add_epi16(*pairs, _mm256_add_epi16(l, h));
                }
            }
            if c == 3 || (FIVE && c == 1) {
                for (wide, pairs) in wide.iter_mut().zip(&mut pairs) {
                    for (w, p) in wide.iter_mut().zip(pairs.iter_mut()) {
                        *w = _mm256_add_epi32(*w, _mm256_madd_epi16(*p, ones));
                        *p = _mm256_setzero_si256();
                    }
                }
            }
        }
        let dots = wide.map(|half| {
            std::array::from_fn(|k| {
                // SAFETY: the activation row holds at least `blocks` blocks.
                let sum = unsafe { act_block(&acts[k], b).1 };
                _mm256_add_epi32(half[k], _mm256_set1_epi32(-(sum * offset)))
            })
        });
        // SAFETY: the block's scales (and Q4_1's mins) and the activations' block b exist
        // (as above).
        unsafe { scale_halves::<N, MIN>(&mut acc, block_scales, acts, b, &dots) };
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
        if N == 1 {
            prefetch_blocks_ahead(&group, WeightFormat::Q8_0, b);
        }
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
        unsafe { scale_halves::<N, false>(&mut acc, block_scales, acts, b, &dots) };
    }
    store_halves(&acc, out);
}

/// Adds one block's exact integer dot products (per half, per token) to the accumulators:
/// the product of the two scales, then one multiply-add, as the portable kernel does (`MIN`,
/// Q4_1: then the mins' multiply-add with the activations' sum).
///
/// # Safety
/// `scales` points at the block's sixteen f16 scales (followed by its mins for `MIN`); every
/// activation row holds block `b`.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
unsafe fn scale_halves<const N: usize, const MIN: bool>(
    acc: &mut [[__m256; N]; 2],
    scales: *const u8,
    acts: &[ActRow<'_>; MAX_TILE],
    b: usize,
    dots: &[[__m256i; N]; 2],
) {
    for (h, (acc, dots)) in acc.iter_mut().zip(dots).enumerate() {
        // SAFETY: the half's eight scales lie inside the block's sixteen.
        let dw = _mm256_cvtph_ps(unsafe { _mm_loadu_si128(scales.add(16 * h).cast()) });
        let dm = if MIN {
            // SAFETY: the half's eight mins follow the block's scales (the caller's promise).
            _mm256_cvtph_ps(unsafe {
                _mm_loadu_si128(scales.add(MINS_AFTER_SCALES + 16 * h).cast())
            })
        } else {
            _mm256_setzero_ps()
        };
        for (k, (acc, dot)) in acc.iter_mut().zip(dots).enumerate() {
            // SAFETY: the caller's promise.
            let (_, sum, da) = unsafe { act_block(&acts[k], b) };
            let d = _mm256_mul_ps(dw, _mm256_set1_ps(da));
            *acc = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(*dot), *acc);
            if MIN {
                let m = _mm256_mul_ps(dm, _mm256_set1_ps(da));
                *acc = _mm256_fmadd_ps(m, _mm256_set1_ps(sum as f32), *acc);
            }
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

/// Four activation bytes (word `c` from `at`) in every 32-bit lane.
///
/// # Safety
/// `at` + 4c + 4 lies inside the activation row.
#[target_feature(enable = "avx2")]
#[inline]
unsafe fn broadcast_word(at: *const i8, c: usize) -> __m256i {
    // SAFETY: the caller's promise; activation bytes have no alignment.
    _mm256_set1_epi32(unsafe { at.add(4 * c).cast::<i32>().read_unaligned() })
}

/// Byte picks for `shuffle_epi8` that copy the first (the second) 16-bit scale of each 32-bit
/// lane into both its halves: a row's scale for `madd` against the row's 16-bit pair sums.
#[target_feature(enable = "avx2")]
#[inline]
fn scale_picks() -> (__m256i, __m256i) {
    let first = _mm256_setr_epi8(
        0, 1, 0, 1, 4, 5, 4, 5, 8, 9, 8, 9, 12, 13, 12, 13, 0, 1, 0, 1, 4, 5, 4, 5, 8, 9, 8, 9, 12,
        13, 12, 13,
    );
    (first, _mm256_add_epi8(first, _mm256_set1_epi8(2)))
}

/// Half `h` of nibble word `c` of pair `p` of the Q4_K (`FIVE`: Q5_K) super-block at `sb`, one
/// value a byte: sub-block 2p's (the low nibbles), sub-block 2p + 1's (the high ones).
///
/// # Safety
/// `sb` points at a packed Q4_K (Q5_K) super-block; p < 4, c < 8, h < 2.
#[target_feature(enable = "avx2")]
#[inline]
unsafe fn q4_q5_k_word<const FIVE: bool>(
    sb: *const u8,
    p: usize,
    c: usize,
    h: usize,
) -> (__m256i, __m256i) {
    let mask = _mm256_set1_epi8(0x0f);
    // SAFETY: half h of word c of pair p lies inside the nibbles.
    let raw = unsafe { _mm256_loadu_si256(sb.add(q4_k::QS + 512 * p + 64 * c + 32 * h).cast()) };
    let low = _mm256_and_si256(raw, mask);
    let high = _mm256_and_si256(_mm256_srli_epi16(raw, 4), mask);
    if !FIVE {
        return (low, high);
    }
    // SAFETY: half h of fifth-bit word 2p + c/4 lies inside the super-block.
    let hi = unsafe { _mm256_loadu_si256(sb.add(q5_k::HI + 64 * (2 * p + c / 4) + 32 * h).cast()) };
    let (l, hb) = fifth_bits_256(hi, c % 4);
    (_mm256_or_si256(low, l), _mm256_or_si256(high, hb))
}

/// Half `h` of nibble words 8p + 2e and 8p + 2e + 1 of the Q6_K super-block at `sb`, their six
/// bits rebuilt (+ 32 as stored), one value a byte: per word the low nibbles' values (64p + 4c..),
/// the high nibbles' (32 further).
///
/// # Safety
/// `sb` points at a packed Q6_K super-block; p < 4, e < 4, h < 2.
#[target_feature(enable = "avx2")]
#[inline]
unsafe fn q6_k_words(sb: *const u8, p: usize, e: usize, h: usize) -> [(__m256i, __m256i); 2] {
    let (nibble, high_bits) = (_mm256_set1_epi8(0x0f), _mm256_set1_epi8(0x30));
    // SAFETY: half h of high-bit word 4p + e and of nibble words 8p + 2e and 8p + 2e + 1 lie
    // inside the super-block.
    let (hb, raw0, raw1) = unsafe {
        (
            _mm256_loadu_si256(sb.add(q6_k::HI + 64 * (4 * p + e) + 32 * h).cast()),
            _mm256_loadu_si256(sb.add(q6_k::LO + 64 * (8 * p + 2 * e) + 32 * h).cast()),
            _mm256_loadu_si256(sb.add(q6_k::LO + 64 * (8 * p + 2 * e + 1) + 32 * h).cast()),
        )
    };
    let with_high = |nibbles: __m256i, bits: __m256i| {
        _mm256_or_si256(
            _mm256_and_si256(nibbles, nibble),
            _mm256_and_si256(bits, high_bits),
        )
    };
    [
        (
            with_high(raw0, _mm256_slli_epi16(hb, 4)),
            with_high(_mm256_srli_epi16(raw0, 4), _mm256_slli_epi16(hb, 2)),
        ),
        (
            with_high(raw1, hb),
            with_high(_mm256_srli_epi16(raw1, 4), _mm256_srli_epi16(hb, 2)),
        ),
    ]
}

/// Half `h` of word `c` of pair `p` of an unpacked super-block (at `ub`,
/// [`super::UnpackedGroup`]): the low nibbles' values, the high nibbles'.
///
/// # Safety
/// `ub` points at an unpacked super-block; p < 4, c < 8, h < 2.
#[target_feature(enable = "avx2")]
#[inline]
unsafe fn unpacked_word(ub: *const u8, p: usize, c: usize, h: usize) -> (__m256i, __m256i) {
    let at = unpacked_at(p, c, h);
    // SAFETY: both halves lie inside the unpacked super-block.
    unsafe {
        (
            _mm256_loadu_si256(ub.add(at).cast()),
            _mm256_loadu_si256(ub.add(at + 64).cast()),
        )
    }
}

/// The K-quant values of a row group, one byte each, into `out` ([`super::UnpackedGroup`]'s
/// layout): the kernels' own rebuilding, done once for all of a prompt's token tiles.
///
/// # Safety
/// The processor has AVX2; `group` holds `group.blocks` packed Q5_K or Q6_K super-blocks and
/// `out` at least `group.blocks * UNPACKED_SUPER_BYTES` bytes.
#[target_feature(enable = "avx2")]
pub(super) unsafe fn unpack_k_avx2(group: Group<'_>, out: &mut [u8]) {
    let format = group.format;
    let stride = group_stride(format, 1);
    for b in 0..group.blocks {
        // SAFETY: super-block b lies inside the group, and its unpacked form inside `out` (the
        // caller's promise).
        let (sb, ub) = unsafe {
            (
                group.bytes.as_ptr().add(b * stride),
                out.as_mut_ptr().add(b * UNPACKED_SUPER_BYTES),
            )
        };
        let store = |p: usize, c: usize, h: usize, (low, high): (__m256i, __m256i)| {
            let at = unpacked_at(p, c, h);
            // SAFETY: both halves lie inside the unpacked super-block.
            unsafe {
                _mm256_storeu_si256(ub.add(at).cast(), low);
                _mm256_storeu_si256(ub.add(at + 64).cast(), high);
            }
        };
        for p in 0..4 {
            for h in 0..2 {
                match format {
                    WeightFormat::Q6_K => {
                        for e in 0..4 {
                            // SAFETY: a Q6_K super-block (the caller's promise).
                            let [w0, w1] = unsafe { q6_k_words(sb, p, e, h) };
                            store(p, 2 * e, h, w0);
                            store(p, 2 * e + 1, h, w1);
                        }
                    }
                    _ => {
                        for c in 0..8 {
                            // SAFETY: a Q5_K super-block (the caller's promise).
                            store(p, c, h, unsafe { q4_q5_k_word::<true>(sb, p, c, h) });
                        }
                    }
                }
            }
        }
    }
}

/// Runs a K-quant kernel's `$step!(p, h)` (half `h` of the rows over the super-block's 64
/// values `p`) for every p and h, in the order that suits `$n` tokens. One token (decode, the
/// weights streaming from memory): both halves of each 64 values before the next, so the two
/// 32-byte halves of every cache line are read together (halves outermost, each line was
/// fetched for one half and again for the other; measured on AMD Zen 5, TinyLlama-1.1B, 2
/// threads: Q6_K decode 34.5 → 41.5 t/s, Q5_K_M 33 → 43). Two tokens (prompts, the weights in
/// cache): half by half, which keeps fewer sums live (the other order cost their prompts
/// 4–12%). Each `h` is a constant, so the sums it indexes stay in registers.
macro_rules! halves_in_line_order {
    ($n:expr, $step:ident) => {
        if $n == 1 {
            for p in 0..4 {
                $step!(p, 0);
                $step!(p, 1);
            }
        } else {
            for p in 0..4 {
                $step!(p, 0);
            }
            for p in 0..4 {
                $step!(p, 1);
            }
        }
    };
}

/// Q4_K with AVX2: as the VNNI kernel, in two halves of eight rows; `maddubs` pairs summed in
/// 16 bits over a sub-block's eight words (at most 8 × 2 × 15 × 128 = 30720, no saturation),
/// widened and scaled in one `madd` against the rows' 6-bit scales; the mins by `madd` on 16-bit
/// pairs.
///
/// # Safety
/// The processor has AVX2, FMA and F16C; `group` holds `blocks` packed Q4_K super-blocks and
/// each activation row at least `blocks` super-blocks.
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn q4_k_avx2<const N: usize>(
    group: Group<'_>,
    acts: &[SuperRow<'_>; MAX_TILE],
    blocks: usize,
    out: &mut [[f32; ROWS]; MAX_TILE],
) {
    // SAFETY: the caller's promise.
    unsafe { q4_q5_k_avx2::<N, false, false>(group, &[], acts, blocks, out) }
}

/// Q5_K with AVX2: the Q4_K kernel with the fifth bits put back; values to 31 overflow 16 bits
/// over eight words, so the pairs are widened every four (4 × 2 × 31 × 128 = 31744).
///
/// # Safety
/// As for [`q4_k_avx2`], with Q5_K super-blocks.
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn q5_k_avx2<const N: usize>(
    group: Group<'_>,
    acts: &[SuperRow<'_>; MAX_TILE],
    blocks: usize,
    out: &mut [[f32; ROWS]; MAX_TILE],
) {
    // SAFETY: the caller's promise.
    unsafe { q4_q5_k_avx2::<N, true, false>(group, &[], acts, blocks, out) }
}

/// Q5_K with AVX2 on the group's values unpacked ([`super::UnpackedGroup`]): loads in place of
/// the rebuilding, the same products.
///
/// # Safety
/// As for [`q5_k_avx2`]; `unpacked` holds the group's values unpacked.
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn q5_k_unpacked_avx2<const N: usize>(
    group: Group<'_>,
    unpacked: &[u8],
    acts: &[SuperRow<'_>; MAX_TILE],
    blocks: usize,
    out: &mut [[f32; ROWS]; MAX_TILE],
) {
    // SAFETY: the caller's promise.
    unsafe { q4_q5_k_avx2::<N, true, true>(group, unpacked, acts, blocks, out) }
}

/// # Safety
/// As for [`q4_k_avx2`]; `FIVE`: Q5_K super-blocks; `UNPACKED`: `unpacked` holds the group's
/// values unpacked.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
unsafe fn q4_q5_k_avx2<const N: usize, const FIVE: bool, const UNPACKED: bool>(
    group: Group<'_>,
    unpacked: &[u8],
    acts: &[SuperRow<'_>; MAX_TILE],
    blocks: usize,
    out: &mut [[f32; ROWS]; MAX_TILE],
) {
    let (ones, low16) = (_mm256_set1_epi16(1), _mm256_set1_epi32(0xffff));
    let (first_of_pair, second_of_pair) = scale_picks();
    let stride = if FIVE { q5_k::BYTES } else { q4_k::BYTES };
    let mut acc = [[_mm256_setzero_ps(); N]; 2];
    for b in 0..blocks {
        // SAFETY: super-block b lies inside the group (checked by the caller).
        let sb = unsafe { group.bytes.as_ptr().add(b * stride) };
        let ub = unpacked.as_ptr().wrapping_add(b * UNPACKED_SUPER_BYTES);
        if N == 1 {
            prefetch(sb.wrapping_add(stride), stride);
        }
        let mut isums = [[_mm256_setzero_si256(); N]; 2];
        let mut msums = [[_mm256_setzero_si256(); N]; 2];
        // One half of the rows (h) over the 64 values p; see `halves_in_line_order`.
        macro_rules! step {
            ($p:expr, $h:expr) => {{
                let (p, h) = ($p, $h);
                let (isum, msum) = (&mut isums[h], &mut msums[h]);
                // SAFETY: half h of pair p's scales and mins lies inside the super-block.
                let (scales, mins) = unsafe {
                    (
                        _mm256_cvtepu8_epi16(_mm_loadu_si128(
                            sb.add(q4_k::SCALES + 32 * p + 16 * h).cast(),
                        )),
                        _mm256_cvtepu8_epi16(_mm_loadu_si128(
                            sb.add(q4_k::MINS + 32 * p + 16 * h).cast(),
                        )),
                    )
                };
                // What `madd` multiplies the 16-bit pair sums by as it widens them. Q4_K: each
                // row's scale of sub-block 2p (2p + 1) in both halves of its lane, so the sums
                // come out scaled. Q5_K widens twice per sub-block and scales once after, by
                // `mullo` (scaling at each widening measured 10% slower in its prompts).
                let widen = if FIVE {
                    [ones; 2]
                } else {
                    [
                        _mm256_shuffle_epi8(scales, first_of_pair),
                        _mm256_shuffle_epi8(scales, second_of_pair),
                    ]
                };
                // Word c's values: low nibbles (sub-block 2p), high nibbles (2p + 1).
                let values = |c: usize| {
                    // SAFETY: super-block b of the group, of its unpacked values where UNPACKED
                    // (the caller's promise).
                    unsafe {
                        if UNPACKED {
                            unpacked_word(ub, p, c, h)
                        } else {
                            q4_q5_k_word::<FIVE>(sb, p, c, h)
                        }
                    }
                };
                // Token k's word c: its 16-bit pair sums, widened (Q4_K: and scaled) into `dot`
                // every eight words (every four for Q5_K).
                let feed = |k: usize,
                            c: usize,
                            (low, high): (__m256i, __m256i),
                            pair: &mut [__m256i; 2],
                            dot: &mut [__m256i; 2]| {
                    // SAFETY: the activation row holds super-block b (checked by the caller);
                    // words c and 8 + c of these 64 values.
                    let (xl, xh) = unsafe {
                        let x = acts[k].qs.as_ptr().add(b * SUPER + 64 * p);
                        (broadcast_word(x, c), broadcast_word(x, 8 + c))
                    };
                    pair[0] = _mm256_add_epi16(pair[0], _mm256_maddubs_epi16(low, xl));
                    pair[1] = _mm256_add_epi16(pair[1], _mm256_maddubs_epi16(high, xh));
                    if c == 7 || (FIVE && c == 3) {
                        dot[0] = _mm256_add_epi32(dot[0], _mm256_madd_epi16(pair[0], widen[0]));
                        dot[1] = _mm256_add_epi32(dot[1], _mm256_madd_epi16(pair[1], widen[1]));
                        *pair = [_mm256_setzero_si256(); 2];
                    }
                };
                let mut pairs = [[_mm256_setzero_si256(); 2]; N];
                let mut dots = [[_mm256_setzero_si256(); 2]; N];
                if FIVE && !UNPACKED && N > 1 {
                    // Two tokens of Q5_K: the words' values once, then token by token (measured:
                    // rebuilding the fifth bits in the token loop costs more than the spills).
                    let words: [_; 8] = std::array::from_fn(values);
                    for (k, (pair, dot)) in pairs.iter_mut().zip(&mut dots).enumerate() {
                        for (c, &word) in words.iter().enumerate() {
                            feed(k, c, word, pair, dot);
                        }
                    }
                } else {
                    // Each word's values used at once: sixteen words do not fit in the registers.
                    for c in 0..8 {
                        let word = values(c);
                        for (k, (pair, dot)) in pairs.iter_mut().zip(&mut dots).enumerate() {
                            feed(k, c, word, pair, dot);
                        }
                    }
                }
                // Q5_K's scales of sub-blocks 2p and 2p + 1, one 32-bit lane per row.
                let (sc_low, sc_high) = (
                    _mm256_and_si256(scales, low16),
                    _mm256_srli_epi32(scales, 16),
                );
                for (isum, [dl, dh]) in isum.iter_mut().zip(dots) {
                    let scaled = if FIVE {
                        _mm256_add_epi32(
                            _mm256_mullo_epi32(dl, sc_low),
                            _mm256_mullo_epi32(dh, sc_high),
                        )
                    } else {
                        _mm256_add_epi32(dl, dh)
                    };
                    *isum = _mm256_add_epi32(*isum, scaled);
                }
                for (k, msum) in msum.iter_mut().enumerate() {
                    // SAFETY: the activation row holds super-block b (checked by the caller).
                    let sums = unsafe { sum_pair(acts[k].sums32, 8 * b + 2 * p) };
                    *msum =
                        _mm256_add_epi32(*msum, _mm256_madd_epi16(mins, _mm256_set1_epi32(sums)));
                }
            }};
        }
        halves_in_line_order!(N, step);
        for (h, (acc, (isum, msum))) in acc.iter_mut().zip(isums.iter().zip(&msums)).enumerate() {
            // SAFETY: half h of the f16 scales and min scales lies at the super-block's start.
            let (d, dmin) = unsafe {
                (
                    _mm256_cvtph_ps(_mm_loadu_si128(sb.add(q4_k::D + 16 * h).cast())),
                    _mm256_cvtph_ps(_mm_loadu_si128(sb.add(q4_k::DMIN + 16 * h).cast())),
                )
            };
            for (k, acc) in acc.iter_mut().enumerate() {
                // SAFETY: the activation row holds super-block b.
                let dx = _mm256_set1_ps(unsafe { *acts[k].scale.get_unchecked(b) });
                *acc = _mm256_fmadd_ps(_mm256_mul_ps(d, dx), _mm256_cvtepi32_ps(isum[k]), *acc);
                *acc = _mm256_fnmadd_ps(_mm256_mul_ps(dmin, dx), _mm256_cvtepi32_ps(msum[k]), *acc);
            }
        }
    }
    store_halves(&acc, out);
}

/// Q6_K with AVX2: as the VNNI kernel, in two halves of eight rows. The values are rebuilt one
/// pair of nibble words at a time and used at once (sixteen words of them do not fit in the
/// registers); the `maddubs` pairs of two words are summed in 16 bits (at most 2 × 2 × 63 × 128
/// = 32256, no saturation) before one `madd` widens them and multiplies them by the rows' int8
/// scales (before, a `madd` by ones, then per group and token a `mullo`: AMD Zen 5, one thread,
/// 128 tokens × 1024 × 2048, 4.2–4.6 → 3.7–4.0 ms). The −32 offset of the values is taken off
/// per 64 values as 32 × the `madd` of the scales with the activations' group sums.
///
/// # Safety
/// As for [`q4_k_avx2`], with Q6_K super-blocks.
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn q6_k_avx2<const N: usize>(
    group: Group<'_>,
    acts: &[SuperRow<'_>; MAX_TILE],
    blocks: usize,
    out: &mut [[f32; ROWS]; MAX_TILE],
) {
    // SAFETY: the caller's promise.
    unsafe { q6_k_any_avx2::<N, false>(group, &[], acts, blocks, out) }
}

/// Q6_K with AVX2 on the group's values unpacked ([`super::UnpackedGroup`]).
///
/// # Safety
/// As for [`q6_k_avx2`]; `unpacked` holds the group's values unpacked.
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn q6_k_unpacked_avx2<const N: usize>(
    group: Group<'_>,
    unpacked: &[u8],
    acts: &[SuperRow<'_>; MAX_TILE],
    blocks: usize,
    out: &mut [[f32; ROWS]; MAX_TILE],
) {
    // SAFETY: the caller's promise.
    unsafe { q6_k_any_avx2::<N, true>(group, unpacked, acts, blocks, out) }
}

/// # Safety
/// As for [`q6_k_avx2`]; `UNPACKED`: `unpacked` holds the group's values unpacked.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
unsafe fn q6_k_any_avx2<const N: usize, const UNPACKED: bool>(
    group: Group<'_>,
    unpacked: &[u8],
    acts: &[SuperRow<'_>; MAX_TILE],
    blocks: usize,
    out: &mut [[f32; ROWS]; MAX_TILE],
) {
    let (first_of_pair, second_of_pair) = scale_picks();
    let mut acc = [[_mm256_setzero_ps(); N]; 2];
    for b in 0..blocks {
        // SAFETY: super-block b lies inside the group (checked by the caller).
        let sb = unsafe { group.bytes.as_ptr().add(b * q6_k::BYTES) };
        let ub = unpacked.as_ptr().wrapping_add(b * UNPACKED_SUPER_BYTES);
        if N == 1 {
            prefetch(sb.wrapping_add(q6_k::BYTES), q6_k::BYTES);
        }
        let mut isums = [[_mm256_setzero_si256(); N]; 2];
        // One half of the rows (h) over the 64 values p; see `halves_in_line_order`.
        macro_rules! step {
            ($p:expr, $h:expr) => {{
                let (p, h) = ($p, $h);
                let isum = &mut isums[h];
                // SAFETY: half h of the scale pairs of groups 4p..4p+4 lies inside.
                let (first, second) = unsafe {
                    (
                        _mm256_cvtepi8_epi16(_mm_loadu_si128(
                            sb.add(q6_k::SCALES + 64 * p + 16 * h).cast(),
                        )),
                        _mm256_cvtepi8_epi16(_mm_loadu_si128(
                            sb.add(q6_k::SCALES + 64 * p + 32 + 16 * h).cast(),
                        )),
                    )
                };
                // Each row's scale of group 4p + u in both 16-bit halves of its lane, so
                // `madd` scales a group's pair sums as it widens them.
                let scale = [
                    _mm256_shuffle_epi8(first, first_of_pair),
                    _mm256_shuffle_epi8(first, second_of_pair),
                    _mm256_shuffle_epi8(second, first_of_pair),
                    _mm256_shuffle_epi8(second, second_of_pair),
                ];
                for e in 0..4 {
                    // Words 2e and 2e + 1 (low nibbles, group e/2) and 8 + 2e, 9 + 2e (high
                    // nibbles, group 2 + e/2).
                    // SAFETY: super-block b of the group, of its unpacked values where
                    // UNPACKED (the caller's promise).
                    let [(low0, high0), (low1, high1)] = unsafe {
                        if UNPACKED {
                            [
                                unpacked_word(ub, p, 2 * e, h),
                                unpacked_word(ub, p, 2 * e + 1, h),
                            ]
                        } else {
                            q6_k_words(sb, p, e, h)
                        }
                    };
                    for (k, a) in acts.iter().take(N).enumerate() {
                        // SAFETY: the activation row holds super-block b (checked by the caller);
                        // words 2e..2e + 2 and 8 + 2e..10 + 2e of these 64 values.
                        let (x0, x1, x8, x9) = unsafe {
                            let x = a.qs.as_ptr().add(b * SUPER + 64 * p);
                            (
                                broadcast_word(x, 2 * e),
                                broadcast_word(x, 2 * e + 1),
                                broadcast_word(x, 8 + 2 * e),
                                broadcast_word(x, 9 + 2 * e),
                            )
                        };
                        let low = _mm256_add_epi16(
                            _mm256_maddubs_epi16(low0, x0),
                            _mm256_maddubs_epi16(low1, x1),
                        );
                        let high = _mm256_add_epi16(
                            _mm256_maddubs_epi16(high0, x8),
                            _mm256_maddubs_epi16(high1, x9),
                        );
                        isum[k] = _mm256_add_epi32(
                            isum[k],
                            _mm256_add_epi32(
                                _mm256_madd_epi16(low, scale[e / 2]),
                                _mm256_madd_epi16(high, scale[2 + e / 2]),
                            ),
                        );
                    }
                }
                // The −32 offset of the values: 32 × Σ scale × the group's activation sum.
                for (k, isum) in isum.iter_mut().enumerate() {
                    // SAFETY: the activation row's four group sums of these 64 values, two
                    // 16-bit pairs.
                    let (sums01, sums23) = unsafe {
                        (
                            _mm256_set1_epi32(sum_pair(acts[k].sums16, 16 * b + 4 * p)),
                            _mm256_set1_epi32(sum_pair(acts[k].sums16, 16 * b + 4 * p + 2)),
                        )
                    };
                    let offset = _mm256_add_epi32(
                        _mm256_madd_epi16(first, sums01),
                        _mm256_madd_epi16(second, sums23),
                    );
                    *isum = _mm256_sub_epi32(*isum, _mm256_slli_epi32(offset, 5));
                }
            }};
        }
        halves_in_line_order!(N, step);
        for (h, (acc, isum)) in acc.iter_mut().zip(&isums).enumerate() {
            // SAFETY: half h of the f16 scales lies at the super-block's start.
            let d = _mm256_cvtph_ps(unsafe { _mm_loadu_si128(sb.add(q6_k::D + 16 * h).cast()) });
            for (k, acc) in acc.iter_mut().enumerate() {
                // SAFETY: the activation row holds super-block b.
                let dx = _mm256_set1_ps(unsafe { *acts[k].scale.get_unchecked(b) });
                *acc = _mm256_fmadd_ps(_mm256_mul_ps(d, dx), _mm256_cvtepi32_ps(isum[k]), *acc);
            }
        }
    }
    store_halves(&acc, out);
}

/// F16 (`BF` false) or BF16 weights against float activations with AVX2: the sixteen rows as
/// two halves of eight lanes, per token and half two running sums (the even and the odd
/// columns) added at the end, the portable kernel's order.
///
/// # Safety
/// The processor has AVX2, FMA and F16C; `group` holds `cols` (even) columns and each
/// activation row at least `cols` values.
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn float_avx2<const N: usize, const BF: bool>(
    group: Group<'_>,
    acts: &[&[f32]; MAX_TILE],
    cols: usize,
    out: &mut [[f32; ROWS]; MAX_TILE],
) {
    let base = group.bytes.as_ptr();
    // [token][even, odd][half]
    let mut sums = [[[_mm256_setzero_ps(); 2]; 2]; N];
    for k in (0..cols).step_by(2) {
        for e in 0..2 {
            let mut w = [_mm256_setzero_ps(); 2];
            for (h, w) in w.iter_mut().enumerate() {
                // SAFETY: column k + e < cols lies inside the group; half h is 16 of its bytes.
                let raw = unsafe {
                    _mm_loadu_si128(base.add((k + e) * FLOAT_COLUMN_BYTES + 16 * h).cast())
                };
                *w = if BF {
                    _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(raw), 16))
                } else {
                    _mm256_cvtph_ps(raw)
                };
            }
            for (t, sums) in sums.iter_mut().enumerate() {
                // SAFETY: the row holds at least `cols` values.
                let x = _mm256_set1_ps(unsafe { *acts[t].get_unchecked(k + e) });
                for (s, w) in sums[e].iter_mut().zip(w) {
                    *s = _mm256_fmadd_ps(w, x, *s);
                }
            }
        }
    }
    for (o, [even, odd]) in out.iter_mut().zip(sums) {
        for h in 0..2 {
            // SAFETY: `o` holds sixteen floats; half h is eight of them.
            unsafe { _mm256_storeu_ps(o.as_mut_ptr().add(8 * h), _mm256_add_ps(even[h], odd[h])) };
        }
    }
}
