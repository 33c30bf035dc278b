//! Fuzzing (property tests on arbitrary input, `cargo xtask fuzz` runs them longer): the
//! Messages stream decoder never panics on any sequence of event payloads, for text and for a
//! forced tool's input.

use proptest::prelude::*;
use rigger_anthropic_adapter::{EventDecoder, Output};

/// The number of cases: `PROPTEST_CASES` where set (`cargo xtask fuzz` sets it high), else
/// `default`, CI's bounded budget. Failures are not persisted into the source tree.
fn config(default: u32) -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default);
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// Strings that are often JSON of the backend's shapes: objects with the keys its decoder reads,
/// values of every type, truncated documents; and arbitrary text.
fn json_like(keys: &'static [&'static str]) -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        any::<f64>().prop_map(serde_json::Value::from),
        ".{0,12}".prop_map(serde_json::Value::from),
    ];
    let value = leaf.prop_recursive(3, 24, 4, move |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::from),
            proptest::collection::vec((proptest::sample::select(keys), inner), 0..6).prop_map(
                |pairs| {
                    serde_json::Value::Object(
                        pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect(),
                    )
                }
            ),
        ]
    });
    prop_oneof![
        3 => value.clone().prop_map(|v| v.to_string()),
        1 => (value, any::<usize>()).prop_map(|(v, cut)| {
            let text = v.to_string();
            let mut at = cut % (text.len() + 1);
            while !text.is_char_boundary(at) {
                at -= 1;
            }
            text[..at].to_owned()
        }),
        1 => ".{0,64}",
    ]
}

const KEYS: &[&str] = &[
    "type",
    "message",
    "content_block",
    "delta",
    "text",
    "partial_json",
    "index",
    "usage",
    "input_tokens",
    "output_tokens",
    "stop_reason",
    "error",
    "id",
    "name",
    "input",
    "message_start",
    "content_block_start",
    "content_block_delta",
    "text_delta",
    "input_json_delta",
    "message_delta",
    "message_stop",
    "tool_use",
];

proptest! {
    #![proptest_config(config(512))]

    #[test]
    fn event_decoding_survives_anything(
        payloads in proptest::collection::vec(json_like(KEYS), 0..12),
        tool in any::<bool>(),
    ) {
        let output = if tool { Output::ToolInput("answer".into()) } else { Output::Text };
        let mut decoder = EventDecoder::new(output, "claude-test");
        for data in &payloads {
            if decoder.decode(data).is_err() {
                break;
            }
        }
        let _ = decoder.text();
    }
}
