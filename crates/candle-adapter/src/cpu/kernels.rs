//! Quantized matrix products for the CPU engine: ggml's Q4_0 and Q8_0 weight blocks against
//! activations quantized to 8 bits per 32-value block (ggml's Q8_0 rule), the scheme llama.cpp
//! uses. Weights are repacked at load so that sixteen rows sit in the sixteen lanes of a
//! 512-bit register; per block an exact integer dot product per row, then one convert and one
//! fused multiply-add per sixteen rows. Weights stream from memory once per call whatever the
//! number of tokens.
//!
//! Three instruction sets share one layout and one order of operations, so they give the same
//! bits: portable Rust (the reference the tests compare against), AVX2 (`maddubs`, sixteen rows
//! as two halves) and AVX-512 VNNI (`dpbusd`, up to eight tokens per call), picked at run time.
//! candle sums each block in eight lanes instead, so results differ from candle's in the last
//! bits (within 1e-4 relative at the kernel, a few hundredths in the logits of a deep model).

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
        let mut bytes = Vec::with_capacity(parts.iter().map(|p| p.bytes.len()).sum());
        for part in parts {
            bytes.extend_from_slice(&part.bytes);
        }
        Self::new(format, rows, cols, bytes)
    }
}

/// Rows handled together by one kernel call: their blocks are interleaved in memory.
pub const ROWS: usize = 16;

/// A matrix repacked for the kernels: rows in groups of sixteen. A group holds first the
/// sixteen f16 scales of each block, then the payloads block by block, four bytes at a time:
/// bytes 4c..4c+4 of row 0, of row 1, … of row 15, then the next four. One aligned 64-byte load
/// holds four weights of each of the sixteen rows, so one `dpbusd` against four broadcast
/// activation bytes leaves one partial dot product per row in its own lane ("rows in lanes",
/// as ggml's repacked CPU layouts do): the floating-point work is one convert and one
/// multiply-add per sixteen rows per block. Q8_0 payloads are stored + 128 (unsigned, what
/// `dpbusd` multiplies). The last group is padded with zero rows.
#[derive(Debug)]
pub struct QMatrix {
    format: WeightFormat,
    rows: usize,
    cols: usize,
    bytes: CacheLines,
}

/// Bytes starting on a 64-byte boundary, so that no 64-byte load of a payload straddles two
/// cache lines. Large ones (Linux) get a mapping of their own, start on a 2 MiB boundary and
/// own whole 2 MiB pages, which [`huge_pages`] asks the kernel for before any page is touched
/// (heap memory may come back already backed by small pages, and a zeroing allocator touches
/// it).
#[derive(Debug)]
struct CacheLines {
    storage: Storage,
    start: usize,
    len: usize,
}

#[derive(Debug)]
enum Storage {
    Heap(Vec<u8>),
    #[cfg(target_os = "linux")]
    Mapped(Mapping),
}

impl CacheLines {
    fn zeroed(len: usize) -> Self {
        #[cfg(target_os = "linux")]
        if len >= HUGE_PAGE / 2 {
            // Up to one page of padding: a partly used huge page still beats a tail of small
            // pages that the prefetcher stops at.
            let room = len.next_multiple_of(HUGE_PAGE);
            if let Some(mut mapping) = Mapping::new(room + HUGE_PAGE) {
                let start = mapping.bytes().as_ptr().align_offset(HUGE_PAGE);
                if start < HUGE_PAGE {
                    huge_pages(&mut mapping.bytes_mut()[start..start + room]);
                    return Self {
                        storage: Storage::Mapped(mapping),
                        start,
                        len,
                    };
                }
            }
        }
        let storage = vec![0u8; len + 63];
        let start = storage.as_ptr().align_offset(64).min(63);
        Self {
            storage: Storage::Heap(storage),
            start,
            len,
        }
    }
}

