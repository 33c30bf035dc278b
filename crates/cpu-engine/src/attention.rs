//! Causal attention over the KV cache: one query of one head at a time, in an order of sums
//! that the AVX2 build reproduces to the bit; on AVX-512, up to 16 queries of a head at once, one
//! per lane, in that order too.

#![allow(unsafe_code)] // the vector builds and the AVX-512 block, after checking the processor.

use crate::isa::Isa;
use crate::parallel::{DisjointWrites, written};
use crate::pool;
#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;

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
/// (sliding-window layers). With `isa` AVX-512, tasks of four queries and more run as one
/// block ([`attend_block_avx512`]); the bits are the same either way.
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
    #[cfg(target_arch = "x86_64")]
    let in_blocks = matches!(isa, Isa::Avx512Vnni | Isa::Amx) && hd.is_multiple_of(8);
    #[cfg(target_arch = "x86_64")]
    assert!(
        !in_blocks || isa.is_supported(),
        "attention: {isa:?} is not available here"
    );
    let _ = isa;
    let tasks = |writes: &DisjointWrites<'_>| {
        let scratch = || {
            let out = vec![0f32; QUERIES_PER_TASK * hd];
            (out, Vec::with_capacity(start + t), BlockScratch::default())
        };
        pool::for_each_init(
            shape.heads * blocks,
            scratch,
            |(out, scores, block_scratch), task| {
                let (h, block) = (task % shape.heads, blocks - 1 - task / shape.heads);
                let queries = block * QUERIES_PER_TASK..((block + 1) * QUERIES_PER_TASK).min(t);
                #[cfg(target_arch = "x86_64")]
                if in_blocks && queries.len() >= BLOCK_FROM {
                    let seen: Vec<usize> = queries.clone().map(|i| start + i + 1).collect();
                    let first: Vec<usize> = seen
                        .iter()
                        .map(|&s| window.map_or(0, |w| s.saturating_sub(w)))
                        .collect();
                    let q: Vec<&[f32]> = queries
                        .clone()
                        .map(|i| &qkv[i * qkv_width + h * hd..][..hd])
                        .collect();
                    let head = HeadCache {
                        keys,
                        values,
                        kv_dim,
                        offset: (h / group) * hd,
                    };
                    let out = &mut out[..q.len() * hd];
                    // SAFETY: the processor has AVX-512 F (asserted above); the heads' width is a
                    // multiple of eight.
                    unsafe {
                        attend_block_avx512(&q, &first, &seen, head, scale, block_scratch, out)
                    };
                    for (i, row) in queries.zip(out.chunks_exact(hd)) {
                        // SAFETY: this task alone writes columns h·hd..(h + 1)·hd of its rows.
                        unsafe { writes.write(i * dim + h * hd, row) };
                    }
                    return;
                }
                let _ = &block_scratch; // (used on x86-64 only)
                let out = &mut out[..hd];
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
            },
        )
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

/// Queries [`attend_block_avx512`] takes side by side, one per lane of a register.
#[cfg(target_arch = "x86_64")]
const LANES: usize = 16;

/// From how many queries a task runs them as one block (fewer leave most lanes idle; a decode
/// step's one query stays on [`attend`]).
#[cfg(target_arch = "x86_64")]
const BLOCK_FROM: usize = 4;

/// [`attend_block_avx512`]'s buffers: the queries transposed (a value's lanes side by side),
/// every position's lanes (the scores, then the weights).
#[derive(Default)]
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
struct BlockScratch {
    queries: Vec<[f32; 16]>,
    grid: Vec<[f32; 16]>,
}

