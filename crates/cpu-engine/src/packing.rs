//! The repacked layout the kernels read: rows in groups of sixteen, their blocks interleaved so
//! that sixteen rows sit in the sixteen lanes of one register.

use half::f16;

use crate::memory::CacheLines;
use crate::quant::{BLOCK, GgufRows, SUPER, WeightFormat};

/// Rows handled together by one kernel call: their blocks are interleaved in memory.
pub const ROWS: usize = 16;

/// A matrix repacked for the kernels: rows in groups of sixteen. A group holds first the
/// sixteen f16 scales of each block, then the payloads block by block, four bytes at a time:
/// bytes 4c..4c+4 of row 0, of row 1, … of row 15, then the next four. One aligned 64-byte load
/// holds four weights of each of the sixteen rows, so one `dpbusd` against four broadcast
/// activation bytes leaves one partial dot product per row in its own lane ("rows in lanes",
/// as ggml's repacked CPU layouts do): the floating-point work is one convert and one
/// multiply-add per sixteen rows per block. Q8_0 payloads are stored + 128 (unsigned, what
/// `dpbusd` multiplies); Q5_0 payloads are Q4_0's with a 64-byte word of fifth bits after
/// them. Q4_1 and Q5_1 blocks carry sixteen f16 mins after their sixteen scales, so each
/// block's header is one cache line and no pairing is needed (Q5_1's payloads are Q5_0's).
/// F16 and BF16 weights go column by column: the sixteen rows' values of column k (32 bytes),
/// then of k + 1. The last group is padded with zero rows.
#[derive(Debug)]
pub struct QMatrix {
    format: WeightFormat,
    pub(crate) rows: usize,
    pub(crate) cols: usize,
    bytes: CacheLines,
}

/// Bytes of a file block before its payload: the f16 scale (and Q4_1's f16 min).
const fn header(format: WeightFormat) -> usize {
    match format {
        WeightFormat::Q4_1 | WeightFormat::Q5_1 => 4,
        _ => 2,
    }
}

