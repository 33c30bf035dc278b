#![allow(clippy::unwrap_used)] // a panic is how a test reports failure

//! The adapter against scripted servers on 127.0.0.1: what it sends, and what it makes of each
//! documented response shape (and of the ways a stream or a server can go wrong).

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures::StreamExt;
use rigger_anthropic_adapter::{
    AnthropicAdapter, AnthropicConfig, DEFAULT_BASE_URL, DEFAULT_MODEL, codes, list_models, probe,
};
use rigger_http_support::fixture::{FixtureResponse, FixtureServer, RecordedRequest};
use rigger_http_support::{ApiKey, RetryPolicy};
use rigger_ports::{
    ChatMessage, ErrorKind, FinishReason, GenerationRequest, LanguageModel, ResponseFormat,
    StreamEvent,
};
use serde_json::{Value, json};

fn config(url: &str) -> AnthropicConfig {
    AnthropicConfig {
        base_url: url.to_owned(),
        api_key: ApiKey::new(support::KEY),
        retry: RetryPolicy {
            max_retries: 2,
            initial_backoff: Duration::from_millis(10),
            max_backoff: Duration::from_millis(40),
            max_retry_after: Duration::from_secs(5),
        },
        ..AnthropicConfig::new(support::MODEL)
    }
}

fn events(list: &[Value]) -> FixtureResponse {
    list.iter().fold(
        FixtureResponse::ok().header("content-type", "text/event-stream"),
        |r, e| r.chunk(support::sse(e)),
    )
}

fn start_event() -> Value {
    json!({"type": "message_start", "message": {"id": "msg_1", "type": "message", "role": "assistant",
        "content": [], "model": support::MODEL, "stop_reason": null, "stop_sequence": null,
        "usage": {"input_tokens": 12, "output_tokens": 1}}})
}

fn text_delta(text: &str) -> Value {
    json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": text}})
}

/// A whole successful text reply.
fn reply(texts: &[&str], stop_reason: &str) -> FixtureResponse {
    let mut list = vec![
        start_event(),
        json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
    ];
    list.extend(texts.iter().map(|t| text_delta(t)));
    list.push(json!({"type": "content_block_stop", "index": 0}));
    list.push(json!({"type": "message_delta", "delta": {"stop_reason": stop_reason, "stop_sequence": null},
        "usage": {"output_tokens": texts.len()}}));
    list.push(json!({"type": "message_stop"}));
    events(&list)
}

/// A server whose model lookup succeeds and whose `/v1/messages` answers with `messages`, given
/// the number of earlier message requests.
async fn scripted(
    messages: impl Fn(&RecordedRequest, usize) -> FixtureResponse + Send + Sync + 'static,
) -> FixtureServer {
    let calls = AtomicUsize::new(0);
    FixtureServer::start(move |r| {
        if r.path.starts_with("/v1/models/") {
            FixtureResponse::ok().json(&json!({"type": "model", "id": support::MODEL,
                "display_name": "Claude Fixture", "created_at": "2025-01-01T00:00:00Z",
                "max_input_tokens": support::CONTEXT, "max_tokens": support::MAX_OUTPUT}))
        } else {
            messages(r, calls.fetch_add(1, Ordering::SeqCst))
        }
    })
    .await
    .unwrap()
}

fn message_requests(server: &FixtureServer) -> Vec<RecordedRequest> {
    server
        .requests()
        .into_iter()
        .filter(|r| r.path == "/v1/messages")
        .collect()
}

