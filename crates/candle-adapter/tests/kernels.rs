//! The adapter on the CPU engine against the adapter on candle's `quantized_llama` (the
//! reference path), generating text from the tiny generated model in Q4_0, Q8_0 and F16 (the
//! K-quants and Q4_1 have their own tests in the engine's `tests/k_quants.rs`; formats the
//! engine does not cover are in `tests/families.rs`). The engine's results differ from candle's in the last bits (see the engine's
//! own `tests/reference.rs`, which bounds the drift in the logits); greedy generation must still
//! pick the same tokens. Which `CANDLE_KERNELS` value picks which code is checked here too.

use rigger_candle_adapter::{CandleAdapter, CandleConfig, Kernels};
use rigger_ports::{GenerationRequest, LanguageModel};

mod support;

const FORMATS: [&str; 3] = ["model-q4_0.gguf", "model-q8_0.gguf", "model-f16.gguf"];

use support::tiny;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn greedy_generation_matches_the_reference_token_for_token() {
    let prompts = ["Hi", "Plan the v2 launch: list the risks and the owners."];
    for file in FORMATS {
        let load = |kernels| {
            CandleAdapter::connect(CandleConfig {
                kernels,
                threads: Some(2),
                ..CandleConfig::new(tiny(file).display().to_string())
            })
        };
        // The engine on the best kernels this processor has: `Auto` where it has SIMD ones
        // (AVX2, AVX-512 VNNI), else the engine's portable kernel by name, since `Auto` means
        // candle there (ARM, x86 without AVX2) and the test would compare candle with itself.
        let engine_kernels = if rigger_cpu_engine::Isa::detect() == rigger_cpu_engine::Isa::Portable
        {
            Kernels::Portable
        } else {
            Kernels::Auto
        };
        let own = load(engine_kernels).await.expect("own kernels");
        let reference = load(Kernels::Reference).await.expect("reference");
        assert!(
            own.engine().unwrap_or_default().starts_with("rigger-cpu"),
            "{file}: {:?}",
            own.engine()
        );
        assert_eq!(reference.engine(), Some("candle quantized_llama"));
        for prompt in prompts {
            let request = GenerationRequest::prompt(prompt)
                .with_exact_tokens(64)
                .with_temperature(0.0);
            let ours = own.generate(request.clone()).await.expect("own kernels");
            let theirs = reference.generate(request).await.expect("reference");
            assert_eq!(ours.completion.usage.completion_tokens, 64);
            assert!(!ours.text.is_empty());
            assert_eq!(ours.text, theirs.text, "{file}, prompt {prompt:?}");
        }
    }
}

/// Every instruction set computes the same bits (same integer sums, same float operations in
/// the same order), so capping the set changes nothing but speed: the same text, token for token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_instruction_set_generates_the_same_tokens() {
    let request = GenerationRequest::prompt("Plan the v2 launch: list the risks and the owners.")
        .with_exact_tokens(32)
        .with_temperature(0.0);
    for file in FORMATS {
        let mut texts = Vec::new();
        for kernels in [
            Kernels::Auto,
            Kernels::Avx512,
            Kernels::Avx2,
            Kernels::Portable,
        ] {
            let config = CandleConfig {
                kernels,
                threads: Some(2),
                ..CandleConfig::new(tiny(file).display().to_string())
            };
            match CandleAdapter::connect(config).await {
                Ok(adapter) => {
                    let answer = adapter.generate(request.clone()).await.expect("generate");
                    texts.push((adapter.engine().unwrap_or_default().to_owned(), answer.text));
                }
                Err(e) if matches!(kernels, Kernels::Avx2 | Kernels::Avx512) => {
                    // Only where the processor lacks the set, and then said so.
                    assert!(e.to_string().contains("lacks"), "{e}");
                    rigger_model_gen::declare_skip(
                        "candle kernels: every instruction set generates the same tokens",
                        &e.to_string(),
                    );
                }
                Err(e) => panic!("{file} {kernels:?}: {e}"),
            }
        }
        let (first_engine, first) = &texts[0];
        for (engine, text) in &texts[1..] {
            assert_eq!(text, first, "{file}: {engine} against {first_engine}");
        }
        assert!(
            texts.iter().any(|(e, _)| e.contains("portable")),
            "{texts:?}"
        );
    }
}
