//! The generator's promises, checked on the tiny shape: determinism, bad input, GGUF metadata,
//! and the same greedy tokens from safetensors (HF layout) and GGUF f16 (llama.cpp layout).
#![allow(clippy::unwrap_used)] // a panic is how a test reports failure

use std::path::Path;

use candle_core::quantized::gguf_file;
use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::{llama, quantized_llama};
use rigger_model_gen::{Format, GenError, GenOptions, Manifest, generate, shape, tiny_model};

fn tiny(seed: u64) -> GenOptions {
    GenOptions {
        seed,
        ..GenOptions::new(shape("tiny").unwrap())
    }
}

#[test]
fn same_shape_and_seed_give_byte_identical_files() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let ma = generate(a.path(), &tiny(3), &|_| {}).unwrap();
    let mb = generate(b.path(), &tiny(3), &|_| {}).unwrap();
    assert_eq!(ma, mb);
    let mut names: Vec<_> = std::fs::read_dir(a.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    names.sort();
    assert!(names.len() >= 9, "{names:?}");
    for name in names {
        let (x, y) = (
            std::fs::read(a.path().join(&name)).unwrap(),
            std::fs::read(b.path().join(&name)).unwrap(),
        );
        assert!(x == y, "{name:?} differs between two runs");
    }
    let other = tempfile::tempdir().unwrap();
    let mc = generate(other.path(), &tiny(4), &|_| {}).unwrap();
    assert_ne!(
        ma.files[0].sha256, mc.files[0].sha256,
        "the seed changes the weights"
    );
}

#[test]
fn manifest_lists_every_format_with_its_checksum() {
    let dir = tiny_model().unwrap();
    let m = Manifest::read(&dir).unwrap();
    assert_eq!(m.shape, "tiny");
    let formats: Vec<&str> = m.files.iter().map(|f| f.format.as_str()).collect();
    assert_eq!(
        formats,
        [
            "safetensors",
            "gguf-f16",
            "gguf-q8_0",
            "gguf-q4_0",
            "gguf-q4_1"
        ]
    );
    for f in &m.files {
        let bytes = std::fs::read(dir.join(&f.path)).unwrap();
        assert_eq!(bytes.len() as u64, f.bytes);
        assert_eq!(f.sha256.len(), 64);
    }
    // Quantized files are smaller than f16, which is smaller than... itself: sizes are ordered.
    let size = |fmt: &str| m.files.iter().find(|f| f.format == fmt).unwrap().bytes;
    assert!(size("gguf-q4_0") < size("gguf-q8_0") && size("gguf-q8_0") < size("gguf-f16"));
}

#[test]
fn bad_input_gets_clear_errors() {
    assert!(matches!(shape("nope"), Err(GenError::UnknownShape { .. })));
    assert!(matches!(
        "gguf-q5".parse::<Format>(),
        Err(GenError::UnknownFormat { .. })
    ));
    assert!(GenOptions::parse_dtype("f8").is_err());

    let occupied = tempfile::tempdir().unwrap();
    std::fs::write(occupied.path().join("keep.txt"), "mine").unwrap();
    let err = generate(occupied.path(), &tiny(0), &|_| {}).unwrap_err();
    assert!(err.to_string().contains("--force"), "{err}");
    assert_eq!(
        std::fs::read_to_string(occupied.path().join("keep.txt")).unwrap(),
        "mine"
    );
    let forced = GenOptions {
        force: true,
        ..tiny(0)
    };
    generate(occupied.path(), &forced, &|_| {}).unwrap();
    assert!(
        occupied.path().join("keep.txt").exists(),
        "--force overwrites only our files"
    );

    let file = occupied.path().join("keep.txt");
    let err = generate(&file.join("sub"), &tiny(0), &|_| {}).unwrap_err();
    assert!(
        matches!(err, GenError::Io { .. }) && err.to_string().contains("keep.txt"),
        "{err}"
    );
}

#[test]
fn gguf_carries_architecture_and_tokenizer() {
    let dir = tiny_model().unwrap();
    let mut file = std::fs::File::open(dir.join("model-q4_0.gguf")).unwrap();
    let content = gguf_file::Content::read(&mut file).unwrap();
    let md = &content.metadata;
    assert_eq!(md["general.architecture"].to_string().unwrap(), "llama");
    assert_eq!(md["tokenizer.ggml.model"].to_string().unwrap(), "gpt2");
    assert_eq!(md["tokenizer.ggml.tokens"].to_vec().unwrap().len(), 512);
    assert!(!md["tokenizer.ggml.merges"].to_vec().unwrap().is_empty());
    assert!(
        md["tokenizer.chat_template"]
            .to_string()
            .unwrap()
            .contains("add_generation_prompt")
    );
    assert_eq!(content.tensor_infos.len(), 2 * 9 + 3);
}

