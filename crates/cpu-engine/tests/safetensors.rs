//! Hugging Face safetensors checkpoints on the engine's float kernels. The generator writes each
//! model both as safetensors and as a GGUF F16 file of the same weights (Llama's Q/K rows
//! permuted for GGUF, as llama.cpp's converter does), so a checkpoint must give its GGUF twin's
//! logits: bit for bit where the twin stores the same values (Llama, Qwen3: matrices in f16,
//! norms of ones), within a bound where it does not (Qwen2's biases: f16 in the checkpoint, f32
//! in the GGUF). BF16 checkpoints, which no GGUF twin holds, are held to candle's `llama` run on
//! the same file in f32. What the engine does not run is refused as not covered, so the frontend
//! runs candle's model instead.

use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::llama;
use rigger_cpu_engine::{Error, HfConfig, Isa, Model, WeightFormat, load_gguf, load_safetensors};
use rigger_model_gen::{Family, Format, GenOptions, Shape, generate, tiny_shape};

mod support;

use support::{argmax_and_margin, largest_difference};

const PROMPT: &[u32] = &[1, 50, 60, 70, 80, 90, 300, 7];
/// Tokens fed one at a time after the prompt.
const STEPS: [u32; 4] = [3, 30, 300, 451];

static TINY_LLAMA: Shape = tiny_shape(Family::Llama, "tiny");
static TINY_QWEN2: Shape = tiny_shape(Family::Qwen2, "tiny-qwen2");
static TINY_QWEN3: Shape = tiny_shape(Family::Qwen3, "tiny-qwen3");

/// `shape` written as a checkpoint of `dtype` and a GGUF F16 twin, in a folder of the test's own.
fn checkpoint(shape: &'static Shape, dtype: DType, test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("rigger-st-{test}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let opts = GenOptions {
        formats: vec![Format::Safetensors, Format::GgufF16],
        safetensors_dtype: dtype,
        ..GenOptions::new(shape)
    };
    generate(&dir, &opts, &|_| {}).expect("generate the checkpoint");
    dir
}

/// The numbers of the generator's `config.json` for `shape`, as a frontend parses them.
fn config(shape: &Shape) -> HfConfig {
    HfConfig {
        model_type: match shape.family {
            Family::Llama => "llama",
            Family::Qwen2 => "qwen2",
            Family::Qwen3 => "qwen3",
        }
        .into(),
        hidden_size: shape.hidden_size,
        intermediate_size: shape.intermediate_size,
        num_hidden_layers: shape.num_hidden_layers,
        num_attention_heads: shape.num_attention_heads,
        num_key_value_heads: Some(shape.num_key_value_heads),
        head_dim: Some(shape.head_dim()),
        rms_norm_eps: shape.rms_norm_eps,
        rope_theta: Some(shape.rope_theta),
        attention_bias: shape.family == Family::Qwen2,
        ..HfConfig::default()
    }
}

fn open(dir: &Path, shape: &Shape, isa: Isa) -> Model {
    load_safetensors(&[dir.join("model.safetensors")], &config(shape), isa)
        .expect("the engine runs the checkpoint")
}

/// The logits after the prompt and after each step.
fn logits(model: &Model) -> Vec<Vec<f32>> {
    let mut cache = model.cache(PROMPT.len() + STEPS.len());
    let mut out = vec![model.forward(&mut cache, PROMPT).expect("prompt")];
    for token in STEPS {
        out.push(model.forward(&mut cache, &[token]).expect("step"));
    }
    out
}

fn supported() -> Vec<Isa> {
    [Isa::Portable, Isa::Avx2, Isa::Avx512Vnni, Isa::Amx]
        .into_iter()
        .filter(|isa| isa.is_supported())
        .collect()
}

