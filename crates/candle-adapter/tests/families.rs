//! The other GGUF families candle-transformers supports, loaded and run through the adapter:
//! Qwen2 (`quantized_qwen2`, biased Q/K/V), Phi-3 (`quantized_phi3`, fused QKV and gate/up),
//! Qwen3 (`quantized_qwen3`, Q/K norms) and Gemma 3 (`quantized_gemma3`, post-norms, sliding
//! window), on tiny seeded files the test writes (Q8_0 matrices, the tiny model's tokenizer),
//! each on the CPU engine (the default) and on candle's model (`Kernels::Reference`). An
//! unknown architecture is refused with the list of supported ones. And every tensor type candle
//! reads loads and runs on a Llama file, on the CPU engine where it covers the type and on
//! candle's `quantized_llama` otherwise, the adapter saying which. A Qwen3 safetensors checkpoint
//! runs on the CPU engine, and is refused where only candle's `llama` could run it.

use candle_core::quantized::GgmlDType;
use candle_core::quantized::gguf_file::Value;
use rigger_candle_adapter::{CandleAdapter, CandleConfig, Kernels};
use rigger_ports::{ErrorKind, GenerationRequest, LanguageModel};

mod support;

const DIM: usize = 64;
const KV: usize = 32;
const FFN: usize = 128;
const VOCAB: usize = 512;

fn common(arch: &str) -> Vec<(String, Value)> {
    let key = |k: &str| format!("{arch}.{k}");
    let mut extra = Vec::new();
    if matches!(arch, "qwen3" | "gemma3") {
        extra.push((key("attention.key_length"), Value::U32(16)));
        extra.push((key("attention.value_length"), Value::U32(16)));
    }
    if arch == "gemma3" {
        extra.push((key("attention.sliding_window"), Value::U32(64)));
    }
    let mut md = vec![
        ("general.architecture".into(), Value::String(arch.into())),
        (key("context_length"), Value::U32(512)),
        (key("embedding_length"), Value::U32(DIM as u32)),
        (key("block_count"), Value::U32(2)),
        (key("feed_forward_length"), Value::U32(FFN as u32)),
        (key("attention.head_count"), Value::U32(4)),
        (key("attention.head_count_kv"), Value::U32(2)),
        (key("rope.dimension_count"), Value::U32(16)),
        (key("rope.freq_base"), Value::F32(10_000.0)),
        (key("attention.layer_norm_rms_epsilon"), Value::F32(1e-5)),
        ("tokenizer.ggml.bos_token_id".into(), Value::U32(1)),
        ("tokenizer.ggml.eos_token_id".into(), Value::U32(2)),
    ];
    md.extend(extra);
    md
}

fn write(
    arch: &str,
    layer: impl Fn(&mut support::Weights, usize) -> Vec<(String, candle_core::quantized::QTensor)>,
) -> std::path::PathBuf {
    let mut w = support::Weights::new(7);
    let q8 = GgmlDType::Q8_0;
    let mut tensors = vec![
        (
            "token_embd.weight".to_owned(),
            w.tensor(&[VOCAB, DIM], q8, 1.0),
        ),
        ("output_norm.weight".to_owned(), w.ones(DIM)),
        ("output.weight".to_owned(), w.tensor(&[VOCAB, DIM], q8, 0.3)),
    ];
    for i in 0..2 {
        tensors.push((format!("blk.{i}.attn_norm.weight"), w.ones(DIM)));
        tensors.push((format!("blk.{i}.ffn_norm.weight"), w.ones(DIM)));
        tensors.extend(layer(&mut w, i));
    }
    let metadata = common(arch);
    let metadata: Vec<(&str, Value)> = metadata
        .iter()
        .map(|(k, v)| (k.as_str(), v.clone()))
        .collect();
    support::write_gguf(&format!("{arch}.gguf"), &metadata, &tensors)
}

