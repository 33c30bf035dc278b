#![allow(clippy::unwrap_used)] // a panic is how a test reports failure
//! Every endpoint the adapter uses, against scripted responses built from Ollama's API reference
//! (`docs/api.md`; the section each fixture comes from is named at its test), and the exact
//! request bodies the adapter sends.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures::StreamExt;
use rigger_http_support::fixture::{FixtureResponse, FixtureServer, RecordedRequest};
use rigger_ollama_adapter::{
    KeepAlive, OllamaAdapter, OllamaClient, OllamaConfig, list_models, probe,
};
use rigger_ports::{
    ChatMessage, ErrorKind, FinishReason, GenerationRequest, LanguageModel, ResponseFormat,
    StreamEvent, TimingSource, collect_stream,
};
use serde_json::{Value, json};
use support::{FixtureOllama, MODEL, config, error_reply, show_body};

/// A server answering `/api/show` like api.md (context length `ctx`) and `/api/chat` with `chat`.
async fn server_with_chat(
    ctx: u64,
    chat: impl Fn(&RecordedRequest) -> FixtureResponse + Send + Sync + 'static,
) -> FixtureServer {
    FixtureServer::start(move |r| match r.path.as_str() {
        "/api/show" => FixtureResponse::ok().json(&show_body(ctx)),
        "/api/chat" | "/api/generate" => chat(r),
        _ => FixtureResponse::status(404).chunk("404 page not found"),
    })
    .await
    .unwrap()
}

fn ndjson(lines: &[Value]) -> FixtureResponse {
    let mut reply = FixtureResponse::ok().header("content-type", "application/x-ndjson");
    for line in lines {
        reply = reply.chunk(line.to_string() + "\n");
    }
    reply
}

fn chat_line(text: &str) -> Value {
    json!({"model": MODEL, "created_at": "2023-08-04T08:52:19.385406455-07:00",
           "message": {"role": "assistant", "content": text, "images": null}, "done": false})
}

fn adapter(server: &FixtureServer) -> OllamaAdapter {
    OllamaAdapter::new(config(&server.url(), MODEL)).unwrap()
}

fn chat_bodies(server: &FixtureServer) -> Vec<Value> {
    server
        .requests()
        .iter()
        .filter(|r| r.path == "/api/chat")
        .map(RecordedRequest::json)
        .collect()
}

/// api.md, "Chat request (Structured outputs)": the request carries the schema in `format` and
/// the sampling options; the response text is the JSON, and the figures are Ollama's own.
#[tokio::test]
async fn chat_sends_exactly_the_documented_body_and_maps_the_final_record() {
    let server = server_with_chat(8192, |_| {
        ndjson(&[
            chat_line("{\"age\": 22, "),
            chat_line("\"available\": false}"),
            json!({"model": "llama3.1", "created_at": "2024-12-06T00:46:58.265747Z",
                   "message": {"role": "assistant", "content": ""},
                   "done_reason": "stop", "done": true, "total_duration": 2254970291u64,
                   "load_duration": 574751416u64, "prompt_eval_count": 34,
                   "prompt_eval_duration": 1502000000u64, "eval_count": 12,
                   "eval_duration": 175000000u64}),
        ])
    })
    .await;
    let schema = json!({"type": "object",
        "properties": {"age": {"type": "integer"}, "available": {"type": "boolean"}},
        "required": ["age", "available"]});
    let mut cfg = config(&server.url(), MODEL);
    cfg.keep_alive = Some(KeepAlive::Duration("10m".into()));
    let model = OllamaAdapter::new(cfg).unwrap();
    let request = GenerationRequest::new(vec![
        ChatMessage::system("Answer in JSON."),
        ChatMessage::user("Ollama is 22 years old and busy saving the world."),
    ])
    .with_max_tokens(64)
    .with_temperature(0.0)
    .with_seed(101)
    .with_top_k(20)
    .with_top_p(0.9)
    .with_response_format(ResponseFormat::JsonSchema {
        name: "person".into(),
        schema: schema.clone(),
    });
    let g = model.generate(request).await.unwrap();

    assert_eq!(
        chat_bodies(&server),
        vec![json!({
            "model": MODEL,
            "messages": [
                {"role": "system", "content": "Answer in JSON."},
                {"role": "user", "content": "Ollama is 22 years old and busy saving the world."}
            ],
            "stream": true,
            "format": schema,
            "options": {"temperature": 0.0, "seed": 101, "top_k": 20, "top_p": 0.9,
                        "num_predict": 64, "num_ctx": 2048},
            "keep_alive": "10m"
        })]
    );
    assert_eq!(g.text, "{\"age\": 22, \"available\": false}");
    let c = &g.completion;
    assert_eq!(c.finish_reason, FinishReason::EndOfSequence);
    assert_eq!((c.usage.prompt_tokens, c.usage.completion_tokens), (34, 12));
    let t = &c.timings;
    assert_eq!(t.source, TimingSource::Backend);
    assert_eq!(t.load, Some(Duration::from_nanos(574_751_416)));
    assert_eq!(t.prompt_duration, Duration::from_nanos(1_502_000_000));
    assert_eq!(t.generation_duration, Duration::from_nanos(175_000_000));
    assert_eq!((t.prompt_tokens, t.generated_tokens), (34, 12));
    assert!(t.time_to_first_token.is_some());
    assert_eq!(model.descriptor().context_length, Some(8192));
}

