//! The activation quantizers in AVX-512 and AVX2: the portable rows' operations lane by lane
//! (`quant::portable_q8_0_row`, `quant::portable_q8_k_row`), so the same bytes, scales and
//! sums. Compiled loops had left the rounding, the packing to bytes and the block sums scalar:
//! 128 tokens' quantization took more than half as long as the product it fed (AMD Zen 5).

#![allow(unsafe_code)] // SIMD loads and stores; each unsafe block says why it stays inside.

use std::arch::x86_64::*;

use half::f16;

use crate::isa::Isa;
use crate::quant::{BLOCK, SUPER, q8_k_scales};

/// `quant::q8_0_row` by `isa` (AVX2 or AVX-512 VNNI).
pub(crate) fn q8_0_row(isa: Isa, x: &[f32], qs: &mut [i8], scale: &mut [f32], sums: &mut [i32]) {
    assert!(x.len() == qs.len() && scale.len() * BLOCK == x.len() && sums.len() == scale.len());
    assert!(isa.is_supported());
    // SAFETY (each arm): the processor has the set and the slices' lengths are as the
    // quantizers need (both asserted above).
    match isa {
        Isa::Avx512Vnni => unsafe { q8_0_row_avx512(x, qs, scale, sums) },
        _ => unsafe { q8_0_row_avx2(x, qs, scale, sums) },
    }
}

/// `quant::q8_k_row` by `isa` (AVX2 or AVX-512 VNNI).
pub(crate) fn q8_k_row(
    isa: Isa,
    x: &[f32],
    qs: &mut [i8],
    scale: &mut [f32],
    sums16: &mut [i16],
    sums32: &mut [i16],
) {
    assert!(x.len() == qs.len() && scale.len() * SUPER == x.len());
    assert!(sums16.len() == 16 * scale.len() && sums32.len() == 8 * scale.len());
    assert!(isa.is_supported());
    // SAFETY (each arm): as in `q8_0_row`.
    match isa {
        Isa::Avx512Vnni => unsafe { q8_k_row_avx512(x, qs, scale, sums16, sums32) },
        _ => unsafe { q8_k_row_avx2(x, qs, scale, sums16, sums32) },
    }
}

/// `round_half_away(x).clamp(-128.0, 127.0)` lane by lane, as i32: NaN to 0, clamped first
/// (rounding maps −128 and 127 to themselves and is monotone, so the order does not matter),
/// then the portable rounding: the whole part, plus or minus one where the fraction left is a
/// half or more.
///
/// # Safety
/// The processor has AVX-512 F.
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn round_512(x: __m512) -> __m512i {
    let x = _mm512_maskz_mov_ps(_mm512_cmp_ps_mask::<_CMP_ORD_Q>(x, x), x);
    let x = _mm512_min_ps(
        _mm512_max_ps(x, _mm512_set1_ps(-128.0)),
        _mm512_set1_ps(127.0),
    );
    let whole = _mm512_cvttps_epi32(x);
    let fraction = _mm512_sub_ps(x, _mm512_cvtepi32_ps(whole));
    let up = _mm512_cmp_ps_mask::<_CMP_GE_OQ>(fraction, _mm512_set1_ps(0.5));
    let down = _mm512_cmp_ps_mask::<_CMP_LE_OQ>(fraction, _mm512_set1_ps(-0.5));
    let one = _mm512_set1_epi32(1);
    let whole = _mm512_mask_add_epi32(whole, up, whole, one);
    _mm512_mask_sub_epi32(whole, down, whole, one)
}

/// As [`round_512`], eight lanes.
///
/// # Safety
/// The processor has AVX2.
#[target_feature(enable = "avx2")]
#[inline]
unsafe fn round_256(x: __m256) -> __m256i {
    let x = _mm256_and_ps(x, _mm256_cmp_ps::<_CMP_ORD_Q>(x, x));
    let x = _mm256_min_ps(
        _mm256_max_ps(x, _mm256_set1_ps(-128.0)),
        _mm256_set1_ps(127.0),
    );
    let whole = _mm256_cvttps_epi32(x);
    let fraction = _mm256_sub_ps(x, _mm256_cvtepi32_ps(whole));
    // The comparisons are all ones (−1) where they hold.
    let up = _mm256_castps_si256(_mm256_cmp_ps::<_CMP_GE_OQ>(fraction, _mm256_set1_ps(0.5)));
    let down = _mm256_castps_si256(_mm256_cmp_ps::<_CMP_LE_OQ>(fraction, _mm256_set1_ps(-0.5)));
    _mm256_add_epi32(_mm256_sub_epi32(whole, up), down)
}

