//! A real model as users download it: SmolLM2-135M-Instruct, one Q4_1 GGUF (Q8_0 tied
//! embedding) with its tokenizer and ChatML template only in the file's metadata — no
//! tokenizer.json. It loads through the adapter, answers through its own chat template, and
//! runs on candle's `quantized_llama` (the CPU engine does not read Q4_1); the conformance suite
//! runs on it.

use std::sync::Arc;

use async_trait::async_trait;
use rigger_candle_adapter::{CandleAdapter, CandleConfig};
use rigger_conformance::ConformanceTarget;
use rigger_ports::{ChatMessage, FinishReason, GenerationRequest, InferenceError, LanguageModel};

fn smollm2() -> String {
    rigger_model_gen::smollm2().display().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smollm2_answers_through_its_own_template_and_reports_the_load() {
    // `new` loads lazily: the first request pays for (and reports) the load.
    let model = CandleAdapter::new(CandleConfig::new(smollm2())).expect("adapter");
    let ask = |question: &str| {
        GenerationRequest::new(vec![ChatMessage::user(question)])
            .with_max_tokens(40)
            .with_temperature(0.0)
    };
    // At Q4_1 this 135M model answers "What is the capital of France?" in French verse when
    // greedy; asked which city, it names Paris.
    let question = "Which city is the capital of France?";
    let first = model.generate(ask(question)).await.expect("generate");
    assert!(first.text.contains("Paris"), "{:?}", first.text);
    let load = first
        .completion
        .timings
        .load
        .expect("the loading request reports the load");
    assert_eq!(Some(load), model.load_duration());
    assert!(!load.is_zero());
    assert_eq!(model.engine(), Some("candle quantized_llama"));
    assert_eq!(model.uses_fallback_template(), Some(false));
    assert_eq!(model.descriptor().context_length, Some(8192));
    let second = model.generate(ask(question)).await.expect("generate again");
    assert_eq!(
        second.completion.timings.load, None,
        "resident: nothing loaded"
    );
    assert_eq!(first.text, second.text);
    // The model ends its turn with <|im_end|> (the GGUF's EOS): generation stops there.
    let colors = model
        .generate(ask("Name three colors."))
        .await
        .expect("generate");
    assert_eq!(
        colors.completion.finish_reason,
        FinishReason::EndOfSequence,
        "{:?}",
        colors.text
    );
    assert!(!colors.text.contains("<|im_end|>"), "{:?}", colors.text);
}

struct SmolLm2;

#[async_trait]
impl ConformanceTarget for SmolLm2 {
    async fn model(&self) -> Result<Arc<dyn LanguageModel>, InferenceError> {
        Ok(Arc::new(
            CandleAdapter::connect(CandleConfig::new(smollm2())).await?,
        ))
    }

    async fn missing_model(
        &self,
        model_id: &str,
    ) -> Result<Arc<dyn LanguageModel>, InferenceError> {
        Ok(Arc::new(
            CandleAdapter::connect(CandleConfig::new(model_id)).await?,
        ))
    }
}

async fn smollm2_target() -> SmolLm2 {
    SmolLm2
}

rigger_conformance::conformance_suite!(candle_smollm2, target: smollm2_target);
