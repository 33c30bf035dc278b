//! The adapter against scripted servers on 127.0.0.1 (http-support's `FixtureServer`): what it
//! sends, and each real server quirk it must tolerate or report — SSE comments, odd usage
//! chunks, unknown finish reasons, missing usage, both error body shapes, llama.cpp's timings,
//! mid-stream errors, status mapping with retries, abort on drop, and redacted keys.
#![allow(clippy::unwrap_used)] // a panic is how a test reports failure

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures::StreamExt;
use rigger_http_support::fixture::{FixtureResponse, FixtureServer};
use rigger_http_support::{ApiKey, RetryPolicy};
use rigger_openai_adapter::{OpenAiAdapter, OpenAiConfig, ServerKind, list_models, probe};
use rigger_ports::{
    ChatMessage, ErrorKind, FinishReason, GenerationRequest, LanguageModel, ResponseFormat,
    StreamEvent, TimingSource,
};
use serde_json::{Value, json};
use support::{delta, event, finish, hello_stream, serve, sse, usage};

/// vLLM's context length is given, so that it is not fetched from `/v1/models` first.
fn config(server: &FixtureServer, kind: ServerKind) -> OpenAiConfig {
    OpenAiConfig {
        server: Some(kind),
        context_length: (kind == ServerKind::Vllm).then_some(4096),
        retry: RetryPolicy {
            initial_backoff: Duration::from_millis(10),
            ..RetryPolicy::default()
        },
        ..OpenAiConfig::new(format!("{}/v1/", server.url()), "test-model")
    }
}

fn adapter(server: &FixtureServer, kind: ServerKind) -> OpenAiAdapter {
    OpenAiAdapter::new(config(server, kind)).unwrap()
}

fn prompt() -> GenerationRequest {
    GenerationRequest::prompt("hi").with_max_tokens(8)
}

#[tokio::test]
async fn sends_exactly_the_documented_request() {
    let server = serve(|_| hello_stream()).await;
    let model = OpenAiAdapter::new(OpenAiConfig {
        api_key: ApiKey::new("sk-test-secret"),
        ..config(&server, ServerKind::Vllm)
    })
    .unwrap();
    let request = GenerationRequest::new(vec![
        ChatMessage::system("Be brief."),
        ChatMessage::user("Hi"),
        ChatMessage::assistant("Hello."),
        ChatMessage::user("Again"),
    ])
    .with_max_tokens(16)
    .with_temperature(0.5)
    .with_top_p(0.9)
    .with_top_k(40)
    .with_seed(7)
    .with_stop("END");
    let g = model.generate(request).await.unwrap();
    assert_eq!(g.text, "Hello");
    let sent = &server.requests()[0];
    assert_eq!(sent.method, "POST");
    assert_eq!(sent.path, "/v1/chat/completions", "trailing slash handled");
    assert_eq!(sent.header("authorization"), Some("Bearer sk-test-secret"));
    assert_eq!(sent.header("accept"), Some("text/event-stream"));
    assert_eq!(
        sent.json(),
        json!({
            "model": "test-model",
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": "Hi"},
                {"role": "assistant", "content": "Hello."},
                {"role": "user", "content": "Again"},
            ],
            "stream": true,
            "stream_options": {"include_usage": true},
            "max_tokens": 16,
            "temperature": 0.5,
            "top_p": 0.9,
            "top_k": 40,
            "seed": 7,
            "stop": ["END"],
        })
    );
}

