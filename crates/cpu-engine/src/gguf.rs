//! A GGUF file as a [`TensorSource`]: candle parses the file; the bytes of the quantized matrices
//! are read as they are and repacked by [`crate::packing`].

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};

use candle_core::Device;
use candle_core::quantized::{GgmlDType, gguf_file};

use crate::error::{Error, Result};
use crate::quant::WeightFormat;
use crate::reader::{TensorInfo, TensorSource};

fn weight_format(dtype: GgmlDType) -> Option<WeightFormat> {
    match dtype {
        GgmlDType::Q4_0 => Some(WeightFormat::Q4_0),
        GgmlDType::Q8_0 => Some(WeightFormat::Q8_0),
        GgmlDType::Q4_1 => Some(WeightFormat::Q4_1),
        GgmlDType::Q5_0 => Some(WeightFormat::Q5_0),
        GgmlDType::Q5_1 => Some(WeightFormat::Q5_1),
        GgmlDType::Q4K => Some(WeightFormat::Q4_K),
        GgmlDType::Q5K => Some(WeightFormat::Q5_K),
        GgmlDType::Q6K => Some(WeightFormat::Q6_K),
        GgmlDType::F16 => Some(WeightFormat::F16),
        GgmlDType::BF16 => Some(WeightFormat::BF16),
        _ => None,
    }
}

/// A GGUF file's metadata and tensors.
pub(crate) struct GgufFile<'a> {
    pub(crate) content: &'a gguf_file::Content,
    pub(crate) file: &'a mut File,
}

fn describe(name: &str, info: &gguf_file::TensorInfo) -> TensorInfo {
    TensorInfo {
        name: name.to_owned(),
        dims: info.shape.dims().to_vec(),
        format: weight_format(info.ggml_dtype).ok_or_else(|| format!("{:?}", info.ggml_dtype)),
    }
}

impl<'a> GgufFile<'a> {
    fn info(&self, name: &str) -> Result<&'a gguf_file::TensorInfo> {
        self.content
            .tensor_infos
            .get(name)
            .ok_or_else(|| Error::Malformed(format!("tensor {name} is missing")))
    }
}

impl TensorSource for GgufFile<'_> {
    fn metadata(&self, key: &str) -> Option<&gguf_file::Value> {
        self.content.metadata.get(key)
    }

    fn tensors(&self) -> Vec<TensorInfo> {
        self.content
            .tensor_infos
            .iter()
            .map(|(name, info)| describe(name, info))
            .collect()
    }

    fn tensor(&self, name: &str) -> Option<TensorInfo> {
        self.content
            .tensor_infos
            .get(name)
            .map(|info| describe(name, info))
    }

    fn matrix_bytes(&mut self, name: &str, format: WeightFormat) -> Result<Vec<u8>> {
        let info = self.info(name)?;
        let len = info.shape.elem_count() / format.block_values() * format.block_bytes();
        let start = self.content.tensor_data_offset + info.offset;
        let mut bytes = vec![0u8; len];
        self.file.seek(SeekFrom::Start(start))?;
        self.file.read_exact(&mut bytes)?;
        Ok(bytes)
    }

    fn values(&mut self, name: &str) -> Result<Vec<f32>> {
        Ok(self
            .info(name)?
            .read(self.file, self.content.tensor_data_offset, &Device::Cpu)?
            .dequantize(&Device::Cpu)?
            .flatten_all()?
            .to_vec1::<f32>()?)
    }
}
