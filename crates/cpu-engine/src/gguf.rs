//! Reading a model's tensors out of a GGUF file (candle parses the file; the bytes of the
//! quantized matrices are read as they are and repacked by [`crate::packing`]).

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};

use candle_core::Device;
use candle_core::quantized::{GgmlDType, gguf_file};

use crate::error::{Error, Result};
use crate::quant::{GgufRows, WeightFormat, quantize_q8_0};

fn weight_format(dtype: GgmlDType) -> Option<WeightFormat> {
    match dtype {
        GgmlDType::Q4_0 => Some(WeightFormat::Q4_0),
        GgmlDType::Q8_0 => Some(WeightFormat::Q8_0),
        GgmlDType::Q4_1 => Some(WeightFormat::Q4_1),
        GgmlDType::Q4K => Some(WeightFormat::Q4_K),
        GgmlDType::Q5K => Some(WeightFormat::Q5_K),
        GgmlDType::Q6K => Some(WeightFormat::Q6_K),
        GgmlDType::F16 => Some(WeightFormat::F16),
        GgmlDType::BF16 => Some(WeightFormat::BF16),
        _ => None,
    }
}

/// Formats read by widening each block, exactly, into one the kernels read: Q5_0's values
/// (−16..15 times the block's f16 scale) are Q8_0 values with the same scale. llama.cpp writes
/// Q5_0 where a Q4_K_M file's rows are not a whole number of 256-value super-blocks (Qwen2.5-0.5B's
/// 896-wide rows): 34 bytes a block instead of 22, the same products.
fn widened_format(dtype: GgmlDType) -> Option<WeightFormat> {
    match dtype {
        GgmlDType::Q5_0 => Some(WeightFormat::Q8_0),
        _ => None,
    }
}

/// Q5_0 blocks (f16 scale, 32 fifth bits, 16 nibble bytes) as Q8_0 blocks (f16 scale, 32
/// signed bytes): value j is nibble j % 16 (low for j < 16, high after) plus bit j of the
/// fifth bits times 16, minus 16.
pub(crate) fn q5_0_as_q8_0(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len() / 22 * 34);
    for block in bytes.chunks_exact(22) {
        out.extend_from_slice(&block[..2]);
        let high = u32::from_le_bytes([block[2], block[3], block[4], block[5]]);
        let nibbles = &block[6..22];
        for j in 0..32 {
            let nibble = if j < 16 {
                nibbles[j] & 0x0f
            } else {
                nibbles[j - 16] >> 4
            };
            let fifth = (((high >> j) & 1) as u8) << 4;
            out.push(((nibble | fifth) as i8 - 16) as u8);
        }
    }
    out
}

/// The one matrix that may come in a type the kernels do not read (llama.cpp's files keep the
/// output projection in Q6_K, which the kernels read, or another K-quant): it is requantized to
/// Q8_0 at load (and the engine says so).
const REQUANTIZABLE: &str = "output.weight";