/// One head's attention for up to 16 of its queries at once, query `l` in lane `l` of each
/// register, seeing positions `first[l]..seen[l]`; `out` gets each query's weighted values one
/// after another. Lane by lane the operations of [`attend`] in its order, so the same bits:
/// - the scores: per position, [`dot8`]'s eight partial sums as eight registers of lanes, then
///   their total (a query alone summed its eight lanes one by one, per position);
/// - the softmax: every lane at once, each over its own positions in order;
/// - the weighted values: per position, the weights of every lane times each value, summed over
///   the positions in order; a lane's positions outside its own weigh exactly 0 (0 × v adds
///   nothing to a sum that starts at +0, so long as the cache's values are finite).
///
/// One query at a time spent about 30 cycles per head, query and position on the Zen 5.
///
/// # Safety
/// The processor has AVX-512 F; the head's width is a multiple of eight.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,avx512f")]
#[allow(clippy::too_many_arguments)] // the block's inputs, each of its own kind
unsafe fn attend_block_avx512(
    queries: &[&[f32]],
    first: &[usize],
    seen: &[usize],
    cache: HeadCache<'_>,
    scale: f32,
    scratch: &mut BlockScratch,
    out: &mut [f32],
) {
    let count = queries.len();
    assert!((1..=LANES).contains(&count) && first.len() == count && seen.len() == count);
    let hd = queries[0].len();
    assert!(hd.is_multiple_of(8) && queries.iter().all(|q| q.len() == hd));
    assert_eq!(out.len(), count * hd, "attention block: output size");
    let HeadCache {
        keys,
        values,
        kv_dim,
        offset,
    } = cache;
    let lo = first.iter().copied().min().unwrap_or(0);
    let hi = seen.iter().copied().max().unwrap_or(0);
    assert!(first.iter().zip(seen).all(|(f, s)| f < s));
    assert!(hi * kv_dim <= keys.len() && hi * kv_dim <= values.len() && offset + hd <= kv_dim);
    // Lanes past the block's queries repeat its last one (never written out).
    let lane = |l: usize| l.min(count - 1);
    scratch.queries.clear();
    scratch
        .queries
        .extend((0..hd).map(|d| std::array::from_fn(|l| queries[lane(l)][d])));
    scratch.grid.clear();
    scratch.grid.resize(hi - lo, [0.0; LANES]);
    let (qt, grid) = (&scratch.queries[..], &mut scratch.grid[..]);
    // `dot8`'s total starts from the empty sum and adds its (empty) tail after: whatever `Sum`
    // starts from, the same here.
    let empty: f32 = [0f32; 0].iter().sum();
    // SAFETY: positions lo..hi lie inside `keys` and `values`, columns offset..offset + hd inside
    // each row (asserted above); `qt` holds hd rows and `grid` hi − lo rows of 16 lanes.
    unsafe {
        let lane_first = _mm512_loadu_si512(
            std::array::from_fn::<i32, LANES, _>(|l| first[lane(l)] as i32)
                .as_ptr()
                .cast(),
        );
        let lane_seen = _mm512_loadu_si512(
            std::array::from_fn::<i32, LANES, _>(|l| seen[lane(l)] as i32)
                .as_ptr()
                .cast(),
        );
        let outside = _mm512_set1_ps(f32::NEG_INFINITY);
        for (p, lanes) in (lo..hi).zip(grid.iter_mut()) {
            let k = keys.as_ptr().add(p * kv_dim + offset);
            let mut sums = [_mm512_setzero_ps(); 8];
            for c in (0..hd).step_by(8) {
                for (j, sum) in sums.iter_mut().enumerate() {
                    let q = _mm512_loadu_ps(qt.get_unchecked(c + j).as_ptr());
                    let product = _mm512_mul_ps(q, _mm512_set1_ps(*k.add(c + j)));
                    *sum = _mm512_add_ps(*sum, product);
                }
            }
            let mut total = _mm512_set1_ps(empty);
            for sum in sums {
                total = _mm512_add_ps(total, sum);
            }
            total = _mm512_add_ps(total, _mm512_set1_ps(empty));
            let score = _mm512_mul_ps(total, _mm512_set1_ps(scale));
            // A lane's positions outside its own score −inf: they weigh exactly 0 below.
            let at = _mm512_set1_epi32(p as i32);
            let inside =
                _mm512_cmpge_epi32_mask(at, lane_first) & _mm512_cmplt_epi32_mask(at, lane_seen);
            _mm512_storeu_ps(
                lanes.as_mut_ptr(),
                _mm512_mask_blend_ps(inside, outside, score),
            );
        }
        // The softmax of every lane at once, its positions in order: the max (`vmaxps` keeps
        // the running max where a score is NaN, as `f32::max` does; a max of +0 or −0 gives
        // the same exponentials), each exp(score − max) (−inf gives exactly 0), their total,
        // each divided by it.
        let mut max = outside;
        for lanes in grid.iter() {
            max = _mm512_max_ps(_mm512_loadu_ps(lanes.as_ptr()), max);
        }
        let mut max_lanes = [0f32; LANES];
        _mm512_storeu_ps(max_lanes.as_mut_ptr(), max);
        for lanes in grid.iter_mut() {
            for (x, m) in lanes.iter_mut().zip(&max_lanes) {
                *x = crate::math::exp(*x - *m);
            }
        }
        let mut total = _mm512_setzero_ps();
        for lanes in grid.iter() {
            total = _mm512_add_ps(total, _mm512_loadu_ps(lanes.as_ptr()));
        }
        for lanes in grid.iter_mut() {
            let w = _mm512_div_ps(_mm512_loadu_ps(lanes.as_ptr()), total);
            _mm512_storeu_ps(lanes.as_mut_ptr(), w);
        }
    }
    let mut d0 = 0;
    while d0 + 16 <= hd {
        // SAFETY: as above, columns d0..d0 + 16 of the head.
        unsafe { weighted_avx512::<16>(values, kv_dim, offset + d0, lo, grid, d0, hd, out) };
        d0 += 16;
    }
    if d0 < hd {
        // SAFETY: as above, columns d0..d0 + 8 (the head's width is a multiple of eight).
        unsafe { weighted_avx512::<8>(values, kv_dim, offset + d0, lo, grid, d0, hd, out) };
    }
}

