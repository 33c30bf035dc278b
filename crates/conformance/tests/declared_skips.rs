//! A declared skip becomes an ignored test that carries its reason, and still runs on demand.

use rigger_conformance::scripted::ScriptedTarget;

async fn target() -> ScriptedTarget {
    ScriptedTarget::new(None)
}

rigger_conformance::conformance_suite!(with_a_skip, target: target, skip: {
    exact_token_budget: "declared skip: proves that skips are reported as ignored with a reason",
});

#[test]
fn the_macro_lists_every_scenario() {
    let source = include_str!("../src/lib.rs");
    for scenario in rigger_conformance::Scenario::ALL {
        let line = format!("{} {:?}", scenario.name(), scenario);
        assert!(
            source.contains(&line),
            "conformance_suite! does not generate `{line}`"
        );
    }
}
