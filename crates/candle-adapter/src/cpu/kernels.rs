//! Quantized matrix products for the CPU engine: ggml's Q4_0 and Q8_0 weight blocks against
//! activations quantized to 8 bits per 32-value block (ggml's Q8_0 rule), the scheme llama.cpp
//! uses. Exact integer dot products per block, then per eight lanes one convert and one
//! multiply-add in candle's order (so the results equal candle's to the bit); weights streamed
//! from memory once per call whatever the number of tokens.
//!
//! Three instruction sets share one layout: portable Rust (the reference the tests compare
//! against), AVX2 (`maddubs`) and AVX-512 VNNI (`dpbusd`: 256-bit for one token, two tokens per
//! 512-bit register for prompts), picked at run time.

#![allow(unsafe_code)] // SIMD loads; each unsafe block says why it stays inside its slices.

use half::f16;
use rayon::prelude::*;

/// Values per quantization block, for weights and activations alike.
pub const BLOCK: usize = 32;

/// The weight encodings the kernels read, byte for byte as GGUF stores them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WeightFormat {
    /// f16 scale + 32 four-bit values (stored +8).
    Q4_0,
    /// f16 scale + 32 signed bytes.
    Q8_0,
}

impl WeightFormat {
    pub const fn block_bytes(self) -> usize {
        match self {
            WeightFormat::Q4_0 => 18,
            WeightFormat::Q8_0 => 34,
        }
    }
}

/// `values` (a whole number of 32-value blocks) as GGUF Q8_0 blocks, by ggml's rule: the scale is
/// the largest magnitude / 127, stored as f16.
pub fn quantize_q8_0(values: &[f32]) -> Vec<u8> {
    let q = QActs::quantize(values, BLOCK);
    let mut bytes = Vec::with_capacity(values.len() / BLOCK * WeightFormat::Q8_0.block_bytes());
    for (scale, qs) in q.scale.iter().zip(q.qs.chunks_exact(BLOCK)) {
        bytes.extend(f16::from_f32(*scale).to_le_bytes());
        bytes.extend(qs.iter().map(|&v| v as u8));
    }
    bytes
}

/// Rows of GGUF blocks as the file stores them: `rows` rows of `cols / 32` blocks each.
#[derive(Debug, Clone)]
pub struct GgufRows {
    format: WeightFormat,
    rows: usize,
    cols: usize,
    bytes: Vec<u8>,
}

impl GgufRows {
    pub fn new(
        format: WeightFormat,
        rows: usize,
        cols: usize,
        bytes: Vec<u8>,
    ) -> Result<Self, String> {
        if cols == 0 || !cols.is_multiple_of(BLOCK) {
            return Err(format!(
                "a row of {cols} values is not a whole number of {BLOCK}-value blocks"
            ));
        }
        let expected = rows * cols / BLOCK * format.block_bytes();
        if bytes.len() != expected {
            return Err(format!(
                "{rows}x{cols} {format:?} needs {expected} bytes, got {}",
                bytes.len()
            ));
        }
        Ok(Self {
            format,
            rows,
            cols,
            bytes,
        })
    }

    /// The rows of every part, one after another (Q, K and V become one matrix, so one pass
    /// over the activations and one parallel section serve all three).
    pub fn stack(parts: Vec<GgufRows>) -> Result<Self, String> {
        let first = parts.first().ok_or("nothing to stack")?;
        let (format, cols) = (first.format, first.cols);
        if let Some(odd) = parts.iter().find(|p| p.format != format || p.cols != cols) {
            return Err(format!(
                "cannot stack {:?} rows of {} values onto {format:?} rows of {cols}",
                odd.format, odd.cols
            ));
        }
        let rows = parts.iter().map(|p| p.rows).sum();
        let bytes = parts.into_iter().flat_map(|p| p.bytes).collect();
        Self::new(format, rows, cols, bytes)
    }
}

/// Rows handled together by one kernel call: their blocks are interleaved in memory.
pub const ROWS: usize = 4;

