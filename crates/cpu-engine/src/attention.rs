//! Causal attention over the KV cache: one query of one head at a time, in an order of sums
//! that the AVX2 build and the AVX-512 kernel reproduce to the bit.

#![allow(unsafe_code)] // the vector builds, called after checking the processor has them.

#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;

use crate::isa::Isa;
use crate::parallel::{DisjointWrites, written};
use crate::pool;

/// Queries of one head a task of [`causal_attention`] takes.
const QUERIES_PER_TASK: usize = 16;

/// The attention's shape: query heads, KV heads (fewer under grouped-query attention) and the
/// width of one head.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Heads {
    pub(crate) heads: usize,
    pub(crate) kv_heads: usize,
    pub(crate) head_dim: usize,
}

impl Heads {
    pub(crate) fn dim(self) -> usize {
        self.heads * self.head_dim
    }

    pub(crate) fn kv_dim(self) -> usize {
        self.kv_heads * self.head_dim
    }
}

/// Causal attention of the `t` new queries (the first `dim` values of each `qkv` row) over the
/// cache, whose first `start` positions precede them; heads and blocks of queries in parallel. Returns `[t][dim]`.
/// With a `window`, each query sees only the last `window` positions, itself included
/// (sliding-window layers). `isa` picks the kernel (every one gives the portable bits).
#[allow(clippy::too_many_arguments)] // the attention's inputs, each of its own kind
pub(crate) fn causal_attention(
    isa: Isa,
    shape: Heads,
    qkv: &[f32],
    keys: &[f32],
    values: &[f32],
    start: usize,
    t: usize,
    window: Option<usize>,
) -> Vec<f32> {
    let (hd, dim, kv_dim) = (shape.head_dim, shape.dim(), shape.kv_dim());
    let qkv_width = dim + 2 * kv_dim;
    let group = shape.heads / shape.kv_heads;
    let scale = 1.0 / (hd as f32).sqrt();
    // Tasks of one head and up to 16 queries, the latest queries (the most positions to attend
    // over) first, so that threads finish together: by heads alone, a model of 14 heads (Qwen2.5
    // 0.5B) kept 2 of 16 threads idle and a 4-thread run split its heads 4, 4, 3, 3. (End to end
    // that 0.5B prompt did not change measurably at 16 threads on the Xeon: attention is a small
    // share of it at 128 tokens; longer prompts weigh it more.)
    let blocks = t.div_ceil(QUERIES_PER_TASK);
    let tasks = |writes: &DisjointWrites<'_>| {
        let scratch = || (vec![0f32; hd], Vec::with_capacity(start + t));
        pool::for_each_init(shape.heads * blocks, scratch, |(out, scores), task| {
            let (h, block) = (task % shape.heads, blocks - 1 - task / shape.heads);
            let queries = block * QUERIES_PER_TASK..((block + 1) * QUERIES_PER_TASK).min(t);
            for i in queries {
                let seen = start + i + 1;
                let first = window.map_or(0, |w| seen.saturating_sub(w));
                let head = HeadCache {
                    keys: &keys[first * kv_dim..],
                    values: &values[first * kv_dim..],
                    kv_dim,
                    offset: (h / group) * hd,
                };
                let q = &qkv[i * qkv_width + h * hd..][..hd];
                attend(isa, q, head, seen - first, scale, scores, out);
                // SAFETY: this task alone writes columns h·hd..(h + 1)·hd of row i.
                unsafe { writes.write(i * dim + h * hd, out) };
            }
        })
    };
    // SAFETY: the heads' columns make up each row (`dim` = heads × head_dim), and the tasks of
    // every head cover all `t` rows.
    unsafe { written(t * dim, tasks) }
}

/// One head's view of a layer's KV cache: one row of `kv_dim` per position in `keys` and
/// `values`, the head's slice starting at `offset`.
#[derive(Clone, Copy)]
pub(crate) struct HeadCache<'a> {
    pub(crate) keys: &'a [f32],
    pub(crate) values: &'a [f32],
    pub(crate) kv_dim: usize,
    pub(crate) offset: usize,
}

