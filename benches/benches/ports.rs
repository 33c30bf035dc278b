//! Per-token costs in the port layer: stop-sequence matching and structured-output checks.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use rigger_benches::token_pieces;
use rigger_ports::{ResponseFormat, StopMatcher, StopStep};

fn stop_matcher(c: &mut Criterion) {
    let pieces = token_pieces(256);
    let stops = vec!["</answer>".to_owned(), "\n\nUser:".to_owned()];
    let mut group = c.benchmark_group("stop_matcher");
    group.throughput(Throughput::Elements(pieces.len() as u64));
    group.bench_function("256 pieces, 2 stops", |b| {
        b.iter(|| {
            let mut m = StopMatcher::new(&stops);
            for p in &pieces {
                if let StopStep::Stop(t) = m.push(black_box(p)) {
                    return t;
                }
            }
            m.finish()
        })
    });
    group.finish();
}

fn structured_check(c: &mut Criterion) {
    let format = ResponseFormat::JsonSchema {
        name: "decomposition".into(),
        schema: serde_json::json!({
            "type": "object",
            "properties": {"subtasks": {"type": "array", "items": {
                "type": "object",
                "properties": {"title": {"type": "string"}, "description": {"type": "string"}},
                "required": ["title"]}}},
            "required": ["subtasks"]
        }),
    };
    let output = r#"{"subtasks": [{"title": "Schema", "description": "Design tables"},
        {"title": "API", "description": "Expose endpoints"}, {"title": "UI"}]}"#;
    c.bench_function("response_format_check/json_schema", |b| {
        b.iter(|| format.check(black_box(output)))
    });
}

criterion_group!(benches, stop_matcher, structured_check);
criterion_main!(benches);
