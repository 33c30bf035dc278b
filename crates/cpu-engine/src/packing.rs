//! The repacked layout the kernels read: rows in groups of sixteen, their blocks interleaved so
//! that sixteen rows sit in the sixteen lanes of one register.

use half::f16;

use crate::memory::CacheLines;
use crate::quant::{BLOCK, GgufRows, WeightFormat};

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
    pub(crate) rows: usize,
    pub(crate) cols: usize,
    bytes: CacheLines,
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
pub(crate) const fn scales_at(format: WeightFormat, b: usize) -> usize {
    (b / 2) * pair_bytes(format) + (b % 2) * GROUP_SCALE_BYTES
}

/// Where block `b`'s sixteen payloads lie in its group (on a 64-byte boundary).
pub(crate) const fn payloads_at(format: WeightFormat, b: usize) -> usize {
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
pub(crate) struct Group<'a> {
    pub(crate) format: WeightFormat,
    pub(crate) blocks: usize,
    pub(crate) bytes: &'a [u8],
}

impl<'a> Group<'a> {
    pub(crate) fn scales(&self, b: usize) -> &'a [u8] {
        &self.bytes[scales_at(self.format, b)..][..GROUP_SCALE_BYTES]
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
pub(crate) fn weight(format: WeightFormat, payloads: &[u8], j: usize, k: usize) -> i32 {
    match format {
        WeightFormat::Q4_0 => {
            let q = payloads[payload_offset(j, k % 16)];
            i32::from(if k < 16 { q & 0x0f } else { q >> 4 }) - 8
        }
        WeightFormat::Q8_0 => i32::from((payloads[payload_offset(j, k)] ^ Q8_0_OFFSET) as i8),
    }
}
