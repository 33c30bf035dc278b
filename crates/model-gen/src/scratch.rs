//! Small GGUF files written by a test: seeded random tensors in any type candle quantizes to,
//! with the tiny model's tokenizer beside them, in a folder of their own under the system's
//! temp dir. For tests only: failures panic with what went wrong.

use std::path::{Path, PathBuf};

use candle_core::quantized::gguf_file::{self, Value};
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{DType, Device, Tensor};

/// A file of the tiny model (generated on first use).
pub fn tiny(file: &str) -> PathBuf {
    crate::tiny_model()
        .expect("generate the tiny model")
        .join(file)
}

/// Seeded uniform values in [-spread, spread), as a tensor of `dims` quantized to `dtype`.
pub struct Weights {
    seed: u64,
}

impl Weights {
    pub fn new(seed: u64) -> Self {
        Self { seed: seed | 1 }
    }

    pub fn tensor(&mut self, dims: &[usize], dtype: GgmlDType, spread: f32) -> QTensor {
        let n: usize = dims.iter().product();
        let values: Vec<f32> = (0..n)
            .map(|_| {
                self.seed ^= self.seed << 13;
                self.seed ^= self.seed >> 7;
                self.seed ^= self.seed << 17;
                ((self.seed >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0) * spread
            })
            .collect();
        let t = Tensor::from_vec(values, dims, &Device::Cpu).expect("tensor");
        QTensor::quantize(&t, dtype).expect("quantize")
    }

    pub fn ones(&self, n: usize) -> QTensor {
        let t = Tensor::ones(n, DType::F32, &Device::Cpu).expect("ones");
        QTensor::quantize(&t, GgmlDType::F32).expect("f32")
    }
}

/// Writes `name` into a fresh folder under the system's temp dir, with the tiny model's
/// `tokenizer.json` and `tokenizer_config.json` beside it; returns the GGUF's path.
pub fn write_gguf(
    name: &str,
    metadata: &[(&str, Value)],
    tensors: &[(String, QTensor)],
) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("rigger-gguf-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    for file in ["tokenizer.json", "tokenizer_config.json"] {
        std::fs::copy(tiny(file), dir.join(file)).expect("copy the tiny tokenizer");
    }
    let path = dir.join(name);
    let mut out = std::fs::File::create(&path).expect("create the GGUF");
    let metadata: Vec<(&str, &Value)> = metadata.iter().map(|(k, v)| (*k, v)).collect();
    let tensors: Vec<(&str, &QTensor)> = tensors.iter().map(|(k, t)| (k.as_str(), t)).collect();
    gguf_file::write(&mut out, &metadata, &tensors).expect("write the GGUF");
    path
}

/// Removes the folder [`write_gguf`] made for `path`.
pub fn remove(path: &Path) {
    if let Some(dir) = path.parent() {
        let _ = std::fs::remove_dir_all(dir);
    }
}

/// A GGUF's metadata and its tensors, by name.
pub type GgufParts = (Vec<(String, Value)>, Vec<(String, QTensor)>);

/// A GGUF file read whole: its metadata and its tensors as stored, in the shapes
/// [`write_gguf`] takes (a test edits them and writes a variant).
pub fn read_gguf(path: &Path) -> GgufParts {
    let mut file = std::fs::File::open(path).expect("open the GGUF");
    let content = gguf_file::Content::read(&mut file).expect("read the GGUF");
    let tensors = content
        .tensor_infos
        .keys()
        .map(|name| {
            let tensor = content
                .tensor(&mut file, name, &Device::Cpu)
                .expect("read a tensor");
            (name.clone(), tensor)
        })
        .collect();
    (content.metadata.into_iter().collect(), tensors)
}