/// A matrix repacked for the kernels: rows in groups of four, and within a group block by
/// block the four f16 scales, then the four rows' payloads (16 bytes of nibbles or 32 signed
/// bytes each). One load yields four scales; the four rows stream from one place. The last
/// group is padded with zero rows.
#[derive(Debug, Clone)]
pub struct QMatrix {
    format: WeightFormat,
    rows: usize,
    cols: usize,
    bytes: Vec<u8>,
}

const fn payload(format: WeightFormat) -> usize {
    format.block_bytes() - 2
}

const fn group_block_bytes(format: WeightFormat) -> usize {
    2 * ROWS + ROWS * payload(format)
}

impl QMatrix {
    pub fn pack(rows: GgufRows) -> Self {
        let GgufRows {
            format,
            rows: n,
            cols,
            bytes,
        } = rows;
        let blocks = cols / BLOCK;
        let (bb, pl, gbb) = (
            format.block_bytes(),
            payload(format),
            group_block_bytes(format),
        );
        let groups = n.div_ceil(ROWS);
        let mut packed = vec![0u8; groups * blocks * gbb];
        huge_pages(&mut packed);
        for r in 0..n {
            let (g, j) = (r / ROWS, r % ROWS);
            for b in 0..blocks {
                let src = &bytes[(r * blocks + b) * bb..][..bb];
                let dst = &mut packed[(g * blocks + b) * gbb..][..gbb];
                dst[2 * j..2 * j + 2].copy_from_slice(&src[..2]);
                dst[2 * ROWS + j * pl..][..pl].copy_from_slice(&src[2..]);
            }
        }
        Self {
            format,
            rows: n,
            cols,
            bytes: packed,
        }
    }

    pub fn format(&self) -> WeightFormat {
        self.format
    }
    pub fn rows(&self) -> usize {
        self.rows
    }

    fn blocks(&self) -> usize {
        self.cols / BLOCK
    }

    /// The interleaved blocks of row group `g`.
    fn group(&self, g: usize) -> &[u8] {
        let n = self.blocks() * group_block_bytes(self.format);
        &self.bytes[g * n..(g + 1) * n]
    }

    /// Row `r` as floats (embedding lookups).
    pub fn dequantize_row(&self, r: usize, out: &mut [f32]) {
        let (gbb, pl, j) = (
            group_block_bytes(self.format),
            payload(self.format),
            r % ROWS,
        );
        let group = self.group(r / ROWS);
        for (block, values) in group.chunks_exact(gbb).zip(out.chunks_exact_mut(BLOCK)) {
            let d = f16::from_le_bytes([block[2 * j], block[2 * j + 1]]).to_f32();
            let qs = &block[2 * ROWS + j * pl..][..pl];
            match self.format {
                WeightFormat::Q4_0 => {
                    for (k, &q) in qs.iter().enumerate() {
                        values[k] = (i32::from(q & 0x0f) - 8) as f32 * d;
                        values[k + 16] = (i32::from(q >> 4) - 8) as f32 * d;
                    }
                }
                WeightFormat::Q8_0 => {
                    for (v, &q) in values.iter_mut().zip(qs) {
                        *v = f32::from(q as i8) * d;
                    }
                }
            }
        }
    }
}

/// Asks Linux to back `bytes` with 2 MiB pages before they are first written: decoding streams
/// every weight once per token, and 4 KiB pages stop the hardware prefetcher at each page
/// boundary and cost a TLB miss per page. A hint: where it is refused nothing changes.
#[cfg(target_os = "linux")]
fn huge_pages(bytes: &mut [u8]) {
    const HUGE: usize = 2 << 20;
    let start = bytes.as_mut_ptr() as usize;
    let first = start.next_multiple_of(HUGE);
    let end = (start + bytes.len()) / HUGE * HUGE;
    if end > first {
        // SAFETY: the range lies inside `bytes`, which we own mutably; MADV_HUGEPAGE changes
        // how the kernel backs the pages, never their contents.
        unsafe {
            libc::madvise(first as *mut libc::c_void, end - first, libc::MADV_HUGEPAGE);
        }
    }
}

#[cfg(not(target_os = "linux"))]
fn huge_pages(_: &mut [u8]) {}