fn qwen2() -> std::path::PathBuf {
    write("qwen2", |w, i| {
        let q8 = GgmlDType::Q8_0;
        let f32 = GgmlDType::F32;
        let p = |t: &str| format!("blk.{i}.{t}");
        vec![
            (p("attn_q.weight"), w.tensor(&[DIM, DIM], q8, 0.2)),
            (p("attn_k.weight"), w.tensor(&[KV, DIM], q8, 0.2)),
            (p("attn_v.weight"), w.tensor(&[KV, DIM], q8, 0.2)),
            (p("attn_q.bias"), w.tensor(&[DIM], f32, 0.1)),
            (p("attn_k.bias"), w.tensor(&[KV], f32, 0.1)),
            (p("attn_v.bias"), w.tensor(&[KV], f32, 0.1)),
            (p("attn_output.weight"), w.tensor(&[DIM, DIM], q8, 0.2)),
            (p("ffn_gate.weight"), w.tensor(&[FFN, DIM], q8, 0.2)),
            (p("ffn_up.weight"), w.tensor(&[FFN, DIM], q8, 0.2)),
            (p("ffn_down.weight"), w.tensor(&[DIM, FFN], q8, 0.2)),
        ]
    })
}

fn phi3() -> std::path::PathBuf {
    write("phi3", |w, i| {
        let q8 = GgmlDType::Q8_0;
        let p = |t: &str| format!("blk.{i}.{t}");
        vec![
            (
                p("attn_qkv.weight"),
                w.tensor(&[DIM + 2 * KV, DIM], q8, 0.2),
            ),
            (p("attn_output.weight"), w.tensor(&[DIM, DIM], q8, 0.2)),
            (p("ffn_up.weight"), w.tensor(&[2 * FFN, DIM], q8, 0.2)),
            (p("ffn_down.weight"), w.tensor(&[DIM, FFN], q8, 0.2)),
        ]
    })
}

fn qwen3() -> std::path::PathBuf {
    write("qwen3", |w, i| {
        let q8 = GgmlDType::Q8_0;
        let p = |t: &str| format!("blk.{i}.{t}");
        vec![
            (p("attn_q.weight"), w.tensor(&[DIM, DIM], q8, 0.2)),
            (p("attn_k.weight"), w.tensor(&[KV, DIM], q8, 0.2)),
            (p("attn_v.weight"), w.tensor(&[KV, DIM], q8, 0.2)),
            (p("attn_q_norm.weight"), w.ones(16)),
            (p("attn_k_norm.weight"), w.ones(16)),
            (p("attn_output.weight"), w.tensor(&[DIM, DIM], q8, 0.2)),
            (p("ffn_gate.weight"), w.tensor(&[FFN, DIM], q8, 0.2)),
            (p("ffn_up.weight"), w.tensor(&[FFN, DIM], q8, 0.2)),
            (p("ffn_down.weight"), w.tensor(&[DIM, FFN], q8, 0.2)),
        ]
    })
}

fn gemma3() -> std::path::PathBuf {
    write("gemma3", |w, i| {
        let q8 = GgmlDType::Q8_0;
        let p = |t: &str| format!("blk.{i}.{t}");
        vec![
            (p("attn_q.weight"), w.tensor(&[DIM, DIM], q8, 0.2)),
            (p("attn_k.weight"), w.tensor(&[KV, DIM], q8, 0.2)),
            (p("attn_v.weight"), w.tensor(&[KV, DIM], q8, 0.2)),
            (p("attn_q_norm.weight"), w.ones(16)),
            (p("attn_k_norm.weight"), w.ones(16)),
            (p("attn_output.weight"), w.tensor(&[DIM, DIM], q8, 0.2)),
            (p("post_attention_norm.weight"), w.ones(DIM)),
            (p("post_ffw_norm.weight"), w.ones(DIM)),
            (p("ffn_gate.weight"), w.tensor(&[FFN, DIM], q8, 0.2)),
            (p("ffn_up.weight"), w.tensor(&[FFN, DIM], q8, 0.2)),
            (p("ffn_down.weight"), w.tensor(&[DIM, FFN], q8, 0.2)),
        ]
    })
}

