//! HTTP plumbing shared by Rigger's HTTP adapters (Ollama, OpenAI-compatible, Anthropic).
//!
//! Adapters never import each other; what they share lives here, and only transport concerns
//! live here: sending with retries before the first byte of a body ([`send_with_retries`]),
//! mapping transport failures onto the port's [`ErrorKind`](rigger_ports::ErrorKind)s
//! ([`transport_error`]), framing response bodies as NDJSON lines ([`ndjson_lines`]) or SSE
//! events ([`sse_events`]), deadlines that keep-alives cannot push back ([`Watchdog`]), and API
//! keys that never print ([`ApiKey`]). Wire types (JSON bodies)
//! stay in each adapter.
//!
//! With the `fixture` feature, [`fixture::FixtureServer`] serves scripted responses on
//! 127.0.0.1 for adapter tests and records what the client sent, and
//! [`fixture::hub::HubFixture`] stands in for the Hugging Face hub (model downloads).

mod framing;
mod progress;
mod retry;
mod secret;
mod send;
mod sse;

#[cfg(feature = "fixture")]
pub mod fixture;

#[doc(hidden)]
pub use framing::frame_sse_for_bench;
pub use framing::{MAX_SSE_EVENT, ndjson_lines, sse_events, sse_events_from};
pub use progress::{Limits, Watchdog, seconds_setting};
pub use retry::{RetryPolicy, parse_retry_after};
pub use secret::ApiKey;
pub use send::{ErrorResponse, kind_for_status, redacted_url, send_with_retries, transport_error};
pub use sse::SseEvent;

/// `name` made fit for the APIs' identifier rule `^[a-zA-Z0-9_-]{1,64}$` (OpenAI schema names,
/// Anthropic tool names): other characters become `_`, at most 64 are kept, and an empty result
/// becomes `fallback`.
pub fn api_identifier(name: &str, fallback: &str) -> String {
    let cleaned: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .take(64)
        .collect();
    if cleaned.is_empty() {
        fallback.to_owned()
    } else {
        cleaned
    }
}

/// The largest error body read into memory; longer bodies are cut (the status still tells).
pub const MAX_ERROR_BODY: usize = 64 * 1024;

#[cfg(test)]
mod tests {
    #[test]
    fn identifiers_follow_the_api_rule() {
        assert_eq!(super::api_identifier("task plan/v2", "x"), "task_plan_v2");
        assert_eq!(super::api_identifier("", "reply"), "reply");
        assert_eq!(super::api_identifier(&"a".repeat(80), "x").len(), 64);
    }
}