/// One head's attention for one query over the first `n` cached positions; `out` (the head's
/// width) receives the weighted values. Sums run in the same order as the scalar loops (eight
/// partial sums for q·k, positions in order for the values), so the vector builds give the same
/// bits.
pub(crate) fn attend(
    isa: Isa,
    q: &[f32],
    cache: HeadCache<'_>,
    n: usize,
    scale: f32,
    scores: &mut Vec<f32>,
    out: &mut [f32],
) {
    #[cfg(target_arch = "x86_64")]
    match isa {
        Isa::Avx512Vnni | Isa::Amx if q.len().is_multiple_of(8) => {
            assert!(
                isa.is_supported(),
                "attention: {isa:?} is not available here"
            );
            // SAFETY: the processor has AVX-512 (asserted just above); the head's width is
            // whole groups of eight.
            unsafe { attend_avx512(q, cache, n, scale, scores, out) };
            return;
        }
        Isa::Avx2 | Isa::Avx512Vnni | Isa::Amx => {
            assert!(
                isa.is_supported(),
                "attention: {isa:?} is not available here"
            );
            // SAFETY: the processor has AVX2 (every one of these sets implies it).
            unsafe { attend_avx2(q, cache, n, scale, scores, out) };
            return;
        }
        Isa::Portable => {}
    }
    let _ = isa;
    attend_body(q, cache, n, scale, scores, out);
}

/// [`attend`] compiled for AVX2 (the body is inlined here, so the loops vectorize 8 wide).
///
/// # Safety
/// The processor has AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn attend_avx2(
    q: &[f32],
    cache: HeadCache<'_>,
    n: usize,
    scale: f32,
    scores: &mut Vec<f32>,
    out: &mut [f32],
) {
    attend_body(q, cache, n, scale, scores, out);
}

#[inline(always)]
fn attend_body(
    q: &[f32],
    cache: HeadCache<'_>,
    n: usize,
    scale: f32,
    scores: &mut Vec<f32>,
    out: &mut [f32],
) {
    let HeadCache {
        keys,
        values,
        kv_dim,
        offset,
    } = cache;
    let hd = out.len();
    scores.clear();
    // A plain loop, not `extend(map(..))`: the iterator's fold is a generic function compiled
    // outside `attend_avx2`'s target features, which left this product 4 wide (SSE), ~6% of a
    // decode step.
    for k in keys.chunks_exact(kv_dim).take(n) {
        scores.push(dot8(q, &k[offset..offset + hd]) * scale);
    }
    let max = scores.iter().fold(f32::NEG_INFINITY, |m, s| m.max(*s));
    let mut total = 0.0;
    for s in scores.iter_mut() {
        *s = crate::math::exp(*s - max);
    }
    for s in scores.iter() {
        total += *s;
    }
    for s in scores.iter_mut() {
        *s /= total;
    }
    // Output values kept in registers while the positions stream past: 64 at a time (eight
    // registers; one pass over the values for a 64-wide head), then 8 at a time, then one. Each
    // value sums its positions in order, whichever pass computes it.
    let mut column = offset;
    let mut wide = out.chunks_exact_mut(64);
    for o in wide.by_ref() {
        let mut acc = [[0f32; 8]; 8];
        for (w, v) in scores.iter().zip(values.chunks_exact(kv_dim)) {
            for (a, v) in acc.iter_mut().zip(v[column..column + 64].chunks_exact(8)) {
                for (a, v) in a.iter_mut().zip(v) {
                    *a += w * v;
                }
            }
        }
        for (o, a) in o.chunks_exact_mut(8).zip(&acc) {
            o.copy_from_slice(a);
        }
        column += 64;
    }
    let mut lanes = wide.into_remainder().chunks_exact_mut(8);
    for o in lanes.by_ref() {
        let mut acc = [0f32; 8];
        for (w, v) in scores.iter().zip(values.chunks_exact(kv_dim)) {
            for (a, v) in acc.iter_mut().zip(&v[column..column + 8]) {
                *a += w * v;
            }
        }
        o.copy_from_slice(&acc);
        column += 8;
    }
    for (i, o) in lanes.into_remainder().iter_mut().enumerate() {
        *o = scores
            .iter()
            .zip(values.chunks_exact(kv_dim))
            .fold(0.0, |a, (w, v)| a + w * v[column + i]);
    }
}