/// Activation rows quantized per 32-value block: `qs` signed bytes, a `scale` per block rounded
/// through f16 as ggml stores it, and per block the eight sums of four consecutive values
/// (`lane_sums`), which turn unsigned-weight products back into signed ones exactly.
#[derive(Debug, Clone, Default)]
pub struct QActs {
    rows: usize,
    cols: usize,
    qs: Vec<i8>,
    scale: Vec<f32>,
    lane_sums: Vec<i32>,
}

impl QActs {
    /// Quantizes `x` (rows of `cols` values; `cols` a multiple of 32).
    pub fn quantize(x: &[f32], cols: usize) -> Self {
        assert!(cols.is_multiple_of(BLOCK) && x.len().is_multiple_of(cols));
        let blocks = x.len() / BLOCK;
        let mut out = Self {
            rows: x.len() / cols,
            cols,
            qs: vec![0; x.len()],
            scale: Vec::with_capacity(blocks),
            lane_sums: Vec::with_capacity(blocks * 8),
        };
        for (values, qs) in x.chunks_exact(BLOCK).zip(out.qs.chunks_exact_mut(BLOCK)) {
            let amax = values.iter().fold(0f32, |m, v| m.max(v.abs()));
            let d = amax / 127.0;
            let id = if d != 0.0 { 1.0 / d } else { 0.0 };
            for (q, v) in qs.iter_mut().zip(values) {
                *q = (v * id).round() as i8;
            }
            out.scale.push(f16::from_f32(d).to_f32());
            out.lane_sums.extend(
                qs.chunks_exact(4)
                    .map(|l| l.iter().map(|&q| i32::from(q)).sum::<i32>()),
            );
        }
        out
    }

    fn row(&self, t: usize) -> ActRow<'_> {
        let nb = self.cols / BLOCK;
        ActRow {
            qs: &self.qs[t * self.cols..(t + 1) * self.cols],
            scale: &self.scale[t * nb..(t + 1) * nb],
            lane_sums: &self.lane_sums[t * nb * 8..(t + 1) * nb * 8],
        }
    }
}

#[derive(Clone, Copy)]
struct ActRow<'a> {
    qs: &'a [i8],
    scale: &'a [f32],
    lane_sums: &'a [i32],
}

/// Which kernels run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Isa {
    Portable,
    Avx2,
    Avx512Vnni,
}

impl Isa {
    /// The fastest set this processor has.
    pub fn detect() -> Self {
        [Isa::Avx512Vnni, Isa::Avx2]
            .into_iter()
            .find(|isa| isa.is_supported())
            .unwrap_or(Isa::Portable)
    }

    pub fn is_supported(self) -> bool {
        match self {
            Isa::Portable => true,
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => {
                is_x86_feature_detected!("avx2")
                    && is_x86_feature_detected!("fma")
                    && is_x86_feature_detected!("f16c")
            }
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512Vnni => {
                Isa::Avx2.is_supported()
                    && is_x86_feature_detected!("avx512f")
                    && is_x86_feature_detected!("avx512bw")
                    && is_x86_feature_detected!("avx512vl")
                    && is_x86_feature_detected!("avx512vnni")
            }
            #[cfg(not(target_arch = "x86_64"))]
            _ => false,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Isa::Portable => "portable",
            Isa::Avx2 => "avx2",
            Isa::Avx512Vnni => "avx512-vnni",
        }
    }

    /// Tokens per kernel call: what fits in the registers (16 vector registers for AVX2; 32
    /// with AVX-512, whose 512-bit registers hold two tokens each) beside the four rows'
    /// accumulators.
    fn tokens_per_tile(self) -> usize {
        match self {
            Isa::Avx512Vnni => 8,
            _ => 2,
        }
    }
}

/// The most tokens one kernel call takes.
const MAX_TILE: usize = 8;

