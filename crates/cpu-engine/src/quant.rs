//! The weight formats the kernels read (ggml's Q4_0, Q8_0, Q4_1, Q5_0, Q5_1, Q4_K, Q5_K and
//! Q6_K blocks and F16/BF16 floats, byte for byte as GGUF stores them) and the 8-bit
//! quantization of activations: per 32 values (ggml's Q8_0 rule) for the 32-value formats, per 256 values
//! (ggml's Q8_K rule) for the K-quants, each computed when a matrix of its kind first meets the
//! activations (float weights meet the activations as they are).

#![allow(unsafe_code)] // rows of the quantized outputs handed to the tasks that fill them.

use std::sync::OnceLock;

use half::f16;

use crate::isa::Isa;
use crate::parallel::Chunks;
use crate::pool;
#[cfg(target_arch = "x86_64")]
use crate::x86;

/// Values per quantization block of Q4_0, Q8_0, Q4_1, Q5_0, Q5_1 and their activations.
pub const BLOCK: usize = 32;

/// Values per K-quant super-block (Q4_K, Q5_K, Q6_K and their Q8_K activations).
pub const SUPER: usize = 256;

/// The weight encodings the kernels read, byte for byte as GGUF stores them.
#[allow(non_camel_case_types)] // ggml's names
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WeightFormat {
    /// f16 scale + 32 four-bit values (stored +8).
    Q4_0,
    /// f16 scale + 32 signed bytes.
    Q8_0,
    /// f16 scale, f16 min + 32 four-bit values (0..15; the min supplies the offset).
    Q4_1,
    /// f16 scale, 32 fifth bits, 32 four-bit values: values 0..31 stand for −16..15.
    Q5_0,
    /// f16 scale, f16 min, 32 fifth bits, 32 four-bit values: values 0..31 (the min supplies
    /// the offset). What llama.cpp's Q5_K_M writes for rows that are not whole super-blocks.
    Q5_1,
    /// Per 256 values: f16 scale and min scale, a 6-bit scale and min per 32 values (12 bytes),
    /// 256 four-bit values (0..15; the min supplies the offset).
    Q4_K,
    /// Q4_K with a fifth bit per value (32 bytes of high bits): values 0..31.
    Q5_K,
    /// Per 256 values: 128 bytes of low nibbles, 64 of high 2-bit pairs, an int8 scale per 16
    /// values, an f16 scale; values 0..63 stand for −32..31.
    Q6_K,
    /// IEEE half floats (counted in blocks of 32 values here; GGUF has no blocks).
    F16,
    /// bfloat16: the upper half of an f32.
    BF16,
}

impl WeightFormat {
    pub const fn block_bytes(self) -> usize {
        match self {
            WeightFormat::Q4_0 => 18,
            WeightFormat::Q8_0 => 34,
            WeightFormat::Q4_1 => 20,
            WeightFormat::Q5_0 => 22,
            WeightFormat::Q5_1 => 24,
            WeightFormat::Q4_K => 144,
            WeightFormat::Q5_K => 176,
            WeightFormat::Q6_K => 210,
            WeightFormat::F16 | WeightFormat::BF16 => 2 * BLOCK,
        }
    }

    /// Values per block of the file (and per repacked block).
    pub const fn block_values(self) -> usize {
        match self {
            WeightFormat::Q4_0
            | WeightFormat::Q8_0
            | WeightFormat::Q4_1
            | WeightFormat::Q5_0
            | WeightFormat::Q5_1
            | WeightFormat::F16
            | WeightFormat::BF16 => BLOCK,
            WeightFormat::Q4_K | WeightFormat::Q5_K | WeightFormat::Q6_K => SUPER,
        }
    }

    /// Whether activations meet it in the Q8_K form (per 256 values) rather than Q8_0.
    pub const fn is_k_quant(self) -> bool {
        matches!(
            self,
            WeightFormat::Q4_K | WeightFormat::Q5_K | WeightFormat::Q6_K
        )
    }

    /// Whether each block carries a min added to its values (Q4_1, Q5_1), besides its scale.
    pub const fn has_min(self) -> bool {
        matches!(self, WeightFormat::Q4_1 | WeightFormat::Q5_1)
    }