#[tokio::test]
async fn sends_json_schema_where_supported_and_still_validates() {
    let server = serve(|_| {
        sse(&[
            delta("{\"answer\":"),
            delta(" 3}"),
            finish("stop"),
            usage(5, 4),
        ])
    })
    .await;
    let format = ResponseFormat::JsonSchema {
        name: "answer".into(),
        schema: json!({"type": "object", "properties": {"answer": {"type": "string"}}, "required": ["answer"]}),
    };
    let err = adapter(&server, ServerKind::OpenAi)
        .generate(prompt().with_response_format(format.clone()))
        .await
        .unwrap_err();
    let sent = server.requests()[0].json();
    assert_eq!(sent["response_format"]["type"], "json_schema");
    assert_eq!(
        sent["response_format"]["json_schema"]["schema"],
        match &format {
            ResponseFormat::JsonSchema { schema, .. } => schema.clone(),
            _ => unreachable!(),
        }
    );
    assert_eq!(
        sent["max_completion_tokens"], 8,
        "OpenAI proper gets the new name"
    );
    // The server claimed to enforce it and did not: the output is still rejected, kept raw.
    assert_eq!(err.kind(), ErrorKind::MalformedOutput, "{err}");
    assert_eq!(err.raw_output(), Some("{\"answer\": 3}"));
}

#[tokio::test]
async fn keepalive_comments_are_skipped() {
    let server = serve(|_| {
        FixtureResponse::ok()
            .header("content-type", "text/event-stream")
            .chunk(": keepalive 256/1024\n\n")
            .chunk(": keepalive 1024/1024\n\n")
            .chunk(event(&delta("Hel")))
            .chunk(": keepalive\n\n")
            .chunk(event(&delta("lo")))
            .chunk(event(&finish("stop")))
            .chunk(event(&usage(5, 2)))
            .chunk("data: [DONE]\n\n")
    })
    .await;
    let g = adapter(&server, ServerKind::MlxLm)
        .generate(prompt())
        .await
        .unwrap();
    assert_eq!(g.text, "Hello");
    assert_eq!(g.completion.usage.completion_tokens, 2);
}

#[tokio::test]
async fn a_usage_chunk_with_an_unexpected_object_still_counts() {
    // mlx_lm.server labels its usage chunk "chat.completion", not "chat.completion.chunk".
    let server = serve(|_| {
        sse(&[
            delta("ok"),
            finish("length"),
            json!({"id": "x", "object": "chat.completion", "choices": [], "usage": {"prompt_tokens": 11, "completion_tokens": 1, "total_tokens": 12, "prompt_tokens_details": {"cached_tokens": 0}}}),
        ])
    })
    .await;
    let g = adapter(&server, ServerKind::MlxLm)
        .generate(prompt())
        .await
        .unwrap();
    assert_eq!(g.completion.usage.prompt_tokens, 11);
    assert_eq!(g.completion.usage.completion_tokens, 1);
    assert_eq!(g.completion.finish_reason, FinishReason::MaxTokens);
}

#[tokio::test]
async fn finish_reasons_outside_openais_list_are_kept_verbatim() {
    let server = serve(|_| sse(&[delta("a"), finish("eos_token"), usage(1, 1)])).await;
    let g = adapter(&server, ServerKind::Generic)
        .generate(prompt())
        .await
        .unwrap();
    assert_eq!(
        g.completion.finish_reason,
        FinishReason::Other("eos_token".into())
    );
}

#[tokio::test]
async fn a_stream_without_usage_reports_zero_tokens_and_client_clocks() {
    let server = serve(|_| sse(&[delta("Hel"), delta("lo"), finish("stop")])).await;
    let g = adapter(&server, ServerKind::Generic)
        .generate(prompt())
        .await
        .unwrap();
    assert_eq!(g.text, "Hello");
    assert_eq!(g.completion.finish_reason, FinishReason::EndOfSequence);
    // Not counted from chunks (that would be an estimate): 0 means "not reported".
    assert_eq!(g.completion.usage.total(), 0);
    let t = &g.completion.timings;
    assert_eq!(t.source, TimingSource::Client);
    assert!(t.time_to_first_token.is_some());
    assert_eq!(
        t.decode_tokens_per_second(),
        None,
        "no rate without a count"
    );
}

