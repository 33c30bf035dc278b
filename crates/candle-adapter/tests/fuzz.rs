//! Fuzzing (property tests on arbitrary input, `cargo xtask fuzz` runs them longer), with typed
//! errors and no panic as the property:
//! - compiling arbitrary JSON schemas into grammars (an unsupported feature is InvalidRequest);
//! - building a tokenizer from arbitrary GGUF tokenizer metadata (any mix of lengths, ids out of
//!   range, unknown models and pre-tokenizers);
//! - loading the tiny model with its header and metadata bytes corrupted.

use std::sync::OnceLock;

use candle_core::quantized::gguf_file::Value;
use proptest::prelude::*;
use rigger_candle_adapter::{CandleAdapter, CandleConfig, GrammarCompiler, gguf_tokenizer};
use rigger_conformance::fuzz::config;
use rigger_ports::{ErrorKind, ResponseFormat};

mod support;

fn compiler() -> &'static GrammarCompiler {
    static COMPILER: OnceLock<GrammarCompiler> = OnceLock::new();
    COMPILER.get_or_init(|| {
        let tokenizer = rigger_model_gen::synthetic_tokenizer(512).expect("tokenizer");
        GrammarCompiler::new(tokenizer, vec![2])
    })
}

/// JSON values that are often schemas: schema keywords with values of every type, nested.
fn schema_like() -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::from),
        (-3i64..300).prop_map(serde_json::Value::from),
        proptest::sample::select(vec![
            "object",
            "array",
            "string",
            "integer",
            "number",
            "boolean",
            "null",
            "#/$defs/a",
            "date-time",
            "^[a-z]+$",
            "(",
            "a",
        ])
        .prop_map(serde_json::Value::from),
    ];
    leaf.prop_recursive(4, 48, 5, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::from),
            proptest::collection::vec(
                (
                    proptest::sample::select(vec![
                        "type",
                        "properties",
                        "required",
                        "items",
                        "enum",
                        "const",
                        "minItems",
                        "maxItems",
                        "minLength",
                        "maxLength",
                        "pattern",
                        "format",
                        "anyOf",
                        "oneOf",
                        "allOf",
                        "$ref",
                        "$defs",
                        "a",
                        "additionalProperties",
                        "minimum",
                        "maximum",
                        "not",
                        "prefixItems",
                        "uniqueItems",
                    ]),
                    inner,
                ),
                0..6,
            )
            .prop_map(|pairs| {
                serde_json::Value::Object(
                    pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect(),
                )
            }),
        ]
    })
}

/// Tokenizer metadata of any consistency.
fn tokenizer_metadata() -> impl Strategy<Value = Vec<(String, Value)>> {
    let token = prop_oneof![
        "[a-z]{1,4}",
        Just("<s>".to_owned()),
        Just("</s>".to_owned()),
        Just("<0x0A>".to_owned()),
        Just("▁a".to_owned()),
        Just("Ġa".to_owned()),
        Just(String::new()),
        ".{0,3}",
    ];
    (
        proptest::sample::select(vec!["llama", "gpt2", "bert", "", "t5"]),
        proptest::sample::select(vec!["default", "llama-bpe", "qwen2", "gpt-2", "nope", ""]),
        proptest::collection::vec(token, 0..40),
        proptest::collection::vec(any::<f32>(), 0..40),
        proptest::collection::vec(-1i32..8, 0..40),
        proptest::collection::vec("[a-zĠ▁]{1,3} [a-z]{1,3}|[a-z]+", 0..20),
        (0u32..64, 0u32..64),
        any::<bool>(),
    )
        .prop_map(
            |(model, pre, tokens, scores, types, merges, (bos, eos), add_bos)| {
                let strings =
                    |v: Vec<String>| Value::Array(v.into_iter().map(Value::String).collect());
                vec![
                    ("tokenizer.ggml.model".into(), Value::String(model.into())),
                    ("tokenizer.ggml.pre".into(), Value::String(pre.into())),
                    ("tokenizer.ggml.tokens".into(), strings(tokens)),
                    (
                        "tokenizer.ggml.scores".into(),
                        Value::Array(scores.into_iter().map(Value::F32).collect()),
                    ),
                    (
                        "tokenizer.ggml.token_type".into(),
                        Value::Array(types.into_iter().map(Value::I32).collect()),
                    ),
                    ("tokenizer.ggml.merges".into(), strings(merges)),
                    ("tokenizer.ggml.bos_token_id".into(), Value::U32(bos)),
                    ("tokenizer.ggml.eos_token_id".into(), Value::U32(eos)),
                    ("tokenizer.ggml.add_bos_token".into(), Value::Bool(add_bos)),
                ]
            },
        )
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn schema_compilation_survives_anything(schema in schema_like()) {
        let format = ResponseFormat::JsonSchema { name: "fuzz".into(), schema };
        if let Err(e) = compiler().compile(&format) {
            prop_assert_eq!(e.kind(), ErrorKind::InvalidRequest, "{}", e);
        }
    }

    #[test]
    fn tokenizer_building_survives_any_metadata(metadata in tokenizer_metadata()) {
        let metadata: Vec<(&str, Value)> =
            metadata.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
        let path = support::write_gguf("tokenizer-fuzz.gguf", &metadata, &[]);
        let built = gguf_tokenizer::from_gguf_file(&path);
        support::remove(&path);
        if let Ok(tokenizer) = built {
            // What it builds must also encode without panicking.
            let _ = tokenizer.encode("Plan the v2 launch\n", true);
        }
    }
}

proptest! {
    #![proptest_config(config(24))]

    #[test]
    fn a_corrupted_header_is_a_typed_load_error(
        flips in proptest::collection::vec((0usize..4096, any::<u8>()), 1..6),
    ) {
        let mut bytes = std::fs::read(support::tiny("model-q8_0.gguf")).expect("the tiny model");
        for (at, value) in flips {
            let at = at % bytes.len();
            bytes[at] = value;
        }
        let path = support::write_gguf("corrupt.gguf", &[], &[]);
        std::fs::write(&path, bytes).expect("write the corrupted copy");
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        let loaded =
            runtime.block_on(CandleAdapter::connect(CandleConfig::new(path.display().to_string())));
        support::remove(&path);
        if let Err(e) = loaded {
            prop_assert!(
                !matches!(e.kind(), ErrorKind::Internal),
                "a corrupt file is the file's fault, not ours: {}", e
            );
        }
    }
}