/// The `stop` option is sent; `done_reason: "stop"` then cannot tell a stop sequence from
/// end-of-sequence, and the finish reason says so instead of guessing. `"length"` is MaxTokens.
#[tokio::test]
async fn stop_sequences_are_sent_and_done_reasons_are_mapped_honestly() {
    let reason = Arc::new(std::sync::Mutex::new("stop"));
    let r2 = Arc::clone(&reason);
    let server = server_with_chat(8192, move |_| {
        let reason = *r2.lock().unwrap();
        ndjson(&[
            chat_line("Hi"),
            json!({"model": MODEL, "created_at": "2024-07-22T20:33:28.123648Z",
                   "message": {"role": "assistant", "content": ""}, "done_reason": reason,
                   "done": true, "prompt_eval_count": 5, "prompt_eval_duration": 1000,
                   "eval_count": 1, "eval_duration": 1000}),
        ])
    })
    .await;
    let model = adapter(&server);
    let g = model
        .generate(
            GenerationRequest::prompt("hi")
                .with_stop("\n")
                .with_stop("user:"),
        )
        .await
        .unwrap();
    assert_eq!(
        g.completion.finish_reason,
        FinishReason::Other("stop".into())
    );
    assert_eq!(
        chat_bodies(&server)[0]["options"]["stop"],
        json!(["\n", "user:"])
    );

    *reason.lock().unwrap() = "length";
    let g = model
        .generate(GenerationRequest::prompt("hi"))
        .await
        .unwrap();
    assert_eq!(g.completion.finish_reason, FinishReason::MaxTokens);
    assert!(chat_bodies(&server)[1]["options"].get("stop").is_none());
}

/// api.md, "Chat Request (Streaming)": a final record without `done_reason` (older servers).
/// Lines split across TCP writes, even inside a UTF-8 character, arrive whole.
#[tokio::test]
async fn lines_split_across_writes_and_the_documented_stream_parse() {
    let server = server_with_chat(8192, |_| {
        let first = chat_line("The caf\u{e9}").to_string() + "\n";
        let bytes = first.as_bytes();
        let inside_e_acute = first.find('\u{e9}').unwrap() + 1;
        FixtureResponse::ok()
            .chunk(&bytes[..10])
            .pause(Duration::from_millis(5))
            .chunk(&bytes[10..inside_e_acute])
            .pause(Duration::from_millis(5))
            .chunk(&bytes[inside_e_acute..])
            .chunk(
                json!({"model": MODEL, "created_at": "2023-08-04T19:22:45.499127Z", "done": true,
                       "total_duration": 4883583458u64, "load_duration": 1334875,
                       "prompt_eval_count": 26, "prompt_eval_duration": 342546000,
                       "eval_count": 282, "eval_duration": 4535599000u64})
                .to_string()
                    + "\n",
            )
    })
    .await;
    let model = adapter(&server);
    let mut events = model
        .stream(GenerationRequest::prompt("why is the sky blue?"))
        .await
        .unwrap();
    assert_eq!(
        events.next().await.unwrap().unwrap(),
        StreamEvent::Delta("The caf\u{e9}".into())
    );
    let Some(Ok(StreamEvent::Done(done))) = events.next().await else {
        panic!("expected the final record");
    };
    assert!(events.next().await.is_none());
    // 282 < num_predict 512 and no done_reason: the model ended it.
    assert_eq!(done.finish_reason, FinishReason::EndOfSequence);
    assert_eq!(done.usage.completion_tokens, 282);
    assert_eq!(
        done.timings.generation_duration,
        Duration::from_nanos(4_535_599_000)
    );
}