impl AsRef<[u8]> for CacheLines {
    fn as_ref(&self) -> &[u8] {
        let all = match &self.storage {
            Storage::Heap(bytes) => bytes.as_slice(),
            #[cfg(target_os = "linux")]
            Storage::Mapped(mapping) => mapping.bytes(),
        };
        &all[self.start..self.start + self.len]
    }
}

impl AsMut<[u8]> for CacheLines {
    fn as_mut(&mut self) -> &mut [u8] {
        let all = match &mut self.storage {
            Storage::Heap(bytes) => bytes.as_mut_slice(),
            #[cfg(target_os = "linux")]
            Storage::Mapped(mapping) => mapping.bytes_mut(),
        };
        &mut all[self.start..self.start + self.len]
    }
}

/// A private anonymous mapping: zero pages the kernel backs on first touch.
#[cfg(target_os = "linux")]
#[derive(Debug)]
struct Mapping {
    ptr: *mut u8,
    len: usize,
}

// SAFETY: the mapping is owned memory like a Vec's; access goes through & and &mut borrows.
#[cfg(target_os = "linux")]
unsafe impl Send for Mapping {}
// SAFETY: as above.
#[cfg(target_os = "linux")]
unsafe impl Sync for Mapping {}

#[cfg(target_os = "linux")]
impl Mapping {
    /// `len` fresh zero bytes, or None where the kernel refuses.
    fn new(len: usize) -> Option<Self> {
        // SAFETY: a new anonymous mapping aliases nothing; failure is checked.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        (ptr != libc::MAP_FAILED).then(|| Self {
            ptr: ptr.cast(),
            len,
        })
    }

    fn bytes(&self) -> &[u8] {
        // SAFETY: the mapping is `len` readable bytes, alive as long as `self`.
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }

    fn bytes_mut(&mut self) -> &mut [u8] {
        // SAFETY: as above, writable, and the borrow is exclusive.
        unsafe { std::slice::from_raw_parts_mut(self.ptr, self.len) }
    }
}

#[cfg(target_os = "linux")]
impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: the range is the one mmap returned, unmapped once.
        unsafe { libc::munmap(self.ptr.cast(), self.len) };
    }
}

const fn payload(format: WeightFormat) -> usize {
    format.block_bytes() - 2
}

/// Bytes of one block's payloads for the sixteen rows of a group.
const fn group_payload_bytes(format: WeightFormat) -> usize {
    ROWS * payload(format)
}

/// Bytes of one block's sixteen scales.
const GROUP_SCALE_BYTES: usize = 2 * ROWS;

/// Blocks go in pairs: both blocks' scales fill one cache line, both payloads follow, so the
/// payloads start on cache lines and the weights are one stream.
const fn pair_bytes(format: WeightFormat) -> usize {
    2 * GROUP_SCALE_BYTES + 2 * group_payload_bytes(format)
}

/// Bytes per row group of `blocks` blocks (an odd last block keeps its pair's room).
const fn group_stride(format: WeightFormat, blocks: usize) -> usize {
    blocks.div_ceil(2) * pair_bytes(format)
}

/// Where block `b`'s sixteen scales lie in its group.
const fn scales_at(format: WeightFormat, b: usize) -> usize {
    (b / 2) * pair_bytes(format) + (b % 2) * GROUP_SCALE_BYTES
}

/// Where block `b`'s sixteen payloads lie in its group (on a 64-byte boundary).
const fn payloads_at(format: WeightFormat, b: usize) -> usize {
    (b / 2) * pair_bytes(format) + 2 * GROUP_SCALE_BYTES + (b % 2) * group_payload_bytes(format)
}

/// Where byte `i` of row `j`'s payload lies in a group's block payload.
const fn payload_offset(j: usize, i: usize) -> usize {
    (i / 4) * 4 * ROWS + 4 * j + i % 4
}

/// Q8_0 bytes are stored with this added (mod 256): signed becomes unsigned.
const Q8_0_OFFSET: u8 = 0x80;

