//! The shared conformance suite against real Candle inference on the tiny generated model, in
//! both formats: GGUF (quantized_llama, q8_0) and safetensors (llama, f32 on the CPU).

use std::sync::Arc;

use async_trait::async_trait;
use rigger_candle_adapter::{CandleAdapter, CandleConfig};
use rigger_conformance::ConformanceTarget;
use rigger_ports::{InferenceError, LanguageModel};

struct CandleTarget {
    model: String,
}

#[async_trait]
impl ConformanceTarget for CandleTarget {
    async fn model(&self) -> Result<Arc<dyn LanguageModel>, InferenceError> {
        Ok(Arc::new(
            CandleAdapter::load(CandleConfig::new(&self.model)).await?,
        ))
    }

    async fn missing_model(
        &self,
        model_id: &str,
    ) -> Result<Arc<dyn LanguageModel>, InferenceError> {
        Ok(Arc::new(
            CandleAdapter::load(CandleConfig::new(model_id)).await?,
        ))
    }
}

fn tiny(file: &str) -> String {
    let dir = rigger_model_gen::tiny_model().expect("generate the tiny model");
    dir.join(file).display().to_string()
}

async fn gguf() -> CandleTarget {
    CandleTarget {
        model: tiny("model-q8_0.gguf"),
    }
}

async fn safetensors() -> CandleTarget {
    CandleTarget { model: tiny("") }
}

rigger_conformance::conformance_suite!(candle_gguf_q8_0, target: gguf);
rigger_conformance::conformance_suite!(candle_safetensors, target: safetensors);