/// A checkpoint of `shape` gives its GGUF F16 twin's logits, bit for bit, on each of `isas`.
fn equals_its_gguf_twin(shape: &'static Shape, isas: &[Isa], test: &str) {
    let dir = checkpoint(shape, DType::F16, test);
    for &isa in isas {
        let model = open(&dir, shape, isa);
        assert_eq!(model.weight_format(), WeightFormat::F16);
        let expected = format!("rigger-cpu {} F16", shape.family.gguf_name());
        assert!(
            model.describe().starts_with(&expected),
            "{}",
            model.describe()
        );
        let twin = load_gguf(&dir.join("model-f16.gguf"), isa).expect("the GGUF twin");
        assert_eq!(logits(&model), logits(&twin), "{isa:?}");
    }
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn a_llama_checkpoint_gives_its_gguf_f16_twins_logits_bit_for_bit() {
    equals_its_gguf_twin(&TINY_LLAMA, &supported(), "llama");
}

#[test]
fn a_qwen3_checkpoint_gives_its_gguf_f16_twins_logits_bit_for_bit() {
    equals_its_gguf_twin(&TINY_QWEN3, &[Isa::detect()], "qwen3");
}

#[test]
fn a_qwen2_checkpoint_gives_its_gguf_f16_twins_logits_within_the_bias_rounding() {
    let dir = checkpoint(&TINY_QWEN2, DType::F16, "qwen2");
    let isa = Isa::detect();
    let model = open(&dir, &TINY_QWEN2, isa);
    assert!(model.describe().starts_with("rigger-cpu qwen2 F16"));
    let twin = load_gguf(&dir.join("model-f16.gguf"), isa).expect("the GGUF twin");
    for (ours, theirs) in logits(&model).iter().zip(logits(&twin)) {
        let scale = theirs.iter().fold(0f32, |m, v| m.max(v.abs()));
        let difference = largest_difference(ours, &theirs);
        // f16 rounding of biases (relative 2^-11) moves the logits by about that share.
        assert!(
            difference <= 0.01 * scale,
            "{difference} at a scale of {scale}"
        );
        // Nonzero: the biases are read (a checkpoint without them would differ far more, and
        // one read in f32 would be equal).
        assert!(difference > 0.0);
        let (choice, margin) = argmax_and_margin(&theirs);
        if margin > 2.0 * difference {
            assert_eq!(argmax_and_margin(ours).0, choice);
        }
    }
    std::fs::remove_dir_all(&dir).ok();
}

/// candle's `llama` on the checkpoint, in f32, fed as [`logits`] feeds the engine.
fn candle_logits(dir: &Path) -> Vec<Vec<f32>> {
    let json = std::fs::read(dir.join("config.json")).expect("config.json");
    let raw: llama::LlamaConfig = serde_json::from_slice(&json).expect("a Llama config");
    let config = raw.into_config(false);
    let device = Device::Cpu;
    // SAFETY: the test's own file, not modified while mapped.
    #[allow(unsafe_code)]
    let vb = unsafe {
        VarBuilder::from_mmaped_safetensors(&[dir.join("model.safetensors")], DType::F32, &device)
    }
    .expect("map the checkpoint");
    let model = llama::Llama::load(vb, &config).expect("candle's llama");
    let mut cache = llama::Cache::new(true, DType::F32, &config, &device).expect("a cache");
    let mut run = |tokens: &[u32], pos: usize| -> Vec<f32> {
        let input = Tensor::new(tokens, &device)
            .and_then(|t| t.unsqueeze(0))
            .expect("input");
        model
            .forward(&input, pos, &mut cache)
            .and_then(|t| t.flatten_all())
            .and_then(|t| t.to_vec1::<f32>())
            .expect("forward")
    };
    let mut out = vec![run(PROMPT, 0)];
    for (i, token) in STEPS.into_iter().enumerate() {
        out.push(run(&[token], PROMPT.len() + i));
    }
    out
}

#[test]
fn a_bf16_checkpoint_runs_on_the_bf16_kernels_as_candles_llama_runs_it_in_f32() {
    let dir = checkpoint(&TINY_LLAMA, DType::BF16, "bf16");
    let reference = candle_logits(&dir);
    for isa in supported() {
        let model = open(&dir, &TINY_LLAMA, isa);
        assert_eq!(model.weight_format(), WeightFormat::BF16);
        for (ours, theirs) in logits(&model).iter().zip(&reference) {
            let scale = theirs.iter().fold(0f32, |m, v| m.max(v.abs()));
            // The same products of the same values in f32; only the order of the sums differs.
            let difference = largest_difference(ours, theirs);
            assert!(
                difference <= 1e-4 * scale,
                "{isa:?}: {difference} at a scale of {scale}"
            );
            assert_eq!(argmax_and_margin(ours).0, argmax_and_margin(theirs).0);
        }
    }
    std::fs::remove_dir_all(&dir).ok();
}

fn not_covered(result: rigger_cpu_engine::Result<Model>) -> String {
    match result {
        Err(Error::NotCovered(why)) => why,
        Err(e) => panic!("expected NotCovered, got {e}"),
        Ok(model) => panic!("expected NotCovered, got {}", model.describe()),
    }
}

#[test]
fn what_the_engine_does_not_run_is_not_covered_and_says_why() {
    let dir = checkpoint(&TINY_LLAMA, DType::F32, "f32");
    let files = [dir.join("model.safetensors")];
    let isa = Isa::detect();
    let why = not_covered(load_safetensors(&files, &config(&TINY_LLAMA), isa));
    assert!(why.contains("F32"), "{why}");

    let phi = HfConfig {
        model_type: "phi3".into(),
        ..config(&TINY_LLAMA)
    };
    let why = not_covered(load_safetensors(&files, &phi, isa));
    assert!(why.contains("\"phi3\""), "{why}");

    let scaled = HfConfig {
        rope_scaling: true,
        ..config(&TINY_LLAMA)
    };
    assert!(not_covered(load_safetensors(&files, &scaled, isa)).contains("rotary"));

    let wide_heads = HfConfig {
        head_dim: Some(32),
        ..config(&TINY_LLAMA)
    };
    assert!(not_covered(load_safetensors(&files, &wide_heads, isa)).contains("heads"));

    let biased = HfConfig {
        attention_bias: true,
        ..config(&TINY_LLAMA)
    };
    assert!(not_covered(load_safetensors(&files, &biased, isa)).contains("biases"));

    // A tensor the engine has no place for (here an expert's weights) is not silently dropped.
    let mut tensors = candle_core::safetensors::load(&files[0], &Device::Cpu).expect("read");
    tensors.insert(
        "model.layers.0.mlp.experts.0.up_proj.weight".into(),
        Tensor::zeros((128, 64), DType::F16, &Device::Cpu).expect("zeros"),
    );
    let odd = dir.join("odd.safetensors");
    candle_core::safetensors::save(&tensors, &odd).expect("write");
    let why = not_covered(load_safetensors(&[odd], &config(&TINY_LLAMA), isa));
    assert!(why.contains("experts.0.up_proj"), "{why}");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn a_checkpoint_missing_a_tensor_is_malformed_not_covered() {
    let dir = checkpoint(&TINY_LLAMA, DType::F16, "missing");
    let path = dir.join("model.safetensors");
    let mut tensors = candle_core::safetensors::load(&path, &Device::Cpu).expect("read");
    tensors.remove("model.layers.1.mlp.down_proj.weight");
    candle_core::safetensors::save(&tensors, &path).expect("write");
    match load_safetensors(&[path], &config(&TINY_LLAMA), Isa::detect()) {
        Err(Error::Malformed(why)) => assert!(why.contains("blk.1.ffn_down"), "{why}"),
        Err(e) => panic!("expected Malformed, got {e}"),
        Ok(_) => panic!("loaded a checkpoint without layer 1's down projection"),
    }
    std::fs::remove_dir_all(&dir).ok();
}
