//! The shared conformance suite against real Candle inference on the tiny generated model: GGUF
//! Q4_0 and Q8_0 on the adapter's own CPU kernels, GGUF Q8_0 on candle's `quantized_llama` (the
//! reference path), and safetensors (candle's llama, f32 on the CPU).

mod support;

use std::sync::Arc;

use async_trait::async_trait;
use rigger_candle_adapter::{CandleAdapter, CandleConfig, Kernels};
use rigger_conformance::ConformanceTarget;
use rigger_ports::{InferenceError, LanguageModel};

struct CandleTarget {
    model: String,
    kernels: Kernels,
}

#[async_trait]
impl ConformanceTarget for CandleTarget {
    async fn model(&self) -> Result<Arc<dyn LanguageModel>, InferenceError> {
        let config = CandleConfig {
            kernels: self.kernels,
            ..CandleConfig::new(&self.model)
        };
        Ok(Arc::new(CandleAdapter::connect(config).await?))
    }

    async fn missing_model(
        &self,
        model_id: &str,
    ) -> Result<Arc<dyn LanguageModel>, InferenceError> {
        support::connect_through_a_local_hub(model_id).await
    }
}

fn tiny(file: &str) -> String {
    let dir = rigger_model_gen::tiny_model().expect("generate the tiny model");
    dir.join(file).display().to_string()
}

async fn gguf_q4_0() -> CandleTarget {
    CandleTarget {
        model: tiny("model-q4_0.gguf"),
        kernels: Kernels::Auto,
    }
}

async fn gguf_q8_0() -> CandleTarget {
    CandleTarget {
        model: tiny("model-q8_0.gguf"),
        kernels: Kernels::Auto,
    }
}

async fn gguf_q8_0_reference() -> CandleTarget {
    CandleTarget {
        model: tiny("model-q8_0.gguf"),
        kernels: Kernels::Reference,
    }
}

async fn safetensors() -> CandleTarget {
    CandleTarget {
        model: tiny(""),
        kernels: Kernels::Auto,
    }
}

rigger_conformance::conformance_suite!(candle_gguf_q4_0, target: gguf_q4_0);
rigger_conformance::conformance_suite!(candle_gguf_q8_0, target: gguf_q8_0);
rigger_conformance::conformance_suite!(candle_gguf_q8_0_reference, target: gguf_q8_0_reference);
rigger_conformance::conformance_suite!(candle_safetensors, target: safetensors);

/// The drop scenario can fail here: against the same adapter wrapped so that a dropped stream
/// keeps generating, the next request waits for the abandoned generation and the scenario says
/// so.
#[test]
fn the_drop_scenario_fails_when_a_dropped_stream_keeps_generating() {
    use rigger_conformance::non_cancelling::NonCancellingTarget;
    use rigger_conformance::{Scenario, outcome_blocking};
    let failure = outcome_blocking(Scenario::DropCancelsGeneration, || async {
        NonCancellingTarget(gguf_q8_0().await)
    })
    .expect_err("a generation that goes on after the drop must fail the scenario");
    assert!(
        failure.0.contains("the dropped generation went on"),
        "{failure}"
    );
}