/// `out[t * w.rows() + r]` = row `r` of `w` · activation row `t`, row groups split across the
/// rayon pool in force.
pub fn matmul(isa: Isa, w: &QMatrix, a: &QActs, out: &mut [f32]) {
    assert_eq!(w.cols, a.cols, "matmul: inner dimensions differ");
    assert_eq!(out.len(), a.rows * w.rows, "matmul: output size");
    assert!(isa.is_supported(), "matmul: {isa:?} is not available here");
    let threads = rayon::current_num_threads().max(1);
    let groups = w.rows.div_ceil(ROWS);
    // Several chunks per thread so a slow core does not hold the others back.
    let chunk_groups = groups.div_ceil(threads * 8).clamp(1, 64);
    let tokens = a.rows;
    let tile = isa.tokens_per_tile();
    // Results land row by row ([row][token]) so each chunk owns one contiguous slice; a single
    // token needs no transposition.
    let mut by_row = if tokens == 1 {
        Vec::new()
    } else {
        vec![0f32; out.len()]
    };
    let target: &mut [f32] = if tokens == 1 { out } else { &mut by_row };
    target
        .par_chunks_mut(chunk_groups * ROWS * tokens)
        .enumerate()
        .for_each(|(c, out)| {
            let first_group = c * chunk_groups;
            let mut results = [[0f32; MAX_TILE]; ROWS];
            // Token tiles outside, row groups inside: one tile's activations stay in L1 while
            // the chunk's weights (at most 64 groups) stay in L2.
            let mut t = 0;
            while t < tokens {
                let n = (tokens - t).min(tile);
                for (i, group_out) in out.chunks_mut(ROWS * tokens).enumerate() {
                    let group = w.group(first_group + i);
                    group_tile(isa, w.format, group, a, t, n, &mut results);
                    for (j, row) in results.iter().enumerate() {
                        if let Some(o) = group_out.get_mut(j * tokens + t..j * tokens + t + n) {
                            o.copy_from_slice(&row[..n]);
                        }
                    }
                }
                t += n;
            }
        });
    if tokens > 1 {
        for (r, per_token) in by_row.chunks_exact(tokens).enumerate() {
            for (t, v) in per_token.iter().enumerate() {
                out[t * w.rows + r] = *v;
            }
        }
    }
}

/// `out[j][k]` = row `j` of the group · activation row `t0 + k`, for `n` (1..=8) tokens.
fn group_tile(
    isa: Isa,
    format: WeightFormat,
    group: &[u8],
    a: &QActs,
    t0: usize,
    n: usize,
    out: &mut [[f32; MAX_TILE]; ROWS],
) {
    let acts: [ActRow<'_>; MAX_TILE] = std::array::from_fn(|k| a.row((t0 + k).min(a.rows - 1)));
    match isa {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 | Isa::Avx512Vnni => x86::group_tile(isa, format, group, &acts, n, out),
        _ => {
            for (j, row) in out.iter_mut().enumerate() {
                for (o, act) in row.iter_mut().zip(&acts).take(n) {
                    *o = portable_dot(format, group, j, *act);
                }
            }
        }
    }
}

/// The reference: exact integer dot product per block, then the scales.
fn portable_dot(format: WeightFormat, group: &[u8], j: usize, a: ActRow<'_>) -> f32 {
    let (gbb, pl) = (group_block_bytes(format), payload(format));
    let mut total = 0f32;
    for (b, block) in group.chunks_exact(gbb).enumerate() {
        let dw = f16::from_le_bytes([block[2 * j], block[2 * j + 1]]).to_f32();
        let qs = &block[2 * ROWS + j * pl..][..pl];
        let qa = &a.qs[b * BLOCK..(b + 1) * BLOCK];
        let dot: i32 = match format {
            WeightFormat::Q4_0 => qs
                .iter()
                .enumerate()
                .map(|(k, &q)| {
                    (i32::from(q & 0x0f) - 8) * i32::from(qa[k])
                        + (i32::from(q >> 4) - 8) * i32::from(qa[k + 16])
                })
                .sum(),
            WeightFormat::Q8_0 => qs
                .iter()
                .zip(qa)
                .map(|(&w, &x)| i32::from(w as i8) * i32::from(x))
                .sum(),
        };
        total += dw * a.scale[b] * dot as f32;
    }
    total
}

/// One head's view of a layer's KV cache: one row of `kv_dim` per position in `keys` and
/// `values`, the head's slice starting at `offset`.
#[derive(Clone, Copy)]
pub struct HeadCache<'a> {
    pub keys: &'a [f32],
    pub values: &'a [f32],
    pub kv_dim: usize,
    pub offset: usize,
}