/// Columns `d0..d0 + W` of every lane's weighted values (the cache's columns from `column`),
/// summed over the positions in order, into `out` (lane `l`'s row at `l × hd`; lanes past
/// `out`'s rows dropped).
///
/// # Safety
/// AVX-512 F; positions `lo..lo + grid.len()` and columns `column..column + W` lie inside
/// `values`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,avx512f")]
#[allow(clippy::too_many_arguments)] // one pass's inputs, each of its own kind
unsafe fn weighted_avx512<const W: usize>(
    values: &[f32],
    kv_dim: usize,
    column: usize,
    lo: usize,
    grid: &[[f32; 16]],
    d0: usize,
    hd: usize,
    out: &mut [f32],
) {
    let mut acc = [_mm512_setzero_ps(); W];
    // SAFETY: the caller's promise.
    unsafe {
        for (p, lanes) in (lo..).zip(grid) {
            let w = _mm512_loadu_ps(lanes.as_ptr());
            let v = values.as_ptr().add(p * kv_dim + column);
            for (j, acc) in acc.iter_mut().enumerate() {
                *acc = _mm512_add_ps(*acc, _mm512_mul_ps(w, _mm512_set1_ps(*v.add(j))));
            }
        }
    }
    for (j, acc) in acc.iter().enumerate() {
        let mut lanes = [0f32; 16];
        // SAFETY: `lanes` holds sixteen floats.
        unsafe { _mm512_storeu_ps(lanes.as_mut_ptr(), *acc) };
        for (row, v) in out.chunks_exact_mut(hd).zip(lanes) {
            row[d0 + j] = v;
        }
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

    /// A block of queries on AVX-512 gives each query's plain loops to the bit: heads of 8, 24
    /// (a last pass of eight columns) and 64 values, 4 to 16 queries, after cached positions or
    /// none, with a sliding window or not.
    #[test]
    fn a_block_of_queries_attends_as_each_query_alone() {
        #[cfg(target_arch = "x86_64")]
        for head_dim in [8, 24, 64] {
            if !Isa::Avx512Vnni.is_supported() {
                rigger_model_gen::declare_skip(
                    "cpu-engine attention: a block attends as each query alone",
                    "AVX-512 is not available on this processor",
                );
                return;
            }
            let shape = Heads {
                heads: 2,
                kv_heads: 1,
                head_dim,
            };
            let (dim, kv_dim) = (shape.dim(), shape.kv_dim());
            let width = dim + 2 * kv_dim;
            let (qkv, keys, values) = positions(shape, 40, 251);
            let cases = [
                (0, 16, None),
                (7, 4, None),
                (3, 13, Some(5)),
                (20, 16, Some(9)),
            ];
            for (start, count, window) in cases {
                let seen: Vec<usize> = (0..count).map(|i| start + i + 1).collect();
                let first: Vec<usize> = seen
                    .iter()
                    .map(|&s| window.map_or(0, |w: usize| s.saturating_sub(w)))
                    .collect();
                let queries: Vec<&[f32]> = (0..count)
                    .map(|i| &qkv[(start + i) * width + head_dim..][..head_dim])
                    .collect();
                let head = HeadCache {
                    keys: &keys,
                    values: &values,
                    kv_dim,
                    offset: 0,
                };
                let scale = 1.0 / (head_dim as f32).sqrt();
                let mut reference = vec![0f32; count * head_dim];
                for (i, out) in reference.chunks_exact_mut(head_dim).enumerate() {
                    let cache = HeadCache {
                        keys: &keys[first[i] * kv_dim..],
                        values: &values[first[i] * kv_dim..],
                        ..head
                    };
                    let n = seen[i] - first[i];
                    attend_body(queries[i], cache, n, scale, &mut Vec::new(), out);
                }
                let mut got = vec![f32::NAN; count * head_dim];
                let mut scratch = BlockScratch::default();
                // SAFETY: the processor has AVX-512 (checked above); widths are multiples of 8.
                unsafe {
                    attend_block_avx512(
                        &queries,
                        &first,
                        &seen,
                        head,
                        scale,
                        &mut scratch,
                        &mut got,
                    )
                };
                let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                assert_eq!(
                    bits(&got),
                    bits(&reference),
                    "head {head_dim}, start {start}, {count} queries, window {window:?}"
                );
            }
        }
    }
}
