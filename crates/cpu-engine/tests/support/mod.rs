//! What the engine's tests compare against: candle's quantized model of the file's architecture
//! (`quantized_llama`, `quantized_qwen2`, `quantized_qwen3`, `quantized_phi3`,
//! `quantized_gemma3`; the reference path) run one token at a time, and a one-layer GGUF written
//! for the test.

#![allow(dead_code)] // each test binary uses part of it

use std::path::{Path, PathBuf};

use candle_core::quantized::GgmlDType;
use candle_core::quantized::gguf_file::{self, Value};
use candle_core::{Device, Tensor};
use candle_transformers::models::{
    quantized_gemma3, quantized_llama, quantized_phi3, quantized_qwen2, quantized_qwen3,
};
use rigger_model_gen::scratch;

#[allow(unused_imports)] // each test binary uses part of them
pub use scratch::{remove, tiny};

/// candle's model of each architecture.
enum Candle {
    Llama(quantized_llama::ModelWeights),
    Qwen2(quantized_qwen2::ModelWeights),
    Qwen3(quantized_qwen3::ModelWeights),
    Phi3(quantized_phi3::ModelWeights),
    Gemma3(quantized_gemma3::ModelWeights),
}

/// candle's model of the file's architecture, fed the same way as the engine's stepper.
pub struct Reference {
    model: Candle,
    prompt: Vec<u32>,
    position: usize,
}

impl Reference {
    pub fn open(path: &Path, prompt: &[u32]) -> Self {
        let mut file = std::fs::File::open(path).expect("open the GGUF");
        let content = gguf_file::Content::read(&mut file).expect("read the GGUF");
        let arch = content
            .metadata
            .get("general.architecture")
            .and_then(|v| v.to_string().ok())
            .cloned()
            .unwrap_or_default();
        let cpu = &Device::Cpu;
        let model =
            match arch.as_str() {
                "llama" => quantized_llama::ModelWeights::from_gguf(content, &mut file, cpu)
                    .map(Candle::Llama),
                "qwen2" => quantized_qwen2::ModelWeights::from_gguf(content, &mut file, cpu)
                    .map(Candle::Qwen2),
                "qwen3" => quantized_qwen3::ModelWeights::from_gguf(content, &mut file, cpu)
                    .map(Candle::Qwen3),
                "phi3" => quantized_phi3::ModelWeights::from_gguf(false, content, &mut file, cpu)
                    .map(Candle::Phi3),
                "gemma3" => quantized_gemma3::ModelWeights::from_gguf(content, &mut file, cpu)
                    .map(Candle::Gemma3),
                other => panic!("no candle model for {other:?}"),
            }
            .expect("candle's model");
        Self {
            model,
            prompt: prompt.to_vec(),
            position: 0,
        }
    }

    /// The logits after the prompt (position 0 resets candle's own KV cache).
    pub fn restart(&mut self) -> Vec<f32> {
        self.position = 0;
        let prompt = self.prompt.clone();
        self.run(&prompt)
    }

    pub fn feed(&mut self, token: u32) -> Vec<f32> {
        self.run(&[token])
    }

    fn run(&mut self, tokens: &[u32]) -> Vec<f32> {
        let input = Tensor::new(tokens, &Device::Cpu)
            .and_then(|t| t.unsqueeze(0))
            .expect("input");
        let position = self.position;
        let logits = match &mut self.model {
            Candle::Llama(m) => m.forward(&input, position),
            Candle::Qwen2(m) => m.forward(&input, position),
            Candle::Phi3(m) => m.forward(&input, position),
            Candle::Gemma3(m) => m.forward(&input, position),
            // Unlike the others, quantized_qwen3 does not reset its cache at position 0.
            Candle::Qwen3(m) => {
                if position == 0 {
                    m.clear_kv_cache();
                }
                m.forward(&input, position)
            }
        }
        .and_then(|l| l.flatten_all()?.to_vec1::<f32>())
        .expect("candle's forward");
        self.position += tokens.len();
        logits
    }
}

/// The best token and how far ahead of the runner-up it is.
pub fn argmax_and_margin(logits: &[f32]) -> (usize, f32) {
    let (mut best, mut top, mut second) = (0, f32::NEG_INFINITY, f32::NEG_INFINITY);
    for (i, &v) in logits.iter().enumerate() {
        if v > top {
            (best, second, top) = (i, top, v);
        } else if v > second {
            second = v;
        }
    }
    (best, top - second)
}

/// The largest difference between two rows of logits.
pub fn largest_difference(a: &[f32], b: &[f32]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0f32, f32::max)
}

