//! Writing small GGUF files in a test (seeded random tensors with the tiny model's tokenizer
//! beside them): the helpers live in `rigger-model-gen`, shared with the CPU engine's tests.

#![allow(unused_imports)] // each test binary uses part of them

pub use rigger_model_gen::scratch::{Weights, remove, tiny, write_gguf};