/// An `{"error": …}` line inside a 200 stream is an error, never text; nothing is retried after
/// text has arrived.
#[tokio::test]
async fn an_error_line_mid_stream_is_an_error_and_is_not_retried() {
    let server = server_with_chat(8192, |_| {
        ndjson(&[
            chat_line("Once"),
            chat_line(" upon"),
            json!({"error": "llama runner process has terminated: signal: killed"}),
        ])
    })
    .await;
    let model = adapter(&server);
    let mut events = model
        .stream(GenerationRequest::prompt("story"))
        .await
        .unwrap();
    assert_eq!(
        events.next().await.unwrap().unwrap(),
        StreamEvent::Delta("Once".into())
    );
    assert_eq!(
        events.next().await.unwrap().unwrap(),
        StreamEvent::Delta(" upon".into())
    );
    let err = events.next().await.unwrap().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::BackendCrashed);
    assert!(
        err.message()
            .contains("llama runner process has terminated"),
        "{err}"
    );
    assert!(events.next().await.is_none());
    assert_eq!(chat_bodies(&server).len(), 1);
}

/// A connection that breaks off after text is an error (no final record), not retried.
#[tokio::test]
async fn a_stream_cut_short_is_an_error_and_is_not_retried() {
    let server = server_with_chat(8192, |_| ndjson(&[chat_line("Once")])).await;
    let model = adapter(&server);
    let err = model
        .generate(GenerationRequest::prompt("story"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Io, "{err}");
    assert!(err.message().contains("final record"), "{err}");
    assert_eq!(chat_bodies(&server).len(), 1);
}

/// Unknown models: 404 with Ollama's message, from `/api/chat` (lazy) or `/api/show` (connect).
#[tokio::test]
async fn unknown_models_are_model_not_found_with_the_pull_command() {
    let server = FixtureServer::start(|r| match r.path.as_str() {
        "/api/show" => error_reply(404, "model 'nope' not found"),
        _ => error_reply(404, "model \"nope\" not found, try pulling it first"),
    })
    .await
    .unwrap();
    let err = OllamaAdapter::connect(config(&server.url(), "nope"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ModelNotFound);
    assert_eq!(err.code(), Some("OLLAMA_MODEL_NOT_FOUND"));
    assert!(err.hint().unwrap().contains("ollama pull nope"), "{err}");
    assert!(err.to_string().contains("nope"));
    // Not retried: a missing model does not appear by waiting.
    assert_eq!(server.requests().len(), 1);
}

/// Error statuses with `{"error": …}` bodies map onto the port's kinds; 429 and 5xx are retried
/// before any text, honouring Retry-After.
#[tokio::test]
async fn error_statuses_map_to_kinds_and_retry_where_it_can_help() {
    let cases: [(u16, &str, ErrorKind, usize); 5] = [
        (
            400,
            "invalid options: num_gpu",
            ErrorKind::InvalidRequest,
            1,
        ),
        (
            500,
            "model requires more system memory (12.3 GiB) than is available (4.1 GiB)",
            ErrorKind::ModelLoadFailed,
            1,
        ),
        (500, "something went wrong", ErrorKind::BackendCrashed, 3),
        (429, "too many requests", ErrorKind::RateLimited, 3),
        (401, "unauthorized", ErrorKind::Unauthorized, 1),
    ];
    for (status, message, kind, attempts) in cases {
        let server = server_with_chat(8192, move |_| {
            error_reply(status, message).header("retry-after", "0")
        })
        .await;
        let err = adapter(&server)
            .generate(GenerationRequest::prompt("hi"))
            .await
            .unwrap_err();
        assert_eq!(err.kind(), kind, "{status} {message}: {err}");
        assert!(err.to_string().contains(message), "{err}");
        assert!(err.hint().is_some(), "{err}");
        assert_eq!(chat_bodies(&server).len(), attempts, "{status} {message}");
    }
}

#[tokio::test]
async fn a_retry_after_is_waited_for_then_the_stream_succeeds() {
    let calls = Arc::new(AtomicUsize::new(0));
    let seen = Arc::clone(&calls);
    let server = server_with_chat(8192, move |_| {
        if seen.fetch_add(1, Ordering::SeqCst) == 0 {
            error_reply(503, "server busy, please try again.  maximum pending requests exceeded")
                .header("retry-after", "1")
        } else {
            ndjson(&[
                chat_line("ok"),
                json!({"done": true, "done_reason": "stop", "eval_count": 1, "prompt_eval_count": 3}),
            ])
        }
    })
    .await;
    let started = Instant::now();
    let g = adapter(&server)
        .generate(GenerationRequest::prompt("hi"))
        .await
        .unwrap();
    assert_eq!(g.text, "ok");
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "Retry-After was not honoured"
    );
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

/// Connection refused: NotAvailable, naming the address and how to start Ollama; retried first.
#[tokio::test]
async fn connection_refused_names_the_address_and_the_fix() {
    let url = FixtureServer::refused_url().await.unwrap();
    let err = OllamaAdapter::new(config(&url, MODEL))
        .unwrap()
        .generate(GenerationRequest::prompt("hi"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotAvailable);
    assert_eq!(err.code(), Some("OLLAMA_NOT_AVAILABLE"));
    assert!(err.message().contains(&url), "{err}");
    assert!(err.message().contains("3 attempts"), "{err}");
    assert!(err.hint().unwrap().contains("ollama serve"), "{err}");
    assert!(err.hint().unwrap().contains("OLLAMA_HOST"), "{err}");

    let err = probe(&config(&url, MODEL), Duration::from_secs(1))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotAvailable);
}

/// Timeouts: before the first line (it includes loading), and between lines.
#[tokio::test]
async fn first_token_and_idle_timeouts_are_timeout_errors() {
    let hang_first = server_with_chat(8192, |_| FixtureResponse::ok().hang()).await;
    let mut cfg = config(&hang_first.url(), MODEL);
    cfg.first_token_timeout = Duration::from_millis(200);
    let started = Instant::now();
    let err = OllamaAdapter::new(cfg)
        .unwrap()
        .generate(GenerationRequest::prompt("hi"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Timeout, "{err}");
    assert!(
        err.hint()
            .unwrap()
            .contains("RIGGER_OLLAMA_FIRST_TOKEN_TIMEOUT_SECS")
    );
    assert!(started.elapsed() < Duration::from_secs(2));

    let hang_later = server_with_chat(8192, |_| {
        FixtureResponse::ok()
            .chunk(chat_line("a").to_string() + "\n")
            .hang()
    })
    .await;
    let mut cfg = config(&hang_later.url(), MODEL);
    cfg.idle_timeout = Duration::from_millis(200);
    let err = OllamaAdapter::new(cfg)
        .unwrap()
        .generate(GenerationRequest::prompt("hi"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Timeout, "{err}");
    assert!(
        err.hint()
            .unwrap()
            .contains("RIGGER_OLLAMA_IDLE_TIMEOUT_SECS")
    );
}

/// Dropping the stream closes the connection: the server sees the body abandoned at once.
#[tokio::test]
async fn dropping_the_stream_aborts_the_request() {
    let server = server_with_chat(8192, |_| {
        let mut reply = FixtureResponse::ok();
        for _ in 0..1000 {
            reply = reply
                .chunk(chat_line(" word").to_string() + "\n")
                .pause(Duration::from_millis(10));
        }
        reply
    })
    .await;
    let model = adapter(&server);
    let mut events = model
        .stream(GenerationRequest::prompt("long"))
        .await
        .unwrap();
    assert!(matches!(
        events.next().await,
        Some(Ok(StreamEvent::Delta(_)))
    ));
    drop(events);
    let deadline = Instant::now() + Duration::from_secs(2);
    while server.bodies_abandoned() == 0 {
        assert!(
            Instant::now() < deadline,
            "the body was not abandoned after the drop"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(server.bodies_completed(), 1, "only /api/show completed");
}

/// The prompt is never cut: `num_ctx` covers prompt + budget, and what cannot fit the model's
/// context is refused before anything is sent.
#[tokio::test]
async fn num_ctx_is_sized_and_oversized_prompts_are_refused_unsent() {
    let ollama = FixtureOllama::start_with_context(8192).await;
    let model = OllamaAdapter::new(config(&ollama.url(), MODEL)).unwrap();
    assert_eq!(
        model.descriptor().context_length,
        None,
        "lazy: nothing fetched yet"
    );
    model
        .generate(GenerationRequest::prompt("short").with_max_tokens(4))
        .await
        .unwrap();
    assert_eq!(model.descriptor().context_length, Some(8192));
    let prompt = "word ".repeat(700); // 3500 bytes: estimated 3500 + 80 tokens
    model
        .generate(GenerationRequest::prompt(prompt.clone()).with_max_tokens(4))
        .await
        .unwrap();
    let sent: Vec<u64> = ollama
        .chat_requests()
        .iter()
        .map(|r| r.json()["options"]["num_ctx"].as_u64().unwrap())
        .collect();
    assert_eq!(sent, vec![2048, 4096]);

    let err = model
        .generate(GenerationRequest::prompt("word ".repeat(2000)).with_max_tokens(4))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ContextLengthExceeded);
    assert!(!err.is_retryable());
    assert!(err.message().contains("8192"), "{err}");
    assert_eq!(
        ollama.chat_requests().len(),
        2,
        "the oversized prompt was sent"
    );

    // A fixed num_ctx is sent as is and bounds what fits.
    let mut cfg = config(&ollama.url(), MODEL);
    cfg.num_ctx = Some(1024);
    let fixed = OllamaAdapter::connect(cfg).await.unwrap();
    assert_eq!(fixed.descriptor().context_length, Some(1024));
    fixed
        .generate(GenerationRequest::prompt("short").with_max_tokens(4))
        .await
        .unwrap();
    assert_eq!(ollama.chat_requests()[2].json()["options"]["num_ctx"], 1024);
    let err = fixed
        .generate(GenerationRequest::prompt(prompt).with_max_tokens(4))
        .await
        .unwrap_err();
    assert!(err.message().contains("configured num_ctx"), "{err}");
}

/// What the port refuses is refused before any request: no exact budgets (Ollama cannot ignore
/// end-of-sequence), no empty requests, no seeds Ollama would change.
#[tokio::test]
async fn refused_requests_never_reach_the_server() {
    let server = server_with_chat(8192, |_| error_reply(500, "must not be called")).await;
    let model = adapter(&server);
    let exact = model
        .generate(GenerationRequest::prompt("hi").with_exact_tokens(8))
        .await
        .unwrap_err();
    assert_eq!(exact.kind(), ErrorKind::Unsupported);
    let empty = model
        .generate(GenerationRequest::new(vec![]))
        .await
        .unwrap_err();
    assert_eq!(empty.kind(), ErrorKind::InvalidRequest);
    let seed = model
        .generate(GenerationRequest::prompt("hi").with_seed(u64::MAX))
        .await
        .unwrap_err();
    assert_eq!(seed.kind(), ErrorKind::InvalidRequest);
    assert!(server.requests().is_empty(), "{:?}", server.requests());
}

/// api.md, "Generate request (Streaming)" and "Request (Raw Mode)": a raw prompt goes to
/// `/api/generate` with `raw: true`; text comes in `response`.
#[tokio::test]
async fn raw_prompts_use_api_generate() {
    let server = server_with_chat(8192, |_| {
        ndjson(&[
            json!({"model": MODEL, "created_at": "2023-08-04T08:52:19.385406455-07:00",
                   "response": "The", "done": false}),
            json!({"model": MODEL, "created_at": "2023-08-04T08:52:19.385406455-07:00",
                   "response": " sky", "done": false}),
            json!({"model": MODEL, "created_at": "2023-08-04T19:22:45.499127Z", "response": "",
                   "done": true, "done_reason": "length", "context": [1, 2, 3],
                   "total_duration": 10706818083u64, "load_duration": 6338219291u64,
                   "prompt_eval_count": 26, "prompt_eval_duration": 130079000,
                   "eval_count": 2, "eval_duration": 4232710000u64}),
        ])
    })
    .await;
    let model = adapter(&server);
    let g = model
        .generate_raw(
            "[INST] why is the sky blue? [/INST]",
            GenerationRequest::new(vec![])
                .with_max_tokens(2)
                .with_temperature(0.0),
        )
        .await
        .unwrap();
    assert_eq!(g.text, "The sky");
    assert_eq!(g.completion.finish_reason, FinishReason::MaxTokens);
    let sent: Vec<Value> = server
        .requests()
        .iter()
        .filter(|r| r.path == "/api/generate")
        .map(RecordedRequest::json)
        .collect();
    assert_eq!(
        sent,
        vec![
            json!({"model": MODEL, "prompt": "[INST] why is the sky blue? [/INST]", "raw": true,
                    "stream": true,
                    "options": {"temperature": 0.0, "num_predict": 2, "num_ctx": 2048}})
        ]
    );
    let err = model
        .stream_raw("x", GenerationRequest::prompt("also messages"))
        .await
        .err()
        .unwrap();
    assert_eq!(err.kind(), ErrorKind::InvalidRequest);
}

/// api.md, "List Local Models", "List Running Models", "Show Model Information", and
/// `GET /api/version`.
#[tokio::test]
async fn management_endpoints_return_typed_results() {
    let server = FixtureServer::start(|r| match (r.method.as_str(), r.path.as_str()) {
        ("GET", "/api/version") => FixtureResponse::ok().json(&json!({"version": "0.5.1"})),
        ("GET", "/api/tags") => FixtureResponse::ok().json(&json!({"models": [
            {"name": "codellama:13b", "modified_at": "2023-11-04T14:56:49.277302595-07:00",
             "size": 7365960935u64,
             "digest": "9f438cb9cd581fc025612d27f7c1a6669ff83a8bb0ed86c94fcf4c5440555697",
             "details": {"format": "gguf", "family": "llama", "families": null,
                         "parameter_size": "13B", "quantization_level": "Q4_0"}},
            {"name": "llama3:latest", "modified_at": "2023-12-07T09:32:18.757212583-08:00",
             "size": 3825819519u64,
             "digest": "fe938a131f40e6f6d40083c9f0f430a515233eb2edaa6d72eb85c50d64f2300e",
             "details": {"format": "gguf", "family": "llama", "families": null,
                         "parameter_size": "7B", "quantization_level": "Q4_0"}}]})),
        ("GET", "/api/ps") => FixtureResponse::ok().json(&json!({"models": [
            {"name": "mistral:latest", "model": "mistral:latest", "size": 5137025024u64,
             "digest": "2ae6f6dd7a3dd734790bbbf58b8909a606e0e7e97e94b7604e0aa7ae4490e6d8",
             "details": {"parent_model": "", "format": "gguf", "family": "llama",
                         "families": ["llama"], "parameter_size": "7.2B",
                         "quantization_level": "Q4_0"},
             "expires_at": "2024-06-04T14:38:31.83753-07:00", "size_vram": 5137025024u64}]})),
        ("POST", "/api/show") => FixtureResponse::ok().json(&show_body(8192)),
        _ => FixtureResponse::status(404).chunk("404 page not found"),
    })
    .await
    .unwrap();
    let cfg = config(&server.url(), MODEL);
    let client = OllamaClient::new(&cfg).unwrap();

    assert_eq!(client.version().await.unwrap(), "0.5.1");
    assert_eq!(
        probe(&cfg, Duration::from_secs(1)).await.unwrap(),
        format!("Ollama 0.5.1 at {}", server.url())
    );
    let tags = client.list_models().await.unwrap();
    assert_eq!(tags.len(), 2);
    assert_eq!(tags[0].name, "codellama:13b");
    assert_eq!(tags[0].size_bytes, 7_365_960_935);
    assert_eq!(tags[0].details.parameter_size, "13B");
    assert!(tags[0].details.families.is_empty());
    assert_eq!(
        list_models(&cfg).await.unwrap(),
        vec!["codellama:13b", "llama3:latest"]
    );
    let ps = client.running_models().await.unwrap();
    assert_eq!(ps[0].name, "mistral:latest");
    assert_eq!(ps[0].vram_bytes, 5_137_025_024);
    assert_eq!(
        ps[0].expires_at.as_deref(),
        Some("2024-06-04T14:38:31.83753-07:00")
    );
    let info = client.show(MODEL).await.unwrap();
    assert_eq!(info.architecture.as_deref(), Some("llama"));
    assert_eq!(info.context_length, Some(8192));
    assert_eq!(info.details.quantization_level, "Q4_0");
    assert!(info.template.contains("<|start_header_id|>"));
    assert_eq!(
        server
            .requests()
            .iter()
            .find(|r| r.path == "/api/show")
            .unwrap()
            .json(),
        json!({"model": MODEL})
    );
}

/// A server without an endpoint (old Ollama) says so; a hung server fails the probe in time.
#[tokio::test]
async fn missing_endpoints_and_hung_servers() {
    let old = FixtureServer::start(|_| FixtureResponse::status(404).chunk("404 page not found"))
        .await
        .unwrap();
    let err = OllamaClient::new(&config(&old.url(), MODEL))
        .unwrap()
        .running_models()
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unsupported, "{err}");
    assert!(err.hint().unwrap().contains("upgrade"), "{err}");

    let hung = FixtureServer::start(|_| FixtureResponse::ok().hang())
        .await
        .unwrap();
    let started = Instant::now();
    let err = probe(&config(&hung.url(), MODEL), Duration::from_millis(200))
        .await
        .unwrap_err();
    assert!(
        matches!(err.kind(), ErrorKind::NotAvailable | ErrorKind::Timeout),
        "{err}"
    );
    assert!(started.elapsed() < Duration::from_secs(1));
    assert_eq!(hung.requests().len(), 1, "the probe does not retry");
}

/// api.md, "Pull a Model": progress lines until `success`; an error line fails the pull.
#[tokio::test]
async fn pull_streams_progress_until_success() {
    let server = FixtureServer::start(|r| {
        if r.json()["model"] == "broken" {
            return ndjson(&[
                json!({"status": "pulling manifest"}),
                json!({"error": "pull model manifest: file does not exist"}),
            ]);
        }
        ndjson(&[
            json!({"status": "pulling manifest"}),
            json!({"status": "downloading digestname", "digest": "digestname",
                   "total": 2142590208u64}),
            json!({"status": "downloading digestname", "digest": "digestname",
                   "total": 2142590208u64, "completed": 241970}),
            json!({"status": "verifying sha256 digest"}),
            json!({"status": "writing manifest"}),
            json!({"status": "removing any unused layers"}),
            json!({"status": "success"}),
        ])
    })
    .await
    .unwrap();
    let client = OllamaClient::new(&config(&server.url(), MODEL)).unwrap();
    let events: Vec<_> = client.pull("llama3.2").await.unwrap().collect().await;
    let events: Vec<_> = events.into_iter().map(Result::unwrap).collect();
    assert_eq!(events.len(), 7);
    assert_eq!(events[2].total, Some(2_142_590_208));
    assert_eq!(events[2].completed, Some(241_970));
    assert_eq!(events[6].status, "success");
    assert_eq!(
        server.requests()[0].json(),
        json!({"model": "llama3.2", "stream": true})
    );
    assert_eq!(server.requests()[0].path, "/api/pull");

    let events: Vec<_> = client.pull("broken").await.unwrap().collect().await;
    let err = events.last().unwrap().as_ref().unwrap_err();
    assert!(err.message().contains("file does not exist"), "{err}");
}

/// api.md, "Create a Blob" / "Check if a Blob Exists" / "Create a Model": the GGUF is hashed,
/// uploaded byte for byte under its digest when the server lacks it, then named with `files`.
#[tokio::test]
async fn create_from_gguf_uploads_the_blob_then_creates() {
    let dir = std::env::temp_dir().join(format!("rigger-ollama-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let gguf = dir.join("tiny.gguf");
    let bytes: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(&gguf, &bytes).unwrap();
    let digest = {
        use sha2_digest::hex_sha256;
        hex_sha256(&bytes)
    };

    let has_blob = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = Arc::clone(&has_blob);
    let server = FixtureServer::start(move |r| match (r.method.as_str(), r.path.as_str()) {
        ("HEAD", p) if p.starts_with("/api/blobs/") => {
            FixtureResponse::status(if flag.load(Ordering::SeqCst) { 200 } else { 404 })
        }
        ("POST", p) if p.starts_with("/api/blobs/") => FixtureResponse::status(201),
        ("POST", "/api/create") => ndjson(&[
            json!({"status": "parsing GGUF"}),
            json!({"status": "using existing layer sha256:22f7f8ef5f4c791c1b03d7eb414399294764d7cc82c7e94aa81a1feb80a983a2"}),
            json!({"status": "writing manifest"}),
            json!({"status": "success"}),
        ]),
        _ => FixtureResponse::status(404).chunk("404 page not found"),
    })
    .await
    .unwrap();
    let client = OllamaClient::new(&config(&server.url(), MODEL)).unwrap();
    let events: Vec<_> = client
        .create_from_gguf("rigger-tiny", &gguf)
        .map(Result::unwrap)
        .collect()
        .await;
    let statuses: Vec<&str> = events.iter().map(|e| e.status.as_str()).collect();
    assert_eq!(statuses.first(), Some(&"hashing tiny.gguf"));
    assert_eq!(statuses.last(), Some(&"success"));
    let uploads: Vec<_> = events.iter().filter(|e| e.status == "uploading").collect();
    assert_eq!(uploads.last().unwrap().completed, Some(3_000_000));
    assert_eq!(uploads.last().unwrap().total, Some(3_000_000));

    let requests = server.requests();
    let blob_path = format!("/api/blobs/sha256:{digest}");
    let upload = requests
        .iter()
        .find(|r| r.method == "POST" && r.path == blob_path)
        .unwrap();
    assert!(
        upload.body == bytes,
        "the uploaded blob differs from the file"
    );
    let create = requests.iter().find(|r| r.path == "/api/create").unwrap();
    assert_eq!(
        create.json(),
        json!({"model": "rigger-tiny", "files": {"tiny.gguf": format!("sha256:{digest}")},
               "stream": true})
    );

    // When the server has the blob, nothing is uploaded again.
    has_blob.store(true, Ordering::SeqCst);
    let before = server.requests().len();
    let events: Vec<_> = client
        .create_from_gguf("rigger-tiny", &gguf)
        .map(Result::unwrap)
        .collect()
        .await;
    assert!(events.iter().any(|e| e.status == "using existing blob"));
    let later = &server.requests()[before..];
    assert!(
        !later
            .iter()
            .any(|r| r.method == "POST" && r.path.starts_with("/api/blobs/"))
    );
    std::fs::remove_dir_all(&dir).ok();

    let missing = client
        .create_from_gguf("x", std::path::Path::new("/nonexistent/x.gguf"))
        .collect::<Vec<_>>()
        .await;
    assert_eq!(
        missing.last().unwrap().as_ref().unwrap_err().kind(),
        ErrorKind::Io
    );
}

/// An API key goes out as a bearer token, and never shows in Debug output.
#[tokio::test]
async fn the_api_key_is_a_bearer_token() {
    let server = FixtureServer::start(|_| FixtureResponse::ok().json(&json!({"version": "0.5.1"})))
        .await
        .unwrap();
    let cfg = OllamaConfig::from_vars(&|k| match k {
        "OLLAMA_HOST" => Some(server.url()),
        "OLLAMA_API_KEY" => Some("sk-test-0123456789abcdefghij".into()),
        _ => None,
    })
    .unwrap();
    assert!(!format!("{cfg:?}").contains("0123456789"));
    OllamaClient::new(&cfg).unwrap().version().await.unwrap();
    assert_eq!(
        server.requests()[0].header("authorization"),
        Some("Bearer sk-test-0123456789abcdefghij")
    );
}

#[tokio::test]
async fn keep_alive_seconds_are_numbers() {
    let ollama = FixtureOllama::start().await;
    let mut cfg = config(&ollama.url(), MODEL);
    cfg.keep_alive = Some(KeepAlive::Seconds(0));
    let model = OllamaAdapter::new(cfg).unwrap();
    let g = collect_stream(
        "ollama",
        model
            .stream(GenerationRequest::prompt("hi").with_max_tokens(2))
            .await
            .unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(g.completion.usage.completion_tokens, 2);
    assert_eq!(ollama.chat_requests()[0].json()["keep_alive"], 0);
}

/// SHA-256 for the create test, from the same crate the adapter uses.
mod sha2_digest {
    pub fn hex_sha256(bytes: &[u8]) -> String {
        use sha2::{Digest, Sha256};
        Sha256::digest(bytes)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }
}

/// Ollama's MLX engine (a safetensors model) accepts `format` and ignores it: such a model must
/// not be trusted with structured output, while a GGUF model (llama.cpp's engine) is.
#[tokio::test]
async fn a_model_on_ollamas_mlx_engine_is_not_trusted_with_structured_output() {
    for (format, native) in [("gguf", true), ("safetensors", false)] {
        let server = FixtureServer::start(move |r| match r.path.as_str() {
            "/api/show" => {
                let mut show = show_body(4096);
                show["details"]["format"] = json!(format);
                FixtureResponse::ok().json(&show)
            }
            _ => FixtureResponse::status(404).chunk("404 page not found"),
        })
        .await
        .unwrap();
        let model = OllamaAdapter::connect(config(&server.url(), MODEL))
            .await
            .unwrap();
        assert_eq!(
            model.descriptor().capabilities.native_structured_output,
            native,
            "a {format} model"
        );
    }
}