#[tokio::test]
async fn llama_cpp_timings_become_backend_timings() {
    let server = serve(|_| {
        let mut last = usage(12, 3);
        last["timings"] = json!({"cache_n": 2, "prompt_n": 10, "prompt_ms": 40.0, "prompt_per_token_ms": 4.0, "prompt_per_second": 250.0, "predicted_n": 3, "predicted_ms": 30.0, "predicted_per_token_ms": 10.0, "predicted_per_second": 100.0});
        sse(&[delta("a"), delta("b"), delta("c"), finish("length"), last])
    })
    .await;
    let g = adapter(&server, ServerKind::LlamaServer)
        .generate(prompt())
        .await
        .unwrap();
    let t = &g.completion.timings;
    assert_eq!(t.source, TimingSource::Backend);
    assert_eq!(
        t.prompt_tokens, 10,
        "evaluated tokens, without the 2 from its cache"
    );
    assert_eq!(t.prompt_duration, Duration::from_millis(40));
    assert_eq!(t.generated_tokens, 3);
    assert_eq!(t.generation_duration, Duration::from_millis(30));
    assert_eq!(t.time_to_first_token, Some(Duration::from_millis(40)));
    assert_eq!(t.decode_tokens_per_second(), Some(100.0));
    assert_eq!(g.completion.usage.prompt_tokens, 12);
}

#[tokio::test]
async fn error_bodies_as_a_string_or_an_object() {
    let server = serve(|r| {
        let body = if r.json()["model"] == "string-error" {
            json!({"error": "top_k must be at least 0"})
        } else {
            json!({"error": {"message": "This model's maximum context length is 4096 tokens.", "type": "invalid_request_error", "param": "messages", "code": "context_length_exceeded"}})
        };
        FixtureResponse::status(400).json(&body)
    })
    .await;
    let mut c = config(&server, ServerKind::Generic);
    c.model = Some("string-error".into());
    let err = OpenAiAdapter::new(c)
        .unwrap()
        .generate(prompt())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidRequest);
    assert!(err.message().contains("top_k must be at least 0"), "{err}");
    assert!(err.hint().is_some());

    let err = adapter(&server, ServerKind::OpenAi)
        .generate(prompt())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ContextLengthExceeded, "{err}");
    assert!(!err.is_retryable());
    assert!(err.message().contains("maximum context length"), "{err}");
}

#[tokio::test]
async fn errors_in_the_middle_of_a_stream_end_it_with_a_typed_error() {
    for error_event in [
        event(
            &json!({"error": {"message": "CUDA out of memory", "type": "server_error", "code": 500}}),
        ),
        "event: error\ndata: {\"error\": {\"message\": \"slot failed\", \"code\": 500}}\n\n"
            .to_owned(),
    ] {
        let server = serve(move |_| {
            FixtureResponse::ok()
                .header("content-type", "text/event-stream")
                .chunk(event(&delta("partial")))
                .chunk(error_event.clone())
        })
        .await;
        let mut stream = adapter(&server, ServerKind::Vllm)
            .stream(prompt())
            .await
            .unwrap();
        assert_eq!(
            stream.next().await.unwrap().unwrap(),
            StreamEvent::Delta("partial".into())
        );
        let err = stream.next().await.unwrap().unwrap_err();
        assert_eq!(err.kind(), ErrorKind::BackendCrashed, "{err}");
        assert!(err.message().contains("the stream failed"), "{err}");
        assert!(stream.next().await.is_none(), "nothing after the error");
    }
}