#[tokio::test]
async fn sends_the_documented_headers_and_body() {
    let server = support::start().await;
    let model = AnthropicAdapter::new(config(&server.url())).unwrap();
    let request = GenerationRequest::new(vec![
        ChatMessage::system("Be brief."),
        ChatMessage::user("Name a colour."),
        ChatMessage::user("Just one word."),
    ])
    .with_max_tokens(6)
    .with_temperature(0.0)
    .with_top_k(5)
    .with_stop("zzz");
    let g = model.generate(request).await.unwrap();
    assert!(!g.text.is_empty());

    let sent = server.requests();
    assert_eq!(sent[0].method, "GET");
    assert_eq!(sent[0].path, format!("/v1/models/{}", support::MODEL));
    let post = &sent[1];
    assert_eq!(
        (post.method.as_str(), post.path.as_str()),
        ("POST", "/v1/messages")
    );
    assert_eq!(post.header("x-api-key"), Some(support::KEY));
    assert_eq!(post.header("anthropic-version"), Some("2023-06-01"));
    assert_eq!(post.header("content-type"), Some("application/json"));
    assert_eq!(post.header("accept"), Some("text/event-stream"));
    assert_eq!(
        post.json(),
        json!({
            "model": support::MODEL,
            "max_tokens": 6,
            "system": "Be brief.",
            "messages": [{"role": "user", "content": [
                {"type": "text", "text": "Name a colour."},
                {"type": "text", "text": "Just one word."}]}],
            "temperature": 0.0,
            "top_k": 5,
            "stop_sequences": ["zzz"],
            "stream": true
        })
    );
    assert_eq!(
        g.completion.usage.completion_tokens,
        g.completion.timings.generated_tokens
    );
}

#[tokio::test]
async fn http_error_shapes_map_to_the_ports_kinds() {
    let cases: &[(u16, &str, ErrorKind, bool, Option<&str>)] = &[
        (
            400,
            "invalid_request_error",
            ErrorKind::InvalidRequest,
            false,
            None,
        ),
        (
            401,
            "authentication_error",
            ErrorKind::Unauthorized,
            false,
            Some(codes::ANTHROPIC_UNAUTHORIZED),
        ),
        (
            402,
            "billing_error",
            ErrorKind::Unauthorized,
            false,
            Some(codes::ANTHROPIC_UNAUTHORIZED),
        ),
        (
            403,
            "permission_error",
            ErrorKind::Unauthorized,
            false,
            Some(codes::ANTHROPIC_UNAUTHORIZED),
        ),
        (
            404,
            "not_found_error",
            ErrorKind::ModelNotFound,
            false,
            None,
        ),
        (
            413,
            "request_too_large",
            ErrorKind::ContextLengthExceeded,
            false,
            None,
        ),
        (429, "rate_limit_error", ErrorKind::RateLimited, true, None),
        (500, "api_error", ErrorKind::BackendCrashed, true, None),
        (504, "timeout_error", ErrorKind::Timeout, true, None),
        (
            529,
            "overloaded_error",
            ErrorKind::RateLimited,
            true,
            Some(codes::ANTHROPIC_OVERLOADED),
        ),
    ];
    for &(status, kind, expected, retryable, code) in cases {
        let server = scripted(move |_, _| {
            support::api_error(status, kind, "something went wrong").header("retry-after", "7")
        })
        .await;
        let model = AnthropicAdapter::new(AnthropicConfig {
            retry: RetryPolicy::none(),
            ..config(&server.url())
        })
        .unwrap();
        let err = model
            .generate(GenerationRequest::prompt("hi"))
            .await
            .unwrap_err();
        assert_eq!(err.kind(), expected, "{status} {kind}: {err}");
        assert_eq!(err.is_retryable(), retryable, "{status} {kind}");
        assert_eq!(err.code(), code, "{status} {kind}");
        assert!(err.hint().is_some(), "{status} {kind} has no hint: {err}");
        assert!(err.message().contains("something went wrong"), "{err}");
        assert_eq!(err.retry_after(), Some(Duration::from_secs(7)));
        assert!(!err.to_string().contains(support::KEY));
    }
}

