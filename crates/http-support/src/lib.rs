//! HTTP plumbing shared by Rigger's HTTP adapters (Ollama, OpenAI-compatible, Anthropic).
//!
//! Adapters never import each other; what they share lives here, and only transport concerns
//! live here: sending with retries before the first byte of a body ([`send_with_retries`]),
//! mapping transport failures onto the port's [`ErrorKind`](rigger_ports::ErrorKind)s
//! ([`transport_error`]), framing response bodies as NDJSON lines ([`ndjson_lines`]) or SSE
//! events ([`sse_events`]), and API keys that never print ([`ApiKey`]). Wire types (JSON bodies)
//! stay in each adapter.
//!
//! With the `fixture` feature, [`fixture::FixtureServer`] serves scripted responses on
//! 127.0.0.1 for adapter tests and records what the client sent.

mod framing;
mod retry;
mod secret;
mod send;

#[cfg(feature = "fixture")]
pub mod fixture;

pub use framing::{SseEvent, ndjson_lines, sse_events};
pub use retry::{RetryPolicy, parse_retry_after};
pub use secret::ApiKey;
pub use send::{ErrorResponse, kind_for_status, send_with_retries, transport_error};

/// The largest error body read into memory; longer bodies are cut (the status still tells).
pub const MAX_ERROR_BODY: usize = 64 * 1024;
