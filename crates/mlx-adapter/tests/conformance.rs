//! The shared conformance suite against real mlx-lm (on the CPU here) with the tiny generated
//! model, through the supervised worker.
//!
//! Needs the MLX venv: `cargo xtask setup-mlx` (CI runs it first), or `RIGGER_MLX_PYTHON`.
//! Without it these tests fail with that instruction; they never skip silently.

mod support;

use std::sync::Arc;

use async_trait::async_trait;
use rigger_conformance::ConformanceTarget;
use rigger_mlx_adapter::MlxSubprocessAdapter;
use rigger_ports::{InferenceError, LanguageModel};
use support::{config, tiny};

struct MlxTarget;

#[async_trait]
impl ConformanceTarget for MlxTarget {
    async fn model(&self) -> Result<Arc<dyn LanguageModel>, InferenceError> {
        Ok(Arc::new(
            MlxSubprocessAdapter::connect(config(&tiny())).await?,
        ))
    }

    async fn missing_model(
        &self,
        model_id: &str,
    ) -> Result<Arc<dyn LanguageModel>, InferenceError> {
        Ok(Arc::new(MlxSubprocessAdapter::new(config(model_id))?))
    }
}

async fn target() -> MlxTarget {
    MlxTarget
}

rigger_conformance::conformance_suite!(mlx_cpu, target: target);

/// The drop scenario can fail here: against the same adapter wrapped so that a dropped stream
/// keeps generating, the next request waits for the abandoned generation and the scenario says
/// so.
#[test]
fn the_drop_scenario_fails_when_a_dropped_stream_keeps_generating() {
    use rigger_conformance::non_cancelling::NonCancellingTarget;
    use rigger_conformance::{Scenario, outcome_blocking};
    let failure = outcome_blocking(Scenario::DropCancelsGeneration, || async {
        NonCancellingTarget(MlxTarget)
    })
    .expect_err("a generation that goes on after the drop must fail the scenario");
    assert!(
        failure.0.contains("the dropped generation went on"),
        "{failure}"
    );
}