const fn payload(format: WeightFormat) -> usize {
    format.block_bytes() - header(format)
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

/// Bytes per row group of `blocks` blocks (an odd last block keeps its pair's room; K-quant
/// super-blocks follow one another).
pub(crate) const fn group_stride(format: WeightFormat, blocks: usize) -> usize {
    match format {
        WeightFormat::Q4_0 | WeightFormat::Q8_0 | WeightFormat::Q5_0 => {
            blocks.div_ceil(2) * pair_bytes(format)
        }
        WeightFormat::Q4_1 | WeightFormat::Q5_1 => blocks * min_block_bytes(format),
        WeightFormat::Q4_K => blocks * q4_k::BYTES,
        WeightFormat::Q5_K => blocks * q5_k::BYTES,
        WeightFormat::Q6_K => blocks * q6_k::BYTES,
        WeightFormat::F16 | WeightFormat::BF16 => blocks * BLOCK * FLOAT_COLUMN_BYTES,
    }
}

/// Bytes of one column of a row group of float weights: sixteen 16-bit values.
pub(crate) const FLOAT_COLUMN_BYTES: usize = 2 * ROWS;

/// Where things lie in a row group's Q4_K super-block: ggml's 6-bit scales and mins unpacked to
/// bytes once, at load. Per super-block and 16 rows: `D` the sixteen f16 scales, `DMIN` the
/// sixteen f16 min scales, `SCALES` and `MINS` per pair of 32-value sub-blocks (2p, 2p+1) the
/// two bytes of each row side by side (row j at 2j, 2j+1: widened to 16 bits they are one
/// 32-bit lane per row), `QS` ggml's 128 nibble bytes per row, four bytes of each row in turn
/// (as Q4_0's payload): byte i holds value 64(i/32) + i%32 in its low nibble and the value 32
/// further in its high one. 148 bytes per row per 256 values: 4.625 bits a weight (ggml's 4.5,
/// plus the unpacked scales).
pub(crate) mod q4_k {
    pub(crate) const D: usize = 0;
    pub(crate) const DMIN: usize = 32;
    pub(crate) const SCALES: usize = 64;
    pub(crate) const MINS: usize = 192;
    pub(crate) const QS: usize = 320;
    pub(crate) const BYTES: usize = QS + 16 * 128;
}

/// Where things lie in a row group's Q5_K super-block: Q4_K's layout (the low four bits in
/// `QS`), then `HI` the fifth bits, four bytes of each row in turn: per pair p of sub-blocks,
/// byte 4e + k of word 2p + e (e = 0, 1) holds in bits 2t, 2t + 1 the fifth bits of the low
/// and the high nibble in byte k of nibble word 4e + t of that pair (t = 0..4), so one 64-byte
/// load of `HI` completes four 64-byte loads of `QS`. 180 bytes per row per 256 values: 5.625
/// bits a weight (ggml's 5.5, plus the unpacked scales).
pub(crate) mod q5_k {
    pub(crate) const HI: usize = super::q4_k::BYTES;
    pub(crate) const BYTES: usize = HI + 16 * 32;
}

/// Where things lie in a row group's Q6_K super-block: `D` the sixteen f16 scales (then 32
/// bytes of padding, so what follows starts on a cache line), `SCALES` per pair of 16-value
/// groups (2q, 2q+1) the two int8 scales of each row side by side, `LO` the low nibbles as
/// Q4_K's `QS` (byte i: value 64(i/32) + i%32 low, 32 further high), `HI` the high two bits, four
/// bytes of each row in turn: byte 4e + k holds in bits 2s, 2s+1 the high bits of the value in
/// byte k of nibble word 2e (s = 0 low nibble, 1 high) and 2e + 1 (s = 2, 3), so one 64-byte
/// load of `HI` completes two 64-byte loads of `LO`. 212 bytes per row per 256 values: 6.625
/// bits a weight (ggml's 6.5625, plus the padding).
pub(crate) mod q6_k {
    pub(crate) const D: usize = 0;
    pub(crate) const SCALES: usize = 64;
    pub(crate) const LO: usize = 320;
    pub(crate) const HI: usize = LO + 16 * 128;
    pub(crate) const BYTES: usize = HI + 16 * 64;
}

/// A Q4_1 or Q5_1 block of a row group: the sixteen scales, the sixteen mins, the payloads.
const fn min_block_bytes(format: WeightFormat) -> usize {
    2 * GROUP_SCALE_BYTES + group_payload_bytes(format)
}

/// Where block `b`'s sixteen scales lie in its group (Q4_1's sixteen mins follow them).
pub(crate) const fn scales_at(format: WeightFormat, b: usize) -> usize {
    match format {
        WeightFormat::Q4_1 | WeightFormat::Q5_1 => b * min_block_bytes(format),
        _ => (b / 2) * pair_bytes(format) + (b % 2) * GROUP_SCALE_BYTES,
    }
}

/// Where block `b`'s sixteen payloads lie in its group (on a 64-byte boundary).
pub(crate) const fn payloads_at(format: WeightFormat, b: usize) -> usize {
    match format {
        WeightFormat::Q4_1 | WeightFormat::Q5_1 => {
            b * min_block_bytes(format) + 2 * GROUP_SCALE_BYTES
        }
        _ => {
            (b / 2) * pair_bytes(format)
                + 2 * GROUP_SCALE_BYTES
                + (b % 2) * group_payload_bytes(format)
        }
    }
}

/// Where a Q5_0 block's fifth bits lie in its payloads: after the 256 bytes of nibbles, one
/// 64-byte word, four bytes of each row in turn; bits 2c and 2c + 1 of byte k hold the fifth bits
/// of the low and the high nibble in byte k of nibble word c (as Q5_K's `HI`), so one load
/// completes the block's four nibble loads.
pub(crate) const Q5_0_HI: usize = 4 * 4 * ROWS;

/// Q4_1 mins follow the block's scales.
pub(crate) const MINS_AFTER_SCALES: usize = GROUP_SCALE_BYTES;

/// Where byte `i` of row `j`'s payload lies in a group's block payload.
pub(crate) const fn payload_offset(j: usize, i: usize) -> usize {
    (i / 4) * 4 * ROWS + 4 * j + i % 4
}

/// Q8_0 bytes are stored with this added (mod 256): signed becomes unsigned.
const Q8_0_OFFSET: u8 = 0x80;

/// One row group of `blocks` blocks.
#[derive(Clone, Copy)]
pub(crate) struct Group<'a> {
    pub(crate) format: WeightFormat,
    pub(crate) blocks: usize,
    pub(crate) bytes: &'a [u8],
}

