//! Fuzzing (property tests on arbitrary input, `cargo xtask fuzz` runs them longer): reading
//! `rigger.toml` never panics, whatever the file holds; a bad file is an InvalidRequest.

use std::path::Path;

use proptest::prelude::*;
use rigger_conformance::fuzz::config;
use rigger_ports::ErrorKind;
use rigger_provider_factory::ConfigFile;

/// Text that is often TOML of our shape: known tables and keys, values of every type.
fn toml_like() -> impl Strategy<Value = String> {
    let line = prop_oneof![
        Just("[roles.router]".to_owned()),
        Just("[roles.planner]".to_owned()),
        Just("[providers.candle]".to_owned()),
        Just("[providers.ollama]".to_owned()),
        Just("[providers.nope]".to_owned()),
        Just("[[roles]]".to_owned()),
        (
            proptest::sample::select(vec![
                "provider",
                "model",
                "fallback",
                "temperature",
                "max_tokens",
                "repair_attempts",
                "threads",
                "kernels",
                "host",
                "falls_through",
                "fallback_cooldown_secs",
                "router_on_failure",
                "idle_timeout_secs",
                "api_key",
            ]),
            prop_oneof![
                Just("\"x\"".to_owned()),
                Just("[\"ollama\", \"candle:/m.gguf\"]".to_owned()),
                Just("-1".to_owned()),
                Just("4294967296".to_owned()),
                Just("1e400".to_owned()),
                Just("nan".to_owned()),
                Just("{ a = 1 }".to_owned()),
                Just("true".to_owned()),
                ".{0,8}",
            ],
        )
            .prop_map(|(k, v)| format!("{k} = {v}")),
        ".{0,24}",
    ];
    proptest::collection::vec(line, 0..16).prop_map(|lines| lines.join("\n"))
}

proptest! {
    #![proptest_config(config(512))]

    #[test]
    fn config_reading_survives_anything(text in prop_oneof![toml_like(), ".{0,256}"]) {
        if let Err(e) = ConfigFile::parse(Path::new("fuzz.toml"), &text) {
            prop_assert_eq!(e.kind(), ErrorKind::InvalidRequest);
        }
    }
}
