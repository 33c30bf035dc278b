//! The weight formats the kernels read (ggml's Q4_0 and Q8_0 blocks, byte for byte as GGUF
//! stores them) and the 8-bit quantization of activations (ggml's Q8_0 rule).

use half::f16;

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
    pub(crate) format: WeightFormat,
    pub(crate) rows: usize,
    pub(crate) cols: usize,
    pub(crate) bytes: Vec<u8>,
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

/// Activation rows quantized per 32-value block: `qs` signed bytes, a `scale` per block rounded
/// through f16 as ggml stores it, and per block the sum of its 32 bytes (`sums`), which turns
/// unsigned-weight products back into signed ones exactly.
#[derive(Debug, Clone, Default)]
pub struct QActs {
    pub(crate) rows: usize,
    pub(crate) cols: usize,
    pub(crate) qs: Vec<i8>,
    pub(crate) scale: Vec<f32>,
    pub(crate) sums: Vec<i32>,
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

    pub(crate) fn row(&self, t: usize) -> ActRow<'_> {
        let nb = self.cols / BLOCK;
        ActRow {
            qs: &self.qs[t * self.cols..(t + 1) * self.cols],
            scale: &self.scale[t * nb..(t + 1) * nb],
            sums: &self.sums[t * nb..(t + 1) * nb],
        }
    }
}

/// One token's quantized activations.
#[derive(Clone, Copy)]
pub(crate) struct ActRow<'a> {
    pub(crate) qs: &'a [i8],
    pub(crate) scale: &'a [f32],
    pub(crate) sums: &'a [i32],
}
