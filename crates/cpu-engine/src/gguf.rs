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
        GgmlDType::Q5_0 => Some(WeightFormat::Q5_0),
        GgmlDType::Q4K => Some(WeightFormat::Q4_K),
        GgmlDType::Q5K => Some(WeightFormat::Q5_K),
        GgmlDType::Q6K => Some(WeightFormat::Q6_K),
        GgmlDType::F16 => Some(WeightFormat::F16),
        GgmlDType::BF16 => Some(WeightFormat::BF16),
        _ => None,
    }
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
}

impl<'a> Reader<'a> {
    pub(crate) fn new(content: &'a gguf_file::Content, file: &'a mut File) -> Self {
        Self {
            content,
            file,
            requantized: Vec::new(),
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

    /// A matrix in a format the kernels do not read, if any (float rows must also be whole
    /// 32-value blocks, as the kernels count them; quantized rows are by construction).
    pub(crate) fn uncovered(&self) -> Option<String> {
        let mut names: Vec<_> = self.content.tensor_infos.iter().collect();
        names.sort_by_key(|(name, _)| name.as_str());
        names.into_iter().find_map(|(name, info)| {
            if info.shape.rank() != 2 || name == REQUANTIZABLE {
                return None;
            }
            match weight_format(info.ggml_dtype) {
                None => Some(format!("{name} is {:?}", info.ggml_dtype)),
                Some(format) if !info.shape.dims()[1].is_multiple_of(format.block_values()) => {
                    Some(format!(
                        "{name}: {:?} rows of {} values",
                        info.ggml_dtype,
                        info.shape.dims()[1]
                    ))
                }
                Some(_) => None,
            }
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
        let len = rows * cols / format.block_values() * format.block_bytes();
        let start = self.content.tensor_data_offset + info.offset;
        let mut bytes = vec![0u8; len];
        self.file.seek(SeekFrom::Start(start))?;
        self.file.read_exact(&mut bytes)?;
        GgufRows::new(format, rows, cols, bytes).map_err(Error::Malformed)
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
