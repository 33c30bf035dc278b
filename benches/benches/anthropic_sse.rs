//! Per-event cost of decoding Anthropic's Messages API stream (`rigger_anthropic_adapter::EventDecoder`):
//! what the adapter spends on each `data:` payload after SSE framing, for text replies and for
//! forced-tool (structured output) replies.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use rigger_anthropic_adapter::{Decoded, EventDecoder, Output};
use rigger_benches::token_pieces;
use serde_json::json;

/// The documented event flow for one reply of `pieces`, as the `data` of each event.
fn reply(pieces: &[String], tool: bool) -> Vec<String> {
    let mut events = vec![
        json!({"type": "message_start", "message": {"id": "msg_1", "type": "message",
            "role": "assistant", "content": [], "model": "claude-sonnet-4-5",
            "stop_reason": null, "stop_sequence": null,
            "usage": {"input_tokens": 25, "output_tokens": 1}}}),
        if tool {
            json!({"type": "content_block_start", "index": 0, "content_block":
                {"type": "tool_use", "id": "toolu_1", "name": "answer", "input": {}}})
        } else {
            json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}})
        },
        json!({"type": "ping"}),
    ];
    for p in pieces {
        events.push(if tool {
            json!({"type": "content_block_delta", "index": 0, "delta": {"type": "input_json_delta", "partial_json": p}})
        } else {
            json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": p}})
        });
    }
    events.push(json!({"type": "content_block_stop", "index": 0}));
    events.push(json!({"type": "message_delta", "delta": {"stop_reason": if tool { "tool_use" } else { "end_turn" },
        "stop_sequence": null}, "usage": {"output_tokens": pieces.len()}}));
    events.push(json!({"type": "message_stop"}));
    events.iter().map(|e| e.to_string()).collect()
}

fn decode_all(output: &Output, events: &[String]) -> usize {
    let mut decoder = EventDecoder::new(output.clone(), "claude-sonnet-4-5");
    let mut bytes = 0;
    for data in events {
        match decoder.decode(black_box(data)) {
            Ok(Decoded::Text(t)) => bytes += t.len(),
            Ok(Decoded::Finished { usage, .. }) => bytes += usage.completion_tokens as usize,
            Ok(Decoded::Nothing) => {}
            Err(e) => panic!("bench input failed to decode: {e}"),
        }
    }
    bytes
}

fn anthropic_decode(c: &mut Criterion) {
    let pieces = token_pieces(256);
    let mut group = c.benchmark_group("anthropic_event_decoder");
    for (name, output, tool) in [
        ("text reply, 256 deltas", Output::Text, false),
        (
            "tool reply, 256 input_json deltas",
            Output::ToolInput("answer".into()),
            true,
        ),
    ] {
        let events = reply(&pieces, tool);
        group.throughput(Throughput::Elements(events.len() as u64));
        group.bench_function(name, |b| b.iter(|| decode_all(&output, &events)));
    }
    group.finish();
}

criterion_group!(benches, anthropic_decode);
criterion_main!(benches);