fn prompt_ids(dir: &Path) -> Vec<u32> {
    let tokenizer = tokenizers::Tokenizer::from_file(dir.join("tokenizer.json")).unwrap();
    tokenizer
        .encode(
            "<|user|>\nTell me about the lighthouse keeper.</s>\n<|assistant|>\n",
            true,
        )
        .unwrap()
        .get_ids()
        .to_vec()
}

fn argmax(logits: &Tensor) -> u32 {
    logits
        .squeeze(0)
        .unwrap()
        .to_dtype(DType::F32)
        .unwrap()
        .argmax(0)
        .unwrap()
        .to_scalar::<u32>()
        .unwrap()
}

const STEPS: usize = 24;

/// Greedy decoding for STEPS tokens; `forward` maps (new tokens, position) to last-token logits.
fn greedy(prompt: &[u32], mut forward: impl FnMut(&Tensor, usize) -> Tensor) -> Vec<u32> {
    let mut tokens = prompt.to_vec();
    let mut pos = 0;
    for _ in 0..STEPS {
        let input = Tensor::new(&tokens[pos..], &Device::Cpu)
            .unwrap()
            .unsqueeze(0)
            .unwrap();
        let next = argmax(&forward(&input, pos));
        pos = tokens.len();
        tokens.push(next);
    }
    tokens.split_off(prompt.len())
}

fn greedy_safetensors(dir: &Path, prompt: &[u32]) -> Vec<u32> {
    let device = Device::Cpu;
    let config: llama::LlamaConfig =
        serde_json::from_slice(&std::fs::read(dir.join("config.json")).unwrap()).unwrap();
    let config = config.into_config(false);
    let bytes = std::fs::read(dir.join("model.safetensors")).unwrap();
    let vb = VarBuilder::from_buffered_safetensors(bytes, DType::F32, &device).unwrap();
    let model = llama::Llama::load(vb, &config).unwrap();
    let mut cache = llama::Cache::new(true, DType::F32, &config, &device).unwrap();
    greedy(prompt, |input, pos| {
        model.forward(input, pos, &mut cache).unwrap()
    })
}

fn greedy_gguf(path: &Path, prompt: &[u32]) -> Vec<u32> {
    let device = Device::Cpu;
    let mut file = std::fs::File::open(path).unwrap();
    let content = gguf_file::Content::read(&mut file).unwrap();
    let mut model = quantized_llama::ModelWeights::from_gguf(content, &mut file, &device).unwrap();
    greedy(prompt, |input, pos| model.forward(input, pos).unwrap())
}

#[test]
fn safetensors_and_gguf_f16_give_the_same_greedy_tokens() {
    let dir = tiny_model().unwrap();
    let prompt = prompt_ids(&dir);
    let from_safetensors = greedy_safetensors(&dir, &prompt);
    let from_gguf = greedy_gguf(&dir.join("model-f16.gguf"), &prompt);
    assert_eq!(from_safetensors, from_gguf);

    // Generation never picks a special token, and decodes to printable text.
    assert!(from_gguf.iter().all(|&t| t > 2), "{from_gguf:?}");
    let tokenizer = tokenizers::Tokenizer::from_file(dir.join("tokenizer.json")).unwrap();
    let text = tokenizer.decode(&from_gguf, false).unwrap();
    assert!(text.chars().all(|c| (' '..='~').contains(&c)), "{text:?}");
    assert!(!text.trim().is_empty());
}

#[test]
fn q8_0_follows_the_f16_greedy_path() {
    // q8_0 is close enough to f16 that the greedy path agrees for several tokens: a check that
    // the quantized files hold the same weights, not merely the same shapes.
    let dir = tiny_model().unwrap();
    let prompt = prompt_ids(&dir);
    let f16 = greedy_gguf(&dir.join("model-f16.gguf"), &prompt);
    let q8 = greedy_gguf(&dir.join("model-q8_0.gguf"), &prompt);
    let agree = f16.iter().zip(&q8).take_while(|(a, b)| a == b).count();
    assert!(
        agree >= 4,
        "q8_0 diverges from f16 at once: {f16:?} vs {q8:?}"
    );
}

#[test]
fn mlx_lm_loads_the_folder_and_generates_to_the_budget() {
    let dir = tiny_model().unwrap();
    let script = r#"
import sys, mlx_lm
from mlx_lm.sample_utils import make_sampler
model, tok = mlx_lm.load(sys.argv[1])
prompt = tok.apply_chat_template([{"role": "user", "content": "Tell me a story."}], add_generation_prompt=True)
assert prompt[0] == 1, f"the template must start with BOS, got {prompt[:4]}"
last = None
for last in mlx_lm.stream_generate(model, tok, prompt, max_tokens=16, sampler=make_sampler(0.0)):
    pass
print(last.generation_tokens, last.finish_reason)
"#;
    let out = std::process::Command::new(rigger_model_gen::mlx_python())
        .args(["-c", script])
        .arg(&dir)
        .output()
        .expect("run the MLX venv's python");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(stdout.trim(), "16 length");
}
