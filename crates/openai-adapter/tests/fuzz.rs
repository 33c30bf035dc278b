//! Fuzzing (property tests on arbitrary input, `cargo xtask fuzz` runs them longer): the chat
//! completions stream decoder never panics on any sequence of event payloads.

use proptest::prelude::*;
use rigger_conformance::fuzz::{config, json_like};
use rigger_openai_adapter::decode_payloads_for_bench;

const KEYS: &[&str] = &[
    "choices",
    "delta",
    "content",
    "finish_reason",
    "index",
    "usage",
    "prompt_tokens",
    "completion_tokens",
    "error",
    "message",
    "model",
    "role",
    "stop_reason",
    "timings",
    "tool_calls",
    "[DONE]",
];

proptest! {
    #![proptest_config(config(512))]

    #[test]
    fn stream_decoding_survives_anything(
        payloads in proptest::collection::vec(json_like(KEYS), 0..12),
    ) {
        let _ = decode_payloads_for_bench(&payloads);
    }
}
