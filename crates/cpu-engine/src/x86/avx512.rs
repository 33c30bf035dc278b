//! AVX-512 VNNI kernels: `dpbusd` over sixteen rows in the sixteen lanes of a 512-bit register,
//! up to eight tokens per call, and a one-token kernel in 256-bit halves.

#![allow(unsafe_code)] // SIMD loads; each unsafe block says why it stays inside its slices.

use std::arch::x86_64::*;

use super::avx2::fifth_bits_256;
use super::{act_block, block_at, prefetch, prefetch_blocks_ahead, sum_pair, word};
use crate::matmul::MAX_TILE;
use crate::packing::{
    FLOAT_COLUMN_BYTES, Group, MINS_AFTER_SCALES, Q5_0_HI, ROWS, q4_k, q5_k, q6_k,
};
use crate::quant::{ActRow, SUPER, SuperRow, WeightFormat};

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

/// The sixteen rows' Q5_0 weights of one block, 0..31: Q4_0's nibbles with each one's fifth
/// bit put back (one 64-byte load of fifth bits completes the four of nibbles).
///
/// # Safety
/// `block` points at a group's Q5_0 block payload (320 bytes).
#[target_feature(enable = "avx512f,avx512bw")]
#[inline]
unsafe fn q5_0_weights(block: *const u8) -> [__m512i; 8] {
    // SAFETY: the payload's 256 bytes of nibbles, then its 64 of fifth bits.
    let (mut w, hi) = unsafe {
        (
            q4_0_weights(block),
            _mm512_loadu_si512(block.add(Q5_0_HI).cast()),
        )
    };
    for c in 0..4 {
        let (low, high) = fifth_bits(hi, c);
        w[c] = _mm512_or_si512(w[c], low);
        w[c + 4] = _mm512_or_si512(w[c + 4], high);
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
/// correction −offset × the activation sum, then one convert and one multiply-add (with
/// `min`, Q4_1's: a second one, the mins times the activation scale times its sum).
macro_rules! vnni_kernel {
    ($name:ident, $weights:ident, $format:ident, $offset:literal, $min:literal) => {
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
                let dm = if $min {
                    // SAFETY: a Q4_1 block's mins follow its scales.
                    _mm512_cvtph_ps(unsafe {
                        _mm256_loadu_si256(scales.add(MINS_AFTER_SCALES).cast())
                    })
                } else {
                    _mm512_setzero_ps()
                };
                // SAFETY: as above.
                let w = unsafe { $weights(block) };
                for (k, acc) in acc.iter_mut().enumerate() {
                    // SAFETY: the activation row holds at least `blocks` blocks.
                    let (words, sum, da) = unsafe { act_block(&acts[k], b) };
                    let mut dot = _mm512_set1_epi32(-(sum * $offset));
                    for (c, w) in w.iter().enumerate() {
                        // SAFETY: c < 8 words of this block.
                        let x = _mm512_set1_epi32(unsafe { word(words, c) });
                        dot = _mm512_dpbusd_epi32(dot, *w, x);
                    }
                    let d = _mm512_mul_ps(dw, _mm512_set1_ps(da));
                    *acc = _mm512_fmadd_ps(d, _mm512_cvtepi32_ps(dot), *acc);
                    if $min {
                        let m = _mm512_mul_ps(dm, _mm512_set1_ps(da));
                        *acc = _mm512_fmadd_ps(m, _mm512_set1_ps(sum as f32), *acc);
                    }
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
    ($name:ident, $format:ident, $offset:literal, $min:literal, $words:literal,
     |$block:ident, $c:ident, $act:ident, $dots:ident| $body:block) => {
        /// # Safety
        /// The processor has AVX-512 VL/VNNI; `group` holds its blocks and the activation
        /// row at least as many.
        #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512vl,avx512vnni")]
        pub(super) unsafe fn $name(group: Group<'_>, act: &ActRow<'_>, out: &mut [f32; ROWS]) {
            let mut acc = [_mm256_setzero_ps(); 2];
            for b in 0..group.blocks {
                prefetch_blocks_ahead(&group, WeightFormat::$format, b);
                // SAFETY: block b lies inside `group` (checked by the caller).
                let ($block, scales) = unsafe { block_at(&group, WeightFormat::$format, b) };
                // SAFETY: the activation row holds at least `blocks` blocks.
                let ($act, sum, da) = unsafe { act_block(act, b) };
                // One accumulator per half; each activation word is broadcast once.
                let mut $dots = [_mm256_set1_epi32(-(sum * $offset)); 2];
                for $c in 0..$words $body
                for (h, (acc, dot)) in acc.iter_mut().zip($dots).enumerate() {
                    // SAFETY: the half's eight scales lie inside the block's scales.
                    let dw = _mm256_cvtph_ps(unsafe {
                        _mm_loadu_si128(scales.add(16 * h).cast())
                    });
                    let d = _mm256_mul_ps(dw, _mm256_set1_ps(da));
                    *acc = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(dot), *acc);
                    if $min {
                        // SAFETY: a Q4_1 block's mins follow its scales.
                        let dm = _mm256_cvtph_ps(unsafe {
                            _mm_loadu_si128(scales.add(MINS_AFTER_SCALES + 16 * h).cast())
                        });
                        let m = _mm256_mul_ps(dm, _mm256_set1_ps(da));
                        *acc = _mm256_fmadd_ps(m, _mm256_set1_ps(sum as f32), *acc);
                    }
                }
            }
            for (h, acc) in acc.iter().enumerate() {
                // SAFETY: `out` holds sixteen floats; half h is eight of them.
                unsafe { _mm256_storeu_ps(out.as_mut_ptr().add(8 * h), *acc) };
            }
        }
    };
}

/// Q4_0 (stored + 8) and Q4_1 (the min added per block): the same nibbles.
macro_rules! q4_one_body {
    ($block:ident, $c:ident, $words:ident, $dots:ident) => {{
        let mask = _mm256_set1_epi8(0x0f);
        // SAFETY: c + 4 < 8 words of the activation block.
        let (xl, xh) = unsafe { (word($words, $c), word($words, $c + 4)) };
        let (xl, xh) = (_mm256_set1_epi32(xl), _mm256_set1_epi32(xh));
        for (h, dot) in $dots.iter_mut().enumerate() {
            // SAFETY: word c of half h lies inside the block's payload.
            let raw = unsafe { _mm256_loadu_si256($block.add(64 * $c + 32 * h).cast()) };
            let lo = _mm256_and_si256(raw, mask);
            let hi = _mm256_and_si256(_mm256_srli_epi16(raw, 4), mask);
            *dot = _mm256_dpbusd_epi32(_mm256_dpbusd_epi32(*dot, lo, xl), hi, xh);
        }
    }};
}

vnni_one_kernel!(q4_0_vnni_one, Q4_0, 8, false, 4, |block, c, words, dots| {
    q4_one_body!(block, c, words, dots)
});
vnni_one_kernel!(q4_1_vnni_one, Q4_1, 0, true, 4, |block, c, words, dots| {
    q4_one_body!(block, c, words, dots)
});

/// Q5_0 (stored + 16) and Q5_1 (the min added per block): the same five-bit values.
macro_rules! q5_one_body {
    ($block:ident, $c:ident, $words:ident, $dots:ident) => {{
        let (block, c, words, dots) = ($block, $c, $words, &mut $dots);
        let mask = _mm256_set1_epi8(0x0f);
        // SAFETY: c + 4 < 8 words of the activation block.
        let (xl, xh) = unsafe { (word(words, c), word(words, c + 4)) };
        let (xl, xh) = (_mm256_set1_epi32(xl), _mm256_set1_epi32(xh));
        for (h, dot) in dots.iter_mut().enumerate() {
            // SAFETY: word c of half h, and half h of the fifth bits, lie inside the payload.
            let (raw, fifth) = unsafe {
                (
                    _mm256_loadu_si256(block.add(64 * c + 32 * h).cast()),
                    _mm256_loadu_si256(block.add(Q5_0_HI + 32 * h).cast()),
                )
            };
            let (fl, fh) = fifth_bits_256(fifth, c);
            let lo = _mm256_or_si256(_mm256_and_si256(raw, mask), fl);
            let hi = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(raw, 4), mask), fh);
            *dot = _mm256_dpbusd_epi32(_mm256_dpbusd_epi32(*dot, lo, xl), hi, xh);
        }
    }};
}

vnni_one_kernel!(
    q5_0_vnni_one,
    Q5_0,
    16,
    false,
    4,
    |block, c, words, dots| { q5_one_body!(block, c, words, dots) }
);
vnni_one_kernel!(q5_1_vnni_one, Q5_1, 0, true, 4, |block, c, words, dots| {
    q5_one_body!(block, c, words, dots)
});

vnni_one_kernel!(
    q8_0_vnni_one,
    Q8_0,
    128,
    false,
    8,
    |block, c, words, dots| {
        // SAFETY: c < 8 words of the activation block.
        let x = _mm256_set1_epi32(unsafe { word(words, c) });
        for (h, dot) in dots.iter_mut().enumerate() {
            // SAFETY: word c of half h lies inside the block's payload.
            let w = unsafe { _mm256_loadu_si256(block.add(64 * c + 32 * h).cast()) };
            *dot = _mm256_dpbusd_epi32(*dot, w, x);
        }
    }
);

vnni_kernel!(q4_0_vnni, q4_0_weights, Q4_0, 8, false);
vnni_kernel!(q4_1_vnni, q4_0_weights, Q4_1, 0, true);
vnni_kernel!(q8_0_vnni, q8_0_weights, Q8_0, 128, false);
vnni_kernel!(q5_0_vnni, q5_0_weights, Q5_0, 16, false);
vnni_kernel!(q5_1_vnni, q5_0_weights, Q5_1, 0, true);

/// Four activation bytes (word `c` from `at`) in every 32-bit lane.
///
/// # Safety
/// `at` + 4c + 4 lies inside the activation row.
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn broadcast_word(at: *const i8, c: usize) -> __m512i {
    // SAFETY: the caller's promise; activation bytes have no alignment.
    _mm512_set1_epi32(unsafe { at.add(4 * c).cast::<i32>().read_unaligned() })
}

/// The 32-bit lanes of `pairs` (two i16 per row) split into the low and the high i16, each
/// sign-extended to 32 bits.
#[target_feature(enable = "avx512f")]
#[inline]
fn split_pairs(pairs: __m512i) -> (__m512i, __m512i) {
    (
        _mm512_srai_epi32(_mm512_slli_epi32(pairs, 16), 16),
        _mm512_srai_epi32(pairs, 16),
    )
}

/// Q4_K: per 64 values (sub-blocks 2p, 2p+1: the low and high nibbles of eight words) eight
/// `dpbusd` per sub-block and token, times the rows' 6-bit scales (`mullo`), summed over the
/// super-block; the mins times the activations' sums of 32 by `dpwssd` on 16-bit pairs; then
/// two multiply-adds per super-block, as [`crate::matmul`]'s portable kernel.
///
/// # Safety
/// The processor has AVX-512 F/BW/VNNI; `group` holds `blocks` packed Q4_K super-blocks and
/// each activation row at least `blocks` super-blocks.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
pub(super) unsafe fn q4_k_vnni<const N: usize>(
    group: Group<'_>,
    acts: &[SuperRow<'_>; MAX_TILE],
    blocks: usize,
    out: &mut [[f32; ROWS]; MAX_TILE],
) {
    // SAFETY: the caller's promise.
    unsafe { q4_q5_k_vnni::<N, false>(group, acts, blocks, out) }
}

/// Q5_K: the Q4_K kernel with each nibble's fifth bit put back in registers (one 64-byte load
/// of fifth bits per four of nibbles).
///
/// # Safety
/// As for [`q4_k_vnni`], with Q5_K super-blocks.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
pub(super) unsafe fn q5_k_vnni<const N: usize>(
    group: Group<'_>,
    acts: &[SuperRow<'_>; MAX_TILE],
    blocks: usize,
    out: &mut [[f32; ROWS]; MAX_TILE],
) {
    // SAFETY: the caller's promise.
    unsafe { q4_q5_k_vnni::<N, true>(group, acts, blocks, out) }
}

/// The fifth bits of nibble word `4e + t` (`hi`: word `e`'s fifth bits) moved to bit 4 of each
/// byte: for the low nibbles, for the high nibbles ([`crate::packing::q5_k`]).
#[target_feature(enable = "avx512f,avx512bw")]
#[inline]
pub(super) fn fifth_bits(hi: __m512i, t: usize) -> (__m512i, __m512i) {
    let bit = _mm512_set1_epi8(0x10);
    let (low, high) = match t {
        0 => (_mm512_slli_epi16(hi, 4), _mm512_slli_epi16(hi, 3)),
        1 => (_mm512_slli_epi16(hi, 2), _mm512_slli_epi16(hi, 1)),
        2 => (hi, _mm512_srli_epi16(hi, 1)),
        _ => (_mm512_srli_epi16(hi, 2), _mm512_srli_epi16(hi, 3)),
    };
    (_mm512_and_si512(low, bit), _mm512_and_si512(high, bit))
}

/// # Safety
/// As for [`q4_k_vnni`]; `FIVE`: Q5_K super-blocks.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
#[inline]
unsafe fn q4_q5_k_vnni<const N: usize, const FIVE: bool>(
    group: Group<'_>,
    acts: &[SuperRow<'_>; MAX_TILE],
    blocks: usize,
    out: &mut [[f32; ROWS]; MAX_TILE],
) {
    let (mask, low16) = (_mm512_set1_epi8(0x0f), _mm512_set1_epi32(0xffff));
    let stride = if FIVE { q5_k::BYTES } else { q4_k::BYTES };
    let mut acc = [_mm512_setzero_ps(); N];
    for b in 0..blocks {
        // SAFETY: super-block b lies inside the group (checked by the caller).
        let sb = unsafe { group.bytes.as_ptr().add(b * stride) };
        if N == 1 {
            prefetch(sb.wrapping_add(stride), stride);
        }
        // One token (decode): pair by pair, sixteen registers of values. More (prompts):
        // sub-block by sub-block, eight of values and two chains of four dependent `dpbusd` per
        // token, so the tokens' sums stay in registers (pair by pair, the values, the sums and
        // the accumulators of eight tokens were 40 registers; measured on AMD Zen 5, one thread,
        // 128 tokens × 1024 × 2048: Q4_K 1.13 → 0.97 ms, Q5_K 1.25 → 1.04; one token is 5–15%
        // slower this way).
        let (isum, msum) = if N == 1 {
            let mut isum = [_mm512_setzero_si512(); N];
            let mut msum = [_mm512_setzero_si512(); N];
            for p in 0..4 {
                // SAFETY: pair p's scales, mins and nibble words lie inside the super-block.
                let (scales, mins, words) = unsafe {
                    (
                        _mm512_cvtepu8_epi16(_mm256_loadu_si256(
                            sb.add(q4_k::SCALES + 32 * p).cast(),
                        )),
                        _mm512_cvtepu8_epi16(_mm256_loadu_si256(
                            sb.add(q4_k::MINS + 32 * p).cast(),
                        )),
                        sb.add(q4_k::QS + 512 * p),
                    )
                };
                let (sc_low, sc_high) = (
                    _mm512_and_si512(scales, low16),
                    _mm512_srli_epi32(scales, 16),
                );
                let mut low = [_mm512_setzero_si512(); 8];
                let mut high = [_mm512_setzero_si512(); 8];
                for c in 0..8 {
                    // SAFETY: word c of pair p lies inside the super-block's nibbles.
                    let raw = unsafe { _mm512_loadu_si512(words.add(64 * c).cast()) };
                    low[c] = _mm512_and_si512(raw, mask);
                    high[c] = _mm512_and_si512(_mm512_srli_epi16(raw, 4), mask);
                    if FIVE {
                        // SAFETY: fifth-bit word 2p + c/4 lies inside the super-block.
                        let hi = unsafe {
                            _mm512_loadu_si512(sb.add(q5_k::HI + 64 * (2 * p + c / 4)).cast())
                        };
                        let (l, h) = fifth_bits(hi, c % 4);
                        low[c] = _mm512_or_si512(low[c], l);
                        high[c] = _mm512_or_si512(high[c], h);
                    }
                }
                for (k, (isum, msum)) in isum.iter_mut().zip(&mut msum).enumerate() {
                    let a = &acts[k];
                    // SAFETY: the activation row holds super-block b (checked by the caller).
                    let (x, sums) = unsafe {
                        (
                            a.qs.as_ptr().add(b * SUPER + 64 * p),
                            sum_pair(a.sums32, 8 * b + 2 * p),
                        )
                    };
                    let (mut dot_low, mut dot_high) =
                        (_mm512_setzero_si512(), _mm512_setzero_si512());
                    for c in 0..8 {
                        // SAFETY: words c and 8 + c of these 64 values.
                        let (xl, xh) = unsafe { (broadcast_word(x, c), broadcast_word(x, 8 + c)) };
                        dot_low = _mm512_dpbusd_epi32(dot_low, low[c], xl);
                        dot_high = _mm512_dpbusd_epi32(dot_high, high[c], xh);
                    }
                    let scaled = _mm512_add_epi32(
                        _mm512_mullo_epi32(dot_low, sc_low),
                        _mm512_mullo_epi32(dot_high, sc_high),
                    );
                    *isum = _mm512_add_epi32(*isum, scaled);
                    *msum = _mm512_dpwssd_epi32(*msum, mins, _mm512_set1_epi32(sums));
                }
            }
            (isum, msum)
        } else {
            let mut isum = [_mm512_setzero_si512(); N];
            // Sub-block 2p + s: the low nibbles of pair p's words (s = 0), then the high ones.
            for sub in 0..8 {
                let (p, s) = (sub / 2, sub % 2);
                // SAFETY: pair p's scales and nibble words lie inside the super-block.
                let (scales, words) = unsafe {
                    (
                        _mm512_cvtepu8_epi16(_mm256_loadu_si256(
                            sb.add(q4_k::SCALES + 32 * p).cast(),
                        )),
                        sb.add(q4_k::QS + 512 * p),
                    )
                };
                let sc = if s == 0 {
                    _mm512_and_si512(scales, low16)
                } else {
                    _mm512_srli_epi32(scales, 16)
                };
                let mut values = [_mm512_setzero_si512(); 8];
                for (c, v) in values.iter_mut().enumerate() {
                    // SAFETY: word c of pair p lies inside the super-block's nibbles.
                    let raw = unsafe { _mm512_loadu_si512(words.add(64 * c).cast()) };
                    let nibbles = if s == 0 {
                        raw
                    } else {
                        _mm512_srli_epi16(raw, 4)
                    };
                    *v = _mm512_and_si512(nibbles, mask);
                    if FIVE {
                        // SAFETY: fifth-bit word 2p + c/4 lies inside the super-block.
                        let hi = unsafe {
                            _mm512_loadu_si512(sb.add(q5_k::HI + 64 * (2 * p + c / 4)).cast())
                        };
                        let (l, h) = fifth_bits(hi, c % 4);
                        *v = _mm512_or_si512(*v, if s == 0 { l } else { h });
                    }
                }
                for (k, isum) in isum.iter_mut().enumerate() {
                    // SAFETY: the activation row holds super-block b (checked by the caller).
                    let x = unsafe { acts[k].qs.as_ptr().add(b * SUPER + 32 * sub) };
                    let mut dots = [_mm512_setzero_si512(); 2];
                    for (c, v) in values.iter().enumerate() {
                        // SAFETY: word c of this sub-block's 32 values.
                        let xw = unsafe { broadcast_word(x, c) };
                        dots[c % 2] = _mm512_dpbusd_epi32(dots[c % 2], *v, xw);
                    }
                    let dot = _mm512_add_epi32(dots[0], dots[1]);
                    *isum = _mm512_add_epi32(*isum, _mm512_mullo_epi32(dot, sc));
                }
            }
            // The mins times the activations' sums of 32, pair by pair.
            // SAFETY: the mins of the four pairs lie inside the super-block.
            let mins: [_; 4] = std::array::from_fn(|p| unsafe {
                _mm512_cvtepu8_epi16(_mm256_loadu_si256(sb.add(q4_k::MINS + 32 * p).cast()))
            });
            let msum: [_; N] = std::array::from_fn(|k| {
                let mut msum = _mm512_setzero_si512();
                for (p, mins) in mins.iter().enumerate() {
                    // SAFETY: the activation row holds super-block b (checked by the caller).
                    let sums = unsafe { sum_pair(acts[k].sums32, 8 * b + 2 * p) };
                    msum = _mm512_dpwssd_epi32(msum, *mins, _mm512_set1_epi32(sums));
                }
                msum
            });
            (isum, msum)
        };
        // SAFETY: the sixteen f16 scales and min scales lie at the super-block's start.
        let (d, dmin) = unsafe {
            (
                _mm512_cvtph_ps(_mm256_loadu_si256(sb.add(q4_k::D).cast())),
                _mm512_cvtph_ps(_mm256_loadu_si256(sb.add(q4_k::DMIN).cast())),
            )
        };
        for (k, acc) in acc.iter_mut().enumerate() {
            // SAFETY: the activation row holds super-block b.
            let dx = _mm512_set1_ps(unsafe { *acts[k].scale.get_unchecked(b) });
            *acc = _mm512_fmadd_ps(_mm512_mul_ps(d, dx), _mm512_cvtepi32_ps(isum[k]), *acc);
            *acc = _mm512_fnmadd_ps(_mm512_mul_ps(dmin, dx), _mm512_cvtepi32_ps(msum[k]), *acc);
        }
    }
    for (o, acc) in out.iter_mut().zip(acc) {
        // SAFETY: `o` holds sixteen floats.
        unsafe { _mm512_storeu_ps(o.as_mut_ptr(), acc) };
    }
}

/// Q6_K: per 64 values, the 6-bit values rebuilt in registers (low nibble | high bits << 4,
/// one 64-byte load of high bits per two of nibbles), four `dpbusd` per 16-value group and
/// token, times the rows' int8 scales (`mullo`), summed over the super-block; the −32 offset of
/// the values taken off per 64 values as 32 × the `dpwssd` of the scales with the activations'
/// group sums (each group's sum started from −32 × its activation sum before: a scalar
/// multiply and a broadcast per group and token; Zen 5, one thread, 128 tokens × 1024 × 2048,
/// three alternating rounds 10–21% faster); one multiply-add per super-block.
///
/// # Safety
/// As for [`q4_k_vnni`], with Q6_K super-blocks.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
pub(super) unsafe fn q6_k_vnni<const N: usize>(
    group: Group<'_>,
    acts: &[SuperRow<'_>; MAX_TILE],
    blocks: usize,
    out: &mut [[f32; ROWS]; MAX_TILE],
) {
    let (nibble, high_bits) = (_mm512_set1_epi8(0x0f), _mm512_set1_epi8(0x30));
    let mut acc = [_mm512_setzero_ps(); N];
    for b in 0..blocks {
        // SAFETY: super-block b lies inside the group (checked by the caller).
        let sb = unsafe { group.bytes.as_ptr().add(b * q6_k::BYTES) };
        if N == 1 {
            prefetch(sb.wrapping_add(q6_k::BYTES), q6_k::BYTES);
        }
        let mut isum = [_mm512_setzero_si512(); N];
        for p in 0..4 {
            // SAFETY: the scale pairs of groups 4p..4p+4 lie inside the super-block.
            let (first, second) = unsafe {
                (
                    _mm512_cvtepi8_epi16(_mm256_loadu_si256(sb.add(q6_k::SCALES + 64 * p).cast())),
                    _mm512_cvtepi8_epi16(_mm256_loadu_si256(
                        sb.add(q6_k::SCALES + 64 * p + 32).cast(),
                    )),
                )
            };
            let (s0, s1) = split_pairs(first);
            let (s2, s3) = split_pairs(second);
            // Values of nibble words 8p..8p+8: low nibbles (values 64p + 4c..), high (+32).
            let mut values = [_mm512_setzero_si512(); 16];
            for e in 0..4 {
                // SAFETY: high-bit word 4p + e and nibble words 8p + 2e, +1 lie inside.
                let h = unsafe { _mm512_loadu_si512(sb.add(q6_k::HI + 64 * (4 * p + e)).cast()) };
                let fields = [
                    _mm512_slli_epi16(h, 4),
                    _mm512_slli_epi16(h, 2),
                    h,
                    _mm512_srli_epi16(h, 2),
                ];
                for t in 0..2 {
                    let c = 2 * e + t;
                    // SAFETY: as above.
                    let raw =
                        unsafe { _mm512_loadu_si512(sb.add(q6_k::LO + 64 * (8 * p + c)).cast()) };
                    let low = _mm512_and_si512(raw, nibble);
                    let high = _mm512_and_si512(_mm512_srli_epi16(raw, 4), nibble);
                    values[c] = _mm512_or_si512(low, _mm512_and_si512(fields[2 * t], high_bits));
                    values[8 + c] =
                        _mm512_or_si512(high, _mm512_and_si512(fields[2 * t + 1], high_bits));
                }
            }
            for (k, isum) in isum.iter_mut().enumerate() {
                let a = &acts[k];
                // SAFETY: the activation row holds super-block b (checked by the caller).
                let x = unsafe { a.qs.as_ptr().add(b * SUPER + 64 * p) };
                // Groups 4p + u: words 4u..4u+4 of these 64 values, values[4u..4u+4].
                for (u, sc) in [s0, s1, s2, s3].into_iter().enumerate() {
                    let mut dot = _mm512_setzero_si512();
                    for i in 0..4 {
                        // SAFETY: word 4u + i of these 64 values.
                        let xw = unsafe { broadcast_word(x, 4 * u + i) };
                        dot = _mm512_dpbusd_epi32(dot, values[4 * u + i], xw);
                    }
                    *isum = _mm512_add_epi32(*isum, _mm512_mullo_epi32(dot, sc));
                }
                // The −32 offset: 32 × Σ scale × the group's activation sum.
                // SAFETY: the row's four group sums of these 64 values, two 16-bit pairs.
                let (sums01, sums23) = unsafe {
                    (
                        _mm512_set1_epi32(sum_pair(a.sums16, 16 * b + 4 * p)),
                        _mm512_set1_epi32(sum_pair(a.sums16, 16 * b + 4 * p + 2)),
                    )
                };
                let offset = _mm512_dpwssd_epi32(_mm512_madd_epi16(first, sums01), second, sums23);
                *isum = _mm512_sub_epi32(*isum, _mm512_slli_epi32(offset, 5));
            }
        }
        // SAFETY: the sixteen f16 scales lie at the super-block's start.
        let d = _mm512_cvtph_ps(unsafe { _mm256_loadu_si256(sb.add(q6_k::D).cast()) });
        for (k, acc) in acc.iter_mut().enumerate() {
            // SAFETY: the activation row holds super-block b.
            let dx = _mm512_set1_ps(unsafe { *acts[k].scale.get_unchecked(b) });
            *acc = _mm512_fmadd_ps(_mm512_mul_ps(d, dx), _mm512_cvtepi32_ps(isum[k]), *acc);
        }
    }
    for (o, acc) in out.iter_mut().zip(acc) {
        // SAFETY: `o` holds sixteen floats.
        unsafe { _mm512_storeu_ps(o.as_mut_ptr(), acc) };
    }
}

/// F16 (`BF` false) or BF16 weights against float activations: sixteen rows in the lanes of
/// one register, per token two running sums (the even and the odd columns) added at the end,
/// the portable kernel's order.
///
/// # Safety
/// The processor has AVX-512 F/BW; `group` holds `cols` (even) columns and each activation
/// row at least `cols` values.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw")]
pub(super) unsafe fn float_vnni<const N: usize, const BF: bool>(
    group: Group<'_>,
    acts: &[&[f32]; MAX_TILE],
    cols: usize,
    out: &mut [[f32; ROWS]; MAX_TILE],
) {
    let base = group.bytes.as_ptr();
    let mut sums = [[_mm512_setzero_ps(); 2]; N];
    for k in (0..cols).step_by(2) {
        for e in 0..2 {
            // SAFETY: column k + e < cols lies inside the group.
            let raw = unsafe { _mm256_loadu_si256(base.add((k + e) * FLOAT_COLUMN_BYTES).cast()) };
            let w = if BF {
                _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(raw), 16))
            } else {
                _mm512_cvtph_ps(raw)
            };
            for (t, sums) in sums.iter_mut().enumerate() {
                // SAFETY: the row holds at least `cols` values.
                let x = _mm512_set1_ps(unsafe { *acts[t].get_unchecked(k + e) });
                sums[e] = _mm512_fmadd_ps(w, x, sums[e]);
            }
        }
    }
    for (o, [even, odd]) in out.iter_mut().zip(sums) {
        // SAFETY: `o` holds sixteen floats.
        unsafe { _mm512_storeu_ps(o.as_mut_ptr(), _mm512_add_ps(even, odd)) };
    }
}