/// One row group of `blocks` blocks.
#[derive(Clone, Copy)]
struct Group<'a> {
    format: WeightFormat,
    blocks: usize,
    bytes: &'a [u8],
}

impl<'a> Group<'a> {
    fn scales(&self, b: usize) -> &'a [u8] {
        &self.bytes[scales_at(self.format, b)..][..GROUP_SCALE_BYTES]
    }

    fn payloads(&self, b: usize) -> &'a [u8] {
        &self.bytes[payloads_at(self.format, b)..][..group_payload_bytes(self.format)]
    }
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
        let (bb, pl) = (format.block_bytes(), payload(format));
        let offset = match format {
            WeightFormat::Q4_0 => 0,
            WeightFormat::Q8_0 => Q8_0_OFFSET,
        };
        let stride = group_stride(format, blocks);
        let mut packed = CacheLines::zeroed(n.div_ceil(ROWS) * stride);
        let out = packed.as_mut();
        for r in 0..n {
            let (g, j) = (r / ROWS, r % ROWS);
            let group = &mut out[g * stride..(g + 1) * stride];
            for b in 0..blocks {
                let src = &bytes[(r * blocks + b) * bb..][..bb];
                group[scales_at(format, b) + 2 * j..][..2].copy_from_slice(&src[..2]);
                let dst = &mut group[payloads_at(format, b)..];
                for (w, word) in src[2..2 + pl].chunks_exact(4).enumerate() {
                    let at = payload_offset(j, 4 * w);
                    for (d, q) in dst[at..at + 4].iter_mut().zip(word) {
                        *d = q ^ offset;
                    }
                }
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

    /// Row group `g`.
    fn group(&self, g: usize) -> Group<'_> {
        let stride = group_stride(self.format, self.blocks());
        Group {
            format: self.format,
            blocks: self.blocks(),
            bytes: &self.bytes.as_ref()[g * stride..(g + 1) * stride],
        }
    }

    /// Row `r` as floats (embedding lookups).
    pub fn dequantize_row(&self, r: usize, out: &mut [f32]) {
        let (j, group) = (r % ROWS, self.group(r / ROWS));
        for (b, values) in out.chunks_exact_mut(BLOCK).enumerate().take(group.blocks) {
            let (scales, payloads) = (group.scales(b), group.payloads(b));
            let d = f16::from_le_bytes([scales[2 * j], scales[2 * j + 1]]).to_f32();
            for (k, v) in values.iter_mut().enumerate() {
                *v = weight(self.format, payloads, j, k) as f32 * d;
            }
        }
    }
}

/// Weight `k` (0..32) of row `j` in a group's block payload, as the signed integer it stands
/// for.
fn weight(format: WeightFormat, payloads: &[u8], j: usize, k: usize) -> i32 {
    match format {
        WeightFormat::Q4_0 => {
            let q = payloads[payload_offset(j, k % 16)];
            i32::from(if k < 16 { q & 0x0f } else { q >> 4 }) - 8
        }
        WeightFormat::Q8_0 => i32::from((payloads[payload_offset(j, k)] ^ Q8_0_OFFSET) as i8),
    }
}

const HUGE_PAGE: usize = 2 << 20;

