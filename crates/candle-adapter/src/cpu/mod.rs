//! The adapter's own CPU engine for quantized Llama-family GGUF models: candle reads the file,
//! these kernels run the arithmetic. Models or devices it does not cover run on candle's
//! `quantized_llama`, which also serves as the reference the tests compare tokens against.

mod kernels;
mod model;

pub use kernels::Isa;
pub use model::{KvCache, Llama, NotCovered};
