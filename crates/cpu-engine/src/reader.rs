//! Where a model's tensors come from. The architectures read tensors by GGUF's names and
//! metadata by GGUF's keys; a GGUF file serves them as they are ([`crate::gguf`]), a Hugging
//! Face safetensors folder translated ([`crate::safetensors`]: names, keys, and the row order of
//! Llama's Q and K).

use candle_core::quantized::gguf_file::Value;

use crate::error::{Error, Result};
use crate::quant::{GgufRows, WeightFormat, quantize_q8_0};

/// What a source says of one tensor.
pub(crate) struct TensorInfo {
    /// GGUF's name for it.
    pub(crate) name: String,
    /// `[rows, cols]` for a matrix.
    pub(crate) dims: Vec<usize>,
    /// The kernels' format for its bytes, or the name of a type they do not read.
    pub(crate) format: std::result::Result<WeightFormat, String>,
}

/// One way of reading a model's tensors by their GGUF names.
pub(crate) trait TensorSource {
    /// Metadata `key`, by GGUF's key for it.
    fn metadata(&self, key: &str) -> Option<&Value>;
    /// Every tensor the model has.
    fn tensors(&self) -> Vec<TensorInfo>;
    /// Tensor `name`, if the model has it.
    fn tensor(&self, name: &str) -> Option<TensorInfo>;
    /// Matrix `name`'s bytes as GGUF blocks of `format` (the format [`Self::tensor`] gives).
    fn matrix_bytes(&mut self, name: &str, format: WeightFormat) -> Result<Vec<u8>>;
    /// Tensor `name`'s values as f32.
    fn values(&mut self, name: &str) -> Result<Vec<f32>>;
}

/// The one matrix that may come in a type the kernels do not read (llama.cpp's files keep the
/// output projection in Q6_K, which the kernels read, or another K-quant): it is requantized to
/// Q8_0 at load (and the engine says so).
const REQUANTIZABLE: &str = "output.weight";

/// A model's metadata and tensors, read one at a time.
pub(crate) struct Reader<'a> {
    source: Box<dyn TensorSource + 'a>,
    /// What was requantized, e.g. `output.weight Q6K → Q8_0`.
    pub(crate) requantized: Vec<String>,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(source: impl TensorSource + 'a) -> Self {
        Self {
            source: Box::new(source),
            requantized: Vec::new(),
        }
    }

    /// Metadata `key`, if the model gives it.
    pub(crate) fn get(&self, key: &str) -> Option<&Value> {
        self.source.metadata(key)
    }

    /// Metadata `key`, which the model needs.
    pub(crate) fn metadata(&self, key: &str) -> Result<&Value> {
        self.get(key)
            .ok_or_else(|| Error::Malformed(format!("metadata {key} is missing")))
    }

    /// Metadata `key` as a number, `default` where the model leaves it out.
    pub(crate) fn u32_or(&self, key: &str, default: u32) -> Result<u32> {
        match self.get(key) {
            Some(v) => Ok(v.to_u32()?),
            None => Ok(default),
        }
    }

    /// Tensor `name`'s shape.
    pub(crate) fn dims(&self, name: &str) -> Result<Vec<usize>> {
        self.info(name).map(|info| info.dims)
    }

    fn info(&self, name: &str) -> Result<TensorInfo> {
        self.source
            .tensor(name)
            .ok_or_else(|| Error::Malformed(format!("tensor {name} is missing")))
    }

    pub(crate) fn has(&self, name: &str) -> bool {
        self.source.tensor(name).is_some()
    }

    /// A matrix in a format the kernels do not read, if any (float rows must also be whole
    /// 32-value blocks, as the kernels count them; quantized rows are by construction).
    pub(crate) fn uncovered(&self) -> Option<String> {
        let mut tensors = self.source.tensors();
        tensors.sort_by(|a, b| a.name.cmp(&b.name));
        tensors.into_iter().find_map(|t| {
            if t.dims.len() != 2 || t.name == REQUANTIZABLE {
                return None;
            }
            match t.format {
                Err(kind) => Some(format!("{} is {kind}", t.name)),
                Ok(format) if !t.dims[1].is_multiple_of(format.block_values()) => Some(format!(
                    "{}: {format:?} rows of {} values",
                    t.name, t.dims[1]
                )),
                Ok(_) => None,
            }
        })
    }

    /// Matrix `name` of `rows` × `cols`, as GGUF blocks of its format.
    pub(crate) fn matrix(&mut self, name: &str, rows: usize, cols: usize) -> Result<GgufRows> {
        let info = self.info(name)?;
        if info.dims != [rows, cols] {
            return Err(Error::Malformed(format!(
                "tensor {name} has shape {:?}, expected [{rows}, {cols}]",
                info.dims
            )));
        }
        let format = match info.format {
            Ok(format) => format,
            Err(kind) if name == REQUANTIZABLE => {
                let values = self.vector(name, rows * cols)?;
                self.requantized.push(format!("{name} {kind} → Q8_0"));
                return GgufRows::new(WeightFormat::Q8_0, rows, cols, quantize_q8_0(&values))
                    .map_err(Error::Malformed);
            }
            Err(kind) => return Err(Error::Malformed(format!("tensor {name} is {kind}"))),
        };
        if !cols.is_multiple_of(format.block_values()) {
            return Err(Error::Malformed(format!(
                "tensor {name}: rows of {cols} values in {format:?} blocks of {}",
                format.block_values()
            )));
        }
        let bytes = self.source.matrix_bytes(name, format)?;
        GgufRows::new(format, rows, cols, bytes).map_err(Error::Malformed)
    }

    /// Tensor `name` of `len` values, as f32 (norms, biases, and the requantized matrix).
    pub(crate) fn vector(&mut self, name: &str, len: usize) -> Result<Vec<f32>> {
        self.info(name)?;
        let values = self.source.values(name)?;
        if values.len() != len {
            return Err(Error::Malformed(format!(
                "tensor {name} has {} values, expected {len}",
                values.len()
            )));
        }
        Ok(values)
    }
}