#[tokio::test]
async fn bodies_that_are_not_anthropic_errors_still_map_by_status() {
    let server =
        scripted(|_, _| FixtureResponse::status(502).chunk("<html>Bad gateway</html>")).await;
    let model = AnthropicAdapter::new(AnthropicConfig {
        retry: RetryPolicy::none(),
        ..config(&server.url())
    })
    .unwrap();
    let err = model
        .generate(GenerationRequest::prompt("hi"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::BackendCrashed);
    assert!(err.message().contains("Bad gateway"), "{err}");

    // A 404 that is not Anthropic's: the base URL points somewhere else.
    let server = scripted(|_, _| FixtureResponse::status(404).chunk("404 page not found")).await;
    let model = AnthropicAdapter::new(config(&server.url())).unwrap();
    let err = model
        .generate(GenerationRequest::prompt("hi"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotAvailable);
    assert!(err.hint().unwrap().contains("ANTHROPIC_BASE_URL"), "{err}");
}

#[tokio::test]
async fn retries_429_and_529_before_the_first_token_honouring_retry_after() {
    let server = scripted(|_, n| match n {
        0 => support::api_error(529, "overloaded_error", "Overloaded"),
        1 => support::api_error(429, "rate_limit_error", "slow down").header("retry-after", "1"),
        _ => reply(&["Hel", "lo"], "end_turn"),
    })
    .await;
    let model = AnthropicAdapter::new(config(&server.url())).unwrap();
    let started = Instant::now();
    let g = model
        .generate(GenerationRequest::prompt("hi"))
        .await
        .unwrap();
    assert_eq!(g.text, "Hello");
    assert_eq!(message_requests(&server).len(), 3);
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "retry-after was not honoured"
    );
}

#[tokio::test]
async fn error_events_are_retried_before_the_message_starts_and_reported_after() {
    let overloaded =
        json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}});
    let early = overloaded.clone();
    let server = scripted(move |_, n| match n {
        0 => events(std::slice::from_ref(&early)),
        _ => reply(&["fine"], "end_turn"),
    })
    .await;
    let model = AnthropicAdapter::new(config(&server.url())).unwrap();
    assert_eq!(
        model
            .generate(GenerationRequest::prompt("hi"))
            .await
            .unwrap()
            .text,
        "fine"
    );
    assert_eq!(message_requests(&server).len(), 2);

    // After text has been sent, nothing is retried: the stream ends with the typed error, which
    // keeps the text.
    let late = overloaded.clone();
    let server = scripted(move |_, _| {
        events(&[
            start_event(),
            json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
            text_delta("partial "),
            late.clone(),
        ])
    })
    .await;
    let model = AnthropicAdapter::new(config(&server.url())).unwrap();
    let mut stream = model.stream(GenerationRequest::prompt("hi")).await.unwrap();
    assert_eq!(
        stream.next().await.unwrap().unwrap(),
        StreamEvent::Delta("partial ".into())
    );
    let err = stream.next().await.unwrap().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::RateLimited);
    assert_eq!(err.code(), Some(codes::ANTHROPIC_OVERLOADED));
    assert_eq!(err.raw_output(), Some("partial "));
    assert!(stream.next().await.is_none());
    assert_eq!(message_requests(&server).len(), 1);
}

#[tokio::test]
async fn pings_comments_and_unknown_events_are_skipped() {
    let server = scripted(|_, _| {
        FixtureResponse::ok()
            .header("content-type", "text/event-stream")
            .chunk(support::sse(&start_event()))
            .chunk(": a comment line\n\n")
            .chunk("event: ping\ndata: {\"type\": \"ping\"}\n\n")
            .chunk(support::sse(&json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}})))
            .chunk(support::sse(&json!({"type": "future_event", "payload": [1, 2]})))
            .chunk(support::sse(&text_delta("ok")))
            .chunk(support::sse(&json!({"type": "message_delta", "delta": {"stop_reason": "refusal"}, "usage": {"output_tokens": 1}})))
            .chunk(support::sse(&json!({"type": "message_stop"})))
    })
    .await;
    let model = AnthropicAdapter::new(config(&server.url())).unwrap();
    let g = model
        .generate(GenerationRequest::prompt("hi"))
        .await
        .unwrap();
    assert_eq!(g.text, "ok");
    assert_eq!(g.completion.finish_reason, FinishReason::ContentFilter);
}