async fn exercise(path: &std::path::Path, kernels: Kernels, engine: &str) {
    let mut config = CandleConfig::new(path.display().to_string());
    config.kernels = kernels;
    let model = CandleAdapter::connect(config)
        .await
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let named = model.engine().unwrap_or_default();
    assert!(named.starts_with(engine), "{named} is not {engine}…");
    assert_eq!(model.descriptor().context_length, Some(512));
    let greedy = || {
        GenerationRequest::prompt("Plan the launch")
            .with_exact_tokens(12)
            .with_temperature(0.0)
    };
    let first = model.generate(greedy()).await.expect("generate");
    assert_eq!(first.completion.usage.completion_tokens, 12);
    assert!(!first.text.is_empty());
    // A fresh KV cache per request: the same greedy request gives the same text.
    let second = model.generate(greedy()).await.expect("generate again");
    assert_eq!(first.text, second.text);
    // Sampling is seeded.
    let sampled = |seed| {
        GenerationRequest::prompt("Plan the launch")
            .with_exact_tokens(12)
            .with_temperature(1.0)
            .with_seed(seed)
    };
    let a = model.generate(sampled(3)).await.expect("sample");
    let b = model.generate(sampled(3)).await.expect("sample again");
    assert_eq!(a.text, b.text);
    drop(model);
}

