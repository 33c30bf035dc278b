//! The engine's public surface on the tiny generated model: every instruction set gives the same
//! logits to the bit, and what the engine does not run or cannot do is a typed error.

use candle_core::quantized::GgmlDType;
use candle_core::quantized::gguf_file::Value;
use rigger_cpu_engine::{DecodeStepper, Error, Isa, WeightFormat, load_gguf};

mod support;

use support::tiny;

/// Same integer sums, same float operations in the same order: capping the instruction set
/// changes nothing but speed, over a prompt and a run of decode steps.
#[test]
fn every_instruction_set_gives_the_same_logits_bit_for_bit() {
    // 21 tokens: AMX's tiles take a whole tile of 16 and a partial one.
    let prompt: Vec<u32> = (1..=21).map(|i| i * 11).collect();
    for file in ["model-q4_0.gguf", "model-q8_0.gguf"] {
        let run = |isa: Isa| {
            let mut stepper = DecodeStepper::open(&tiny(file), isa, prompt.clone())
                .unwrap_or_else(|e| panic!("{file} {isa:?}: {e}"));
            let mut logits = vec![stepper.restart().expect("prompt")];
            for token in [3, 30, 300, 33] {
                logits.push(stepper.feed(token).expect("step"));
            }
            logits
        };
        let reference = run(Isa::Portable);
        for isa in [Isa::Avx2, Isa::Avx512Vnni, Isa::Amx] {
            if !isa.is_supported() {
                rigger_model_gen::declare_skip(
                    "cpu-engine stepper: every ISA gives the same tokens",
                    &format!("{isa:?} is not available on this processor"),
                );
                continue;
            }
            for (step, (got, want)) in run(isa).iter().zip(&reference).enumerate() {
                let same = got
                    .iter()
                    .zip(want)
                    .all(|(g, w)| g.to_bits() == w.to_bits());
                assert!(same, "{file} {isa:?}: logits of step {step} differ");
            }
        }
    }
}

#[test]
fn the_stepper_reports_what_runs_and_counts_positions() {
    let mut stepper =
        DecodeStepper::open(&tiny("model-q8_0.gguf"), Isa::Portable, vec![1, 2, 3]).expect("open");
    assert_eq!(stepper.model().weight_format(), WeightFormat::Q8_0);
    assert_eq!(stepper.model().describe(), "rigger-cpu llama Q8_0 portable");
    assert_eq!(
        stepper.step().expect("first step"),
        4,
        "the prompt, then one token"
    );
    assert_eq!(stepper.step().expect("second step"), 5);
    stepper.restart().expect("restart");
    assert_eq!(stepper.step().expect("after a restart"), 4);
}

#[test]
fn what_the_engine_does_not_run_is_not_covered() {
    // Q3_K (llama.cpp's Q3_K_M files): no kernel of ours.
    let path = support::k_quant_gguf("q3_k.gguf", 1, &|_, _, _| GgmlDType::Q3K);
    match load_gguf(&path, Isa::Portable) {
        Err(Error::NotCovered(why)) => assert!(why.contains("Q3K"), "{why}"),
        other => panic!("q3_k weights: {:?}", other.err()),
    }
    support::remove(&path);
    // F16 rows that are not whole 32-value blocks (the kernels count floats in blocks too).
    let mut w = rigger_model_gen::scratch::Weights::new(7);
    let path = rigger_model_gen::scratch::write_gguf(
        "f16-40.gguf",
        &[("general.architecture", Value::String("llama".into()))],
        &[(
            "odd.weight".to_string(),
            w.tensor(&[2, 40], GgmlDType::F16, 1.0),
        )],
    );
    match load_gguf(&path, Isa::Portable) {
        Err(Error::NotCovered(why)) => assert!(why.contains("rows of 40 values"), "{why}"),
        other => panic!("f16 rows of 40: {:?}", other.err()),
    }
    support::remove(&path);
    let path = rigger_model_gen::scratch::write_gguf(
        "gpt2.gguf",
        &[("general.architecture", Value::String("gpt2".into()))],
        &[],
    );
    match load_gguf(&path, Isa::Portable) {
        Err(Error::NotCovered(why)) => assert!(why.contains("gpt2"), "{why}"),
        other => panic!("a gpt2 file: {:?}", other.err()),
    }
    support::remove(&path);
    // Phi-3 with a rotary embedding over part of each head (candle's phi3 lacks it too).
    let path = rigger_model_gen::scratch::write_gguf(
        "phi3-partial-rope.gguf",
        &[
            ("general.architecture", Value::String("phi3".into())),
            ("phi3.embedding_length", Value::U32(128)),
            ("phi3.block_count", Value::U32(1)),
            ("phi3.feed_forward_length", Value::U32(256)),
            ("phi3.attention.head_count", Value::U32(4)),
            ("phi3.attention.layer_norm_rms_epsilon", Value::F32(1e-5)),
            ("phi3.rope.dimension_count", Value::U32(16)),
        ],
        &[],
    );
    match load_gguf(&path, Isa::Portable) {
        Err(Error::NotCovered(why)) => assert!(why.contains("partial rotary"), "{why}"),
        other => panic!("a partial-rotary phi3 file: {:?}", other.err()),
    }
    support::remove(&path);
}

#[test]
fn bad_input_and_bad_files_are_typed_errors() {
    let empty = DecodeStepper::open(&tiny("model-q4_0.gguf"), Isa::Portable, Vec::new());
    assert!(matches!(empty, Err(Error::InvalidInput(_))));
    let mut stepper =
        DecodeStepper::open(&tiny("model-q4_0.gguf"), Isa::Portable, vec![1]).expect("open");
    let vocab = stepper.model().vocab() as u32;
    assert!(matches!(stepper.feed(vocab), Err(Error::InvalidInput(_))));
    assert!(matches!(
        load_gguf(&tiny("no-such-file.gguf"), Isa::Portable),
        Err(Error::Io(_))
    ));
    assert!(matches!(
        load_gguf(&tiny("tokenizer.json"), Isa::Portable),
        Err(Error::Malformed(_))
    ));
}
