//! Servers that hold a request without finishing it: keep-alives forever, a valid answer that
//! never ends, a stream trickled two bytes at a time. Each ends in a Timeout naming the setting
//! to raise, under short configured limits (the outer timeout only turns a hang into a failure).
#![allow(clippy::unwrap_used)] // a panic is how a test reports failure

mod support;

use std::time::Duration;

use rigger_http_support::fixture::{FixtureResponse, FixtureServer};
use rigger_openai_adapter::{
    DEADLINE_VAR, IDLE_TIMEOUT_VAR, OpenAiAdapter, OpenAiConfig, ServerKind,
};
use rigger_ports::{ErrorKind, GenerationRequest, InferenceError, LanguageModel};
use support::{delta, event, serve};

fn adapter(server: &FixtureServer, idle: Duration, deadline: Duration) -> OpenAiAdapter {
    OpenAiAdapter::new(OpenAiConfig {
        server: Some(ServerKind::Vllm),
        context_length: Some(4096),
        idle_timeout: idle,
        deadline,
        ..OpenAiConfig::new(format!("{}/v1", server.url()), "test-model")
    })
    .unwrap()
}

async fn generate_error(model: &OpenAiAdapter) -> InferenceError {
    let request = GenerationRequest::prompt("hi").with_max_tokens(8);
    tokio::time::timeout(Duration::from_secs(20), model.generate(request))
        .await
        .expect("the adapter gave up by itself, well before the test's own limit")
        .unwrap_err()
}

fn event_stream() -> FixtureResponse {
    FixtureResponse::ok().header("content-type", "text/event-stream")
}

#[tokio::test]
async fn keep_alives_forever_are_a_stall_not_progress() {
    // A comment and an empty chunk every 20 ms: events, but never any text.
    let keep_alive = format!(": ping\n\n{}", event(&delta("")));
    let server = serve(move |_| {
        event_stream()
            .chunk(event(&delta("first")))
            .forever(keep_alive.clone(), Duration::from_millis(20))
    })
    .await;
    let err = generate_error(&adapter(
        &server,
        Duration::from_millis(300),
        Duration::from_secs(60),
    ))
    .await;
    assert_eq!(err.kind(), ErrorKind::Timeout, "{err}");
    assert!(err.to_string().contains(IDLE_TIMEOUT_VAR), "{err}");
}

#[tokio::test]
async fn an_answer_that_never_ends_hits_the_total_deadline() {
    let server =
        serve(|_| event_stream().forever(event(&delta("x")), Duration::from_millis(10))).await;
    let err = generate_error(&adapter(
        &server,
        Duration::from_secs(5),
        Duration::from_millis(400),
    ))
    .await;
    assert_eq!(err.kind(), ErrorKind::Timeout, "{err}");
    assert!(err.to_string().contains(DEADLINE_VAR), "{err}");
}

#[tokio::test]
async fn a_two_byte_trickle_hits_the_total_deadline() {
    let server = serve(|_| {
        let body = event(&delta("slow")).repeat(100);
        let mut response = event_stream();
        for piece in body.as_bytes().chunks(2) {
            response = response
                .chunk(piece.to_vec())
                .pause(Duration::from_millis(1));
        }
        response
    })
    .await;
    let err = generate_error(&adapter(
        &server,
        Duration::from_secs(5),
        Duration::from_millis(400),
    ))
    .await;
    assert_eq!(err.kind(), ErrorKind::Timeout, "{err}");
    assert!(err.to_string().contains(DEADLINE_VAR), "{err}");
}

/// A server that streams text far past the request's budget is stopped, not read whole: the
/// error is typed and the connection is closed.
#[tokio::test]
async fn an_answer_far_past_its_budget_is_cut_off() {
    let big = "many words ".repeat(400);
    let server = serve(move |_| event_stream().forever(event(&delta(&big)), Duration::ZERO)).await;
    let model = adapter(&server, Duration::from_secs(5), Duration::from_secs(5));
    let request = GenerationRequest::prompt("hi").with_max_tokens(16);
    let err = tokio::time::timeout(Duration::from_secs(20), model.generate(request))
        .await
        .expect("the adapter gave up by itself")
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Protocol, "{err}");
    assert!(err.to_string().contains("16 tokens"), "{err}");
    for _ in 0..100 {
        if server.bodies_abandoned() == 1 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the body was not abandoned");
}

/// An event line of several MiB without a newline is refused with a typed error.
#[tokio::test]
async fn a_multi_mib_event_line_is_a_protocol_error() {
    let server = serve(|_| {
        let piece = "a".repeat(64 * 1024);
        let mut response = event_stream().chunk("data: {\"choices\": [\"");
        for _ in 0..64 {
            response = response.chunk(piece.clone());
        }
        response.hang()
    })
    .await;
    let err = generate_error(&adapter(
        &server,
        Duration::from_secs(5),
        Duration::from_secs(10),
    ))
    .await;
    assert_eq!(err.kind(), ErrorKind::Protocol, "{err}");
    assert!(err.to_string().contains("exceeds"), "{err}");
}
