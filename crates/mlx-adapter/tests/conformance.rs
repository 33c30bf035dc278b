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