    /// Whether each value has a fifth bit stored apart from its nibble (Q5_0, Q5_1).
    pub const fn has_fifth_bit(self) -> bool {
        matches!(self, WeightFormat::Q5_0 | WeightFormat::Q5_1)
    }

    /// Whether the weights are floats, multiplied by the activations as they are (no
    /// quantization of either).
    pub const fn is_float(self) -> bool {
        matches!(self, WeightFormat::F16 | WeightFormat::BF16)
    }
}

/// `values` (a whole number of 32-value blocks) as GGUF Q8_0 blocks, by ggml's rule: the scale is
/// the largest magnitude / 127, stored as f16.
pub fn quantize_q8_0(values: &[f32]) -> Vec<u8> {
    let q = Q8Blocks::quantize(Isa::detect(), values, BLOCK);
    let mut bytes = Vec::with_capacity(values.len() / BLOCK * WeightFormat::Q8_0.block_bytes());
    for (scale, qs) in q.scale.iter().zip(q.qs.chunks_exact(BLOCK)) {
        bytes.extend(f16::from_f32(*scale).to_le_bytes());
        bytes.extend(qs.iter().map(|&v| v as u8));
    }
    bytes
}

/// Rows of GGUF blocks as the file stores them: `rows` rows of `cols / block_values` blocks.
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
        let per_block = format.block_values();
        if cols == 0 || !cols.is_multiple_of(per_block) {
            return Err(format!(
                "a row of {cols} values is not a whole number of {per_block}-value blocks"
            ));
        }
        let expected = rows * cols / per_block * format.block_bytes();
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

/// One row's Q8_0 form (per 32 values: scale, bytes, their sum) by `isa`'s quantizer: the
/// vector ones do the portable one's operations lane by lane, so every one gives the same bits.
fn q8_0_row(isa: Isa, x: &[f32], qs: &mut [i8], scale: &mut [f32], sums: &mut [i32]) {
    match isa.vector() {
        #[cfg(target_arch = "x86_64")]
        isa @ (Isa::Avx2 | Isa::Avx512Vnni) => x86::quantize::q8_0_row(isa, x, qs, scale, sums),
        _ => portable_q8_0_row(x, qs, scale, sums),
    }
}

fn portable_q8_0_row(x: &[f32], qs: &mut [i8], scale: &mut [f32], sums: &mut [i32]) {
    for (((values, qs), scale), sum) in x
        .chunks_exact(BLOCK)
        .zip(qs.chunks_exact_mut(BLOCK))
        .zip(scale)
        .zip(sums)
    {
        let amax = largest_magnitude(values);
        let d = amax / 127.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        for (q, v) in qs.iter_mut().zip(values) {
            // |v × id| ≤ 127 but where d is subnormal (then 1/d overflows): clamped as
            // `f32 as i8` would (NaN: 0).
            *q = round_half_away(v * id).clamp(-128.0, 127.0) as i32 as i8;
        }
        *scale = f16::from_f32(d).to_f32();
        *sum = qs.iter().map(|&q| i32::from(q)).sum();
    }
}

/// One row's Q8_K form (per 256 values: scale, bytes, their sums per 16 and per 32) by `isa`'s
/// quantizer, each giving the same bits (as [`q8_0_row`]).
fn q8_k_row(
    isa: Isa,
    x: &[f32],
    qs: &mut [i8],
    scale: &mut [f32],
    sums16: &mut [i16],
    sums32: &mut [i16],
) {
    match isa.vector() {
        #[cfg(target_arch = "x86_64")]
        isa @ (Isa::Avx2 | Isa::Avx512Vnni) => {
            x86::quantize::q8_k_row(isa, x, qs, scale, sums16, sums32);
        }
        _ => portable_q8_k_row(x, qs, scale, sums16, sums32),
    }
}

fn portable_q8_k_row(
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
        let (iscale, row_scale) = q8_k_scales(values, largest_magnitude(values));
        scale[b] = row_scale;
        for (q, v) in qs.iter_mut().zip(values) {
            *q = round_half_away(iscale * v).clamp(-128.0, 127.0) as i32 as i8;
        }
        let sum = |c: &[i8]| c.iter().map(|&q| i16::from(q)).sum::<i16>();
        for (s, c) in sums16[16 * b..16 * (b + 1)]
            .iter_mut()
            .zip(qs.chunks_exact(16))
        {
            *s = sum(c);
        }
        for (s, c) in sums32[8 * b..8 * (b + 1)]
            .iter_mut()
            .zip(qs.chunks_exact(32))
        {
            *s = sum(c);
        }
    }
}

