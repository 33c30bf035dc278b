//! One file per model architecture, the decoder they share in `decoder`; [`load_gguf`] picks one
//! by the GGUF's `general.architecture`, [`load_safetensors`] by `config.json`'s `model_type`.

mod decoder;
mod gemma3;
mod llama;
mod phi3;
mod qwen2;
mod qwen3;

use std::fs::File;
use std::path::{Path, PathBuf};

use candle_core::quantized::gguf_file;

pub use decoder::{Architecture, KvCache, Model};

use crate::error::Result;
use crate::isa::Isa;
use crate::safetensors::HfConfig;

/// The GGUF architectures (`general.architecture`) the engine runs.
pub const ARCHITECTURES: [&str; 5] = [
    Architecture::Llama.name(),
    Architecture::Qwen2.name(),
    Architecture::Qwen3.name(),
    Architecture::Phi3.name(),
    Architecture::Gemma3.name(),
];

/// Reads the GGUF model at `path` for the kernels of `isa`; [`crate::Error::NotCovered`] where
/// the engine does not run its architecture, weight formats or layers.
pub fn load_gguf(path: &Path, isa: Isa) -> Result<Model> {
    let mut file = File::open(path)?;
    let content = gguf_file::Content::read(&mut file)?;
    Model::from_gguf(&content, &mut file, isa)
}

/// Reads a Hugging Face safetensors checkpoint (`files`, shards too; `config` from its
/// `config.json`) for the kernels of `isa`; [`crate::Error::NotCovered`] where the engine does not
/// run its architecture or weight types (F16 and BF16 matrices run).
pub fn load_safetensors(files: &[PathBuf], config: &HfConfig, isa: Isa) -> Result<Model> {
    Model::from_safetensors(files, config, isa)
}
