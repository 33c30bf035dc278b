//! Servers that hold a generation without finishing it: lines without text forever, a valid
//! answer that never ends, a stream trickled two bytes at a time. Each ends in a Timeout naming
//! the setting to raise, under short configured limits (the outer timeout only turns a hang
//! into a failure).
#![allow(clippy::unwrap_used)] // a panic is how a test reports failure

mod support;

use std::time::Duration;

use rigger_http_support::fixture::{FixtureResponse, FixtureServer};
use rigger_ollama_adapter::{DEADLINE_VAR, IDLE_TIMEOUT_VAR, OllamaAdapter};
use rigger_ports::{ErrorKind, GenerationRequest, InferenceError, LanguageModel};
use serde_json::json;
use support::{MODEL, config, show_body};

async fn server(chat: impl Fn() -> FixtureResponse + Send + Sync + 'static) -> FixtureServer {
    FixtureServer::start(move |r| match r.path.as_str() {
        "/api/show" => FixtureResponse::ok().json(&show_body(4096)),
        "/api/chat" => chat(),
        _ => FixtureResponse::status(404).chunk("404 page not found"),
    })
    .await
    .unwrap()
}

fn line(text: &str) -> String {
    json!({"model": MODEL, "created_at": "2023-08-04T08:52:19.385406455-07:00",
           "message": {"role": "assistant", "content": text}, "done": false})
    .to_string()
        + "\n"
}

fn ndjson() -> FixtureResponse {
    FixtureResponse::ok().header("content-type", "application/x-ndjson")
}

async fn generate_error(
    server: &FixtureServer,
    idle: Duration,
    deadline: Duration,
) -> InferenceError {
    let mut cfg = config(&server.url(), MODEL);
    cfg.idle_timeout = idle;
    cfg.deadline = deadline;
    let model = OllamaAdapter::new(cfg).unwrap();
    let request = GenerationRequest::prompt("hi").with_max_tokens(8);
    tokio::time::timeout(Duration::from_secs(20), model.generate(request))
        .await
        .expect("the adapter gave up by itself, well before the test's own limit")
        .unwrap_err()
}

#[tokio::test]
async fn lines_without_text_forever_are_a_stall_not_progress() {
    let server = server(|| {
        ndjson()
            .chunk(line("first"))
            .forever(format!("\n{}", line("")), Duration::from_millis(20))
    })
    .await;
    let err = generate_error(&server, Duration::from_millis(300), Duration::from_secs(60)).await;
    assert_eq!(err.kind(), ErrorKind::Timeout, "{err}");
    assert!(err.to_string().contains(IDLE_TIMEOUT_VAR), "{err}");
}

#[tokio::test]
async fn an_answer_that_never_ends_hits_the_total_deadline() {
    let server = server(|| ndjson().forever(line("x"), Duration::from_millis(10))).await;
    let err = generate_error(&server, Duration::from_secs(5), Duration::from_millis(400)).await;
    assert_eq!(err.kind(), ErrorKind::Timeout, "{err}");
    assert!(err.to_string().contains(DEADLINE_VAR), "{err}");
}

#[tokio::test]
async fn a_two_byte_trickle_hits_the_total_deadline() {
    let server = server(|| {
        let body = line("slow").repeat(100);
        let mut response = ndjson();
        for piece in body.as_bytes().chunks(2) {
            response = response
                .chunk(piece.to_vec())
                .pause(Duration::from_millis(1));
        }
        response
    })
    .await;
    let err = generate_error(&server, Duration::from_secs(5), Duration::from_millis(400)).await;
    assert_eq!(err.kind(), ErrorKind::Timeout, "{err}");
    assert!(err.to_string().contains(DEADLINE_VAR), "{err}");
}

/// A server that streams text far past the request's budget is stopped, not read whole.
#[tokio::test]
async fn an_answer_far_past_its_budget_is_cut_off() {
    let big = "many words ".repeat(400);
    let server = server(move || ndjson().forever(line(&big), Duration::ZERO)).await;
    let err = generate_error(&server, Duration::from_secs(5), Duration::from_secs(5)).await;
    assert_eq!(err.kind(), ErrorKind::Protocol, "{err}");
    assert!(err.to_string().contains("8 tokens"), "{err}");
}
