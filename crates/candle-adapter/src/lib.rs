//! Candle backend: in-process, pure-Rust inference (GGUF and safetensors Llama-family models)
//! implementing the model port.
//!
//! Status: not built yet (issue "candle-adapter"). It exposes nothing until the adapter lands.
//! Invariant: depends on `rigger-ports` only; candle types never cross the port.
