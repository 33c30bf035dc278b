#![allow(clippy::unwrap_used)] // a panic is how a test reports failure

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures::StreamExt;
use rigger_http_support::fixture::{FixtureResponse, FixtureServer};
use rigger_http_support::{
    ErrorResponse, RetryPolicy, kind_for_status, ndjson_lines, send_with_retries, sse_events,
};
use rigger_ports::{ErrorKind, InferenceError};

fn fast_policy(max_retries: u32) -> RetryPolicy {
    RetryPolicy {
        max_retries,
        initial_backoff: Duration::from_millis(10),
        max_backoff: Duration::from_millis(40),
        max_retry_after: Duration::from_secs(2),
    }
}

fn on_error(r: ErrorResponse) -> InferenceError {
    let mut e = InferenceError::new(kind_for_status(r.status), "test", r.body);
    if let Some(after) = r.retry_after {
        e = e.with_retry_after(after);
    }
    e
}

#[tokio::test]
async fn retries_5xx_then_returns_the_success() {
    let calls = Arc::new(AtomicUsize::new(0));
    let seen = Arc::clone(&calls);
    let server = FixtureServer::start(move |_| {
        if seen.fetch_add(1, Ordering::SeqCst) < 2 {
            FixtureResponse::status(500).chunk("boom")
        } else {
            FixtureResponse::ok().chunk("fine")
        }
    })
    .await
    .unwrap();
    let client = reqwest::Client::new();
    let url = server.url();
    let response = send_with_retries("test", &fast_policy(2), || client.get(&url), on_error)
        .await
        .unwrap();
    assert_eq!(response.text().await.unwrap(), "fine");
    assert_eq!(server.requests().len(), 3);
}

#[tokio::test]
async fn gives_up_after_the_last_retry_and_says_how_many_attempts() {
    let server = FixtureServer::start(|_| FixtureResponse::status(502).chunk("bad gateway"))
        .await
        .unwrap();
    let client = reqwest::Client::new();
    let url = server.url();
    let err = send_with_retries("test", &fast_policy(1), || client.get(&url), on_error)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::BackendCrashed);
    assert!(
        err.message().contains("bad gateway (after 2 attempts)"),
        "{err}"
    );
    assert_eq!(server.requests().len(), 2);
}

#[tokio::test]
async fn client_errors_are_not_retried() {
    let server = FixtureServer::start(|_| FixtureResponse::status(400).chunk("no"))
        .await
        .unwrap();
    let client = reqwest::Client::new();
    let url = server.url();
    let err = send_with_retries("test", &fast_policy(3), || client.get(&url), on_error)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidRequest);
    assert_eq!(server.requests().len(), 1);
}

#[tokio::test]
async fn retry_after_is_waited_for() {
    let calls = Arc::new(AtomicUsize::new(0));
    let seen = Arc::clone(&calls);
    let server = FixtureServer::start(move |_| {
        if seen.fetch_add(1, Ordering::SeqCst) == 0 {
            FixtureResponse::status(429)
                .header("retry-after", "1")
                .chunk("slow down")
        } else {
            FixtureResponse::ok()
        }
    })
    .await
    .unwrap();
    let client = reqwest::Client::new();
    let url = server.url();
    let started = Instant::now();
    send_with_retries("test", &fast_policy(1), || client.get(&url), on_error)
        .await
        .unwrap();
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_retry_after_beyond_the_policy_is_returned_not_waited() {
    let server = FixtureServer::start(|_| {
        FixtureResponse::status(429)
            .header("retry-after", "3600")
            .chunk("quota")
    })
    .await
    .unwrap();
    let client = reqwest::Client::new();
    let url = server.url();
    let err = send_with_retries("test", &fast_policy(3), || client.get(&url), on_error)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::RateLimited);
    assert_eq!(err.retry_after(), Some(Duration::from_secs(3600)));
    assert_eq!(server.requests().len(), 1);
}

#[tokio::test]
async fn connection_refused_is_not_available_after_retries() {
    let url = FixtureServer::refused_url().await.unwrap();
    let client = reqwest::Client::new();
    let err = send_with_retries("test", &fast_policy(1), || client.get(&url), on_error)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotAvailable);
    assert!(err.message().contains("cannot connect"), "{err}");
    assert!(err.message().contains("127.0.0.1"), "{err}");
    assert!(err.message().contains("after 2 attempts"), "{err}");
}

#[tokio::test]
async fn ndjson_lines_survive_objects_split_across_writes() {
    let server = FixtureServer::start(|_| {
        FixtureResponse::ok()
            .chunk("{\"a\":")
            .pause(Duration::from_millis(20))
            .chunk("1}\n\n{\"b\"")
            .pause(Duration::from_millis(20))
            .chunk(":2}\n{\"c\":3}")
    })
    .await
    .unwrap();
    let response = reqwest::get(server.url()).await.unwrap();
    let lines: Vec<String> = ndjson_lines("test", response, 1024)
        .map(|l| l.unwrap())
        .collect()
        .await;
    assert_eq!(lines, ["{\"a\":1}", "{\"b\":2}", "{\"c\":3}"]);
}

#[tokio::test]
async fn an_overlong_ndjson_line_is_a_protocol_error() {
    let server = FixtureServer::start(|_| FixtureResponse::ok().chunk(vec![b'x'; 100]))
        .await
        .unwrap();
    let response = reqwest::get(server.url()).await.unwrap();
    let first = ndjson_lines("test", response, 10)
        .next()
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(first.kind(), ErrorKind::Protocol);
}