impl<'a> Group<'a> {
    /// K-quant super-block `b` of the group.
    pub(crate) fn super_block(&self, b: usize) -> &'a [u8] {
        let size = group_stride(self.format, 1);
        &self.bytes[b * size..(b + 1) * size]
    }

    pub(crate) fn scales(&self, b: usize) -> &'a [u8] {
        &self.bytes[scales_at(self.format, b)..][..GROUP_SCALE_BYTES]
    }

    /// Q4_1 block `b`'s sixteen f16 mins.
    pub(crate) fn mins(&self, b: usize) -> &'a [u8] {
        &self.bytes[scales_at(self.format, b) + MINS_AFTER_SCALES..][..GROUP_SCALE_BYTES]
    }

    pub(crate) fn payloads(&self, b: usize) -> &'a [u8] {
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
        if format.is_k_quant() {
            return Self::pack_k(format, n, cols, &bytes);
        }
        if format.is_float() {
            return Self::pack_float(format, n, cols, &bytes);
        }
        let blocks = cols / BLOCK;
        let (bb, hl, pl) = (format.block_bytes(), header(format), payload(format));
        let offset = match format {
            WeightFormat::Q4_0 | WeightFormat::Q4_1 | WeightFormat::Q5_0 | WeightFormat::Q5_1 => 0,
            WeightFormat::Q8_0 => Q8_0_OFFSET,
            WeightFormat::Q4_K
            | WeightFormat::Q5_K
            | WeightFormat::Q6_K
            | WeightFormat::F16
            | WeightFormat::BF16 => unreachable!("packed by pack_k or pack_float"),
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
                if format.has_min() {
                    group[scales_at(format, b) + MINS_AFTER_SCALES + 2 * j..][..2]
                        .copy_from_slice(&src[2..4]);
                }
                let dst = &mut group[payloads_at(format, b)..];
                if format.has_fifth_bit() {
                    // Past the scale (and Q5_1's min), the blocks are alike.
                    pack_q5_payload(&src[hl - 2..], j, dst);
                    continue;
                }
                for (w, word) in src[hl..hl + pl].chunks_exact(4).enumerate() {
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

    fn pack_k(format: WeightFormat, n: usize, cols: usize, bytes: &[u8]) -> Self {
        let supers = cols / SUPER;
        let (bb, size) = (format.block_bytes(), group_stride(format, 1));
        let stride = group_stride(format, supers);
        let mut packed = CacheLines::zeroed(n.div_ceil(ROWS) * stride);
        let out = packed.as_mut();
        for r in 0..n {
            let (g, j) = (r / ROWS, r % ROWS);
            for b in 0..supers {
                let src = &bytes[(r * supers + b) * bb..][..bb];
                let dst = &mut out[g * stride + b * size..][..size];
                match format {
                    WeightFormat::Q4_K => pack_q4_k(src, j, dst),
                    WeightFormat::Q5_K => pack_q5_k(src, j, dst),
                    _ => pack_q6_k(src, j, dst),
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

    fn pack_float(format: WeightFormat, n: usize, cols: usize, bytes: &[u8]) -> Self {
        let stride = group_stride(format, cols / BLOCK);
        let mut packed = CacheLines::zeroed(n.div_ceil(ROWS) * stride);
        // Group by group, column by column: the writes run in order, the reads in sixteen
        // streams (row by row, with the writes 32 bytes apart, a 1.1B F16 file loaded in 7.2 s
        // instead of 3.4).
        for (rows, group) in bytes
            .chunks(ROWS * 2 * cols)
            .zip(packed.as_mut().chunks_exact_mut(stride))
        {
            for (k, column) in group.chunks_exact_mut(FLOAT_COLUMN_BYTES).enumerate() {
                for (j, row) in rows.chunks_exact(2 * cols).enumerate() {
                    column[2 * j..2 * j + 2].copy_from_slice(&row[2 * k..2 * k + 2]);
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
        self.cols / self.format.block_values()
    }

    /// Row group `g`.
    pub(crate) fn group(&self, g: usize) -> Group<'_> {
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
        if self.format.is_k_quant() {
            for (b, values) in out.chunks_exact_mut(SUPER).enumerate().take(group.blocks) {
                let sb = group.super_block(b);
                for (k, v) in values.iter_mut().enumerate() {
                    *v = k_weight(self.format, sb, j, k);
                }
            }
            return;
        }
        if self.format.is_float() {
            for (k, v) in out.iter_mut().enumerate().take(self.cols) {
                *v = float_weight(group, j, k);
            }
            return;
        }
        for (b, values) in out.chunks_exact_mut(BLOCK).enumerate().take(group.blocks) {
            let (scales, payloads) = (group.scales(b), group.payloads(b));
            let d = f16_at(scales, 2 * j);
            let m = if self.format.has_min() {
                f16_at(group.mins(b), 2 * j)
            } else {
                0.0
            };
            // candle's order: value times scale, then the min (no fused multiply-add).
            for (k, v) in values.iter_mut().enumerate() {
                *v = weight(self.format, payloads, j, k) as f32 * d + m;
            }
        }
    }
}

/// Row `j`'s Q5_0 block `src` (f16 scale, 4 bytes of fifth bits, 16 of nibbles; a Q5_1 block
/// from its min on) into the block's payloads `dst`: the nibbles as Q4_0's, the fifth bits at
/// [`Q5_0_HI`].
fn pack_q5_payload(src: &[u8], j: usize, dst: &mut [u8]) {
    let high = u32::from_le_bytes([src[2], src[3], src[4], src[5]]);
    for (i, &q) in src[6..22].iter().enumerate() {
        dst[payload_offset(j, i)] = q;
    }
    for k in 0..4 {
        let mut byte = 0u8;
        for c in 0..4 {
            // Byte k of word c holds values 4c + k (low nibble) and 16 + 4c + k (high).
            byte |= (((high >> (4 * c + k)) & 1) as u8) << (2 * c);
            byte |= (((high >> (16 + 4 * c + k)) & 1) as u8) << (2 * c + 1);
        }
        dst[Q5_0_HI + payload_offset(j, k)] = byte;
    }
}

/// Weight `k` (0..32) of row `j` in a group's block payload, as the integer it stands for
/// (Q4_1's and Q5_1's before the min is added).
pub(crate) fn weight(format: WeightFormat, payloads: &[u8], j: usize, k: usize) -> i32 {
    match format {
        WeightFormat::Q4_0 | WeightFormat::Q4_1 => {
            let q = payloads[payload_offset(j, k % 16)];
            let nibble = i32::from(if k < 16 { q & 0x0f } else { q >> 4 });
            if format == WeightFormat::Q4_0 {
                nibble - 8
            } else {
                nibble
            }
        }
        WeightFormat::Q5_0 | WeightFormat::Q5_1 => {
            let (i, c) = (k % 16, (k % 16) / 4);
            let q = payloads[payload_offset(j, i)];
            let nibble = if k < 16 { q & 0x0f } else { q >> 4 };
            let fifth = (payloads[Q5_0_HI + payload_offset(j, i % 4)] >> (2 * c + k / 16)) & 1;
            let value = i32::from(nibble | (fifth << 4));
            if format == WeightFormat::Q5_0 {
                value - 16
            } else {
                value
            }
        }
        WeightFormat::Q8_0 => i32::from((payloads[payload_offset(j, k)] ^ Q8_0_OFFSET) as i8),
        WeightFormat::Q4_K
        | WeightFormat::Q5_K
        | WeightFormat::Q6_K
        | WeightFormat::F16
        | WeightFormat::BF16 => unreachable!("K-quants and floats have their own"),
    }
}

/// Weight `k` (any column) of row `j` of a float group.
pub(crate) fn float_weight(group: Group<'_>, j: usize, k: usize) -> f32 {
    let at = k * FLOAT_COLUMN_BYTES + 2 * j;
    let bits = u16::from_le_bytes([group.bytes[at], group.bytes[at + 1]]);
    if group.format == WeightFormat::BF16 {
        f32::from_bits(u32::from(bits) << 16)
    } else {
        f16::from_bits(bits).to_f32()
    }
}

/// ggml's 6-bit scale and min of Q4_K sub-block `s` (0..8) from the 12 packed bytes.
fn q4_k_scale_min(packed: &[u8], s: usize) -> (u8, u8) {
    if s < 4 {
        (packed[s] & 63, packed[s + 4] & 63)
    } else {
        (
            (packed[s + 4] & 0x0f) | ((packed[s - 4] >> 6) << 4),
            (packed[s + 4] >> 4) | ((packed[s] >> 6) << 4),
        )
    }
}

/// Row `j`'s Q4_K block `src` into super-block `dst` of its group.
fn pack_q4_k(src: &[u8], j: usize, dst: &mut [u8]) {
    pack_q4_k_parts(&src[..16], &src[16..144], j, dst);
}

/// The header (scales, mins, 6-bit pairs: 16 bytes) and the 128 nibble bytes of a Q4_K or
/// Q5_K block, row `j`, into super-block `dst`.
fn pack_q4_k_parts(header: &[u8], nibbles: &[u8], j: usize, dst: &mut [u8]) {
    use q4_k::*;
    dst[D + 2 * j..][..2].copy_from_slice(&header[..2]);
    dst[DMIN + 2 * j..][..2].copy_from_slice(&header[2..4]);
    for s in 0..8 {
        let (sc, m) = q4_k_scale_min(&header[4..16], s);
        let at = 32 * (s / 2) + 2 * j + s % 2;
        dst[SCALES + at] = sc;
        dst[MINS + at] = m;
    }
    for (i, &q) in nibbles.iter().enumerate() {
        dst[QS + payload_offset(j, i)] = q;
    }
}

/// Where value `v` (0..256) of a Q5_K super-block keeps its fifth bit in a row's 32 `HI`
/// bytes: (byte, bit). ggml keeps it in bit 2p (low nibble) or 2p + 1 (high) of `qh[l]` for
/// value 64p + l and 64p + 32 + l.
const fn q5_k_high_bit(v: usize) -> (usize, usize) {
    let (p, half, l) = (v / 64, (v % 64) / 32, v % 32);
    let (c, k) = (l / 4, l % 4);
    (4 * (2 * p + c / 4) + k, 2 * (c % 4) + half)
}

/// Row `j`'s Q5_K block `src` (scales 16 bytes, `qh` 32, `qs` 128) into super-block `dst`.
fn pack_q5_k(src: &[u8], j: usize, dst: &mut [u8]) {
    pack_q4_k_parts(&src[..16], &src[48..176], j, dst);
    let qh = &src[16..48];
    let mut hi = [0u8; 32];
    for v in 0..SUPER {
        let (p, half, l) = (v / 64, (v % 64) / 32, v % 32);
        let bit = (qh[l] >> (2 * p + half)) & 1;
        let (byte, at) = q5_k_high_bit(v);
        hi[byte] |= bit << at;
    }
    for (i, &h) in hi.iter().enumerate() {
        dst[q5_k::HI + payload_offset(j, i)] = h;
    }
}

/// Row `j`'s Q6_K block `src` into super-block `dst` of its group.
fn pack_q6_k(src: &[u8], j: usize, dst: &mut [u8]) {
    use q6_k::*;
    let (ql, qh, scales) = (&src[..128], &src[128..192], &src[192..208]);
    // ggml's order: per 128 values, ql[l] and ql[l + 32] hold four values' low nibbles,
    // qh[l] their high bits.
    let mut q = [0u8; SUPER];
    for n in 0..2 {
        let (ql, qh, q) = (&ql[64 * n..], &qh[32 * n..], &mut q[128 * n..]);
        for l in 0..32 {
            q[l] = (ql[l] & 0x0f) | ((qh[l] & 3) << 4);
            q[l + 32] = (ql[l + 32] & 0x0f) | (((qh[l] >> 2) & 3) << 4);
            q[l + 64] = (ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4);
            q[l + 96] = (ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4);
        }
    }
    dst[D + 2 * j..][..2].copy_from_slice(&src[208..210]);
    for (g, &sc) in scales.iter().enumerate() {
        dst[SCALES + 32 * (g / 2) + 2 * j + g % 2] = sc;
    }
    for i in 0..128 {
        let v = 64 * (i / 32) + i % 32;
        dst[LO + payload_offset(j, i)] = (q[v] & 0x0f) | ((q[v + 32] & 0x0f) << 4);
    }
    for i in 0..64 {
        let (e, k) = (i / 4, i % 4);
        let mut byte = 0;
        for s in 0..4 {
            let c = 2 * e + s / 2;
            let v = 64 * (c / 8) + 4 * (c % 8) + k + 32 * (s % 2);
            byte |= (q[v] >> 4) << (2 * s);
        }
        dst[HI + payload_offset(j, i)] = byte;
    }
}

fn f16_at(bytes: &[u8], at: usize) -> f32 {
    f16::from_le_bytes([bytes[at], bytes[at + 1]]).to_f32()
}

/// Q4_K super-block `sb`, row `j`: the scale and min scale (f32), and of sub-block `s` the
/// 6-bit scale and min.
pub(crate) fn q4_k_scales(sb: &[u8], j: usize, s: usize) -> (f32, f32, i32, i32) {
    use q4_k::*;
    let at = 32 * (s / 2) + 2 * j + s % 2;
    (
        f16_at(sb, D + 2 * j),
        f16_at(sb, DMIN + 2 * j),
        i32::from(sb[SCALES + at]),
        i32::from(sb[MINS + at]),
    )
}

/// Q4_K super-block `sb`, row `j`: value `k`'s four bits (0..15).
pub(crate) fn q4_k_quant(sb: &[u8], j: usize, k: usize) -> i32 {
    let (within, l) = (k % 64, 32 * (k / 64) + k % 32);
    let byte = sb[q4_k::QS + payload_offset(j, l)];
    i32::from(if within < 32 { byte & 0x0f } else { byte >> 4 })
}

/// Q5_K super-block `sb`, row `j`: value `k`'s five bits (0..31).
pub(crate) fn q5_k_quant(sb: &[u8], j: usize, k: usize) -> i32 {
    let (byte, bit) = q5_k_high_bit(k);
    let high = (sb[q5_k::HI + payload_offset(j, byte)] >> bit) & 1;
    q4_k_quant(sb, j, k) | (i32::from(high) << 4)
}

/// Q6_K super-block `sb`, row `j`: the scale (f32) and the int8 scale of 16-value group `g`.
pub(crate) fn q6_k_scales(sb: &[u8], j: usize, g: usize) -> (f32, i32) {
    use q6_k::*;
    (
        f16_at(sb, D + 2 * j),
        i32::from(sb[SCALES + 32 * (g / 2) + 2 * j + g % 2] as i8),
    )
}

/// Q6_K super-block `sb`, row `j`: value `k`'s six bits (0..63, standing for −32..31).
pub(crate) fn q6_k_quant(sb: &[u8], j: usize, k: usize) -> i32 {
    use q6_k::*;
    let (half, l) = ((k % 64) / 32, 32 * (k / 64) + k % 32);
    let byte = sb[LO + payload_offset(j, l)];
    let low = if half == 0 { byte & 0x0f } else { byte >> 4 };
    let c = l / 4;
    let s = 2 * (c % 2) + half;
    let high = (sb[HI + payload_offset(j, 4 * (c / 2) + l % 4)] >> (2 * s)) & 3;
    i32::from(low | (high << 4))
}

/// Value `k` of row `j` in a K-quant super-block, as candle dequantizes it.
fn k_weight(format: WeightFormat, sb: &[u8], j: usize, k: usize) -> f32 {
    match format {
        WeightFormat::Q4_K => {
            let (d, dmin, sc, m) = q4_k_scales(sb, j, k / 32);
            (d * sc as f32) * q4_k_quant(sb, j, k) as f32 - dmin * m as f32
        }
        WeightFormat::Q5_K => {
            let (d, dmin, sc, m) = q4_k_scales(sb, j, k / 32);
            (d * sc as f32) * q5_k_quant(sb, j, k) as f32 - dmin * m as f32
        }
        _ => {
            let (d, sc) = q6_k_scales(sb, j, k / 16);
            d * sc as f32 * (q6_k_quant(sb, j, k) - 32) as f32
        }
    }
}
