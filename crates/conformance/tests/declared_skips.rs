//! Declared skips: each kind becomes an ignored test that carries its reason (and still runs on
//! demand), and an Unsupported skip is checked against the capabilities the adapter declares.
#![allow(clippy::unwrap_used)] // a panic is how a test reports failure

use rigger_conformance::scripted::{ScriptedModel, ScriptedTarget};
use rigger_conformance::{Capability, Scenario, check_unsupported, check_unsupported_blocking};
use rigger_ports::Capabilities;

/// A scripted model that, like most HTTP backends, cannot force an exact number of tokens.
fn without_exact_budgets() -> Capabilities {
    Capabilities {
        exact_token_budget: false,
        ..ScriptedModel::capabilities()
    }
}

async fn target() -> ScriptedTarget {
    ScriptedTarget::with_capabilities(None, without_exact_budgets())
}

rigger_conformance::conformance_suite!(with_skips, target: target, skip: {
    exact_token_budget: Unsupported("declared skip: the scripted model here declares no exact budgets"),
    concurrent_requests: DoubleCannot("declared skip: proves that a double's limits are reported as ignored with a reason"),
});

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Runtime::new().unwrap()
}

#[test]
fn the_scenarios_that_need_a_capability_say_which() {
    assert_eq!(
        Scenario::ExactTokenBudget.capability(),
        Some(Capability::ExactTokenBudget)
    );
    assert_eq!(
        Scenario::StopSequenceReported.capability(),
        Some(Capability::StopSequences)
    );
    assert_eq!(Scenario::ConcurrentRequests.capability(), None);
    let names: Vec<&str> = Scenario::ALL.iter().map(|s| s.name()).collect();
    let mut unique = names.clone();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(unique.len(), names.len(), "{names:?}");
}

#[test]
fn an_unsupported_skip_of_an_undeclared_capability_passes_its_check() {
    let target = ScriptedTarget::with_capabilities(None, without_exact_budgets());
    runtime()
        .block_on(check_unsupported(Scenario::ExactTokenBudget, &target))
        .unwrap();
}

#[test]
fn an_unsupported_skip_of_a_declared_capability_fails() {
    // The scripted model declares exact budgets, as Ollama declared stop sequences and yet
    // skipped their scenario.
    let failure = runtime()
        .block_on(check_unsupported(
            Scenario::ExactTokenBudget,
            &ScriptedTarget::new(None),
        ))
        .unwrap_err();
    assert!(
        failure.0.contains("declares `exact_token_budget`"),
        "{failure}"
    );
}

#[test]
#[should_panic(expected = "the Unsupported skip of `stop_sequences` is wrong")]
fn the_generated_check_panics_on_a_declared_capability() {
    // What `unsupported::<scenario>::is_declared_and_refused` runs.
    check_unsupported_blocking(Scenario::StopSequences, || async {
        ScriptedTarget::new(None)
    });
}

#[test]
fn an_unsupported_skip_of_a_scenario_without_a_capability_fails() {
    let failure = runtime()
        .block_on(check_unsupported(
            Scenario::ConcurrentRequests,
            &ScriptedTarget::new(None),
        ))
        .unwrap_err();
    assert!(failure.0.contains("needs no capability"), "{failure}");
}