/// Asks Linux to back `bytes` with 2 MiB pages before they are first written: decoding streams
/// every weight once per token, and 4 KiB pages stop the hardware prefetcher at each page
/// boundary and cost a TLB miss per page. A hint: where it is refused nothing changes.
#[cfg(target_os = "linux")]
fn huge_pages(bytes: &mut [u8]) {
    const HUGE: usize = HUGE_PAGE;
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
/// through f16 as ggml stores it, and per block the sum of its 32 bytes (`sums`), which turns
/// unsigned-weight products back into signed ones exactly.
#[derive(Debug, Clone, Default)]
pub struct QActs {
    rows: usize,
    cols: usize,
    qs: Vec<i8>,
    scale: Vec<f32>,
    sums: Vec<i32>,
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
            sums: Vec::with_capacity(blocks),
        };
        for (values, qs) in x.chunks_exact(BLOCK).zip(out.qs.chunks_exact_mut(BLOCK)) {
            let amax = values.iter().fold(0f32, |m, v| m.max(v.abs()));
            let d = amax / 127.0;
            let id = if d != 0.0 { 1.0 / d } else { 0.0 };
            for (q, v) in qs.iter_mut().zip(values) {
                *q = (v * id).round() as i8;
            }
            out.scale.push(f16::from_f32(d).to_f32());
            out.sums.push(qs.iter().map(|&q| i32::from(q)).sum());
        }
        out
    }

    fn row(&self, t: usize) -> ActRow<'_> {
        let nb = self.cols / BLOCK;
        ActRow {
            qs: &self.qs[t * self.cols..(t + 1) * self.cols],
            scale: &self.scale[t * nb..(t + 1) * nb],
            sums: &self.sums[t * nb..(t + 1) * nb],
        }
    }
}

#[derive(Clone, Copy)]
struct ActRow<'a> {
    qs: &'a [i8],
    scale: &'a [f32],
    sums: &'a [i32],
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

    /// Tokens per kernel call: what fits in the registers beside the weights (16 vector
    /// registers for AVX2, 32 for AVX-512: per token one float and one integer accumulator).
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
    // Several chunks per thread so a slow core does not hold the others back; at most 256 rows
    // per chunk, whose weights stay in L2 while the token tiles pass over them.
    let chunk_groups = groups.div_ceil(threads * 8).clamp(1, 256 / ROWS);
    let tokens = a.rows;
    let tile = isa.tokens_per_tile();
    // Results land group by group, token by token ([group][token][row]) so each chunk owns one
    // contiguous slice; a single token over whole groups is already `out`'s order.
    let direct = tokens == 1 && w.rows.is_multiple_of(ROWS);
    let mut by_group = if direct {
        Vec::new()
    } else {
        vec![0f32; groups * tokens * ROWS]
    };
    let target: &mut [f32] = if direct { out } else { &mut by_group };
    target
        .par_chunks_mut(chunk_groups * tokens * ROWS)
        .enumerate()
        .for_each(|(c, out)| {
            let first_group = c * chunk_groups;
            let mut results = [[0f32; ROWS]; MAX_TILE];
            // Token tiles outside, row groups inside: one tile's activations stay in L1 while
            // the chunk's weights stay in L2.
            let mut t = 0;
            while t < tokens {
                let n = (tokens - t).min(tile);
                for (i, group_out) in out.chunks_mut(tokens * ROWS).enumerate() {
                    let group = w.group(first_group + i);
                    group_tile(isa, group, a, t, n, &mut results);
                    for (o, r) in group_out[t * ROWS..(t + n) * ROWS]
                        .chunks_exact_mut(ROWS)
                        .zip(&results)
                    {
                        o.copy_from_slice(r);
                    }
                }
                t += n;
            }
        });
    if !direct {
        for (g, per_token) in by_group.chunks_exact(tokens * ROWS).enumerate() {
            let rows = g * ROWS..((g + 1) * ROWS).min(w.rows);
            for (t, values) in per_token.chunks_exact(ROWS).enumerate() {
                let start = t * w.rows;
                out[start + rows.start..start + rows.end].copy_from_slice(&values[..rows.len()]);
            }
        }
    }
}