#[tokio::test]
async fn context_overflow_and_output_limits() {
    let server = support::start().await;
    let model = AnthropicAdapter::connect(config(&server.url()))
        .await
        .unwrap();
    assert_eq!(model.descriptor().context_length, Some(support::CONTEXT));
    // Fits the output limit, but prompt + max_tokens does not fit the context.
    let err = model
        .generate(GenerationRequest::prompt("a short prompt").with_max_tokens(support::CONTEXT))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ContextLengthExceeded, "{err}");
    assert!(!err.is_retryable());
    // Over the model's output limit: refused before sending.
    let before = message_requests(&server).len();
    let err = model
        .generate(GenerationRequest::prompt("hi").with_max_tokens(support::MAX_OUTPUT + 1))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidRequest);
    assert!(
        err.hint()
            .unwrap()
            .contains(&support::MAX_OUTPUT.to_string())
    );
    assert_eq!(message_requests(&server).len(), before);
}

#[tokio::test]
async fn what_anthropic_lacks_is_refused_before_any_request() {
    let server = support::start().await;
    let model = AnthropicAdapter::new(config(&server.url())).unwrap();
    for (request, kind) in [
        (
            GenerationRequest::prompt("x").with_seed(1),
            ErrorKind::Unsupported,
        ),
        (
            GenerationRequest::prompt("x").with_exact_tokens(8),
            ErrorKind::Unsupported,
        ),
        (
            GenerationRequest::prompt("x").with_temperature(1.5),
            ErrorKind::InvalidRequest,
        ),
        (
            GenerationRequest::new(vec![ChatMessage::system("only this")]),
            ErrorKind::InvalidRequest,
        ),
    ] {
        let err = model.generate(request).await.unwrap_err();
        assert_eq!(err.kind(), kind, "{err}");
    }
    assert!(message_requests(&server).is_empty());
}