#[tokio::test]
async fn sse_events_skip_comments_and_keep_names() {
    let server = FixtureServer::start(|_| {
        FixtureResponse::ok()
            .header("content-type", "text/event-stream")
            .chunk(": keepalive\n\n")
            .chunk("event: ping\ndata: {}\n\n")
            .chunk("data: {\"x\":")
            .pause(Duration::from_millis(20))
            .chunk("1}\n\ndata: [DONE]\n\n")
    })
    .await
    .unwrap();
    let response = reqwest::get(server.url()).await.unwrap();
    let events: Vec<(String, String)> =
        sse_events("test", response, rigger_http_support::MAX_SSE_EVENT)
            .map(|e| e.map(|e| (e.event, e.data)).unwrap())
            .collect()
            .await;
    assert_eq!(
        events,
        [
            ("ping".to_owned(), "{}".to_owned()),
            (String::new(), "{\"x\":1}".to_owned()),
            (String::new(), "[DONE]".to_owned()),
        ]
    );
}

#[tokio::test]
async fn a_dropped_body_is_seen_as_abandoned_by_the_server() {
    let mut reply = FixtureResponse::ok();
    for i in 0..200 {
        reply = reply
            .chunk(format!("{{\"i\":{i}}}\n"))
            .pause(Duration::from_millis(10));
    }
    let server = FixtureServer::start(move |_| reply.clone()).await.unwrap();
    let response = reqwest::get(server.url()).await.unwrap();
    let mut lines = ndjson_lines("test", response, 1024);
    lines.next().await.unwrap().unwrap();
    drop(lines);
    let deadline = Instant::now() + Duration::from_secs(5);
    while server.bodies_abandoned() == 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(server.bodies_abandoned(), 1);
    assert_eq!(server.bodies_completed(), 0);
}

#[tokio::test]
async fn the_server_records_what_was_sent() {
    let server = FixtureServer::start(|_| FixtureResponse::ok())
        .await
        .unwrap();
    reqwest::Client::new()
        .post(format!("{}/api/chat?x=1", server.url()))
        .header("X-Api-Key", "k")
        .json(&serde_json::json!({"model": "m"}))
        .send()
        .await
        .unwrap();
    let requests = server.requests();
    assert_eq!(requests[0].method, "POST");
    assert_eq!(requests[0].path, "/api/chat?x=1");
    assert_eq!(requests[0].header("x-api-key"), Some("k"));
    assert_eq!(requests[0].json()["model"], "m");
    assert_eq!(server.bodies_completed(), 1);
}

/// A multi-MiB event line without a newline is refused with a typed error as soon as it passes
/// the limit, not buffered whole (nor parsed again per chunk).
#[tokio::test]
async fn an_endless_sse_line_is_a_protocol_error() {
    let server = FixtureServer::start(|_| {
        let mut reply = FixtureResponse::ok()
            .header("content-type", "text/event-stream")
            .chunk("data: ");
        let piece = "a".repeat(64 * 1024);
        for _ in 0..64 {
            reply = reply.chunk(piece.clone()); // 4 MiB, no newline
        }
        reply
    })
    .await
    .unwrap();
    let response = reqwest::get(server.url()).await.unwrap();
    let results: Vec<_> = sse_events("test", response, 1 << 20).collect().await;
    let [Err(err)] = results.as_slice() else {
        panic!("one error and nothing else: {results:?}");
    };
    assert_eq!(err.kind(), ErrorKind::Protocol, "{err}");
    assert!(err.to_string().contains("1048576 bytes"), "{err}");
}

/// Everything a tracing subscriber writes, for the logging test.
#[derive(Clone, Default)]
struct Captured(Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Captured {
    type Writer = Captured;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

/// `RUST_LOG=debug` shows each attempt (method, URL, status, time) and trace shows the bodies,
/// while the key, sent both as a header and in the query, appears nowhere at any level.
#[tokio::test]
async fn traffic_is_logged_at_debug_and_trace_without_the_key() {
    const KEY: &str = "sk-live-0123456789SECRET";
    let calls = Arc::new(AtomicUsize::new(0));
    let seen = Arc::clone(&calls);
    let server = FixtureServer::start(move |_| {
        if seen.fetch_add(1, Ordering::SeqCst) == 0 {
            FixtureResponse::status(503).chunk("overloaded, try again")
        } else {
            FixtureResponse::ok().chunk("fine")
        }
    })
    .await
    .unwrap();
    let captured = Captured::default();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(captured.clone())
        .finish();
    let guard = tracing::subscriber::set_default(subscriber);
    let client = reqwest::Client::new();
    let url = format!("{}/v1/chat?api_key={KEY}&model=m", server.url());
    let response = send_with_retries(
        "test",
        &fast_policy(1),
        || {
            client
                .post(&url)
                .bearer_auth(KEY)
                .header("x-api-key", KEY)
                .body(r#"{"prompt":"hello there"}"#)
        },
        on_error,
    )
    .await
    .unwrap();
    assert_eq!(response.status(), 200);
    drop(guard);
    let logs = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    for expected in [
        "http request",
        "method=POST",
        "/v1/chat?api_key=%3Credacted%3E&model=m",
        "attempt=2",
        "status=503",
        "status=200",
        "elapsed_ms=",
        "hello there",
        "overloaded, try again",
    ] {
        assert!(
            logs.contains(expected),
            "{expected:?} missing from:\n{logs}"
        );
    }
    assert!(!logs.contains(KEY), "the key leaked into the logs:\n{logs}");
    assert!(!logs.contains("0123456789SECRET"));
    // The key did travel: the server got it.
    assert_eq!(
        server.requests()[0].header("x-api-key"),
        Some(KEY),
        "the request carried the key"
    );
}