/// A Q8_K super-block's multiplier into bytes and its scale, from `values` and their largest
/// magnitude `amax`: −127 / the first value of that magnitude, sign kept (candle's rule), and
/// its inverse; none (all zero or NaN): 0 and 0, so every byte is 0. Every ISA's quantizer
/// takes them from here.
pub(crate) fn q8_k_scales(values: &[f32], amax: f32) -> (f32, f32) {
    if amax == 0.0 {
        return (0.0, 0.0);
    }
    let max = values
        .iter()
        .copied()
        .find(|v| v.abs() == amax)
        .unwrap_or(0.0);
    let iscale = -127.0 / max;
    (iscale, 1.0 / iscale)
}

/// The largest |v| (NaN ignored, 0 for none), in eight lanes (a maximum is the same in any
/// order); `values` a multiple of 8 long.
#[inline(always)]
fn largest_magnitude(values: &[f32]) -> f32 {
    let mut lanes = [0f32; 8];
    for chunk in values.chunks_exact(8) {
        for (m, v) in lanes.iter_mut().zip(chunk) {
            *m = if v.abs() > *m { v.abs() } else { *m };
        }
    }
    lanes
        .into_iter()
        .fold(0f32, |m, v| if v > m { v } else { m })
}

/// `x` rounded to the nearest integer, halves away from zero: `f32::round`'s result for
/// |x| < 2^31, NaN to 0, without its call into libm, in operations that vector sets have
/// (the integer part is exact, so is the fraction left).
#[inline(always)]
fn round_half_away(x: f32) -> f32 {
    let whole = x as i32 as f32;
    let fraction = x - whole;
    if fraction >= 0.5 {
        whole + 1.0
    } else if fraction <= -0.5 {
        whole - 1.0
    } else {
        whole
    }
}

/// Activation rows (f32), quantized on demand for the formats of the matrices they meet: the
/// Q8_0 form for Q4_0/Q8_0 weights, the Q8_K form for K-quants, each at most once (model code
/// quantizes an input once and feeds several matrices, which may differ in format).
#[derive(Debug, Default)]
pub struct QActs {
    pub(crate) rows: usize,
    pub(crate) cols: usize,
    values: Vec<f32>,
    blocks: OnceLock<Q8Blocks>,
    supers: OnceLock<Q8Supers>,
}

impl QActs {
    /// Takes `x` (rows of `cols` values; `cols` a multiple of 32) for quantization.
    pub fn quantize(x: &[f32], cols: usize) -> Self {
        Self::from_rows(x.to_vec(), cols)
    }

    /// As [`QActs::quantize`], keeping `x` rather than a copy of it.
    pub fn from_rows(x: Vec<f32>, cols: usize) -> Self {
        assert!(cols.is_multiple_of(BLOCK) && x.len().is_multiple_of(cols));
        Self {
            rows: x.len() / cols,
            cols,
            values: x,
            blocks: OnceLock::new(),
            supers: OnceLock::new(),
        }
    }

