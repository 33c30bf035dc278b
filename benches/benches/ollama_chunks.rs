//! The Ollama adapter's client-side cost per streamed chunk (one NDJSON line, one token):
//! `decode` is the adapter's own work on lines already in memory (JSON parse, delta, final
//! record); `loopback` is a whole request to a local server that sends every line as its own TCP
//! write (HTTP, line framing, decoding), divided by the lines it streams.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use futures::StreamExt;
use rigger_http_support::RetryPolicy;
use rigger_http_support::fixture::{FixtureResponse, FixtureServer};
use rigger_ollama_adapter::{OllamaAdapter, OllamaConfig, decode_lines_for_bench};
use rigger_ports::{GenerationRequest, LanguageModel};

const TOKENS: usize = 256;

/// 256 one-token lines as api.md's "Chat Request (Streaming)" shows them, then the final record.
fn lines() -> Vec<String> {
    let mut out: Vec<String> = (0..TOKENS)
        .map(|i| {
            serde_json::json!({
                "model": "llama3.2",
                "created_at": "2023-08-04T08:52:19.385406455-07:00",
                "message": {"role": "assistant", "content": format!(" word{i}"), "images": null},
                "done": false
            })
            .to_string()
        })
        .collect();
    out.push(
        serde_json::json!({
            "model": "llama3.2", "created_at": "2023-08-04T19:22:45.499127Z",
            "message": {"role": "assistant", "content": ""}, "done_reason": "length",
            "done": true, "total_duration": 4883583458u64, "load_duration": 1334875,
            "prompt_eval_count": 26, "prompt_eval_duration": 342546000,
            "eval_count": TOKENS, "eval_duration": 4535599000u64
        })
        .to_string(),
    );
    out
}

fn show() -> serde_json::Value {
    serde_json::json!({
        "template": "{{ .Prompt }}",
        "details": {"format": "gguf", "family": "llama"},
        "model_info": {"general.architecture": "llama", "llama.context_length": 8192}
    })
}

fn chunks(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let lines = lines();
    let mut group = c.benchmark_group("ollama_chunks");
    group.throughput(Throughput::Elements(TOKENS as u64));

    group.bench_function("decode 256 lines", |b| {
        b.iter(|| runtime.block_on(decode_lines_for_bench(black_box(&lines))))
    });

    let body: Vec<String> = lines.iter().map(|l| format!("{l}\n")).collect();
    let server = runtime
        .block_on(FixtureServer::start(move |r| {
            if r.path == "/api/show" {
                return FixtureResponse::ok().json(&show());
            }
            body.iter().fold(FixtureResponse::ok(), |reply, line| {
                reply.chunk(line.clone())
            })
        }))
        .expect("fixture server");
    let config = OllamaConfig {
        retry: RetryPolicy::none(),
        ..OllamaConfig::new("llama3.2").with_base_url(server.url())
    };
    let model = runtime
        .block_on(OllamaAdapter::connect(config))
        .expect("adapter");
    group.bench_function("loopback 256 lines", |b| {
        b.iter(|| {
            runtime.block_on(async {
                let stream = model
                    .stream(GenerationRequest::prompt("hi").with_max_tokens(TOKENS as u32))
                    .await
                    .expect("stream");
                black_box(stream.count().await)
            })
        })
    });
    group.finish();
}

criterion_group!(benches, chunks);
criterion_main!(benches);
