//! Servers that hold a request without finishing it: `ping`s forever, a valid answer that never
//! ends, a stream trickled two bytes at a time, a model lookup that never answers. Each ends in
//! a Timeout naming the setting to raise, under short configured limits (the outer timeout only
//! turns a hang into a failure).
#![allow(clippy::unwrap_used)] // a panic is how a test reports failure

mod support;

use std::time::Duration;

use rigger_anthropic_adapter::{
    AnthropicAdapter, AnthropicConfig, DEADLINE_VAR, FIRST_TOKEN_TIMEOUT_VAR, IDLE_TIMEOUT_VAR,
};
use rigger_http_support::ApiKey;
use rigger_http_support::fixture::{FixtureResponse, FixtureServer};
use rigger_ports::{ErrorKind, GenerationRequest, InferenceError, LanguageModel};
use serde_json::json;

fn start_and_text(text: &str) -> String {
    let start = json!({"type": "message_start", "message": {"id": "msg_1", "type": "message",
        "role": "assistant", "content": [], "model": support::MODEL, "stop_reason": null,
        "stop_sequence": null, "usage": {"input_tokens": 12, "output_tokens": 1}}});
    let block = json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}});
    support::sse(&start) + &support::sse(&block) + &text_delta(text)
}

fn text_delta(text: &str) -> String {
    support::sse(&json!({"type": "content_block_delta", "index": 0,
        "delta": {"type": "text_delta", "text": text}}))
}

fn event_stream() -> FixtureResponse {
    FixtureResponse::ok().header("content-type", "text/event-stream")
}

/// No model lookup (404), so that only the messages endpoint matters.
async fn server(messages: impl Fn() -> FixtureResponse + Send + Sync + 'static) -> FixtureServer {
    FixtureServer::start(move |r| {
        if r.path.starts_with("/v1/models/") {
            FixtureResponse::status(404).chunk("not found")
        } else {
            messages()
        }
    })
    .await
    .unwrap()
}

fn config(server: &FixtureServer) -> AnthropicConfig {
    AnthropicConfig {
        base_url: server.url(),
        api_key: ApiKey::new(support::KEY),
        ..AnthropicConfig::new(support::MODEL)
    }
}

async fn generate_error(config: AnthropicConfig) -> InferenceError {
    let model = AnthropicAdapter::new(config).unwrap();
    let request = GenerationRequest::prompt("hi").with_max_tokens(8);
    tokio::time::timeout(Duration::from_secs(20), model.generate(request))
        .await
        .expect("the adapter gave up by itself, well before the test's own limit")
        .unwrap_err()
}

#[tokio::test]
async fn pings_forever_are_a_stall_not_progress() {
    let ping = support::sse(&json!({"type": "ping"}));
    let server = server(move || {
        event_stream()
            .chunk(start_and_text("first"))
            .forever(ping.clone(), Duration::from_millis(20))
    })
    .await;
    let err = generate_error(AnthropicConfig {
        idle_timeout: Duration::from_millis(300),
        ..config(&server)
    })
    .await;
    assert_eq!(err.kind(), ErrorKind::Timeout, "{err}");
    assert!(err.to_string().contains(IDLE_TIMEOUT_VAR), "{err}");
}

#[tokio::test]
async fn an_answer_that_never_ends_hits_the_total_deadline() {
    let server = server(|| {
        event_stream()
            .chunk(start_and_text("first"))
            .forever(text_delta("x"), Duration::from_millis(10))
    })
    .await;
    let err = generate_error(AnthropicConfig {
        idle_timeout: Duration::from_secs(5),
        deadline: Duration::from_millis(400),
        ..config(&server)
    })
    .await;
    assert_eq!(err.kind(), ErrorKind::Timeout, "{err}");
    assert!(err.to_string().contains(DEADLINE_VAR), "{err}");
}

#[tokio::test]
async fn a_two_byte_trickle_hits_the_total_deadline() {
    let server = server(|| {
        let body = start_and_text("first") + &text_delta("slow").repeat(100);
        let mut response = event_stream();
        for piece in body.as_bytes().chunks(2) {
            response = response
                .chunk(piece.to_vec())
                .pause(Duration::from_millis(1));
        }
        response
    })
    .await;
    let err = generate_error(AnthropicConfig {
        idle_timeout: Duration::from_secs(5),
        first_token_timeout: Duration::from_secs(5),
        deadline: Duration::from_millis(400),
        ..config(&server)
    })
    .await;
    assert_eq!(err.kind(), ErrorKind::Timeout, "{err}");
    assert!(err.to_string().contains(DEADLINE_VAR), "{err}");
}

/// The model lookup (`GET /v1/models/{id}`) comes before the first request; a server that
/// accepts it and never answers must not hang the request.
#[tokio::test]
async fn a_stalled_model_lookup_times_out() {
    let server = FixtureServer::start(|r| {
        if r.path.starts_with("/v1/models/") {
            FixtureResponse::ok()
                .header("content-type", "application/json")
                .hang()
        } else {
            event_stream().chunk(start_and_text("never asked"))
        }
    })
    .await
    .unwrap();
    let err = generate_error(AnthropicConfig {
        first_token_timeout: Duration::from_millis(300),
        ..config(&server)
    })
    .await;
    assert_eq!(err.kind(), ErrorKind::Timeout, "{err}");
    assert!(err.to_string().contains(FIRST_TOKEN_TIMEOUT_VAR), "{err}");
    assert!(
        server
            .requests()
            .iter()
            .all(|r| r.path.starts_with("/v1/models/")),
        "no message was sent before the lookup answered"
    );
}

/// A server that streams text far past the request's budget is stopped, not read whole.
#[tokio::test]
async fn an_answer_far_past_its_budget_is_cut_off() {
    let big = "many words ".repeat(400);
    let server = server(move || {
        event_stream()
            .chunk(start_and_text("first"))
            .forever(text_delta(&big), Duration::ZERO)
    })
    .await;
    let err = generate_error(AnthropicConfig {
        deadline: Duration::from_secs(5),
        ..config(&server)
    })
    .await;
    assert_eq!(err.kind(), ErrorKind::Protocol, "{err}");
    assert!(err.to_string().contains("8 tokens"), "{err}");
}
