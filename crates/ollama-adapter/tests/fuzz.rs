//! Fuzzing (property tests on arbitrary input, `cargo xtask fuzz` runs them longer): the NDJSON
//! chat decoder never panics on any sequence of lines.

use proptest::prelude::*;
use rigger_conformance::fuzz::{config, json_like};
use rigger_ollama_adapter::decode_lines_for_bench;

const KEYS: &[&str] = &[
    "model",
    "message",
    "content",
    "role",
    "done",
    "done_reason",
    "error",
    "prompt_eval_count",
    "prompt_eval_duration",
    "eval_count",
    "eval_duration",
    "load_duration",
    "total_duration",
    "response",
    "thinking",
];

proptest! {
    #![proptest_config(config(512))]

    #[test]
    fn line_decoding_survives_anything(
        lines in proptest::collection::vec(json_like(KEYS), 0..12),
    ) {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("a runtime");
        let _ = runtime.block_on(decode_lines_for_bench(&lines));
    }
}