    /// `rows` × `cols` activations that `make` produces, quantized for `format`'s matrices by
    /// the same tasks through the [`RowSink`] it is handed (it must put every row there).
    pub(crate) fn made(
        isa: Isa,
        format: WeightFormat,
        rows: usize,
        cols: usize,
        make: impl FnOnce(&RowSink<'_>) -> Vec<f32>,
    ) -> Self {
        let (values, blocks, supers) = if format.is_k_quant() && cols.is_multiple_of(SUPER) {
            let mut supers = Q8Supers::empty(rows, cols);
            let values = make(&supers.sink(isa));
            (values, OnceLock::new(), OnceLock::from(supers))
        } else if !format.is_float() && cols.is_multiple_of(BLOCK) {
            let mut blocks = Q8Blocks::empty(rows, cols);
            let values = make(&blocks.sink(isa));
            (values, OnceLock::from(blocks), OnceLock::new())
        } else {
            (make(&RowSink::NONE), OnceLock::new(), OnceLock::new())
        };
        assert_eq!(values.len(), rows * cols, "made rows of another shape");
        let mut acts = Self::from_rows(values, cols);
        acts.blocks = blocks;
        acts.supers = supers;
        acts
    }

    /// Token `t`'s values as they came (for float weights).
    pub(crate) fn values(&self, t: usize) -> &[f32] {
        &self.values[t * self.cols..(t + 1) * self.cols]
    }

    /// Quantizes now, with `isa`'s quantizer, the form that `format`'s matrices meet (none for
    /// float weights); a product does so before it splits across the pool.
    pub fn prepare(&self, isa: Isa, format: WeightFormat) {
        if format.is_k_quant() {
            self.supers(isa);
        } else if !format.is_float() {
            self.blocks(isa);
        }
    }

    /// The Q8_0 form (per 32 values), quantized by `isa`'s quantizer the first time (every
    /// set's quantizer gives the same bits).
    pub(crate) fn blocks(&self, isa: Isa) -> &Q8Blocks {
        self.blocks
            .get_or_init(|| Q8Blocks::quantize(isa, &self.values, self.cols))
    }

    /// The Q8_K form (per 256 values; `cols` must be a multiple of 256), as [`QActs::blocks`].
    pub(crate) fn supers(&self, isa: Isa) -> &Q8Supers {
        self.supers
            .get_or_init(|| Q8Supers::quantize(isa, &self.values, self.cols))
    }
}

/// Activation rows quantized per 32-value block: `qs` signed bytes, a `scale` per block rounded
/// through f16 as ggml stores it, and per block the sum of its 32 bytes (`sums`), which turns
/// unsigned-weight products back into signed ones exactly.
#[derive(Debug, Clone, Default)]
pub struct Q8Blocks {
    pub(crate) cols: usize,
    pub(crate) qs: Vec<i8>,
    pub(crate) scale: Vec<f32>,
    pub(crate) sums: Vec<i32>,
}

impl Q8Blocks {
    /// Quantizes `x` (rows of `cols` values; `cols` a multiple of 32) with `isa`'s quantizer,
    /// rows across the pool.
    pub fn quantize(isa: Isa, x: &[f32], cols: usize) -> Self {
        assert!(cols.is_multiple_of(BLOCK) && x.len().is_multiple_of(cols));
        let mut out = Self::empty(x.len() / cols, cols);
        out.sink(isa).put_all(x, cols);
        out
    }

    fn empty(rows: usize, cols: usize) -> Self {
        let blocks = rows * cols / BLOCK;
        Self {
            cols,
            qs: vec![0; rows * cols],
            scale: vec![0.0; blocks],
            sums: vec![0; blocks],
        }
    }

    /// Where tasks of a section quantize rows into their places.
    fn sink(&mut self, isa: Isa) -> RowSink<'_> {
        let per_row = self.cols / BLOCK;
        RowSink(Sink::Blocks {
            isa,
            cols: self.cols,
            qs: Chunks::new(&mut self.qs, self.cols),
            scale: Chunks::new(&mut self.scale, per_row),
            sums: Chunks::new(&mut self.sums, per_row),
        })
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

/// Where the task that makes activation rows (a norm's, SwiGLU's, or a quantizer's own) quantizes
/// them while they are in its cache, in the form the next product's weights meet, so that
/// quantization is not a section of its own ([`QActs::made`]). [`RowSink::NONE`] where nothing
/// is quantized.
pub(crate) struct RowSink<'a>(Sink<'a>);

enum Sink<'a> {
    None,
    /// Into a [`Q8Blocks`].
    Blocks {
        isa: Isa,
        cols: usize,
        qs: Chunks<'a, i8>,
        scale: Chunks<'a, f32>,
        sums: Chunks<'a, i32>,
    },
    /// Into a [`Q8Supers`].
    Supers {
        isa: Isa,
        cols: usize,
        qs: Chunks<'a, i8>,
        scale: Chunks<'a, f32>,
        sums16: Chunks<'a, i16>,
        sums32: Chunks<'a, i16>,
    },
}