/// Each family on both paths: the CPU engine by default (where the processor has its SIMD
/// kernels; candle's model otherwise, as the adapter falls back), candle's model under
/// `Kernels::Reference`.
async fn on_both_paths(arch: &str, path: std::path::PathBuf) {
    let fast = if rigger_cpu_engine::Isa::detect() != rigger_cpu_engine::Isa::Portable {
        format!("rigger-cpu {arch} Q8_0 ")
    } else {
        rigger_model_gen::declare_skip(
            "candle families: the CPU engine is the default",
            "no SIMD kernels here, so candle's path is",
        );
        format!("candle quantized_{arch}")
    };
    exercise(&path, Kernels::Auto, &fast).await;
    exercise(
        &path,
        Kernels::Reference,
        &format!("candle quantized_{arch}"),
    )
    .await;
    support::remove(&path);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qwen2_gguf_runs_on_the_cpu_engine_and_on_candles_qwen2() {
    on_both_paths("qwen2", qwen2()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn phi3_gguf_runs_on_the_cpu_engine_and_on_candles_phi3() {
    on_both_paths("phi3", phi3()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qwen3_gguf_runs_on_the_cpu_engine_and_on_candles_qwen3() {
    on_both_paths("qwen3", qwen3()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gemma3_gguf_runs_on_the_cpu_engine_and_on_candles_gemma3() {
    on_both_paths("gemma3", gemma3()).await;
}

/// A two-layer Llama file 256 wide (k-quant blocks are 256 values) with every matrix in `dtype`.
fn llama_in(dtype: GgmlDType) -> std::path::PathBuf {
    const WIDE: usize = 256;
    const WIDE_KV: usize = 128;
    const WIDE_FFN: usize = 512;
    let mut w = support::Weights::new(11);
    let mut tensors = vec![
        (
            "token_embd.weight".to_owned(),
            w.tensor(&[VOCAB, WIDE], dtype, 1.0),
        ),
        ("output_norm.weight".to_owned(), w.ones(WIDE)),
        (
            "output.weight".to_owned(),
            w.tensor(&[VOCAB, WIDE], dtype, 0.3),
        ),
    ];
    for i in 0..2 {
        let p = |t: &str| format!("blk.{i}.{t}");
        tensors.extend([
            (p("attn_norm.weight"), w.ones(WIDE)),
            (p("ffn_norm.weight"), w.ones(WIDE)),
            (p("attn_q.weight"), w.tensor(&[WIDE, WIDE], dtype, 0.1)),
            (p("attn_k.weight"), w.tensor(&[WIDE_KV, WIDE], dtype, 0.1)),
            (p("attn_v.weight"), w.tensor(&[WIDE_KV, WIDE], dtype, 0.1)),
            (p("attn_output.weight"), w.tensor(&[WIDE, WIDE], dtype, 0.1)),
            (
                p("ffn_gate.weight"),
                w.tensor(&[WIDE_FFN, WIDE], dtype, 0.1),
            ),
            (p("ffn_up.weight"), w.tensor(&[WIDE_FFN, WIDE], dtype, 0.1)),
            (
                p("ffn_down.weight"),
                w.tensor(&[WIDE, WIDE_FFN], dtype, 0.1),
            ),
        ]);
    }
    let mut metadata = common("llama");
    for (k, v) in metadata.iter_mut() {
        match k.as_str() {
            "llama.embedding_length" => *v = Value::U32(WIDE as u32),
            "llama.feed_forward_length" => *v = Value::U32(WIDE_FFN as u32),
            "llama.rope.dimension_count" => *v = Value::U32(64),
            _ => {}
        }
    }
    let metadata: Vec<(&str, Value)> = metadata
        .iter()
        .map(|(k, v)| (k.as_str(), v.clone()))
        .collect();
    support::write_gguf(&format!("llama-{dtype:?}.gguf"), &metadata, &tensors)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_tensor_type_loads_and_runs_on_the_path_that_covers_it() {
    use GgmlDType::*;
    for dtype in [
        Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2K, Q3K, Q4K, Q5K, Q6K, F16, BF16, F32,
    ] {
        let path = llama_in(dtype);
        let model = CandleAdapter::connect(CandleConfig::new(path.display().to_string()))
            .await
            .unwrap_or_else(|e| panic!("{dtype:?}: {e}"));
        let engine = model.engine().unwrap_or_default().to_owned();
        let on_cpu_engine = matches!(
            dtype,
            Q4_0 | Q4_1 | Q5_0 | Q5_1 | Q8_0 | Q4K | Q5K | Q6K | F16 | BF16
        ) && rigger_cpu_engine::Isa::detect()
            != rigger_cpu_engine::Isa::Portable;
        if on_cpu_engine {
            assert!(engine.starts_with("rigger-cpu"), "{dtype:?}: {engine}");
        } else {
            assert_eq!(engine, "candle quantized_llama", "{dtype:?}");
        }
        let answer = model
            .generate(
                GenerationRequest::prompt("Plan the launch")
                    .with_exact_tokens(4)
                    .with_temperature(0.0),
            )
            .await
            .unwrap_or_else(|e| panic!("{dtype:?}: {e}"));
        assert_eq!(answer.completion.usage.completion_tokens, 4, "{dtype:?}");
        drop(model);
        support::remove(&path);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_architecture_is_refused_with_the_supported_list() {
    let path = write("gpt2", |_, _| Vec::new());
    let err = match CandleAdapter::connect(CandleConfig::new(path.display().to_string())).await {
        Ok(_) => panic!("a gpt2 GGUF loaded"),
        Err(e) => e,
    };
    assert_eq!(err.kind(), ErrorKind::Unsupported);
    for name in ["gpt2", "llama", "qwen2", "qwen3", "phi3", "gemma3"] {
        assert!(err.to_string().contains(name), "{err}");
    }
    support::remove(&path);
}

/// A Qwen3 safetensors checkpoint (written by the generator, F16): on the CPU engine by default;
/// under `Kernels::Reference`, where only candle's `llama` could run it (without Qwen3's Q/K
/// norms), refused as unsupported with the reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_qwen3_checkpoint_runs_on_the_cpu_engine_and_is_refused_on_candles_llama() {
    static SHAPE: rigger_model_gen::Shape = rigger_model_gen::Shape {
        max_position_embeddings: 512,
        ..rigger_model_gen::tiny_shape(rigger_model_gen::Family::Qwen3, "tiny-qwen3")
    };
    let dir = std::env::temp_dir().join(format!("rigger-qwen3-st-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let opts = rigger_model_gen::GenOptions {
        formats: vec![rigger_model_gen::Format::Safetensors],
        ..rigger_model_gen::GenOptions::new(&SHAPE)
    };
    rigger_model_gen::generate(&dir, &opts, &|_| {}).expect("generate the checkpoint");
    if rigger_cpu_engine::Isa::detect() == rigger_cpu_engine::Isa::Portable {
        rigger_model_gen::declare_skip(
            "a qwen3 checkpoint on the CPU engine",
            "no SIMD kernels here, so the engine is not the default",
        );
    } else {
        exercise(&dir, Kernels::Auto, "rigger-cpu qwen3 F16 ").await;
    }
    let config = CandleConfig {
        kernels: Kernels::Reference,
        ..CandleConfig::new(dir.display().to_string())
    };
    let err = match CandleAdapter::connect(config).await {
        Ok(_) => panic!("candle's llama loaded a qwen3 checkpoint"),
        Err(e) => e,
    };
    assert_eq!(err.kind(), ErrorKind::Unsupported);
    assert!(err.to_string().contains("\"qwen3\""), "{err}");
    std::fs::remove_dir_all(&dir).ok();
}
