//! A real model as users download it: SmolLM2-135M-Instruct, one Q4_1 GGUF (Q8_0 tied
//! embedding) with its tokenizer and ChatML template only in the file's metadata — no
//! tokenizer.json. It loads through the adapter, answers through its own chat template, and
//! runs on the CPU engine (Q4_1 blocks) or, pinned, on candle's `quantized_llama`; the
//! conformance suite runs on it.

mod support;

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
    // (candle's path) keeps this copy apart from the one the conformance suite shares (the
    // engine's), which would be resident already.
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
    // Greedy at Q4_1, this 135M model answers "What is the capital of France?" with
    // "L'Étoile, la Marseillaise, ...": "L" leads "The" by a fraction of a logit once the
    // activations are quantized to Q8_1 for the Q4_1 dot products (as ggml's CPU kernels do too);
    // with the same weights dequantized it says Paris (the test below). Asked which city, it
    // names Paris at Q4_1 as well.
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

/// The exact question through the adapter's whole path (the GGUF's own template and tokenizer,
/// candle's `quantized_llama`) on SmolLM2's weights dequantized to F32: the model's answer
/// without activation quantization, as an f32 reference computes it on the same token ids.
/// Fails if the rendered prompt, its tokens, RoPE or the tied output were wrong.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smollm2_dequantized_to_f32_answers_the_exact_question_with_paris() {
    use candle_core::Device;
    use candle_core::quantized::{GgmlDType, QTensor, gguf_file};
    let dir = std::env::temp_dir().join(format!("rigger-smollm2-f32-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let f32_path = dir.join("SmolLM2-135M-Instruct.F32.gguf");
    {
        let mut file = std::fs::File::open(rigger_model_gen::smollm2()).expect("open");
        let content = gguf_file::Content::read(&mut file).expect("metadata");
        let tensors: Vec<(String, QTensor)> = content
            .tensor_infos
            .keys()
            .map(|name| {
                let q = content
                    .tensor(&mut file, name, &Device::Cpu)
                    .expect("tensor");
                let t = q.dequantize(&Device::Cpu).expect("dequantize");
                (
                    name.clone(),
                    QTensor::quantize(&t, GgmlDType::F32).expect("f32"),
                )
            })
            .collect();
        let metadata: Vec<(&str, &gguf_file::Value)> = content
            .metadata
            .iter()
            .map(|(k, v)| (k.as_str(), v))
            .collect();
        let tensors: Vec<(&str, &QTensor)> = tensors.iter().map(|(k, v)| (k.as_str(), v)).collect();
        let mut out = std::fs::File::create(&f32_path).expect("create");
        gguf_file::write(&mut out, &metadata, &tensors).expect("write");
    }
    let config = CandleConfig {
        kernels: Kernels::Reference,
        ..CandleConfig::new(f32_path.display().to_string())
    };
    let model = CandleAdapter::connect(config).await.expect("load");
    let request = GenerationRequest::new(vec![ChatMessage::user("What is the capital of France?")])
        .with_max_tokens(12)
        .with_temperature(0.0);
    let answer = model.generate(request).await;
    let _ = std::fs::remove_dir_all(&dir);
    let answer = answer.expect("generate");
    assert_eq!(answer.completion.usage.prompt_tokens, 37);
    assert_eq!(answer.text, "The capital of France is Paris.");
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
        support::connect_through_a_local_hub(model_id).await
    }
}

async fn smollm2_target() -> SmolLm2 {
    SmolLm2
}

rigger_conformance::conformance_suite!(candle_smollm2, target: smollm2_target);
