//! What the OpenAI adapter's tests share: SSE chunk builders for scripted answers (the
//! `FixtureServer` of http-support), the fixture vLLM the conformance suite runs against, and a
//! real `mlx_lm.server` from the MLX venv.

#![allow(dead_code)] // each test file uses a part

pub mod mlx_server;
pub mod vllm;

use rigger_http_support::fixture::{FixtureResponse, FixtureServer, RecordedRequest};
use serde_json::{Value, json};

pub fn delta(text: &str) -> Value {
    json!({"object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {"role": "assistant", "content": text}, "finish_reason": null}]})
}

pub fn finish(reason: &str) -> Value {
    json!({"object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {}, "finish_reason": reason}]})
}

pub fn usage(prompt: u32, completion: u32) -> Value {
    json!({"object": "chat.completion.chunk", "choices": [], "usage": {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}})
}

pub fn event(value: &Value) -> String {
    format!("data: {value}\n\n")
}

/// A 200 event stream: each chunk written separately, then `[DONE]`.
pub fn sse(chunks: &[Value]) -> FixtureResponse {
    let mut response = FixtureResponse::ok().header("content-type", "text/event-stream");
    for c in chunks {
        response = response.chunk(event(c));
    }
    response.chunk("data: [DONE]\n\n")
}

pub fn hello_stream() -> FixtureResponse {
    sse(&[delta("Hel"), delta("lo"), finish("stop"), usage(5, 2)])
}

pub async fn serve(
    handler: impl Fn(&RecordedRequest) -> FixtureResponse + Send + Sync + 'static,
) -> FixtureServer {
    FixtureServer::start(handler)
        .await
        .expect("start the fixture server")
}