/// One head's attention for one query over the first `n` cached positions; `out` (the head's
/// width) receives the weighted values. Sums run in the same order as the scalar loops (eight
/// partial sums for q·k, positions in order for the values), so the AVX2 build gives the same
/// bits.
pub fn attend(
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
    scores.extend(
        keys.chunks_exact(kv_dim)
            .take(n)
            .map(|k| dot8(q, &k[offset..offset + hd]) * scale),
    );
    let max = scores.iter().fold(f32::NEG_INFINITY, |m, s| m.max(*s));
    let mut total = 0.0;
    for s in scores.iter_mut() {
        *s = (*s - max).exp();
        total += *s;
    }
    for s in scores.iter_mut() {
        *s /= total;
    }
    // Eight output values at a time kept in registers while the positions stream past.
    let mut lanes = out.chunks_exact_mut(8);
    let mut column = offset;
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

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    use super::{ActRow, BLOCK, Isa, MAX_TILE, ROWS, WeightFormat, group_block_bytes};

    pub(super) fn group_tile(
        isa: Isa,
        format: WeightFormat,
        group: &[u8],
        acts: &[ActRow<'_>; MAX_TILE],
        n: usize,
        out: &mut [[f32; MAX_TILE]; ROWS],
    ) {
        let gbb = group_block_bytes(format);
        let blocks = group.len() / gbb;
        // The bounds every kernel relies on for its unchecked loads.
        assert_eq!(group.len(), blocks * gbb);
        for a in acts {
            assert!(a.qs.len() >= blocks * BLOCK && a.scale.len() >= blocks);
            assert!(a.lane_sums.len() >= blocks * 8);
        }
        macro_rules! run {
            ($kernel:ident) => {
                // SAFETY: the caller checked (Isa::is_supported) that this processor has the
                // kernel's features; the slice bounds were asserted above.
                unsafe {
                    match n {
                        1 => $kernel::<1>(group, acts, blocks, out),
                        _ => $kernel::<2>(group, acts, blocks, out),
                    }
                }
            };
        }
        macro_rules! pairs {
            ($kernel:ident) => {
                // SAFETY: as above.
                unsafe {
                    match n.div_ceil(2) {
                        1 => $kernel::<1>(group, acts, blocks, out),
                        2 => $kernel::<2>(group, acts, blocks, out),
                        3 => $kernel::<3>(group, acts, blocks, out),
                        _ => $kernel::<4>(group, acts, blocks, out),
                    }
                }
            };
        }
        match (isa, format, n) {
            (Isa::Avx512Vnni, WeightFormat::Q4_0, 1) => run!(q4_0_vnni),
            (Isa::Avx512Vnni, WeightFormat::Q8_0, 1) => run!(q8_0_vnni),
            (Isa::Avx512Vnni, WeightFormat::Q4_0, _) => pairs!(q4_0_vnni_pairs),
            (Isa::Avx512Vnni, WeightFormat::Q8_0, _) => pairs!(q8_0_vnni_pairs),
            (_, WeightFormat::Q4_0, _) => run!(q4_0_avx2),
            (_, WeightFormat::Q8_0, _) => run!(q8_0_avx2),
        }
    }

    /// Block `b` of an activation row: its 32 bytes, its eight lane sums and its scale.
    ///
    /// # Safety
    /// The row holds more than `b` blocks.
    #[target_feature(enable = "avx2")]
    #[inline]
    unsafe fn act_block(a: &ActRow<'_>, b: usize) -> (__m256i, __m256i, f32) {
        // SAFETY: block b is inside the row (the caller's promise), so are its 32 bytes at
        // b * 32, its 8 lane sums at b * 8 and its scale at b.
        unsafe {
            (
                _mm256_loadu_si256(a.qs.as_ptr().add(b * BLOCK).cast()),
                _mm256_loadu_si256(a.lane_sums.as_ptr().add(b * 8).cast()),
                *a.scale.get_unchecked(b),
            )
        }
    }

    /// How far ahead the single-token kernels prefetch, in blocks.
    const PREFETCH_BLOCKS: usize = 16;

    #[target_feature(enable = "avx2")]
    #[inline]
    fn hsum(v: __m256) -> f32 {
        let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        let s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
        _mm_cvtss_f32(s)
    }

    /// Lane `j` of four floats, in all eight lanes.
    #[target_feature(enable = "avx2")]
    #[inline]
    fn lane(v: __m128, j: usize) -> __m256 {
        _mm256_permutevar8x32_ps(_mm256_castps128_ps256(v), _mm256_set1_epi32(j as i32))
    }

    /// Unsigned × signed bytes summed in fours, plus `bias`, in eight i32 lanes.
    #[target_feature(enable = "avx2")]
    #[inline]
    fn dot_avx2(u: __m256i, s: __m256i, bias: __m256i) -> __m256i {
        // maddubs saturates at i16, which these operands cannot reach: u ≤ 127 (|Q8_0| through
        // the sign trick, Q4_0 nibbles ≤ 15), |s| ≤ 127, two products per lane ≤ 32258.
        _mm256_add_epi32(
            _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1)),
            bias,
        )
    }

    #[target_feature(enable = "avx2,avx512vnni,avx512vl")]
    #[inline]
    fn dot_vnni(u: __m256i, s: __m256i, bias: __m256i) -> __m256i {
        _mm256_dpbusd_epi32(bias, u, s)
    }

    // The arithmetic is candle's, lane for lane: each block's eight i32 lanes hold exact sums
    // of four signed products, become floats, and are multiply-added with the f32 product of
    // the two f16 scales into one accumulator per row and token, in block order. So the two
    // paths agree to the bit and greedy decoding picks the same tokens.
    macro_rules! kernels {
        ($q4:ident, $q8:ident, $features:literal, $dot:ident, $q8_unsigned:expr) => {
            /// Q4_0 row group · N activation rows. Nibbles enter unsigned (0..=15); the
            /// activation lane sums × -8 restore the stored offset exactly.
            ///
            /// # Safety
            /// The processor has `$features`; `group` holds `blocks` interleaved Q4_0 blocks
            /// and each activation row at least `blocks` blocks.
            #[target_feature(enable = $features)]
            unsafe fn $q4<const N: usize>(
                group: &[u8],
                acts: &[ActRow<'_>; MAX_TILE],
                blocks: usize,
                out: &mut [[f32; MAX_TILE]; ROWS],
            ) {
                let mask = _mm_set1_epi8(0x0f);
                let mut acc = [[_mm256_setzero_ps(); N]; ROWS];
                let base = group.as_ptr();
                for b in 0..blocks {
                    // SAFETY: block b lies inside `group` (checked by the caller).
                    let block = unsafe { base.add(b * 72) };
                    // A single token is bound by memory: ask for the weights ~1 KiB ahead (a
                    // hint: an address past the end is never dereferenced). Measured on the
                    // 1.1B shape: +5% decode for Q4_0; for Q8_0 it cost 10%, so it has none.
                    if N == 1 {
                        _mm_prefetch::<_MM_HINT_T0>(
                            base.wrapping_add((b + PREFETCH_BLOCKS) * 72).cast(),
                        );
                    }
                    let scales = _mm_cvtph_ps(unsafe { _mm_loadl_epi64(block.cast()) });
                    let w: [__m256i; ROWS] = std::array::from_fn(|j| {
                        // SAFETY: as above; row j's 16 bytes follow the 8 bytes of scales.
                        let raw = unsafe { _mm_loadu_si128(block.add(8 + 16 * j).cast()) };
                        let lo = _mm_and_si128(raw, mask);
                        let hi = _mm_and_si128(_mm_srli_epi16(raw, 4), mask);
                        _mm256_set_m128i(hi, lo)
                    });
                    for k in 0..N {
                        let a = &acts[k];
                        // SAFETY: the activation row holds at least `blocks` blocks.
                        let (av, sums, da) = unsafe { act_block(a, b) };
                        let bias =
                            _mm256_sub_epi32(_mm256_setzero_si256(), _mm256_slli_epi32(sums, 3));
                        let d = _mm_mul_ps(scales, _mm_set1_ps(da));
                        for j in 0..ROWS {
                            let p = _mm256_cvtepi32_ps($dot(w[j], av, bias));
                            acc[j][k] = _mm256_fmadd_ps(lane(d, j), p, acc[j][k]);
                        }
                    }
                }
                for j in 0..ROWS {
                    for k in 0..N {
                        out[j][k] = hsum(acc[j][k]);
                    }
                }
            }

            /// Q8_0 row group · N activation rows.
            ///
            /// # Safety
            /// As for the Q4_0 kernel, with Q8_0 blocks.
            #[target_feature(enable = $features)]
            unsafe fn $q8<const N: usize>(
                group: &[u8],
                acts: &[ActRow<'_>; MAX_TILE],
                blocks: usize,
                out: &mut [[f32; MAX_TILE]; ROWS],
            ) {
                let mut acc = [[_mm256_setzero_ps(); N]; ROWS];
                let base = group.as_ptr();
                let flip = _mm256_set1_epi8(-128);
                for b in 0..blocks {
                    // SAFETY: block b lies inside `group` (checked by the caller).
                    let block = unsafe { base.add(b * 136) };
                    let scales = _mm_cvtph_ps(unsafe { _mm_loadl_epi64(block.cast()) });
                    let w: [__m256i; ROWS] = std::array::from_fn(|j| {
                        // SAFETY: as above; row j's 32 bytes follow the 8 bytes of scales.
                        unsafe { _mm256_loadu_si256(block.add(8 + 32 * j).cast()) }
                    });
                    // VNNI: weights + 128 as unsigned bytes, corrected by -128 × lane sums.
                    // AVX2 (whose maddubs would saturate on those): |w| × (x · sign w).
                    let unsigned: [__m256i; ROWS] = std::array::from_fn(|j| {
                        if $q8_unsigned {
                            _mm256_xor_si256(w[j], flip)
                        } else {
                            _mm256_sign_epi8(w[j], w[j])
                        }
                    });
                    for k in 0..N {
                        let a = &acts[k];
                        // SAFETY: the activation row holds at least `blocks` blocks.
                        let (av, sums, da) = unsafe { act_block(a, b) };
                        let d = _mm_mul_ps(scales, _mm_set1_ps(da));
                        let bias = if $q8_unsigned {
                            _mm256_sub_epi32(_mm256_setzero_si256(), _mm256_slli_epi32(sums, 7))
                        } else {
                            _mm256_setzero_si256()
                        };
                        for j in 0..ROWS {
                            let signed = if $q8_unsigned {
                                av
                            } else {
                                _mm256_sign_epi8(av, w[j])
                            };
                            let p = _mm256_cvtepi32_ps($dot(unsigned[j], signed, bias));
                            acc[j][k] = _mm256_fmadd_ps(lane(d, j), p, acc[j][k]);
                        }
                    }
                }
                for j in 0..ROWS {
                    for k in 0..N {
                        out[j][k] = hsum(acc[j][k]);
                    }
                }
            }
        };
    }

    kernels!(q4_0_avx2, q8_0_avx2, "avx2,fma,f16c", dot_avx2, false);
    kernels!(
        q4_0_vnni,
        q8_0_vnni,
        "avx2,fma,f16c,avx512vnni,avx512vl",
        dot_vnni,
        true
    );

    /// Two tokens per 512-bit register (token 2p in the low half, 2p + 1 in the high half),
    /// each row's weights in both halves: half the instructions per product of the 256-bit
    /// kernels, the same lanes and the same order of operations per token.
    macro_rules! pair_kernel {
        ($name:ident, $stride:literal, $weights:ident, $shift:literal) => {
            /// # Safety
            /// The processor has AVX-512 F/BW/VL/VNNI; `group` holds `blocks` interleaved
            /// blocks and each activation row at least `blocks` blocks.
            #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
            unsafe fn $name<const P: usize>(
                group: &[u8],
                acts: &[ActRow<'_>; MAX_TILE],
                blocks: usize,
                out: &mut [[f32; MAX_TILE]; ROWS],
            ) {
                let mut acc = [[_mm512_setzero_ps(); P]; ROWS];
                let base = group.as_ptr();
                for b in 0..blocks {
                    // SAFETY: block b lies inside `group` (checked by the caller).
                    let block = unsafe { base.add(b * $stride) };
                    let scales = _mm512_castps128_ps512(_mm_cvtph_ps(unsafe {
                        _mm_loadl_epi64(block.cast())
                    }));
                    let dw: [__m512; ROWS] = std::array::from_fn(|j| {
                        _mm512_permutexvar_ps(_mm512_set1_epi32(j as i32), scales)
                    });
                    // SAFETY: the rows' payloads follow the 8 bytes of scales.
                    let w: [__m512i; ROWS] = std::array::from_fn(|j| {
                        _mm512_broadcast_i64x4(unsafe { $weights(block, j) })
                    });
                    for p in 0..P {
                        let (a0, a1) = (&acts[2 * p], &acts[2 * p + 1]);
                        // SAFETY: each activation row holds at least `blocks` blocks.
                        let ((q0, s0, d0), (q1, s1, d1)) =
                            unsafe { (act_block(a0, b), act_block(a1, b)) };
                        let pair = |x: __m256i, y: __m256i| {
                            _mm512_inserti64x4(_mm512_castsi256_si512(x), y, 1)
                        };
                        let (av, sums) = (pair(q0, q1), pair(s0, s1));
                        let da =
                            _mm512_mask_blend_ps(0xff00, _mm512_set1_ps(d0), _mm512_set1_ps(d1));
                        let bias = _mm512_sub_epi32(
                            _mm512_setzero_si512(),
                            _mm512_slli_epi32(sums, $shift),
                        );
                        for j in 0..ROWS {
                            let products = _mm512_cvtepi32_ps(_mm512_dpbusd_epi32(bias, w[j], av));
                            acc[j][p] =
                                _mm512_fmadd_ps(_mm512_mul_ps(dw[j], da), products, acc[j][p]);
                        }
                    }
                }
                for j in 0..ROWS {
                    for p in 0..P {
                        let v = acc[j][p];
                        let high = _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1));
                        out[j][2 * p] = hsum(_mm512_castps512_ps256(v));
                        out[j][2 * p + 1] = hsum(high);
                    }
                }
            }
        };
    }

    /// Row `j`'s Q4_0 nibbles as unsigned bytes 0..=15 in value order.
    ///
    /// # Safety
    /// `block` points at an interleaved Q4_0 block (72 bytes).
    #[target_feature(enable = "avx2")]
    #[inline]
    unsafe fn q4_0_weights(block: *const u8, j: usize) -> __m256i {
        let mask = _mm_set1_epi8(0x0f);
        // SAFETY: the caller's block holds row j's 16 bytes after the scales.
        let raw = unsafe { _mm_loadu_si128(block.add(8 + 16 * j).cast()) };
        _mm256_set_m128i(
            _mm_and_si128(_mm_srli_epi16(raw, 4), mask),
            _mm_and_si128(raw, mask),
        )
    }

    /// Row `j`'s Q8_0 values + 128 as unsigned bytes.
    ///
    /// # Safety
    /// `block` points at an interleaved Q8_0 block (136 bytes).
    #[target_feature(enable = "avx2")]
    #[inline]
    unsafe fn q8_0_weights(block: *const u8, j: usize) -> __m256i {
        // SAFETY: the caller's block holds row j's 32 bytes after the scales.
        let raw = unsafe { _mm256_loadu_si256(block.add(8 + 32 * j).cast()) };
        _mm256_xor_si256(raw, _mm256_set1_epi8(-128))
    }

    pair_kernel!(q4_0_vnni_pairs, 72, q4_0_weights, 3);
    pair_kernel!(q8_0_vnni_pairs, 136, q8_0_weights, 7);
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let (rows, cols) = (37, 256); // a partial row group
        for format in [WeightFormat::Q4_0, WeightFormat::Q8_0] {
            let w = quantize_weights(format, &values(rows * cols, 1), cols);
            for tokens in [1, 2, 3, 4, 5, 9] {
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
                    for (g, r) in got.iter().zip(&reference) {
                        assert!(
                            (g - r).abs() <= 1e-4 * r.abs().max(1.0),
                            "{format:?} {isa:?} tokens={tokens}: {g} vs {r}"
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
