//! Causal attention over the KV cache: one query of one head at a time, in an order of sums
//! that the AVX2 build reproduces to the bit.

#![allow(unsafe_code)] // calling the AVX2 build after checking the processor has AVX2.

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
/// (sliding-window layers).
pub(crate) fn causal_attention(
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
                attend(q, head, seen - first, scale, scores, out);
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
/// partial sums for q·k, positions in order for the values), so the AVX2 build gives the same
/// bits.
pub(crate) fn attend(
    q: &[f32],
    cache: HeadCache<'_>,
    n: usize,
    scale: f32,
    scores: &mut Vec<f32>,
    out: &mut [f32],
) {
    #[cfg(target_arch = "x86_64")]
    if is_x86_feature_detected!("avx2") {
        // SAFETY: the processor has AVX2 (checked just above).
        unsafe { attend_avx2(q, cache, n, scale, scores, out) };
        return;
    }
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
        let together =
            causal_attention(shape, &qkv[start * width..], &keys, &values, start, t, None);
        for i in 0..t {
            let seen = start + i + 1;
            let alone = causal_attention(
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
        let windowed = causal_attention(shape, &qkv, &keys, &values, 0, n, Some(window));
        let full = causal_attention(shape, &qkv, &keys, &values, 0, n, None);
        let first = n - window;
        let last = causal_attention(
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
}