#[tokio::test]
async fn statuses_map_to_kinds_with_hints() {
    let server = serve(|r| match r.json()["model"].as_str().unwrap_or("") {
        "unauthorized" => FixtureResponse::status(401)
            .json(&json!({"error": {"message": "Incorrect API key provided", "type": "invalid_request_error", "code": "invalid_api_key"}})),
        "missing" => FixtureResponse::status(404)
            .json(&json!({"error": {"message": "The model `missing` does not exist", "type": "invalid_request_error", "code": "model_not_found"}})),
        "quota" => FixtureResponse::status(429)
            .json(&json!({"error": {"message": "You exceeded your current quota", "type": "insufficient_quota", "code": "insufficient_quota"}})),
        _ => FixtureResponse::status(404).chunk("Not Found"),
    })
    .await;
    let run = |model: &str| {
        let mut c = config(&server, ServerKind::OpenAi);
        c.model = Some(model.into());
        async move {
            OpenAiAdapter::new(c)
                .unwrap()
                .generate(prompt())
                .await
                .unwrap_err()
        }
    };
    let err = run("unauthorized").await;
    assert_eq!(err.kind(), ErrorKind::Unauthorized);
    assert!(err.hint().unwrap().contains("OPENAI_API_KEY"));
    let err = run("missing").await;
    assert_eq!(err.kind(), ErrorKind::ModelNotFound);
    assert!(err.to_string().contains("`missing`"));
    let err = run("quota").await;
    assert_eq!(err.kind(), ErrorKind::RateLimited);
    assert!(!err.is_retryable(), "no quota: retrying cannot help");
    let err = run("anything").await;
    assert_eq!(
        err.kind(),
        ErrorKind::NotAvailable,
        "a bare 404 page: wrong base URL"
    );
    assert!(err.hint().unwrap().contains("OPENAI_BASE_URL"));
    let requests = server.requests().len();
    assert_eq!(requests, 4, "none of these is retried");
}

#[tokio::test]
async fn rate_limits_and_server_errors_are_retried_before_the_first_token() {
    let calls = Arc::new(AtomicUsize::new(0));
    let seen = calls.clone();
    let server = serve(move |_| match seen.fetch_add(1, Ordering::SeqCst) {
        0 => FixtureResponse::status(429)
            .header("retry-after", "0")
            .json(&json!({"error": {"message": "Rate limit reached", "type": "requests"}})),
        1 => FixtureResponse::status(503).json(&json!({"error": "overloaded"})),
        _ => hello_stream(),
    })
    .await;
    let g = adapter(&server, ServerKind::Vllm)
        .generate(prompt())
        .await
        .unwrap();
    assert_eq!(g.text, "Hello");
    assert_eq!(calls.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn a_retry_after_beyond_the_policy_is_returned_not_waited_for() {
    let server = serve(|_| {
        FixtureResponse::status(429)
            .header("retry-after", "120")
            .json(&json!({"error": {"message": "slow down"}}))
    })
    .await;
    let err = adapter(&server, ServerKind::OpenAi)
        .generate(prompt())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::RateLimited);
    assert_eq!(err.retry_after(), Some(Duration::from_secs(120)));
    assert!(err.is_retryable());
    assert_eq!(server.requests().len(), 1);
}

#[tokio::test]
async fn dropping_the_stream_aborts_the_request() {
    let server = serve(|_| {
        FixtureResponse::ok()
            .header("content-type", "text/event-stream")
            .chunk(event(&delta("first")))
            .pause(Duration::from_millis(50))
            .chunk(event(&delta("second")))
            .hang()
    })
    .await;
    let model = adapter(&server, ServerKind::Vllm);
    let mut stream = model.stream(prompt()).await.unwrap();
    assert!(matches!(
        stream.next().await,
        Some(Ok(StreamEvent::Delta(_)))
    ));
    drop(stream);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while server.bodies_abandoned() == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the server never saw the client go"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(server.bodies_completed(), 0);
}

#[tokio::test]
async fn a_stalled_stream_times_out() {
    let server = serve(|_| {
        FixtureResponse::ok()
            .header("content-type", "text/event-stream")
            .chunk(event(&delta("first")))
            .hang()
    })
    .await;
    let model = OpenAiAdapter::new(OpenAiConfig {
        idle_timeout: Duration::from_millis(200),
        ..config(&server, ServerKind::Vllm)
    })
    .unwrap();
    let err = model.generate(prompt()).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Timeout, "{err}");
}