/// [`attend_body`] in AVX-512 (and AVX2 for the scores), the same operations value by value:
/// - q·k eight positions at a time: each position's eight partial sums in one 8-lane register
///   (multiply, then add, chunk by chunk), the eight registers transposed so that one add per
///   partial sum totals all eight positions in [`dot8`]'s order. Lane by lane the scalar loop's
///   arithmetic; it was a horizontal sum per position.
/// - The weighted values 16 wide (64 a pass, then 16, 8, one): each value still sums its
///   positions in order, a multiply then an add.
///
/// # Safety
/// The processor has AVX-512 F; the head's width (`q.len()`) is a multiple of eight.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,avx512f")]
unsafe fn attend_avx512(
    q: &[f32],
    cache: HeadCache<'_>,
    n: usize,
    scale: f32,
    scores: &mut Vec<f32>,
    out: &mut [f32],
) {
    let HeadCache {
        keys,
        values,
        kv_dim,
        offset,
    } = cache;
    let hd = out.len();
    assert!(hd.is_multiple_of(8) && q.len() == hd && offset + hd <= kv_dim);
    assert!(keys.len() >= n * kv_dim && values.len() >= n * kv_dim);
    // `dot8`'s total starts from the empty sum and adds its (empty) tail after: whatever `Sum`
    // starts from, the same here.
    let empty: f32 = [0f32; 0].iter().sum();
    scores.clear();
    scores.reserve(n);
    let mut p = 0;
    // SAFETY (loads): positions below `n` lie inside `keys` and `values`, columns `offset..offset
    // + hd` inside each row (asserted above); `q` holds `hd` values.
    unsafe {
        while p + 8 <= n {
            let sums: [__m256; 8] = std::array::from_fn(|j| {
                let k = keys.as_ptr().add((p + j) * kv_dim + offset);
                let mut acc = _mm256_setzero_ps();
                for c in (0..hd).step_by(8) {
                    let product = _mm256_mul_ps(
                        _mm256_loadu_ps(q.as_ptr().add(c)),
                        _mm256_loadu_ps(k.add(c)),
                    );
                    acc = _mm256_add_ps(acc, product);
                }
                acc
            });
            let mut total = _mm256_set1_ps(empty);
            for partial in transposed(sums) {
                total = _mm256_add_ps(total, partial);
            }
            total = _mm256_add_ps(total, _mm256_set1_ps(empty));
            let mut eight = [0f32; 8];
            _mm256_storeu_ps(
                eight.as_mut_ptr(),
                _mm256_mul_ps(total, _mm256_set1_ps(scale)),
            );
            scores.extend_from_slice(&eight);
            p += 8;
        }
    }
    for k in keys.chunks_exact(kv_dim).take(n).skip(p) {
        scores.push(dot8(q, &k[offset..offset + hd]) * scale);
    }
    let max = scores.iter().fold(f32::NEG_INFINITY, |m, s| m.max(*s));
    for s in scores.iter_mut() {
        *s = crate::math::exp(*s - max);
    }
    let mut total = 0.0;
    for s in scores.iter() {
        total += *s;
    }
    for s in scores.iter_mut() {
        *s /= total;
    }
    let mut column = 0;
    // SAFETY: as above; `out` holds `hd` values.
    unsafe {
        let v = values.as_ptr().add(offset);
        while column + 64 <= hd {
            let mut acc = [_mm512_setzero_ps(); 4];
            for (i, w) in scores.iter().enumerate() {
                let (w, row) = (_mm512_set1_ps(*w), v.add(i * kv_dim + column));
                for (r, acc) in acc.iter_mut().enumerate() {
                    *acc = _mm512_add_ps(*acc, _mm512_mul_ps(w, _mm512_loadu_ps(row.add(16 * r))));
                }
            }
            for (r, acc) in acc.iter().enumerate() {
                _mm512_storeu_ps(out.as_mut_ptr().add(column + 16 * r), *acc);
            }
            column += 64;
        }
        while column + 16 <= hd {
            let mut acc = _mm512_setzero_ps();
            for (i, w) in scores.iter().enumerate() {
                let row = v.add(i * kv_dim + column);
                acc = _mm512_add_ps(acc, _mm512_mul_ps(_mm512_set1_ps(*w), _mm512_loadu_ps(row)));
            }
            _mm512_storeu_ps(out.as_mut_ptr().add(column), acc);
            column += 16;
        }
        if column < hd {
            let mut acc = _mm256_setzero_ps();
            for (i, w) in scores.iter().enumerate() {
                let row = v.add(i * kv_dim + column);
                acc = _mm256_add_ps(acc, _mm256_mul_ps(_mm256_set1_ps(*w), _mm256_loadu_ps(row)));
            }
            _mm256_storeu_ps(out.as_mut_ptr().add(column), acc);
        }
    }
}

