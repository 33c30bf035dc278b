//! What the fuzz targets share (property tests on arbitrary input; CI runs a bounded number of
//! cases, `cargo xtask fuzz` many more): the case budget and a strategy for JSON-shaped text.

use proptest::prelude::*;
use proptest::test_runner::Config;

/// The number of cases: `PROPTEST_CASES` where set (`cargo xtask fuzz` sets it high), else
/// `default`, CI's bounded budget. Failures are not persisted into the source tree.
pub fn config(default: u32) -> Config {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default);
    Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    }
}

/// Strings that are often JSON of a backend's shapes: objects with the keys its decoder reads,
/// values of every type, truncated documents; and arbitrary text.
pub fn json_like(keys: &'static [&'static str]) -> impl Strategy<Value = String> {
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