/// A GGUF file's metadata and tensors, read one at a time.
pub(crate) struct Reader<'a> {
    pub(crate) content: &'a gguf_file::Content,
    file: &'a mut File,
    /// What was requantized, e.g. `output.weight Q6K → Q8_0`.
    pub(crate) requantized: Vec<String>,
    /// How many matrices were widened exactly ([`widened_format`]).
    pub(crate) widened: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(content: &'a gguf_file::Content, file: &'a mut File) -> Self {
        Self {
            content,
            file,
            requantized: Vec::new(),
            widened: 0,
        }
    }

    /// Metadata `key`, which the model needs.
    pub(crate) fn metadata(&self, key: &str) -> Result<&'a gguf_file::Value> {
        self.content
            .metadata
            .get(key)
            .ok_or_else(|| Error::Malformed(format!("metadata {key} is missing")))
    }

    /// Metadata `key` as a number, `default` where the file leaves it out.
    pub(crate) fn u32_or(&self, key: &str, default: u32) -> Result<u32> {
        match self.content.metadata.get(key) {
            Some(v) => Ok(v.to_u32()?),
            None => Ok(default),
        }
    }

    pub(crate) fn info(&self, name: &str) -> Result<&'a gguf_file::TensorInfo> {
        self.content
            .tensor_infos
            .get(name)
            .ok_or_else(|| Error::Malformed(format!("tensor {name} is missing")))
    }

    pub(crate) fn has(&self, name: &str) -> bool {
        self.content.tensor_infos.contains_key(name)
    }

    /// A matrix in a format the kernels do not read, if any.
    pub(crate) fn uncovered(&self) -> Option<String> {
        let mut names: Vec<_> = self.content.tensor_infos.iter().collect();
        names.sort_by_key(|(name, _)| name.as_str());
        names.into_iter().find_map(|(name, info)| {
            (info.shape.rank() == 2
                && name != REQUANTIZABLE
                && weight_format(info.ggml_dtype).is_none()
                && widened_format(info.ggml_dtype).is_none())
            .then(|| format!("{name} is {:?}", info.ggml_dtype))
        })
    }

    /// Matrix `name` of `rows` × `cols`, as the file stores its blocks.
    pub(crate) fn matrix(&mut self, name: &str, rows: usize, cols: usize) -> Result<GgufRows> {
        let info = self.info(name)?;
        let dims = info.shape.dims().to_vec();
        if dims != [rows, cols] {
            return Err(Error::Malformed(format!(
                "tensor {name} has shape {dims:?}, expected [{rows}, {cols}]"
            )));
        }
        if let Some(format) = widened_format(info.ggml_dtype) {
            let bytes = self.read_bytes(name, rows * cols / 32 * 22)?;
            self.widened += 1;
            return GgufRows::new(format, rows, cols, q5_0_as_q8_0(&bytes))
                .map_err(Error::Malformed);
        }
        let Some(format) = weight_format(info.ggml_dtype) else {
            if name != REQUANTIZABLE {
                return Err(Error::Malformed(format!(
                    "tensor {name} is {:?}",
                    info.ggml_dtype
                )));
            }
            let values = self.vector(name, rows * cols)?;
            self.requantized
                .push(format!("{name} {:?} → Q8_0", info.ggml_dtype));
            return GgufRows::new(WeightFormat::Q8_0, rows, cols, quantize_q8_0(&values))
                .map_err(Error::Malformed);
        };
        if !cols.is_multiple_of(format.block_values()) {
            return Err(Error::Malformed(format!(
                "tensor {name}: rows of {cols} values in {format:?} blocks of {}",
                format.block_values()
            )));
        }
        let bytes = self.read_bytes(
            name,
            rows * cols / format.block_values() * format.block_bytes(),
        )?;
        GgufRows::new(format, rows, cols, bytes).map_err(Error::Malformed)
    }

    /// The first `len` bytes of tensor `name`'s data, as the file stores them.
    fn read_bytes(&mut self, name: &str, len: usize) -> Result<Vec<u8>> {
        let info = self.info(name)?;
        let start = self.content.tensor_data_offset + info.offset;
        let mut bytes = vec![0u8; len];
        self.file.seek(SeekFrom::Start(start))?;
        self.file.read_exact(&mut bytes)?;
        Ok(bytes)
    }

    /// Tensor `name` of `len` values, dequantized to f32 (norms, and the requantized matrix).
    pub(crate) fn vector(&mut self, name: &str, len: usize) -> Result<Vec<f32>> {
        let info = self.info(name)?;
        let t = info
            .read(self.file, self.content.tensor_data_offset, &Device::Cpu)?
            .dequantize(&Device::Cpu)?
            .flatten_all()?
            .to_vec1::<f32>()?;
        if t.len() != len {
            return Err(Error::Malformed(format!(
                "tensor {name} has {} values, expected {len}",
                t.len()
            )));
        }
        Ok(t)
    }
}

#[cfg(test)]
mod tests {
    use candle_core::quantized::{GgmlDType, QTensor};
    use candle_core::{Device, Tensor};

    use super::*;
    use crate::packing::QMatrix;

    #[test]
    fn q5_0_widens_to_q8_0_blocks_of_the_values_candle_dequantizes() {
        let (rows, cols) = (3, 96);
        let x: Vec<f32> = (0..rows * cols)
            .map(|i| ((i * 37 % 101) as f32 - 50.0) / 17.0)
            .collect();
        let t = Tensor::from_vec(x, (rows, cols), &Device::Cpu).unwrap();
        let q = QTensor::quantize(&t, GgmlDType::Q5_0).unwrap();
        let want = q
            .dequantize(&Device::Cpu)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        let bytes = q5_0_as_q8_0(&q.data().unwrap());
        let widened = QMatrix::pack(GgufRows::new(WeightFormat::Q8_0, rows, cols, bytes).unwrap());
        let mut row = vec![0f32; cols];
        for r in 0..rows {
            widened.dequantize_row(r, &mut row);
            assert_eq!(row, want[r * cols..(r + 1) * cols], "row {r}");
        }
        // Every fifth bit and both nibbles were exercised.
        assert!(want.iter().any(|v| *v > 0.0) && want.iter().any(|v| *v < 0.0));
    }
}