/// `out[k][j]` = row `j` of the group · activation row `t0 + k`, for `n` (1..=8) tokens.
fn group_tile(
    isa: Isa,
    group: Group<'_>,
    a: &QActs,
    t0: usize,
    n: usize,
    out: &mut [[f32; ROWS]; MAX_TILE],
) {
    let acts: [ActRow<'_>; MAX_TILE] = std::array::from_fn(|k| a.row((t0 + k).min(a.rows - 1)));
    match isa {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 | Isa::Avx512Vnni => x86::group_tile(isa, group, &acts, n, out),
        _ => {
            for (per_token, act) in out.iter_mut().zip(&acts).take(n) {
                for (j, o) in per_token.iter_mut().enumerate() {
                    *o = portable_dot(group, j, *act);
                }
            }
        }
    }
}

/// The reference every kernel matches to the bit: per block the exact integer dot product,
/// the product of the two scales, one fused multiply-add, blocks in order.
fn portable_dot(group: Group<'_>, j: usize, a: ActRow<'_>) -> f32 {
    let mut total = 0f32;
    for b in 0..group.blocks {
        let (scales, payloads) = (group.scales(b), group.payloads(b));
        let dw = f16::from_le_bytes([scales[2 * j], scales[2 * j + 1]]).to_f32();
        let qa = &a.qs[b * BLOCK..(b + 1) * BLOCK];
        let dot: i32 = qa
            .iter()
            .enumerate()
            .map(|(k, &x)| weight(group.format, payloads, j, k) * i32::from(x))
            .sum();
        total = (dw * a.scale[b]).mul_add(dot as f32, total);
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
    // A plain loop, not `extend(map(..))`: the iterator's fold is a generic function compiled
    // outside `attend_avx2`'s target features, which left this product 4 wide (SSE), ~6% of a
    // decode step.
    for k in keys.chunks_exact(kv_dim).take(n) {
        scores.push(dot8(q, &k[offset..offset + hd]) * scale);
    }
    let max = scores.iter().fold(f32::NEG_INFINITY, |m, s| m.max(*s));
    let mut total = 0.0;
    for s in scores.iter_mut() {
        *s = (*s - max).exp();
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

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    use super::{ActRow, BLOCK, Group, Isa, MAX_TILE, ROWS, WeightFormat, payloads_at, scales_at};

    pub(super) fn group_tile(
        isa: Isa,
        group: Group<'_>,
        acts: &[ActRow<'_>; MAX_TILE],
        n: usize,
        out: &mut [[f32; ROWS]; MAX_TILE],
    ) {
        let (format, blocks) = (group.format, group.blocks);
        // The bounds every kernel relies on for its unchecked loads: the last block's scales
        // and payloads lie inside the group (the slicing panics otherwise), and so do the
        // activations' blocks.
        if let Some(last) = blocks.checked_sub(1) {
            let _ = (group.scales(last), group.payloads(last));
        }
        for a in acts {
            assert!(a.qs.len() >= blocks * BLOCK);
            assert!(a.scale.len() >= blocks && a.sums.len() >= blocks);
        }
        macro_rules! tile {
            ($kernel:ident) => {
                // SAFETY: the caller checked (Isa::is_supported) that this processor has the
                // kernel's features; the slice bounds were asserted above.
                unsafe {
                    match n {
                        1 => $kernel::<1>(group, acts, blocks, out),
                        2 => $kernel::<2>(group, acts, blocks, out),
                        3 => $kernel::<3>(group, acts, blocks, out),
                        4 => $kernel::<4>(group, acts, blocks, out),
                        5 => $kernel::<5>(group, acts, blocks, out),
                        6 => $kernel::<6>(group, acts, blocks, out),
                        7 => $kernel::<7>(group, acts, blocks, out),
                        _ => $kernel::<8>(group, acts, blocks, out),
                    }
                }
            };
        }
        macro_rules! pair {
            ($kernel:ident) => {
                // SAFETY: as above.
                unsafe {
                    match n {
                        1 => $kernel::<1>(group, acts, blocks, out),
                        _ => $kernel::<2>(group, acts, blocks, out),
                    }
                }
            };
        }
        match (isa, format) {
            // SAFETY: as above.
            (Isa::Avx512Vnni, WeightFormat::Q4_0) if n == 1 => unsafe {
                q4_0_vnni_one(group, &acts[0], &mut out[0])
            },
            // SAFETY: as above.
            (Isa::Avx512Vnni, WeightFormat::Q8_0) if n == 1 => unsafe {
                q8_0_vnni_one(group, &acts[0], &mut out[0])
            },
            (Isa::Avx512Vnni, WeightFormat::Q4_0) => tile!(q4_0_vnni),
            (Isa::Avx512Vnni, WeightFormat::Q8_0) => tile!(q8_0_vnni),
            (_, WeightFormat::Q4_0) => pair!(q4_0_avx2),
            (_, WeightFormat::Q8_0) => pair!(q8_0_avx2),
        }
    }

    /// Activation row `a`'s block `b`: its 32 bytes as eight 4-byte words, their sum, its scale.
    ///
    /// # Safety
    /// The row holds more than `b` blocks.
    #[inline(always)]
    unsafe fn act_block(a: &ActRow<'_>, b: usize) -> (*const i32, i32, f32) {
        // SAFETY: block b is inside the row (the caller's promise), so are its 32 bytes at
        // b * 32, its sum and its scale at b.
        unsafe {
            (
                a.qs.as_ptr().add(b * BLOCK).cast(),
                *a.sums.get_unchecked(b),
                *a.scale.get_unchecked(b),
            )
        }
    }

    /// Where block `b` of a group starts: its payloads, its scales.
    ///
    /// # Safety
    /// The group holds more than `b` blocks of `format`.
    #[inline(always)]
    unsafe fn block_at(
        group: &Group<'_>,
        format: WeightFormat,
        b: usize,
    ) -> (*const u8, *const u8) {
        let base = group.bytes.as_ptr();
        // SAFETY: both offsets of a block the group holds lie inside its bytes.
        unsafe {
            (
                base.add(payloads_at(format, b)),
                base.add(scales_at(format, b)),
            )
        }
    }

    /// Four activation bytes (word `c` of a block) in every 32-bit lane.
    ///
    /// # Safety
    /// `words` points at a block's 32 bytes and `c` < 8.
    #[inline(always)]
    unsafe fn word(words: *const i32, c: usize) -> i32 {
        // SAFETY: the caller's promise; activation bytes have no alignment.
        unsafe { words.add(c).read_unaligned() }
    }

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
            unsafe fn $name<const N: usize>(
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
            unsafe fn $name(group: Group<'_>, act: &ActRow<'_>, out: &mut [f32; ROWS]) {
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

    /// Q4_0 with AVX2: the sixteen rows as two halves of eight lanes; `maddubs` pairs summed in
    /// 16 bits across the block (at most 8 × 2 × 15 × 127 = 30480, no saturation), then widened.
    ///
    /// # Safety
    /// The processor has AVX2, FMA and F16C; `group` holds `blocks` packed Q4_0 blocks and each
    /// activation row at least `blocks` blocks.
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn q4_0_avx2<const N: usize>(
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
    unsafe fn q8_0_avx2<const N: usize>(
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
        // A partial row group; an odd number of blocks (the last pair half empty).
        for (format, (rows, cols)) in [WeightFormat::Q4_0, WeightFormat::Q8_0]
            .into_iter()
            .flat_map(|f| [(f, (37, 256)), (f, (21, 96))])
        {
            let w = quantize_weights(format, &values(rows * cols, 1), cols);
            for tokens in [1, 2, 3, 4, 5, 6, 7, 8, 9, 17] {
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
                    // Same integer sums, same float operations in the same order: same bits.
                    for (i, (g, r)) in got.iter().zip(&reference).enumerate() {
                        assert_eq!(
                            g.to_bits(),
                            r.to_bits(),
                            "{format:?} {isa:?} tokens={tokens} output {i}: {g} vs {r}"
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
