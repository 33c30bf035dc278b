//! The shared conformance suite against real Candle inference on the tiny generated model: GGUF
//! Q4_0 and Q8_0 on the adapter's own CPU kernels, llama.cpp's Q4_K_M mix (on the model's
//! 256-wide twin: K-quants need rows of whole 256-value super-blocks) on them too, GGUF Q8_0 on
//! candle's `quantized_llama` (the reference path), and F16 safetensors on the engine's float
//! kernels and on candle's llama (f32 on the CPU, the reference path).

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

async fn gguf_q4_k_m() -> CandleTarget {
    let dir = rigger_model_gen::tiny_k_quant_model().expect("generate the 256-wide tiny model");
    CandleTarget {
        model: dir.join("model-q4_k_m.gguf").display().to_string(),
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
rigger_conformance::conformance_suite!(candle_gguf_q4_k_m, target: gguf_q4_k_m);
rigger_conformance::conformance_suite!(candle_gguf_q8_0_reference, target: gguf_q8_0_reference);
async fn safetensors_reference() -> CandleTarget {
    CandleTarget {
        model: tiny(""),
        kernels: Kernels::Reference,
    }
}

rigger_conformance::conformance_suite!(candle_safetensors, target: safetensors);
rigger_conformance::conformance_suite!(candle_safetensors_reference, target: safetensors_reference);

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

/// The Q4_K_M suite above runs on the CPU engine's K-quant kernels, not on candle's fallback
/// (where the processor has the engine's SIMD kernels; elsewhere `auto` means candle's path).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_q4_k_m_target_runs_on_the_cpu_engine() {
    let target = gguf_q4_k_m().await;
    let adapter = CandleAdapter::connect(CandleConfig::new(&target.model))
        .await
        .expect("load the Q4_K_M file");
    let engine = adapter.engine().unwrap_or_default().to_owned();
    if rigger_cpu_engine::Isa::detect() == rigger_cpu_engine::Isa::Portable {
        assert_eq!(engine, "candle quantized_llama");
    } else {
        assert!(engine.starts_with("rigger-cpu llama Q4_K "), "{engine}");
        assert!(!engine.contains("requantized"), "{engine}");
    }
}

/// The safetensors suites run where they say: the engine's F16 kernels under `auto` (where the
/// processor has them), candle's llama under `reference`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_safetensors_targets_run_on_the_engines_they_name() {
    for (target, expected) in [
        (safetensors().await, "rigger-cpu llama F16 "),
        (safetensors_reference().await, "candle llama F32"),
    ] {
        let config = CandleConfig {
            kernels: target.kernels,
            ..CandleConfig::new(&target.model)
        };
        let adapter = CandleAdapter::connect(config)
            .await
            .expect("load the checkpoint");
        let engine = adapter.engine().unwrap_or_default().to_owned();
        if target.kernels == Kernels::Auto
            && rigger_cpu_engine::Isa::detect() == rigger_cpu_engine::Isa::Portable
        {
            assert_eq!(engine, "candle llama F32");
        } else {
            assert!(engine.starts_with(expected), "{engine}");
        }
    }
}