/// A one-layer Llama GGUF at 256 wide (K-quants need 256-wide rows, which the tiny shape lacks)
/// in llama.cpp's `Q4_0` layout: Q4_0 matrices, the output projection in `output` (None: no
/// `output.weight`, the embedding table doubles as the output projection).
pub fn one_layer_gguf(file: &str, output: Option<GgmlDType>) -> PathBuf {
    let (dim, kv, ffn, vocab) = (256usize, 128usize, 256usize, 512usize);
    let mut w = scratch::Weights::new(0x2545_F491_4F6C_DD1D);
    let q4 = GgmlDType::Q4_0;
    let mut tensors = vec![
        ("token_embd.weight".into(), w.tensor(&[vocab, dim], q4, 1.0)),
        ("blk.0.attn_norm.weight".into(), w.ones(dim)),
        ("blk.0.attn_q.weight".into(), w.tensor(&[dim, dim], q4, 0.1)),
        ("blk.0.attn_k.weight".into(), w.tensor(&[kv, dim], q4, 0.1)),
        ("blk.0.attn_v.weight".into(), w.tensor(&[kv, dim], q4, 0.1)),
        (
            "blk.0.attn_output.weight".into(),
            w.tensor(&[dim, dim], q4, 0.1),
        ),
        ("blk.0.ffn_norm.weight".into(), w.ones(dim)),
        (
            "blk.0.ffn_gate.weight".into(),
            w.tensor(&[ffn, dim], q4, 0.1),
        ),
        ("blk.0.ffn_up.weight".into(), w.tensor(&[ffn, dim], q4, 0.1)),
        (
            "blk.0.ffn_down.weight".into(),
            w.tensor(&[dim, ffn], q4, 0.1),
        ),
        ("output_norm.weight".into(), w.ones(dim)),
    ];
    if let Some(dtype) = output {
        tensors.push(("output.weight".into(), w.tensor(&[vocab, dim], dtype, 0.2)));
    }
    let metadata = [
        ("general.architecture", Value::String("llama".into())),
        ("llama.context_length", Value::U32(256)),
        ("llama.embedding_length", Value::U32(dim as u32)),
        ("llama.block_count", Value::U32(1)),
        ("llama.feed_forward_length", Value::U32(ffn as u32)),
        ("llama.attention.head_count", Value::U32(4)),
        ("llama.attention.head_count_kv", Value::U32(2)),
        ("llama.rope.dimension_count", Value::U32(64)),
        ("llama.rope.freq_base", Value::F32(10_000.0)),
        ("llama.attention.layer_norm_rms_epsilon", Value::F32(1e-5)),
        ("tokenizer.ggml.bos_token_id", Value::U32(1)),
        ("tokenizer.ggml.eos_token_id", Value::U32(2)),
    ];
    scratch::write_gguf(file, &metadata, &tensors)
}

pub use rigger_model_gen::use_more_bits;

/// The tensor types of llama.cpp's Q4_K_M: Q4_K everywhere but Q6_K for `output.weight` and
/// for `attn_v` and `ffn_down` where [`use_more_bits`] holds.
pub fn q4_k_m(name: &str, layer: usize, layers: usize) -> GgmlDType {
    let more = name == "attn_v" || name == "ffn_down";
    if name == "output" || (more && use_more_bits(layer, layers)) {
        GgmlDType::Q6K
    } else {
        GgmlDType::Q4K
    }
}

/// A Llama GGUF of `layers` layers at 256 wide (K-quants need rows of 256), each matrix in the
/// type `dtype(name, layer, layers)` picks (`name` as in `blk.{layer}.{name}.weight`;
/// `token_embd` and `output` with layer 0).
pub fn k_quant_gguf(
    file: &str,
    layers: usize,
    dtype: &dyn Fn(&str, usize, usize) -> GgmlDType,
) -> PathBuf {
    let (dim, kv, ffn, vocab) = (256usize, 128usize, 512usize, 512usize);
    let mut w = scratch::Weights::new(0x9E37_79B9_7F4A_7C15);
    let mut tensors = vec![(
        "token_embd.weight".to_string(),
        w.tensor(&[vocab, dim], dtype("token_embd", 0, layers), 1.0),
    )];
    for i in 0..layers {
        let mut matrix = |name: &str, rows: usize, cols: usize, spread: f32| {
            (
                format!("blk.{i}.{name}.weight"),
                w.tensor(&[rows, cols], dtype(name, i, layers), spread),
            )
        };
        let attention = [
            matrix("attn_q", dim, dim, 0.1),
            matrix("attn_k", kv, dim, 0.1),
            matrix("attn_v", kv, dim, 0.1),
            matrix("attn_output", dim, dim, 0.1),
            matrix("ffn_gate", ffn, dim, 0.1),
            matrix("ffn_up", ffn, dim, 0.1),
            matrix("ffn_down", dim, ffn, 0.07),
        ];
        tensors.extend(attention);
        tensors.push((format!("blk.{i}.attn_norm.weight"), w.ones(dim)));
        tensors.push((format!("blk.{i}.ffn_norm.weight"), w.ones(dim)));
    }
    tensors.push(("output_norm.weight".into(), w.ones(dim)));
    tensors.push((
        "output.weight".into(),
        w.tensor(&[vocab, dim], dtype("output", 0, layers), 0.2),
    ));
    let metadata = [
        ("general.architecture", Value::String("llama".into())),
        ("llama.context_length", Value::U32(256)),
        ("llama.embedding_length", Value::U32(dim as u32)),
        ("llama.block_count", Value::U32(layers as u32)),
        ("llama.feed_forward_length", Value::U32(ffn as u32)),
        ("llama.attention.head_count", Value::U32(4)),
        ("llama.attention.head_count_kv", Value::U32(2)),
        ("llama.rope.dimension_count", Value::U32(64)),
        ("llama.rope.freq_base", Value::F32(10_000.0)),
        ("llama.attention.layer_norm_rms_epsilon", Value::F32(1e-5)),
        ("tokenizer.ggml.bos_token_id", Value::U32(1)),
        ("tokenizer.ggml.eos_token_id", Value::U32(2)),
    ];
    scratch::write_gguf(file, &metadata, &tensors)
}