/// The largest |v| of `values` (a multiple of 16 long), NaN ignored, 0 for none: `max` returns
/// its second operand where either is NaN, so the running maximum stays.
///
/// # Safety
/// The processor has AVX-512 F.
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn largest_magnitude_512(values: &[f32]) -> f32 {
    let mut m = _mm512_setzero_ps();
    for chunk in values.chunks_exact(16) {
        // SAFETY: the chunk holds 16 floats.
        let v = unsafe { _mm512_loadu_ps(chunk.as_ptr()) };
        m = _mm512_max_ps(_mm512_abs_ps(v), m);
    }
    _mm512_reduce_max_ps(m)
}

/// As [`largest_magnitude_512`], eight lanes; `values` a multiple of 8 long.
///
/// # Safety
/// The processor has AVX2.
#[target_feature(enable = "avx2")]
#[inline]
unsafe fn largest_magnitude_256(values: &[f32]) -> f32 {
    let magnitude = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fff_ffff));
    let mut m = _mm256_setzero_ps();
    for chunk in values.chunks_exact(8) {
        // SAFETY: the chunk holds 8 floats.
        let v = unsafe { _mm256_loadu_ps(chunk.as_ptr()) };
        m = _mm256_max_ps(_mm256_and_ps(v, magnitude), m);
    }
    let m = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps::<1>(m));
    let m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    let m = _mm_max_ss(m, _mm_shuffle_ps::<1>(m, m));
    _mm_cvtss_f32(m)
}

/// The sum of eight i32 lanes.
///
/// # Safety
/// The processor has AVX2.
#[target_feature(enable = "avx2")]
#[inline]
unsafe fn sum_256(v: __m256i) -> i32 {
    let s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256::<1>(v));
    let s = _mm_add_epi32(s, _mm_shuffle_epi32::<0b01_00_11_10>(s));
    let s = _mm_add_epi32(s, _mm_shuffle_epi32::<0b10_11_00_01>(s));
    _mm_cvtsi128_si32(s)
}

/// Four vectors of eight i32 in −128..=127 as 32 bytes in order.
///
/// # Safety
/// The processor has AVX2.
#[target_feature(enable = "avx2")]
#[inline]
unsafe fn bytes_256(q: [__m256i; 4]) -> __m256i {
    // The packs work per 128-bit lane: dwords 0-3, 8-11, 4-7, 12-15 of each pair, then the
    // bytes of both in that lane order; one permutation of dwords puts them back in order.
    let low = _mm256_packs_epi32(q[0], q[1]);
    let high = _mm256_packs_epi32(q[2], q[3]);
    let bytes = _mm256_packs_epi16(low, high);
    _mm256_permutevar8x32_epi32(bytes, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7))
}

/// `quant::portable_q8_0_row` in AVX-512: per 32 values, the scale from the largest magnitude,
/// the bytes, their sum.
///
/// # Safety
/// The processor has AVX-512 F, BW and VL; `x` and `qs` are as long, a multiple of 32, and
/// `scale` and `sums` hold a value per 32.
#[target_feature(enable = "avx512f,avx512bw,avx512vl")]
unsafe fn q8_0_row_avx512(x: &[f32], qs: &mut [i8], scale: &mut [f32], sums: &mut [i32]) {
    for (((values, qs), scale), sum) in x
        .chunks_exact(BLOCK)
        .zip(qs.chunks_exact_mut(BLOCK))
        .zip(scale)
        .zip(sums)
    {
        // SAFETY: AVX-512 F (the caller's promise).
        let amax = unsafe { largest_magnitude_512(values) };
        let d = amax / 127.0;
        let id = _mm512_set1_ps(if d != 0.0 { 1.0 / d } else { 0.0 });
        let mut total = _mm512_setzero_si512();
        for half in 0..2 {
            // SAFETY: values and qs hold 32 each: 16 at 16 × half.
            unsafe {
                let v = _mm512_loadu_ps(values.as_ptr().add(16 * half));
                let q = round_512(_mm512_mul_ps(v, id));
                total = _mm512_add_epi32(total, q);
                _mm_storeu_si128(
                    qs.as_mut_ptr().add(16 * half).cast(),
                    _mm512_cvtepi32_epi8(q),
                );
            }
        }
        *scale = f16::from_f32(d).to_f32();
        *sum = _mm512_reduce_add_epi32(total);
    }
}