#[tokio::test]
async fn timeouts_before_the_first_event_and_between_events() {
    let server = scripted(|_, _| {
        FixtureResponse::ok()
            .header("content-type", "text/event-stream")
            .hang()
    })
    .await;
    let model = AnthropicAdapter::new(AnthropicConfig {
        first_token_timeout: Duration::from_millis(300),
        ..config(&server.url())
    })
    .unwrap();
    let err = model
        .generate(GenerationRequest::prompt("hi"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Timeout);
    assert!(
        err.hint()
            .unwrap()
            .contains("RIGGER_ANTHROPIC_FIRST_TOKEN_TIMEOUT_SECS"),
        "{err}"
    );

    let server = scripted(|_, _| {
        events(&[
            start_event(),
            json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
            text_delta("so far"),
        ])
        .hang()
    })
    .await;
    let model = AnthropicAdapter::new(AnthropicConfig {
        idle_timeout: Duration::from_millis(300),
        ..config(&server.url())
    })
    .unwrap();
    let err = model
        .generate(GenerationRequest::prompt("hi"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Timeout);
    assert!(
        err.hint()
            .unwrap()
            .contains("RIGGER_ANTHROPIC_IDLE_TIMEOUT_SECS"),
        "{err}"
    );
    assert_eq!(err.raw_output(), Some("so far"));
}

#[tokio::test]
async fn dropping_the_stream_aborts_the_request() {
    let server = scripted(|_, _| {
        events(&[
            start_event(),
            json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
            text_delta("first"),
        ])
        .pause(Duration::from_millis(20))
        .chunk(support::sse(&text_delta(" more")))
        .hang()
    })
    .await;
    let model = AnthropicAdapter::new(config(&server.url())).unwrap();
    let mut stream = model.stream(GenerationRequest::prompt("hi")).await.unwrap();
    assert!(matches!(
        stream.next().await,
        Some(Ok(StreamEvent::Delta(_)))
    ));
    assert_eq!(server.bodies_abandoned(), 0);
    drop(stream);
    let deadline = Instant::now() + Duration::from_secs(5);
    while server.bodies_abandoned() == 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        server.bodies_abandoned(),
        1,
        "the body was not abandoned after the drop"
    );
}

#[tokio::test]
async fn broken_streams_are_errors_that_keep_the_text() {
    let cut = scripted(|_, _| {
        events(&[
            start_event(),
            json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
            text_delta("Hel"),
        ])
    })
    .await;
    let model = AnthropicAdapter::new(config(&cut.url())).unwrap();
    let err = model
        .generate(GenerationRequest::prompt("hi"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Io, "{err}");
    assert_eq!(err.raw_output(), Some("Hel"));

    // A server that ignored `stream: true`.
    let json_reply =
        scripted(|_, _| FixtureResponse::ok().json(&json!({"type": "message", "content": []})))
            .await;
    let model = AnthropicAdapter::new(config(&json_reply.url())).unwrap();
    let err = model
        .generate(GenerationRequest::prompt("hi"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Protocol, "{err}");
}

#[tokio::test]
async fn structured_output_is_a_forced_tool_call_and_is_validated() {
    let schema = json!({"type": "object", "properties": {"answer": {"type": "string"}}, "required": ["answer"]});
    let format = ResponseFormat::JsonSchema {
        name: "answer".into(),
        schema: schema.clone(),
    };
    let tool_reply = |partials: &'static [&'static str]| {
        move |_: &RecordedRequest, _: usize| {
            let mut list = vec![
                start_event(),
                json!({"type": "content_block_start", "index": 0, "content_block": {"type": "tool_use", "id": "toolu_1", "name": "answer", "input": {}}}),
            ];
            list.extend(partials.iter().map(|p| json!({"type": "content_block_delta", "index": 0, "delta": {"type": "input_json_delta", "partial_json": p}})));
            list.push(json!({"type": "content_block_stop", "index": 0}));
            list.push(json!({"type": "message_delta", "delta": {"stop_reason": "tool_use"}, "usage": {"output_tokens": 5}}));
            list.push(json!({"type": "message_stop"}));
            events(&list)
        }
    };

    let good = scripted(tool_reply(&["{\"answer\":", " \"Par", "is\"}"])).await;
    let model = AnthropicAdapter::new(config(&good.url())).unwrap();
    let g = model
        .generate(
            GenerationRequest::prompt("capital of France?").with_response_format(format.clone()),
        )
        .await
        .unwrap();
    assert_eq!(g.text, r#"{"answer": "Paris"}"#);
    assert_eq!(g.completion.finish_reason, FinishReason::EndOfSequence);
    let body = message_requests(&good)[0].json();
    assert_eq!(body["tools"][0]["input_schema"], schema);
    assert_eq!(
        body["tool_choice"],
        json!({"type": "tool", "name": "answer"})
    );

    let bad = scripted(tool_reply(&["{\"answer\": 42}"])).await;
    let model = AnthropicAdapter::new(config(&bad.url())).unwrap();
    let err = model
        .generate(GenerationRequest::prompt("capital of France?").with_response_format(format))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::MalformedOutput);
    assert_eq!(err.raw_output(), Some(r#"{"answer": 42}"#));

    // Plain JSON is asked for in the prompt only, and validated.
    let prose = scripted(|_, _| reply(&["not json"], "end_turn")).await;
    let model = AnthropicAdapter::new(config(&prose.url())).unwrap();
    let err = model
        .generate(
            GenerationRequest::prompt("json please").with_response_format(ResponseFormat::Json),
        )
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::MalformedOutput);
    assert!(message_requests(&prose)[0].json().get("tools").is_none());
}

#[tokio::test]
async fn unknown_models_and_unreachable_servers() {
    let server = support::start().await;
    let err = AnthropicAdapter::connect(AnthropicConfig::new("claude-nope").with_fixture(&server))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ModelNotFound);
    assert!(err.to_string().contains("claude-nope"), "{err}");

    let refused = FixtureServer::refused_url().await.unwrap();
    let model = AnthropicAdapter::new(AnthropicConfig {
        retry: RetryPolicy::none(),
        ..config(&refused)
    })
    .unwrap();
    let err = model
        .generate(GenerationRequest::prompt("hi"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotAvailable, "{err}");
    let err = probe(&config(&refused), Duration::from_secs(2))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotAvailable, "{err}");
}

#[tokio::test]
async fn servers_without_a_model_lookup_still_work() {
    // llama-server's 404 shape for a path it does not serve.
    let server = FixtureServer::start(|r| {
        if r.path.starts_with("/v1/models/") {
            FixtureResponse::status(404).json(&json!({"error": {"code": 404, "message": "File Not Found", "type": "not_found_error"}}))
        } else {
            reply(&["hi"], "end_turn")
        }
    })
    .await
    .unwrap();
    let model = AnthropicAdapter::connect(AnthropicConfig {
        api_key: None,
        ..config(&server.url())
    })
    .await
    .unwrap();
    assert_eq!(model.descriptor().context_length, None);
    assert_eq!(
        model
            .generate(GenerationRequest::prompt("x"))
            .await
            .unwrap()
            .text,
        "hi"
    );
    assert!(
        server
            .requests()
            .iter()
            .all(|r| r.header("x-api-key").is_none())
    );
}

#[tokio::test]
async fn probe_and_list_models() {
    let server = support::start().await;
    let line = probe(&config(&server.url()), Duration::from_secs(5))
        .await
        .unwrap();
    assert!(
        line.contains("2 models") && line.contains("listed"),
        "{line}"
    );
    let ids = list_models(&config(&server.url())).await.unwrap();
    assert_eq!(
        ids,
        vec![support::MODEL.to_owned(), "claude-fixture-2".to_owned()]
    );

    let err = probe(
        &AnthropicConfig {
            api_key: ApiKey::new("wrong-key"),
            ..config(&server.url())
        },
        Duration::from_secs(5),
    )
    .await
    .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unauthorized);

    // Pagination: `after_id` from the previous page's `last_id`.
    let pages = FixtureServer::start(|r| {
        if r.path.contains("after_id=b") {
            FixtureResponse::ok()
                .json(&json!({"data": [{"id": "c"}], "has_more": false, "last_id": "c"}))
        } else {
            FixtureResponse::ok().json(
                &json!({"data": [{"id": "a"}, {"id": "b"}], "has_more": true, "last_id": "b"}),
            )
        }
    })
    .await
    .unwrap();
    assert_eq!(
        list_models(&config(&pages.url())).await.unwrap(),
        vec!["a", "b", "c"]
    );
}

#[test]
fn configuration_from_variables_and_its_checks() {
    let vars = |pairs: &'static [(&'static str, &'static str)]| {
        move |name: &str| {
            pairs
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| (*v).to_owned())
        }
    };
    let defaults = AnthropicConfig::from_vars(&vars(&[("ANTHROPIC_MODEL", "  ")])).unwrap();
    assert_eq!(defaults.base_url, DEFAULT_BASE_URL);
    assert_eq!(defaults.model, DEFAULT_MODEL);
    assert_eq!(defaults.api_key, None);
    let err = AnthropicAdapter::new(defaults).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidRequest);
    assert_eq!(err.code(), Some(codes::ANTHROPIC_API_KEY_MISSING));
    assert!(err.hint().unwrap().contains("ANTHROPIC_API_KEY"));

    let set = AnthropicConfig::from_vars(&vars(&[
        (
            "ANTHROPIC_API_KEY",
            "sk-ant-abcdefghijklmnopqrstuvwxyz-SECRET",
        ),
        ("ANTHROPIC_BASE_URL", "http://127.0.0.1:8080/"),
        ("ANTHROPIC_MODEL", "local"),
    ]))
    .unwrap();
    assert_eq!(set.model, "local");
    let adapter = AnthropicAdapter::new(set.clone()).unwrap();
    for shown in [format!("{set:?}"), format!("{adapter:?}")] {
        assert!(
            !shown.contains("SECRET") && !shown.contains("abcdefghij"),
            "{shown}"
        );
    }

    for bad_url in ["http://127.0.0.1:8080/v1", "ftp://example.com", "not a url"] {
        let err = AnthropicAdapter::new(AnthropicConfig {
            base_url: bad_url.into(),
            ..set.clone()
        })
        .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidRequest, "{bad_url}");
        assert!(err.hint().is_some());
    }
}

trait WithFixture {
    fn with_fixture(self, server: &FixtureServer) -> Self;
}

impl WithFixture for AnthropicConfig {
    fn with_fixture(self, server: &FixtureServer) -> Self {
        AnthropicConfig {
            base_url: server.url(),
            api_key: ApiKey::new(support::KEY),
            ..self
        }
    }
}
