//! The OpenAI-compatible adapter's per-chunk cost: decoding one SSE `data:` payload (JSON
//! parse, usage/timings pick-up, stop matching) into port events. Network excluded.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use rigger_openai_adapter::decode_payloads_for_bench;

/// A realistic stream: 256 one-token chunks as vLLM/llama-server/mlx_lm send them, the finish
/// chunk and the usage chunk.
fn payloads() -> Vec<String> {
    let mut out: Vec<String> = (0..256)
        .map(|i| {
            serde_json::json!({
                "id": "chatcmpl-8f1c2a",
                "object": "chat.completion.chunk",
                "created": 1_760_000_000,
                "model": "meta-llama/Llama-3.2-1B-Instruct",
                "system_fingerprint": "b1234",
                "choices": [{"index": 0, "delta": {"role": "assistant", "content": format!(" word{i}")}, "logprobs": null, "finish_reason": null}]
            })
            .to_string()
        })
        .collect();
    out.push(
        r#"{"id":"chatcmpl-8f1c2a","object":"chat.completion.chunk","choices":[{"index":0,"delta":{},"finish_reason":"length"}]}"#
            .to_owned(),
    );
    out.push(
        r#"{"id":"chatcmpl-8f1c2a","object":"chat.completion.chunk","choices":[],"usage":{"prompt_tokens":42,"completion_tokens":256,"total_tokens":298}}"#
            .to_owned(),
    );
    out.push("[DONE]".to_owned());
    out
}

fn decode(c: &mut Criterion) {
    let payloads = payloads();
    let mut group = c.benchmark_group("openai_sse");
    group.throughput(Throughput::Elements(payloads.len() as u64));
    group.bench_function("decode 259 chunks", |b| {
        b.iter(|| decode_payloads_for_bench(black_box(&payloads)))
    });
    group.finish();
}

criterion_group!(benches, decode);
criterion_main!(benches);