impl RowSink<'_> {
    pub(crate) const NONE: RowSink<'static> = RowSink(Sink::None);

    /// Quantizes every row of `x` (rows of `cols` values), rows across the threads (a prompt's;
    /// a decode step's one row on the calling thread).
    fn put_all(&self, x: &[f32], cols: usize) {
        pool::for_each(x.len() / cols, |t| {
            // SAFETY: task t alone writes row t.
            unsafe { self.put(t, &x[t * cols..][..cols]) };
        });
    }

    /// Quantizes `rows` (whole rows) as rows `first..`.
    ///
    /// # Safety
    /// No other task writes these rows while this one may.
    pub(crate) unsafe fn put(&self, first: usize, rows: &[f32]) {
        match &self.0 {
            Sink::None => {}
            Sink::Blocks {
                isa,
                cols,
                qs,
                scale,
                sums,
            } => {
                assert!(rows.len().is_multiple_of(*cols), "rows of another width");
                for (k, x) in rows.chunks_exact(*cols).enumerate() {
                    let t = first + k;
                    // SAFETY: row t is this task's alone (the caller's promise).
                    let (qs, scale, sums) = unsafe { (qs.get(t), scale.get(t), sums.get(t)) };
                    q8_0_row(*isa, x, qs, scale, sums);
                }
            }
            Sink::Supers {
                isa,
                cols,
                qs,
                scale,
                sums16,
                sums32,
            } => {
                assert!(rows.len().is_multiple_of(*cols), "rows of another width");
                for (k, x) in rows.chunks_exact(*cols).enumerate() {
                    let t = first + k;
                    // SAFETY: as above.
                    let (qs, scale, sums16, sums32) =
                        unsafe { (qs.get(t), scale.get(t), sums16.get(t), sums32.get(t)) };
                    q8_k_row(*isa, x, qs, scale, sums16, sums32);
                }
            }
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

/// Activation rows quantized per 256-value super-block by ggml's Q8_K rule as candle applies it:
/// the scale is −(the value of largest magnitude)/127 in f32 (so the bytes are the values
/// negated, scaled), and the sums of the bytes per 16 and per 32 values (each at most
/// 32 × 127 = 4064 in magnitude: they fit i16, which the kernels multiply pairwise) carry the
/// K-quants' offsets.
#[derive(Debug, Clone, Default)]
pub struct Q8Supers {
    pub(crate) cols: usize,
    pub(crate) qs: Vec<i8>,
    pub(crate) scale: Vec<f32>,
    pub(crate) sums16: Vec<i16>,
    pub(crate) sums32: Vec<i16>,
}

impl Q8Supers {
    pub(crate) fn quantize(isa: Isa, x: &[f32], cols: usize) -> Self {
        assert!(cols.is_multiple_of(SUPER) && x.len().is_multiple_of(cols));
        let mut out = Self::empty(x.len() / cols, cols);
        out.sink(isa).put_all(x, cols);
        out
    }

    fn empty(rows: usize, cols: usize) -> Self {
        let supers = rows * cols / SUPER;
        Self {
            cols,
            qs: vec![0; rows * cols],
            scale: vec![0.0; supers],
            sums16: vec![0; supers * SUPER / 16],
            sums32: vec![0; supers * SUPER / 32],
        }
    }

    /// Where tasks of a section quantize rows into their places.
    fn sink(&mut self, isa: Isa) -> RowSink<'_> {
        let per_row = self.cols / SUPER;
        RowSink(Sink::Supers {
            isa,
            cols: self.cols,
            qs: Chunks::new(&mut self.qs, self.cols),
            scale: Chunks::new(&mut self.scale, per_row),
            sums16: Chunks::new(&mut self.sums16, per_row * SUPER / 16),
            sums32: Chunks::new(&mut self.sums32, per_row * SUPER / 32),
        })
    }

    pub(crate) fn row(&self, t: usize) -> SuperRow<'_> {
        let n = self.cols / SUPER;
        SuperRow {
            qs: &self.qs[t * self.cols..(t + 1) * self.cols],
            scale: &self.scale[t * n..(t + 1) * n],
            sums16: &self.sums16[t * n * 16..(t + 1) * n * 16],
            sums32: &self.sums32[t * n * 8..(t + 1) * n * 8],
        }
    }
}

