//! K-quant files (llama.cpp's Q4_K_M and Q5_K_M mixes, pure Q4_K, pure Q6_K), Q4_1, Q5_0, Q5_1
//! and F16/BF16 on the engine against candle's `quantized_llama`, which quantizes activations by the
//! same rules (Q8_K for the K-quants, Q8_0/Q8_1 per 32 values for the others; float weights are
//! multiplied in f32, as the engine does) and computes the same integer sums per block; the float sums differ in order, so the logits differ in the last
//! bits (measured: about 1e-6), and where that moves an 8-bit activation rounding, which the KV
//! cache then keeps, by up to a few hundredths (measured: at most 0.14 at a logit scale of 6 on
//! these random 4-layer models). Free-running greedy decoding must pick the same tokens (a
//! near-tie, where candle's margin is within twice the logit difference, ends the comparison of
//! that prompt, and says so; at least 40 of the 72 steps must be compared); teacher-forced logits
//! must stay within 4% of the logit scale.

use candle_core::quantized::GgmlDType;
use rigger_cpu_engine::{DecodeStepper, Isa, WeightFormat};

mod support;

use support::{Reference, argmax_and_margin, k_quant_gguf, largest_difference, q4_k_m};

const LAYERS: usize = 4;
const PROMPTS: [&[u32]; 3] = [
    &[1, 5, 9, 13, 17],
    &[1, 300, 7],
    &[1, 42, 42, 42, 100, 200, 311],
];

#[test]
fn the_mix_marks_the_layers_llama_cpp_gives_more_bits() {
    // n = 4: n/8 = 0, 7n/8 = 3, and (i - 0) % 3 == 2: layers 2 and 3.
    let more: Vec<usize> = (0..LAYERS)
        .filter(|&i| support::use_more_bits(i, LAYERS))
        .collect();
    assert_eq!(more, [2, 3]);
    // TinyLlama's 22 layers: n/8 = 2, 7n/8 = 19: 0, 1, 19..22, and every third from 4.
    let more: Vec<usize> = (0..22).filter(|&i| support::use_more_bits(i, 22)).collect();
    assert_eq!(more, [0, 1, 4, 7, 10, 13, 16, 19, 20, 21]);
}

#[test]
fn a_q4_k_m_file_decodes_as_candle_does() {
    let path = k_quant_gguf("q4_k_m.gguf", LAYERS, &q4_k_m);
    check(&path, WeightFormat::Q4_K);
    support::remove(&path);
}

/// Mixed formats, side-by-side matrices and all: every instruction set gives the same bits.
#[test]
fn every_instruction_set_gives_the_same_logits_on_a_q4_k_m_file() {
    let path = k_quant_gguf("q4_k_m-isa.gguf", LAYERS, &q4_k_m);
    let run = |isa: Isa| {
        // Three times the prompt: 21 tokens, so AMX's tiles take a whole tile and a partial one.
        let mut stepper = DecodeStepper::open(&path, isa, PROMPTS[2].repeat(3)).expect("open");
        let mut logits = vec![stepper.restart().expect("prompt")];
        for token in [3, 30, 300] {
            logits.push(stepper.feed(token).expect("step"));
        }
        logits
    };
    let reference = run(Isa::Portable);
    for isa in [Isa::Avx2, Isa::Avx512Vnni, Isa::Amx] {
        if !isa.is_supported() {
            rigger_model_gen::declare_skip(
                "cpu-engine k_quants: every ISA equals the portable kernel",
                &format!("{isa:?} is not available on this processor"),
            );
            continue;
        }
        for (step, (got, want)) in run(isa).iter().zip(&reference).enumerate() {
            let same = got
                .iter()
                .zip(want)
                .all(|(g, w)| g.to_bits() == w.to_bits());
            assert!(same, "{isa:?}: logits of step {step} differ");
        }
    }
    support::remove(&path);
}

/// llama.cpp's Q5_K_M: its Q4_K_M mix with Q5_K in place of Q4_K.
#[test]
fn a_q5_k_m_file_decodes_as_candle_does() {
    let q5_k_m = |name: &str, layer, layers| match q4_k_m(name, layer, layers) {
        GgmlDType::Q4K => GgmlDType::Q5K,
        other => other,
    };
    let path = k_quant_gguf("q5_k_m.gguf", LAYERS, &q5_k_m);
    check(&path, WeightFormat::Q5_K);
    support::remove(&path);
}

/// Float weights: candle converts them to f32 and multiplies in f32; the engine reads the
/// 16-bit values and multiplies in f32 too, so only the order of the sums differs.
#[test]
fn f16_and_bf16_files_decode_as_candle_does() {
    for (file, dtype, format) in [
        ("f16.gguf", GgmlDType::F16, WeightFormat::F16),
        ("bf16.gguf", GgmlDType::BF16, WeightFormat::BF16),
    ] {
        let path = k_quant_gguf(file, LAYERS, &|_, _, _| dtype);
        check(&path, format);
        support::remove(&path);
    }
}

