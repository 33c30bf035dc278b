//! Structured output on the client: finding the JSON in a model's answer
//! (`rigger_pipeline::extract_json`) and checking it (`ResponseFormat::check`), as every role step
//! does on every answer.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use rigger_pipeline::extract_json;
use rigger_ports::ResponseFormat;

const BARE: &str = r#"{"subtasks": [{"title": "Parse the CSV", "description": "Read rows into typed transactions"}, {"title": "Group", "description": "By month and category"}, {"title": "Flag outliers", "description": "Beyond three standard deviations"}, {"title": "Report", "description": "One Markdown table per month"}]}"#;

fn wrapped() -> String {
    format!(
        "Sure! Here is the decomposition you asked for:\n\n```json\n{BARE}\n```\n\nLet me know if you want more detail."
    )
}

fn schema() -> ResponseFormat {
    ResponseFormat::JsonSchema {
        name: "decomposition".into(),
        schema: serde_json::json!({
            "type": "object",
            "required": ["subtasks"],
            "properties": {"subtasks": {
                "type": "array", "minItems": 3, "maxItems": 5,
                "items": {"type": "object", "required": ["title", "description"],
                          "properties": {"title": {"type": "string", "minLength": 1},
                                         "description": {"type": "string"}}}
            }}
        }),
    }
}

fn json(c: &mut Criterion) {
    let wrapped = wrapped();
    let format = schema();
    let mut group = c.benchmark_group("json");
    group.bench_function("extract/bare", |b| {
        b.iter(|| extract_json(black_box(BARE)).expect("found"))
    });
    group.bench_function("extract/wrapped_in_prose", |b| {
        b.iter(|| extract_json(black_box(&wrapped)).expect("found"))
    });
    group.bench_function("check/json", |b| {
        b.iter(|| ResponseFormat::Json.check(black_box(BARE)).expect("valid"))
    });
    // `check` compiles the schema on every call; this figure includes that.
    group.bench_function("check/json_schema", |b| {
        b.iter(|| format.check(black_box(BARE)).expect("valid"))
    });
    group.bench_function("extract_then_check/wrapped_in_prose", |b| {
        b.iter(|| {
            let value = extract_json(black_box(&wrapped)).expect("found");
            format.check(&value.to_string()).expect("valid")
        })
    });
    group.finish();
}

criterion_group!(benches, json);
criterion_main!(benches);