/// One token's activations in the Q8_K form.
#[derive(Clone, Copy)]
pub(crate) struct SuperRow<'a> {
    pub(crate) qs: &'a [i8],
    pub(crate) scale: &'a [f32],
    pub(crate) sums16: &'a [i16],
    pub(crate) sums32: &'a [i16],
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounding_matches_f32_round_where_activations_land() {
        // Every float in ±(2^-3 .. 2^9) at a stride that visits every fraction pattern class,
        // the halves and their neighbours exactly, and the specials.
        let mut cases: Vec<f32> = (0x3E00_0000u32..0x4400_0000)
            .step_by(61)
            .map(f32::from_bits)
            .collect();
        for k in -300..300 {
            let half = k as f32 + 0.5;
            cases.extend([half, half.next_up(), half.next_down()]);
        }
        cases.extend([0.0, -0.0, 1e-30, 0.499_999_97, 127.5, 128.0, 2e9]);
        for x in cases.iter().flat_map(|&x| [x, -x]) {
            let want = x.round();
            let got = round_half_away(x);
            assert!(
                got.to_bits() == want.to_bits() || (got == 0.0 && want == 0.0),
                "{x}: {got} vs {want}"
            );
        }
        assert_eq!(round_half_away(f32::NAN), 0.0);
    }

    /// Rows that reach every branch of the quantizers: seeded values at several magnitudes,
    /// values whose scaled form lands on a half (and beside it), zeros, NaN and infinities,
    /// a largest magnitude that is negative or repeated, and one so small that 1/scale
    /// overflows.
    fn awkward_rows(cols: usize) -> Vec<f32> {
        let mut state = 0x2545_f491_u64;
        let mut next = || {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1);
            ((state >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        };
        let mut rows = Vec::new();
        for magnitude in [1.0f32, 3e-3, 250.0, 1e-30] {
            rows.extend((0..cols).map(|_| magnitude * next()));
        }
        // 127 first in every block, so the scale is 1 (Q8_K: −1) and the scaled values are
        // the values: halves, and the floats beside them.
        let halves = |k: usize| {
            if k.is_multiple_of(32) {
                127.0
            } else {
                (k % 61) as f32 - 30.5
            }
        };
        rows.extend((0..cols).map(halves));
        rows.extend((0..cols).map(|k| halves(k).next_up()));
        rows.extend((0..cols).map(|k| halves(k).next_down()));
        rows.extend(std::iter::repeat_n(0.0, cols));
        rows.extend((0..cols).map(|k| [f32::NAN, 1.0, -2.0, 0.5][k % 4]));
        rows.extend((0..cols).map(|k| [f32::INFINITY, 1.0, f32::NEG_INFINITY, -0.0][k % 4]));
        rows.extend((0..cols).map(|k| if k % 7 == 3 { -5.0 } else { next() }));
        rows.extend((0..cols).map(|k| if k % 64 == 0 { 1e-39 } else { 1e-41 * next() }));
        rows.extend((0..cols).map(|_| f32::NAN));
        rows
    }

    /// Fails at the first place where `got` and `want` differ, naming it.
    fn same<T: PartialEq + std::fmt::Debug>(got: &[T], want: &[T], what: &str) {
        assert_eq!(got.len(), want.len(), "{what}: lengths");
        if let Some(i) = got.iter().zip(want).position(|(g, w)| g != w) {
            panic!("{what} differ first at {i}: {:?} vs {:?}", got[i], want[i]);
        }
    }

    #[test]
    fn every_isa_quantizes_activations_as_the_portable_code_does() {
        let cols = 2 * SUPER;
        let x = awkward_rows(cols);
        let blocks = Q8Blocks::quantize(Isa::Portable, &x, cols);
        let supers = Q8Supers::quantize(Isa::Portable, &x, cols);
        // The cases the rows are there for do occur: halves rounded away from zero.
        assert!(blocks.qs.contains(&127) && blocks.qs.contains(&-127));
        let halves = &blocks.qs[4 * cols..5 * cols];
        assert_eq!((halves[1], halves[2], halves[61]), (-30, -29, -31));
        assert!(blocks.scale.contains(&0.0) && supers.scale.contains(&0.0));
        for isa in [Isa::Avx2, Isa::Avx512Vnni] {
            if !isa.is_supported() {
                rigger_model_gen::declare_skip(
                    "cpu-engine quant: every ISA quantizes as the portable code does",
                    &format!("{isa:?} is not available on this processor"),
                );
                continue;
            }
            let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
            let got = Q8Blocks::quantize(isa, &x, cols);
            same(&got.qs, &blocks.qs, &format!("{isa:?} Q8_0 bytes"));
            same(&got.sums, &blocks.sums, &format!("{isa:?} Q8_0 sums"));
            same(
                &bits(&got.scale),
                &bits(&blocks.scale),
                &format!("{isa:?} Q8_0 scales"),
            );
            let got = Q8Supers::quantize(isa, &x, cols);
            same(&got.qs, &supers.qs, &format!("{isa:?} Q8_K bytes"));
            same(
                &got.sums16,
                &supers.sums16,
                &format!("{isa:?} Q8_K sums per 16"),
            );
            same(
                &got.sums32,
                &supers.sums32,
                &format!("{isa:?} Q8_K sums per 32"),
            );
            same(
                &bits(&got.scale),
                &bits(&supers.scale),
                &format!("{isa:?} Q8_K scales"),
            );
        }
    }

    /// Rows quantized by the tasks that make them, three rows a task as a norm's groups are, hold
    /// what quantizing the finished rows holds, in both forms; float weights get none.
    #[test]
    fn rows_quantized_where_they_are_made_equal_rows_quantized_after() {
        let cols = 2 * SUPER;
        let x = awkward_rows(cols);
        let rows = x.len() / cols;
        let make = |sink: &RowSink<'_>| {
            crate::parallel::copied_rows_then(&x, 3 * cols, |i, part| {
                // SAFETY: task i alone makes rows 3i.. .
                unsafe { sink.put(3 * i, part) }
            })
        };
        let isa = Isa::detect().vector();
        // The rows hold NaN and infinities, so floats compare as bits.
        let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
        let made = QActs::made(isa, WeightFormat::Q4_0, rows, cols, make);
        let blocks = Q8Blocks::quantize(isa, &x, cols);
        assert_eq!(bits(&made.values), bits(&x));
        let got = made.blocks.get().expect("quantized where made");
        assert_eq!((&got.qs, &got.sums), (&blocks.qs, &blocks.sums));
        assert_eq!(bits(&got.scale), bits(&blocks.scale));
        let made = QActs::made(isa, WeightFormat::Q6_K, rows, cols, make);
        let supers = Q8Supers::quantize(isa, &x, cols);
        let got = made.supers.get().expect("quantized where made");
        assert_eq!(
            (&got.qs, &got.sums16, &got.sums32),
            (&supers.qs, &supers.sums16, &supers.sums32)
        );
        assert_eq!(bits(&got.scale), bits(&supers.scale));
        let made = QActs::made(isa, WeightFormat::F16, rows, cols, make);
        assert!(made.blocks.get().is_none() && made.supers.get().is_none());
    }

    #[test]
    fn q8_k_bytes_stay_within_127_in_magnitude() {
        // AMX's Q4_K kernel keeps each 32-value dot of (nibble − 8) × byte in 16 bits, which
        // holds only while no byte is −128: rows whose largest value is negative, positive,
        // repeated, alone, tiny.
        let mut rows: Vec<f32> = Vec::new();
        for (i, pattern) in [-1.0f32, 1.0, -3.5e-3, 7e4].into_iter().enumerate() {
            rows.extend((0..SUPER).map(|k| pattern * (1.0 + ((k * 7 + i) % 13) as f32 / 13.0)));
            rows.extend(std::iter::repeat_n(pattern, SUPER));
            rows.extend((0..SUPER).map(|k| if k == 100 { pattern } else { -pattern / 3.0 }));
            rows.extend((0..SUPER).map(|k| if k % 2 == 0 { -pattern } else { pattern }));
        }
        let supers = Q8Supers::quantize(Isa::Portable, &rows, SUPER);
        assert!(supers.qs.iter().all(|&q| q != i8::MIN));
        assert!(supers.qs.contains(&-127) && supers.qs.contains(&127));
    }
}