#[tokio::test]
async fn the_api_key_never_prints() {
    let server = serve(|_| {
        FixtureResponse::status(401)
            .json(&json!({"error": {"message": "bad key", "code": "invalid_api_key"}}))
    })
    .await;
    let secret = "sk-proj-abcdefghijklmnopqrstuvwxyz012345";
    let c = OpenAiConfig {
        api_key: ApiKey::new(secret),
        ..config(&server, ServerKind::OpenAi)
    };
    let model = OpenAiAdapter::new(c.clone()).unwrap();
    let err = model.generate(prompt()).await.unwrap_err();
    for shown in [
        format!("{c:?}"),
        format!("{model:?}"),
        format!("{err}"),
        format!("{err:?}"),
    ] {
        assert!(!shown.contains("abcdefghij"), "the key leaked: {shown}");
    }
    assert_eq!(
        server.requests()[0].header("authorization"),
        Some(format!("Bearer {secret}").as_str())
    );
}

#[tokio::test]
async fn stop_sequences_are_matched_on_the_text_across_chunks() {
    let server = serve(|_| {
        sse(&[
            delta("Hello wo"),
            delta("rld! More"),
            delta(" text"),
            finish("length"),
            usage(4, 3),
        ])
    })
    .await;
    // mlx_lm.server is not told the stops (it matches them on token ids and would strip them
    // while generating on); the adapter ends the text and waits for the usage.
    let model = adapter(&server, ServerKind::MlxLm);
    let g = model.generate(prompt().with_stop("world")).await.unwrap();
    assert_eq!(g.text, "Hello ");
    assert_eq!(g.completion.finish_reason, FinishReason::StopSequence);
    assert_eq!(g.completion.usage.completion_tokens, 3);
    assert!(server.requests()[0].json().get("stop").is_none());
}

#[tokio::test]
async fn vllm_says_which_stop_ended_the_text() {
    let server = serve(|r| {
        let which = if r.json()["seed"] == 1 { json!("END") } else { Value::Null };
        sse(&[
            delta("abc"),
            json!({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop", "stop_reason": which}]}),
            usage(1, 1),
        ])
    })
    .await;
    let vllm = adapter(&server, ServerKind::Vllm);
    let stopped = vllm
        .generate(prompt().with_stop("END").with_seed(1))
        .await
        .unwrap();
    assert_eq!(stopped.completion.finish_reason, FinishReason::StopSequence);
    let ended = vllm
        .generate(prompt().with_stop("END").with_seed(2))
        .await
        .unwrap();
    assert_eq!(ended.completion.finish_reason, FinishReason::EndOfSequence);
    // Other servers do not say: a "stop" after stops were sent is ambiguous, and said to be.
    let ambiguous = adapter(&server, ServerKind::LlamaServer)
        .generate(prompt().with_stop("END").with_seed(2))
        .await
        .unwrap();
    assert_eq!(
        ambiguous.completion.finish_reason,
        FinishReason::Other("stop".into())
    );
}

#[tokio::test]
async fn an_exact_budget_the_server_did_not_honour_is_an_error() {
    let server = serve(|_| sse(&[delta("a"), finish("stop"), usage(3, 1)])).await;
    let model = adapter(&server, ServerKind::LlamaServer);
    let err = model
        .generate(prompt().with_exact_tokens(5))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Protocol, "{err}");
    assert!(err.message().contains("exactly 5"), "{err}");
    assert_eq!(server.requests()[0].json()["ignore_eos"], true);
}

#[tokio::test]
async fn undeclared_features_are_refused_before_any_request() {
    let server = serve(|_| hello_stream()).await;
    for (kind, request) in [
        (ServerKind::OpenAi, prompt().with_top_k(5)),
        (ServerKind::MlxLm, prompt().with_exact_tokens(5)),
        (ServerKind::Generic, prompt().with_seed(1)),
    ] {
        let err = adapter(&server, kind).generate(request).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Unsupported, "{kind}: {err}");
    }
    assert!(server.requests().is_empty());
}

