//! One file per model architecture; this file picks one by the GGUF's `general.architecture`.

mod llama;

use std::fs::File;
use std::path::Path;

use candle_core::quantized::gguf_file;

pub use llama::{KvCache, Llama};

use crate::error::{Error, Result};
use crate::isa::Isa;

/// The GGUF architectures the engine runs (`general.architecture`).
pub const ARCHITECTURES: [&str; 1] = ["llama"];

/// Reads the GGUF model at `path` for the kernels of `isa`; [`Error::NotCovered`] where the
/// engine does not run its architecture, weight formats or layers.
pub fn load_gguf(path: &Path, isa: Isa) -> Result<Llama> {
    let mut file = File::open(path)?;
    let content = gguf_file::Content::read(&mut file)?;
    let arch = content
        .metadata
        .get("general.architecture")
        .and_then(|v| v.to_string().ok())
        .map_or("", String::as_str);
    if !ARCHITECTURES.contains(&arch) {
        return Err(Error::NotCovered(format!("GGUF architecture {arch:?}")));
    }
    Llama::from_gguf(&content, &mut file, isa)
}
