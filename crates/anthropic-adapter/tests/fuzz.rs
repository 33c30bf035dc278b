//! Fuzzing (property tests on arbitrary input, `cargo xtask fuzz` runs them longer): the
//! Messages stream decoder never panics on any sequence of event payloads, for text and for a
//! forced tool's input.

use proptest::prelude::*;
use rigger_anthropic_adapter::{EventDecoder, Output};
use rigger_conformance::fuzz::{config, json_like};

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
