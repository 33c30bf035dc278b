//! Rigger's CPU inference engine: GGUF models (Q4_0, Q8_0, Q4_1, Q5_0, Q5_1, Q4_K, Q5_K,
//! Q6_K — so llama.cpp's Q4_K_M and Q5_K_M files — and F16/BF16; architectures llama, qwen2,
//! qwen3, phi3, gemma3) and F16/BF16 safetensors checkpoints (llama, mistral, qwen2, qwen3) run
//! on kernels of our own. candle-core reads the file; the engine repacks the weights so that
//! sixteen rows sit in the sixteen lanes of a SIMD register, quantizes activations to 8 bits as
//! ggml does (per 32 values for Q4_0/Q8_0/Q4_1/Q5_0/Q5_1, per 256 for the K-quants; float
//! weights meet f32 activations), and runs the same order of operations on every instruction set
//! (portable Rust, AVX2, AVX-512 VNNI, picked at run time), so they give the same bits.
//!
//! Invariant: depends on candle-core (GGUF and safetensors reading), half, rayon and libc only — no async
//! runtime, no Rigger port, no tokenizer (`cargo xtask tidy` checks it). Frontends (the Candle
//! adapter, the benches) feed it token ids and map [`Error`] into their own errors.
//!
//! Map: `reader` tensors by GGUF's names, from `gguf` (a file) or `safetensors` (a checkpoint,
//! translated); `quant` weight formats and activation quantization; `packing` the
//! repacked layout; `memory` aligned, huge-page backed storage; `isa` detection;
//! `matmul` dispatch and the portable kernel; `x86` the AVX2 and AVX-512 kernels; `attention`;
//! `math` an `exp` that vectorizes; `pool` the worker threads of the parallel sections;
//! `parallel` buffers and chunks handed to them; [`steps`] where a forward's time goes (on request); `layers` shared by architectures; `models` one file per architecture over a shared
//! decoder; [`DecodeStepper`].
//!
//! ```no_run
//! use rigger_cpu_engine::{DecodeStepper, Isa};
//! # fn demo() -> rigger_cpu_engine::Result<()> {
//! let mut stepper = DecodeStepper::open("model-q4_0.gguf".as_ref(), Isa::detect(), vec![1, 15043])?;
//! let logits = stepper.restart()?;
//! println!("{}: {} logits", stepper.model().describe(), logits.len());
//! # Ok(()) }
//! ```

mod attention;
mod error;
mod gguf;
mod isa;
mod layers;
mod math;
mod matmul;
mod memory;
mod models;
mod packing;
mod parallel;
mod pool;
mod quant;
mod reader;
mod safetensors;
mod stepper;
pub mod steps;
#[cfg(target_arch = "x86_64")]
mod x86;

pub use error::{Error, Result};
pub use isa::Isa;
pub use matmul::matmul;
pub use models::{ARCHITECTURES, Architecture, KvCache, Model, load_gguf, load_safetensors};
pub use packing::QMatrix;
pub use quant::{GgufRows, QActs, WeightFormat};
pub use safetensors::HfConfig;
pub use stepper::DecodeStepper;
