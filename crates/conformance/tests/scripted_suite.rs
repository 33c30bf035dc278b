//! The suite passes against the clean scripted model (expanded by the same macro adapters use),
//! and every scenario fails against the fault made for it.

use rigger_conformance::scripted::{Fault, ScriptedTarget};
use rigger_conformance::{Scenario, run_scenario};

async fn clean_target() -> ScriptedTarget {
    ScriptedTarget::new(None)
}

rigger_conformance::conformance_suite!(scripted, target: clean_target);

fn fault_for(scenario: Scenario) -> Fault {
    match scenario {
        Scenario::StreamMatchesGenerate => Fault::GenerateDiffersFromStream,
        Scenario::MaxTokensRespected => Fault::OverrunsMaxTokens,
        Scenario::ExactTokenBudget => Fault::ShortOfExactBudget,
        Scenario::UsageAndTimings => Fault::MissingTimings,
        Scenario::StopSequences => Fault::IgnoresStopSequences,
        Scenario::StopSequenceReported => Fault::ReportsStopAmbiguously,
        Scenario::DropCancelsGeneration => Fault::KeepsRunningAfterDrop,
        Scenario::ConcurrentRequests => Fault::RejectsConcurrentRequests,
        Scenario::UnknownModel => Fault::AcceptsUnknownModels,
        Scenario::EmptyMessages => Fault::AcceptsEmptyMessages,
        Scenario::ContextLengthExceeded => Fault::TruncatesLongPrompts,
        Scenario::JsonSchema => Fault::IgnoresResponseFormat,
        Scenario::JsonSchemaNested => Fault::IgnoresResponseFormat,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_scenario_fails_against_its_fault() {
    let mut not_caught = Vec::new();
    for &scenario in Scenario::ALL {
        let fault = fault_for(scenario);
        match run_scenario(scenario, &ScriptedTarget::new(Some(fault))).await {
            Err(failure) => eprintln!("{} caught {fault:?}: {failure}", scenario.name()),
            Ok(()) => not_caught.push((scenario.name(), fault)),
        }
    }
    assert!(
        not_caught.is_empty(),
        "scenarios that passed despite their fault: {not_caught:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_model_declaring_native_structured_output_may_not_answer_malformed_output() {
    // The clean, non-native model passes both with MalformedOutput; declaring native output
    // makes the same answer a failure.
    for scenario in [Scenario::JsonSchema, Scenario::JsonSchemaNested] {
        run_scenario(scenario, &ScriptedTarget::new(None))
            .await
            .unwrap();
        let claimed = ScriptedTarget::new(Some(Fault::ClaimsNativeStructuredOutput));
        let failure = run_scenario(scenario, &claimed).await.unwrap_err();
        assert!(
            failure.0.contains("declares native structured output"),
            "{failure:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ambiguous_stop_reason_still_passes_the_text_scenario() {
    // The text is cut right; only the report is vague (Ollama's case), which the next scenario
    // alone catches.
    run_scenario(
        Scenario::StopSequences,
        &ScriptedTarget::new(Some(Fault::ReportsStopAmbiguously)),
    )
    .await
    .unwrap();
}

#[test]
fn mislabelled_finish_reason_is_caught_too() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let result = rt.block_on(run_scenario(
        Scenario::MaxTokensRespected,
        &ScriptedTarget::new(Some(Fault::MislabelsFinishReason)),
    ));
    assert!(result.is_err());
}
