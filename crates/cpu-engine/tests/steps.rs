//! The step timings on the tiny generated model: a prompt and decode steps land in their
//! phases with every step of the forward pass timed, and nothing is recorded when off. One
//! test in its own binary: the recording is process-wide.

use rigger_cpu_engine::steps::{self, Step};
use rigger_cpu_engine::{DecodeStepper, Isa};

mod support;

use support::tiny;

#[test]
fn a_prompt_and_decode_steps_are_timed_step_by_step_only_while_recording() {
    let prompt: Vec<u32> = (1..=5).collect();
    let mut stepper = DecodeStepper::open(&tiny("model-q8_0.gguf"), Isa::detect(), prompt)
        .expect("open the tiny model");

    steps::record(false);
    stepper.restart().expect("prompt");
    assert_eq!(steps::take(), Default::default(), "recorded while off");

    steps::record(true);
    stepper.restart().expect("prompt");
    for token in [3, 30, 300] {
        stepper.feed(token).expect("step");
    }
    steps::record(false);
    stepper.feed(33).expect("a step after recording stopped");
    let times = steps::take();

    assert_eq!((times.prompt.forwards, times.prompt.tokens), (1, 5));
    assert_eq!((times.decode.forwards, times.decode.tokens), (3, 3));
    for phase in [&times.prompt, &times.decode] {
        for step in Step::ALL {
            assert!(phase.calls(step) > 0, "{} not timed", step.name());
        }
        // Per forward: the first norm, then two a layer; one attention a layer.
        let forwards = phase.forwards;
        assert_eq!(
            phase.calls(Step::Attention) % forwards,
            0,
            "attention timed once a layer"
        );
        let layers = phase.calls(Step::Attention) / forwards;
        assert_eq!(phase.calls(Step::Norms), forwards * (1 + 2 * layers));
        assert_eq!(phase.calls(Step::Logits), forwards);
        assert!(phase.wall > std::time::Duration::ZERO);
        let steps: std::time::Duration = phase.steps.iter().sum();
        assert!(
            steps <= phase.wall,
            "the steps exceed the forwards' wall time"
        );
    }
    let shown = times.to_string();
    assert!(
        shown.starts_with("prompt: 1 forwards of 5 tokens,")
            && shown.contains("\ndecode: 3 forwards of 1 tokens,")
            && shown.contains(" attention ")
            && shown.contains(" other "),
        "{shown}"
    );
    assert_eq!(
        steps::take(),
        Default::default(),
        "take starts the sums again"
    );
}