/// `quant::portable_q8_0_row` in AVX2.
///
/// # Safety
/// The processor has AVX2; the slices as for [`q8_0_row_avx512`].
#[target_feature(enable = "avx2")]
unsafe fn q8_0_row_avx2(x: &[f32], qs: &mut [i8], scale: &mut [f32], sums: &mut [i32]) {
    for (((values, qs), scale), sum) in x
        .chunks_exact(BLOCK)
        .zip(qs.chunks_exact_mut(BLOCK))
        .zip(scale)
        .zip(sums)
    {
        // SAFETY: AVX2 (the caller's promise).
        let amax = unsafe { largest_magnitude_256(values) };
        let d = amax / 127.0;
        let id = _mm256_set1_ps(if d != 0.0 { 1.0 / d } else { 0.0 });
        // SAFETY: values and qs hold 32 each: four loads of 8, one store of 32.
        unsafe {
            let q: [__m256i; 4] = std::array::from_fn(|k| {
                round_256(_mm256_mul_ps(
                    _mm256_loadu_ps(values.as_ptr().add(8 * k)),
                    id,
                ))
            });
            let total =
                _mm256_add_epi32(_mm256_add_epi32(q[0], q[1]), _mm256_add_epi32(q[2], q[3]));
            *sum = sum_256(total);
            _mm256_storeu_si256(qs.as_mut_ptr().cast(), bytes_256(q));
        }
        *scale = f16::from_f32(d).to_f32();
    }
}

/// `quant::portable_q8_k_row` in AVX-512: per 256 values, the scale from the first value of
/// largest magnitude, the bytes, their sums per 16 and per 32.
///
/// # Safety
/// The processor has AVX-512 F, BW and VL; `x` and `qs` are as long, a multiple of 256,
/// `scale` holds a value per 256, `sums16` one per 16 and `sums32` one per 32.
#[target_feature(enable = "avx512f,avx512bw,avx512vl")]
unsafe fn q8_k_row_avx512(
    x: &[f32],
    qs: &mut [i8],
    scale: &mut [f32],
    sums16: &mut [i16],
    sums32: &mut [i16],
) {
    for (b, (values, qs)) in x
        .chunks_exact(SUPER)
        .zip(qs.chunks_exact_mut(SUPER))
        .enumerate()
    {
        // SAFETY: AVX-512 F (the caller's promise).
        let (iscale, row_scale) = q8_k_scales(values, unsafe { largest_magnitude_512(values) });
        scale[b] = row_scale;
        let iscale = _mm512_set1_ps(iscale);
        for k in 0..SUPER / 16 {
            // SAFETY: values and qs hold 256 each: 16 at 16 × k.
            let q = unsafe {
                let q = round_512(_mm512_mul_ps(
                    _mm512_loadu_ps(values.as_ptr().add(16 * k)),
                    iscale,
                ));
                _mm_storeu_si128(qs.as_mut_ptr().add(16 * k).cast(), _mm512_cvtepi32_epi8(q));
                q
            };
            sums16[16 * b + k] = _mm512_reduce_add_epi32(q) as i16;
        }
        for k in 0..SUPER / 32 {
            sums32[8 * b + k] = sums16[16 * b + 2 * k] + sums16[16 * b + 2 * k + 1];
        }
    }
}

/// `quant::portable_q8_k_row` in AVX2.
///
/// # Safety
/// The processor has AVX2; the slices as for [`q8_k_row_avx512`].
#[target_feature(enable = "avx2")]
unsafe fn q8_k_row_avx2(
    x: &[f32],
    qs: &mut [i8],
    scale: &mut [f32],
    sums16: &mut [i16],
    sums32: &mut [i16],
) {
    for (b, (values, qs)) in x
        .chunks_exact(SUPER)
        .zip(qs.chunks_exact_mut(SUPER))
        .enumerate()
    {
        // SAFETY: AVX2 (the caller's promise).
        let (iscale, row_scale) = q8_k_scales(values, unsafe { largest_magnitude_256(values) });
        scale[b] = row_scale;
        let iscale = _mm256_set1_ps(iscale);
        for k in 0..SUPER / 32 {
            // SAFETY: values and qs hold 256 each: four loads of 8 and one store of 32 at
            // 32 × k.
            unsafe {
                let q: [__m256i; 4] = std::array::from_fn(|j| {
                    let v = _mm256_loadu_ps(values.as_ptr().add(32 * k + 8 * j));
                    round_256(_mm256_mul_ps(v, iscale))
                });
                let low = sum_256(_mm256_add_epi32(q[0], q[1])) as i16;
                let high = sum_256(_mm256_add_epi32(q[2], q[3])) as i16;
                sums16[16 * b + 2 * k] = low;
                sums16[16 * b + 2 * k + 1] = high;
                sums32[8 * b + k] = low + high;
                _mm256_storeu_si256(qs.as_mut_ptr().add(32 * k).cast(), bytes_256(q));
            }
        }
    }
}
