//! Constrained decoding in the MLX worker (llguidance as an mlx-lm logits processor, the CPU
//! mask path here): on the random-weight tiny model, whose unconstrained output is never JSON,
//! a schema request still yields a value of the schema; what the grammar engine cannot compile
//! is refused, never answered unconstrained.

mod support;

use rigger_mlx_adapter::MlxSubprocessAdapter;
use rigger_ports::{ErrorKind, GenerationRequest, LanguageModel, ResponseFormat};
use serde_json::{Value, json};
use support::{config, tiny};

fn schema_request(schema: Value, seed: u64) -> GenerationRequest {
    GenerationRequest::prompt("Decide how complex fixing the login page is.")
        .with_max_tokens(400)
        .with_response_format(ResponseFormat::JsonSchema {
            name: "decision".into(),
            schema,
        })
        .with_seed(seed)
}

fn nested() -> Value {
    json!({
        "$defs": {"step": {"type": "object", "properties": {
            "title": {"type": "string", "minLength": 1, "maxLength": 24},
            "size": {"enum": ["small", "large"]}
        }, "required": ["title", "size"], "additionalProperties": false}},
        "type": "object",
        "properties": {
            "reasoning": {"type": "string", "maxLength": 40},
            "decision": {"enum": ["simple", "complex"]},
            "steps": {"type": "array", "items": {"$ref": "#/$defs/step"},
                      "minItems": 2, "maxItems": 3},
            "note": {"type": "string", "maxLength": 10}
        },
        "required": ["reasoning", "decision", "steps"],
        "additionalProperties": false
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_worker_declares_and_delivers_values_of_the_schema_on_random_weights() {
    let model = MlxSubprocessAdapter::connect(config(&tiny()))
        .await
        .unwrap();
    assert!(
        model.descriptor().capabilities.native_structured_output,
        "the venv has llguidance, so MLX must declare native structured output"
    );
    assert!(
        model.worker_info().await.unwrap().llguidance.is_some(),
        "the worker's handshake names its llguidance"
    );
    let format = ResponseFormat::JsonSchema {
        name: "decision".into(),
        schema: nested(),
    };
    // Sampled with different seeds (temperature 1) and greedy: every answer is a value of the
    // schema, which random weights never produce unconstrained.
    for seed in 0..3 {
        let request = schema_request(nested(), seed).with_temperature(1.0);
        let done = model
            .generate(request)
            .await
            .unwrap_or_else(|e| panic!("seed {seed}: a constrained generation must succeed: {e}"));
        let text = &done.text;
        format
            .check(text)
            .unwrap_or_else(|p| panic!("seed {seed}: {p}: {text}"));
        let value: Value = serde_json::from_str(text).unwrap();
        let steps = value["steps"].as_array().unwrap().len();
        assert!((2..=3).contains(&steps), "{text}");
    }
    let free = model
        .generate(
            GenerationRequest::prompt("Anything, as JSON.")
                .with_max_tokens(300)
                .with_temperature(0.0)
                .with_response_format(ResponseFormat::Json),
        )
        .await;
    // Free JSON is an object of any shape: on random weights its strings may run past the
    // budget, which must then be a typed MalformedOutput, never broken JSON passed as success.
    match free {
        Ok(done) => assert!(
            serde_json::from_str::<Value>(&done.text).is_ok_and(|v| v.is_object()),
            "{}",
            done.text
        ),
        Err(e) => assert_eq!(e.kind(), ErrorKind::MalformedOutput, "{e}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schema_the_grammar_engine_refuses_is_an_invalid_request_naming_it() {
    let model = MlxSubprocessAdapter::connect(config(&tiny()))
        .await
        .unwrap();
    let impossible = json!({"type": "object", "properties": {"n": {"type": "integer",
        "minimum": 5, "maximum": 1}}, "required": ["n"]});
    let err = model
        .generate(schema_request(impossible, 0))
        .await
        .expect_err("an unsatisfiable schema cannot be answered");
    assert_eq!(err.kind(), ErrorKind::InvalidRequest, "{err}");
    assert!(err.message().contains("llguidance"), "{err}");

    let exact = GenerationRequest::prompt("x")
        .with_exact_tokens(8)
        .with_response_format(ResponseFormat::Json);
    let err = model.generate(exact).await.expect_err("exact + JSON");
    assert_eq!(err.kind(), ErrorKind::InvalidRequest, "{err}");
}