/// Q5_0 (what llama.cpp's Q4_K_M writes for rows that are not whole super-blocks): the same
/// integer products as candle's Q5_0 × Q8_0 kernel.
#[test]
fn a_q5_0_file_decodes_as_candle_does() {
    let path = k_quant_gguf("q5_0.gguf", LAYERS, &|_, _, _| GgmlDType::Q5_0);
    check(&path, WeightFormat::Q5_0);
    support::remove(&path);
}

#[test]
fn a_q4_k_file_decodes_as_candle_does() {
    let path = k_quant_gguf("q4_k.gguf", LAYERS, &|_, _, _| GgmlDType::Q4K);
    check(&path, WeightFormat::Q4_K);
    support::remove(&path);
}

/// Q4_1 (SmolLM2's published file is Q4_1) meets activations quantized per 32 values; candle's
/// Q8_1 keeps each block's sum times its scale in f16, ours the exact integer sum, so the logits
/// drift apart faster than the K-quants' (measured: 0.13 at the first greedy steps) and near-ties
/// end the greedy comparison early (after 0, 1 and 7 steps of the three prompts). The
/// teacher-forced bound holds the file to candle; the kernel's own test bounds each product.
#[test]
fn a_q4_1_file_decodes_as_candle_does() {
    let path = k_quant_gguf("q4_1.gguf", LAYERS, &|_, _, _| GgmlDType::Q4_1);
    check_with(&path, WeightFormat::Q4_1, 5);
    support::remove(&path);
}

/// Q5_1 (what llama.cpp's Q5_K_M writes for rows that are not whole super-blocks, most of a
/// Qwen2.5-0.5B file): Q5_0's values with Q4_1's min, so Q4_1's drift from candle's Q8_1
/// (measured: largest relative logit difference 0.12, Q4_1's 0.13), and near-ties end the
/// greedy comparison sooner still (after 0, 1 and 0 steps). The teacher-forced bound holds it.
#[test]
fn a_q5_1_file_decodes_as_candle_does() {
    let path = k_quant_gguf("q5_1.gguf", LAYERS, &|_, _, _| GgmlDType::Q5_1);
    check_with(&path, WeightFormat::Q5_1, 1);
    support::remove(&path);
}

#[test]
fn a_q6_k_file_decodes_as_candle_does() {
    let path = k_quant_gguf("q6_k.gguf", LAYERS, &|_, _, _| GgmlDType::Q6K);
    check(&path, WeightFormat::Q6_K);
    support::remove(&path);
}

fn check(path: &std::path::Path, format: WeightFormat) {
    check_with(path, format, 40);
}

/// [`check`], with at least `least_compared` greedy steps compared before a near-tie.
fn check_with(path: &std::path::Path, format: WeightFormat, least_compared: usize) {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let (mut worst, mut compared) = (0f32, 0);
    for prompt in PROMPTS {
        let mut ours = DecodeStepper::open(path, Isa::detect(), prompt.to_vec()).expect("ours");
        assert_eq!(ours.model().weight_format(), format);
        assert!(
            ours.model().requantized().is_empty(),
            "{}",
            ours.model().describe()
        );
        let mut reference = Reference::open(path, prompt);
        // Free-running greedy decoding: each side feeds its own choice.
        let (mut a, mut b) = (ours.restart().expect("ours"), reference.restart());
        for step in 0..24 {
            let diff = largest_difference(&a, &b);
            worst = worst.max(diff);
            let (mine, _) = argmax_and_margin(&a);
            let (theirs, margin) = argmax_and_margin(&b);
            if margin < 2.0 * diff {
                eprintln!("{name} {prompt:?}: a near-tie at step {step} ends the comparison");
                break;
            }
            assert_eq!(
                mine, theirs,
                "{name} {prompt:?}: greedy choice differs at step {step}"
            );
            compared += 1;
            a = ours.feed(mine as u32).expect("ours");
            b = reference.feed(theirs as u32);
        }
        // Teacher forcing: both continue with candle's choice.
        let (mut a, mut b) = (ours.restart().expect("ours"), reference.restart());
        for step in 0..24 {
            let scale = b.iter().fold(0f32, |m, v| m.max(v.abs()));
            let diff = largest_difference(&a, &b);
            worst = worst.max(diff / scale);
            assert!(scale > 0.1, "degenerate logits");
            assert!(
                diff < 0.04 * scale,
                "{name} {prompt:?} step {step}: differ by {diff} at scale {scale}"
            );
            let (token, _) = argmax_and_margin(&b);
            a = ours.feed(token as u32).expect("ours");
            b = reference.feed(token as u32);
        }
    }
    assert!(
        compared >= least_compared,
        "{name}: only {compared} greedy steps compared"
    );
    eprintln!("{name}: {compared} greedy steps equal; largest relative logit difference {worst}");
}