#[tokio::test]
async fn usage_over_a_declared_context_is_context_length_exceeded() {
    let server = serve(|_| sse(&[delta("a"), finish("length"), usage(600, 4)])).await;
    let model = OpenAiAdapter::new(OpenAiConfig {
        context_length: Some(512),
        ..config(&server, ServerKind::MlxLm)
    })
    .unwrap();
    let err = model.generate(prompt()).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ContextLengthExceeded, "{err}");
    assert!(!err.is_retryable());
}

#[tokio::test]
async fn a_stream_cut_before_the_end_is_an_error_not_a_short_answer() {
    let server = serve(|_| {
        FixtureResponse::ok()
            .header("content-type", "text/event-stream")
            .chunk(event(&delta("partial")))
    })
    .await;
    let err = adapter(&server, ServerKind::Vllm)
        .generate(prompt())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Io, "{err}");
}

#[tokio::test]
async fn a_json_answer_to_a_stream_request_is_a_protocol_error() {
    let server =
        serve(|_| FixtureResponse::ok().json(&json!({"object": "chat.completion", "choices": []})))
            .await;
    let err = adapter(&server, ServerKind::Generic)
        .generate(prompt())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Protocol, "{err}");
}

#[tokio::test]
async fn vllm_reports_the_context_length_on_first_use() {
    let server = serve(|r| {
        if r.path == "/v1/models" {
            FixtureResponse::ok().json(&json!({"object": "list", "data": [{"id": "test-model", "object": "model", "owned_by": "vllm", "max_model_len": 2048}]}))
        } else {
            hello_stream()
        }
    })
    .await;
    let model = OpenAiAdapter::new(OpenAiConfig {
        context_length: None,
        ..config(&server, ServerKind::Vllm)
    })
    .unwrap();
    assert_eq!(model.descriptor().context_length, None, "new() is lazy");
    assert!(server.requests().is_empty());
    model.generate(prompt()).await.unwrap();
    model.generate(prompt()).await.unwrap();
    assert_eq!(model.descriptor().context_length, Some(2048));
    let paths: Vec<String> = server.requests().into_iter().map(|r| r.path).collect();
    assert_eq!(
        paths,
        ["/v1/models", "/v1/chat/completions", "/v1/chat/completions"],
        "fetched once"
    );
}

#[tokio::test]
async fn connect_probe_and_list_models() {
    let server = serve(|_| {
        FixtureResponse::ok()
            .json(&json!({"object": "list", "data": [{"id": "a"}, {"id": "test-model"}]}))
    })
    .await;
    let c = config(&server, ServerKind::Generic);
    assert_eq!(list_models(&c).await.unwrap(), ["a", "test-model"]);
    let line = probe(&c, Duration::from_secs(2)).await.unwrap();
    assert!(
        line.contains("2 model(s)") && line.contains("`test-model` listed"),
        "{line}"
    );
    OpenAiAdapter::connect(c.clone()).await.unwrap();
    let mut other = c;
    other.model = Some("absent".into());
    let err = OpenAiAdapter::connect(other).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ModelNotFound);
    assert!(err.hint().unwrap().contains("test-model"), "{err}");

    let refused = OpenAiConfig::new(
        format!("{}/v1", FixtureServer::refused_url().await.unwrap()),
        "m",
    );
    let err = probe(&refused, Duration::from_secs(2)).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotAvailable, "{err}");
}

#[test]
fn configuration_errors_say_what_to_set() {
    let err = OpenAiAdapter::new(OpenAiConfig::default()).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidRequest);
    assert!(err.hint().unwrap().contains("OPENAI_MODEL"));
    let err = OpenAiAdapter::new(OpenAiConfig::new("not a url", "m")).unwrap_err();
    assert!(err.hint().unwrap().contains("OPENAI_BASE_URL"));
}
