//! A real model as users download it: SmolLM2-135M-Instruct, one Q4_1 GGUF (Q8_0 tied
//! embedding) with its tokenizer and ChatML template only in the file's metadata — no
//! tokenizer.json. It loads through the adapter, answers through its own chat template, and
//! runs on candle's `quantized_llama` (the CPU engine does not read Q4_1); the conformance suite
//! runs on it.

use std::sync::Arc;

use async_trait::async_trait;
use rigger_candle_adapter::{CandleAdapter, CandleConfig, Kernels};
use rigger_conformance::ConformanceTarget;
use rigger_ports::{ChatMessage, FinishReason, GenerationRequest, InferenceError, LanguageModel};

fn smollm2() -> String {
    rigger_model_gen::smollm2().display().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smollm2_answers_through_its_own_template_and_reports_the_load() {
    // `new` loads lazily: the first request pays for (and reports) the load. Kernels::Reference
    // (the same candle path for Q4_1) keeps this copy apart from the one the conformance suite
    // shares, which would be resident already.
    let config = CandleConfig {
        kernels: Kernels::Reference,
        ..CandleConfig::new(smollm2())
    };
    let model = CandleAdapter::new(config).expect("adapter");
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

/// The ChatML template in SmolLM2's metadata renders through the adapter's renderer, with the
/// default system prompt it adds and the generation prompt.
#[test]
fn smollm2s_chatml_template_renders_from_its_metadata() {
    use candle_core::quantized::gguf_file;
    use rigger_candle_adapter::template::ChatTemplate;
    let mut file = std::fs::File::open(rigger_model_gen::smollm2()).expect("open");
    let content = gguf_file::Content::read(&mut file).expect("metadata");
    let source = content.metadata["tokenizer.chat_template"]
        .to_string()
        .expect("a template")
        .clone();
    let template = ChatTemplate::new(Some(source), "<|im_start|>".into(), "<|im_end|>".into())
        .expect("compiles");
    let rendered = template
        .render(&[ChatMessage::user("Hi")])
        .expect("renders");
    assert_eq!(
        rendered.text,
        "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging \
         Face<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
    );
    assert!(!rendered.add_special_tokens);
    let with_system = template
        .render(&[ChatMessage::system("Be brief."), ChatMessage::user("Hi")])
        .expect("renders");
    assert!(
        with_system
            .text
            .starts_with("<|im_start|>system\nBe brief.<|im_end|>\n"),
        "{}",
        with_system.text
    );
}

/// How many tokens the adapter makes of one prompt.
async fn prompt_tokens(config: CandleConfig) -> u32 {
    let model = CandleAdapter::connect(config).await.expect("load");
    let request = GenerationRequest::new(vec![ChatMessage::user("Hello there, world of 2024!")])
        .with_exact_tokens(1)
        .with_temperature(0.0);
    let answer = model.generate(request).await.expect("generate");
    answer.completion.usage.prompt_tokens
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ggufs_own_tokenizer_wins_over_one_beside_it_and_a_configured_one_wins_over_both() {
    // SmolLM2 with the tiny model's (much smaller) tokenizer.json beside it.
    let dir = std::env::temp_dir().join(format!("rigger-which-tokenizer-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let gguf = dir.join("model.gguf");
    if std::fs::hard_link(rigger_model_gen::smollm2(), &gguf).is_err() {
        std::fs::copy(rigger_model_gen::smollm2(), &gguf).expect("copy the model");
    }
    let tiny = rigger_model_gen::tiny_model()
        .expect("tiny model")
        .join("tokenizer.json");
    std::fs::copy(&tiny, dir.join("tokenizer.json")).expect("copy the tokenizer");
    let own = prompt_tokens(CandleConfig::new(smollm2())).await;
    let beside = prompt_tokens(CandleConfig::new(gguf.display().to_string())).await;
    let configured = prompt_tokens(CandleConfig {
        tokenizer: Some(tiny),
        ..CandleConfig::new(gguf.display().to_string())
    })
    .await;
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(
        beside, own,
        "the GGUF's own vocabulary wins over a tokenizer.json beside it"
    );
    assert_ne!(
        configured, own,
        "CANDLE_TOKENIZER wins over the GGUF's vocabulary"
    );
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
