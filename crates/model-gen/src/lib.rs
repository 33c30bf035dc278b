//! Synthetic models of real architectures: seeded random weights in the shape of a real Llama
//! model, written as a Hugging Face folder (config, safetensors, tokenizer, chat template) and as
//! GGUF files (f16, q8_0, q4_0) of the *same* weights, with the tokenizer embedded.
//!
//! Why: no weights can be downloaded on our machines, yet every local backend must be tested and
//! benchmarked on a real model file. Speed does not depend on weight values, so a real shape
//! with random weights is an honest benchmark subject, and a tiny one is enough for tests.
//!
//! Properties (each tested): deterministic (same shape + seed = byte-identical files); the output
//! rows of special and non-printable byte tokens are zero, so greedy generation never ends early
//! and always decodes to printable text; GGUF q/k weights carry llama.cpp's rope permutation, so
//! safetensors and GGUF f16 give the same greedy tokens.

mod fixture;
mod generate;
mod mlx_server;
pub mod scratch;
mod shapes;
mod tokenizer;

pub use fixture::{
    DECLARED_SKIPS, declare_skip, llama_vocab_dir, mlx_python, smollm2, test_models_dir,
    tiny_k_quant_model, tiny_model,
};
pub use generate::{Format, GenEvent, GenOptions, Manifest, ManifestFile, generate, use_more_bits};
pub use mlx_server::MlxServer;
pub use shapes::{Family, SHAPES, Shape, shape, tiny as tiny_shape};
pub use tokenizer::CHAT_TEMPLATE;

/// The byte-level BPE tokenizer of `vocab_size` tokens the generated models carry (for benches
/// that need a vocabulary of a real model's size without its weights).
pub fn synthetic_tokenizer(vocab_size: usize) -> Result<tokenizers::Tokenizer, GenError> {
    tokenizer::build(&tokenizer::vocabulary(vocab_size))
}

/// Why generation failed; each message says what to do.
#[derive(Debug, thiserror::Error)]
pub enum GenError {
    #[error("unknown shape {name:?}; known shapes: {known}")]
    UnknownShape { name: String, known: String },
    #[error(
        "unknown format {name:?}; known formats: safetensors, gguf-f16, gguf-q8_0, gguf-q4_0, gguf-q4_k_m, gguf-q5_k_m, gguf-q6_k, gguf-q4_1"
    )]
    UnknownFormat { name: String },
    #[error(
        "{format} needs some rows of a multiple of 256 values (K-quant super-blocks; the others fall back as llama.cpp's do); the {shape} shape has none (its narrowest rows are {row} wide): use gguf-q4_0, gguf-q4_1 or gguf-q8_0"
    )]
    FormatDoesNotFit {
        format: String,
        shape: String,
        row: usize,
    },
    #[error("unknown safetensors dtype {name:?}; use f16, bf16 or f32")]
    UnknownDtype { name: String },
    #[error("{path} already exists and is not empty; pass --force to overwrite it")]
    Exists { path: String },
    #[error("cannot write {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("building the tokenizer failed: {0}")]
    Tokenizer(String),
    #[error("tensor work failed: {0}")]
    Tensor(#[from] candle_core::Error),
    #[error("writing JSON failed: {0}")]
    Json(#[from] serde_json::Error),
}

impl GenError {
    pub(crate) fn io(path: &std::path::Path, source: std::io::Error) -> Self {
        GenError::Io {
            path: path.display().to_string(),
            source,
        }
    }
}