/// Eight registers of eight lanes transposed: lane `j` of result `k` is lane `k` of input `j`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn transposed(s: [__m256; 8]) -> [__m256; 8] {
    // Pairs of rows interleaved, then quads, then the 128-bit halves.
    let t: [__m256; 8] = std::array::from_fn(|i| {
        let (a, b) = (s[2 * (i / 2)], s[2 * (i / 2) + 1]);
        if i % 2 == 0 {
            _mm256_unpacklo_ps(a, b)
        } else {
            _mm256_unpackhi_ps(a, b)
        }
    });
    // u[4h + c]: columns c and c + 4 of rows 4h..4h + 4.
    let u: [__m256; 8] = std::array::from_fn(|i| {
        let (h, c) = (i / 4, i % 4);
        let (a, b) = (t[4 * h + c / 2], t[4 * h + 2 + c / 2]);
        if c % 2 == 0 {
            _mm256_shuffle_ps::<0x44>(a, b)
        } else {
            _mm256_shuffle_ps::<0xEE>(a, b)
        }
    });
    std::array::from_fn(|k| {
        let (a, b) = (u[k % 4], u[4 + k % 4]);
        if k < 4 {
            _mm256_permute2f128_ps::<0x20>(a, b)
        } else {
            _mm256_permute2f128_ps::<0x31>(a, b)
        }
    })
}

