//! OpenAI-compatible backend: `/v1/chat/completions` with SSE streaming, for OpenAI, vLLM,
//! llama.cpp's `llama-server` and `mlx_lm.server`. This is Rigger's scale-out path.
//!
//! Status: not built yet (issue "openai-adapter and anthropic-adapter"). It exposes nothing yet.
//! Invariant: depends on `rigger-ports` only; wire types stay in this crate.
