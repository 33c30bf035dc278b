//! Anthropic backend: the Messages API (`/v1/messages`, SSE events) implementing the model port.
//!
//! Status: not built yet (issue "openai-adapter and anthropic-adapter"). It exposes nothing yet.
//! Invariant: depends on `rigger-ports` only; wire types stay in this crate.