/// Eight partial sums, then their total: the order the attention's reference results follow.
#[inline(always)]
fn dot8(a: &[f32], b: &[f32]) -> f32 {
    let mut sums = [0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in ca.zip(cb) {
        for k in 0..8 {
            sums[k] += x[k] * y[k];
        }
    }
    sums.iter().sum::<f32>() + tail
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `n` positions' `[q | k | v]` rows of pseudo-random values in (−1, 1) (drawn modulo
    /// `modulus`), and the keys and values a cache of them holds.
    fn positions(shape: Heads, n: usize, modulus: usize) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
        let (dim, kv_dim) = (shape.dim(), shape.kv_dim());
        let width = dim + 2 * kv_dim;
        let noise = |i: usize| ((i * 7919 % modulus) as f32 / modulus as f32 - 0.5) * 2.0;
        let qkv: Vec<f32> = (0..n * width).map(noise).collect();
        let keys = qkv
            .chunks_exact(width)
            .flat_map(|r| r[dim..dim + kv_dim].to_vec())
            .collect();
        let values = qkv
            .chunks_exact(width)
            .flat_map(|r| r[dim + kv_dim..].to_vec())
            .collect();
        (qkv, keys, values)
    }

    /// A prompt's queries, split into tasks by head and block of queries (three blocks here, the
    /// last partial, after five cached positions), each give what the query gives run alone.
    #[test]
    fn queries_split_into_blocks_equal_each_query_alone() {
        let shape = Heads {
            heads: 6,
            kv_heads: 2,
            head_dim: 16,
        };
        let (dim, kv_dim) = (shape.dim(), shape.kv_dim());
        let width = dim + 2 * kv_dim;
        let (start, t) = (5, 2 * QUERIES_PER_TASK + 5);
        let (qkv, keys, values) = positions(shape, start + t, 263);
        let isa = Isa::detect();
        let together = causal_attention(
            isa,
            shape,
            &qkv[start * width..],
            &keys,
            &values,
            start,
            t,
            None,
        );
        for i in 0..t {
            let seen = start + i + 1;
            let alone = causal_attention(
                isa,
                shape,
                &qkv[(start + i) * width..][..width],
                &keys[..seen * kv_dim],
                &values[..seen * kv_dim],
                start + i,
                1,
                None,
            );
            assert_eq!(
                &together[i * dim..(i + 1) * dim],
                alone.as_slice(),
                "query {i}"
            );
        }
    }

    /// A windowed query attends exactly as an unwindowed one over the cache's last `window`
    /// positions.
    #[test]
    fn a_sliding_window_sees_only_the_last_positions() {
        let shape = Heads {
            heads: 4,
            kv_heads: 2,
            head_dim: 16,
        };
        let (dim, kv_dim) = (shape.dim(), shape.kv_dim());
        let width = dim + 2 * kv_dim;
        let (n, window) = (9, 3);
        let (qkv, keys, values) = positions(shape, n, 257);
        let isa = Isa::detect();
        let windowed = causal_attention(isa, shape, &qkv, &keys, &values, 0, n, Some(window));
        let full = causal_attention(isa, shape, &qkv, &keys, &values, 0, n, None);
        let first = n - window;
        let last = causal_attention(
            isa,
            shape,
            &qkv[(n - 1) * width..],
            &keys[first * kv_dim..],
            &values[first * kv_dim..],
            window - 1,
            1,
            None,
        );
        assert_eq!(&windowed[(n - 1) * dim..], last.as_slice());
        assert_ne!(&windowed[(n - 1) * dim..], &full[(n - 1) * dim..]);
        // Positions within the window from the start are unaffected.
        assert_eq!(&windowed[..window * dim], &full[..window * dim]);
    }

    /// Every instruction set's attention gives the portable loops' bits: heads whose width is
    /// whole registers of 16 and 64 values or not (72, 24: an 8-wide rest; 20: the portable
    /// loops), positions in whole groups of eight or not.
    #[test]
    fn every_isa_attends_as_the_portable_loops() {
        for head_dim in [16, 20, 24, 64, 72, 128] {
            let shape = Heads {
                heads: 2,
                kv_heads: 1,
                head_dim,
            };
            let kv_dim = shape.kv_dim() + 8; // the head's columns not at a row's start
            let n_max = 41;
            let (_, keys, values) = positions(shape, n_max * 2, 251);
            let keys = &keys[..n_max * kv_dim];
            let values = &values[..n_max * kv_dim];
            let q: Vec<f32> = (0..head_dim).map(|i| (i as f32 * 0.37).sin()).collect();
            for n in [1, 7, 8, 9, 16, 17, n_max] {
                let head = HeadCache {
                    keys,
                    values,
                    kv_dim,
                    offset: 8,
                };
                let (mut scores, mut reference) = (Vec::new(), vec![0f32; head_dim]);
                attend_body(&q, head, n, 0.125, &mut scores, &mut reference);
                assert!(reference.iter().any(|v| *v != 0.0), "degenerate attention");
                for isa in [Isa::Portable, Isa::Avx2, Isa::Avx512Vnni] {
                    if !isa.is_supported() {
                        rigger_model_gen::declare_skip(
                            "cpu-engine attention: every ISA attends as the portable loops",
                            &format!("{isa:?} is not available on this processor"),
                        );
                        continue;
                    }
                    let mut got = vec![f32::NAN; head_dim];
                    attend(isa, &q, head, n, 0.125, &mut scores, &mut got);
                    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                    assert_eq!(
                        bits(&got),
                        bits(&reference),
                        "{isa:?} head {head_dim} n {n}"
                    );
                }
            }
        }
    }
}
