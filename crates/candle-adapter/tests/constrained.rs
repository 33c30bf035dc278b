#![allow(clippy::unwrap_used)] // a panic is how a test reports failure
//! Constrained decoding on the tiny generated model. Its weights are random, so its text is
//! nonsense: these tests prove the *shape* the grammar guarantees (schema-valid JSON that ends
//! where the grammar ends), that sampling controls still apply under the mask, and the typed
//! errors (an unenforceable schema, a budget that ends first) — never content.

use rigger_candle_adapter::{CandleAdapter, CandleConfig};
use rigger_ports::{
    ErrorKind, FinishReason, GenerateJson, GenerationRequest, LanguageModel, ResponseFormat,
    rejected_completion,
};
use serde_json::json;

async fn tiny() -> CandleAdapter {
    let dir = rigger_model_gen::tiny_model().expect("generate the tiny model");
    let model = dir.join("model-q8_0.gguf").display().to_string();
    CandleAdapter::connect(CandleConfig::new(model))
        .await
        .unwrap()
}

fn nested() -> ResponseFormat {
    ResponseFormat::JsonSchema {
        name: "plan".into(),
        schema: json!({
            "$defs": {"step": {
                "type": "object",
                "properties": {
                    "name": {"type": "string", "minLength": 1, "maxLength": 12},
                    "priority": {"enum": ["low", "high"]},
                    "note": {"type": "string", "maxLength": 8}
                },
                "required": ["name", "priority"],
                "additionalProperties": false
            }},
            "type": "object",
            "properties": {
                "kind": {"type": "string", "enum": ["plan", "note"]},
                "steps": {"type": "array", "items": {"$ref": "#/$defs/step"}, "minItems": 2, "maxItems": 3},
                "done": {"type": "boolean"}
            },
            "required": ["kind", "steps"],
            "additionalProperties": false
        }),
    }
}

fn request(format: &ResponseFormat) -> GenerationRequest {
    GenerationRequest::prompt("Plan how to boil an egg, as JSON.")
        .with_max_tokens(300)
        .with_response_format(format.clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_weights_still_answer_schema_valid_json_greedy_and_sampled() {
    let model = tiny().await;
    assert!(model.descriptor().capabilities.native_structured_output);
    let format = nested();
    let greedy = request(&format).with_temperature(0.0);
    let sampled = request(&format)
        .with_temperature(1.0)
        .with_top_k(40)
        .with_top_p(0.95)
        .with_seed(11);
    for req in [greedy.clone(), sampled.clone()] {
        let g = model.generate(req).await.unwrap();
        format
            .check(&g.text)
            .unwrap_or_else(|p| panic!("{p}: {}", g.text));
        assert_eq!(
            g.completion.finish_reason,
            FinishReason::EndOfSequence,
            "generation stops where the grammar ends: {}",
            g.text
        );
        let steps = serde_json::from_str::<serde_json::Value>(&g.text).unwrap()["steps"]
            .as_array()
            .unwrap()
            .len();
        assert!((2..=3).contains(&steps), "{}", g.text);
    }
    // The seed is honoured under the mask: the same seed gives the same text, another seed
    // (almost surely, over ~50 sampled tokens) another one.
    let a = model.generate(sampled.clone()).await.unwrap().text;
    let b = model.generate(sampled.clone()).await.unwrap().text;
    assert_eq!(a, b);
    let c = model.generate(sampled.with_seed(12)).await.unwrap().text;
    assert_ne!(
        a, c,
        "a different seed changed nothing: sampling ignores the seed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn free_json_is_json_or_a_typed_budget_error() {
    let model = tiny().await;
    for seed in 0..4 {
        let req = GenerationRequest::prompt("Any JSON.")
            .with_max_tokens(64)
            .with_temperature(0.8)
            .with_seed(seed)
            .with_response_format(ResponseFormat::Json);
        match model.generate(req).await {
            Ok(g) => {
                serde_json::from_str::<serde_json::Value>(&g.text).unwrap();
            }
            // The budget ended first, or the grammar's JSON has a number beyond f64 (1e999),
            // which the JSON check refuses: typed, with the raw text, never a false success.
            Err(e) => {
                assert_eq!(e.kind(), ErrorKind::MalformedOutput, "{e}");
                assert!(e.raw_output().is_some(), "{e}");
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schema_the_grammar_cannot_enforce_is_an_invalid_request_naming_the_feature() {
    let model = tiny().await;
    let format = ResponseFormat::JsonSchema {
        name: "tags".into(),
        schema: json!({"type": "array", "items": {"type": "string"}, "uniqueItems": true}),
    };
    let err = model.generate(request(&format)).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidRequest, "{err}");
    assert!(err.message().contains("uniqueItems"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_budget_that_ends_before_the_grammar_is_malformed_output_with_its_figures() {
    let model = tiny().await;
    let format = ResponseFormat::JsonSchema {
        name: "long".into(),
        schema: json!({"type": "object", "properties": {"text": {"type": "string", "minLength": 200}}, "required": ["text"]}),
    };
    let req = request(&format).with_max_tokens(12).with_temperature(0.0);
    let err = model.generate(req).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::MalformedOutput, "{err}");
    assert!(err.message().contains("token budget"), "{err}");
    assert!(
        err.raw_output().unwrap().starts_with("{\"text\":\""),
        "{err:?}"
    );
    let completion = rejected_completion(&err).expect("the figures travel with the error");
    assert_eq!(completion.finish_reason, FinishReason::MaxTokens);
    assert_eq!(completion.usage.completion_tokens, 12);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exact_budget_cannot_be_combined_with_a_schema() {
    let model = tiny().await;
    let req = GenerationRequest::prompt("x")
        .with_exact_tokens(8)
        .with_response_format(nested());
    let err = model.generate(req).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidRequest, "{err}");
}

#[derive(Debug, serde::Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct Ticket {
    #[schemars(length(min = 1, max = 20))]
    title: String,
    severity: Severity,
    #[schemars(length(max = 3))]
    labels: Vec<Label>,
    #[schemars(range(min = 1, max = 5))]
    estimate_days: u8,
}

#[derive(Debug, serde::Deserialize, schemars::JsonSchema, PartialEq)]
#[serde(rename_all = "lowercase")]
enum Severity {
    Low,
    High,
}

#[derive(Debug, serde::Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct Label {
    #[schemars(length(min = 1, max = 8))]
    name: String,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generate_json_derives_the_schema_and_deserialises_on_random_weights() {
    let model = tiny().await;
    for seed in 0..3 {
        let req = GenerationRequest::prompt("File a ticket about the broken build.")
            .with_max_tokens(300)
            .with_temperature(0.7)
            .with_seed(seed);
        let ticket = model.generate_json::<Ticket>(req).await.unwrap();
        let t = &ticket.value;
        assert!(
            !t.title.is_empty() && t.title.chars().count() <= 20,
            "{t:?}"
        );
        assert!(
            t.labels.len() <= 3 && (1..=5).contains(&t.estimate_days),
            "{t:?}"
        );
        assert!(matches!(t.severity, Severity::Low | Severity::High));
        assert!(
            t.labels
                .iter()
                .all(|l| (1..=8).contains(&l.name.chars().count())),
            "{t:?}"
        );
        assert_eq!(
            ticket.generation.completion.finish_reason,
            FinishReason::EndOfSequence
        );
    }
}
