//! The tokenizer the adapter builds from a GGUF's metadata against llama.cpp's own test vectors
//! (`ggml-vocab-<name>.gguf` with `.gguf.inp` inputs and the `.gguf.out` ids llama.cpp's
//! `test-tokenizer-0` produces: no BOS/EOS added, special tokens in the text not parsed).

use std::path::PathBuf;

use rigger_candle_adapter::gguf_tokenizer;
use rigger_ports::ErrorKind;
use tokenizers::Tokenizer;

fn vocab(name: &str) -> PathBuf {
    rigger_model_gen::llama_vocab_dir().join(format!("ggml-vocab-{name}.gguf"))
}

/// The inputs and llama.cpp's ids for them, split as `test-tokenizer-0` splits them.
fn vectors(name: &str) -> Vec<(String, Vec<u32>)> {
    let path = vocab(name);
    let inp = std::fs::read_to_string(path.with_extension("gguf.inp")).expect("read .inp");
    let out = std::fs::read_to_string(path.with_extension("gguf.out")).expect("read .out");
    let sep = "\n__ggml_vocab_test__\n";
    let mut inputs = Vec::new();
    let mut rest = inp.as_str();
    while !rest.is_empty() {
        match rest.find(sep) {
            Some(at) => {
                inputs.push(rest[..at].to_owned());
                rest = &rest[at + sep.len()..];
            }
            None => {
                inputs.push(rest.to_owned());
                break;
            }
        }
    }
    let outputs: Vec<Vec<u32>> = out
        .lines()
        .map(|l| {
            l.split_whitespace()
                .map(|n| n.parse().expect("an id"))
                .collect()
        })
        .collect();
    assert_eq!(
        inputs.len(),
        outputs.len(),
        "{name}: inputs and outputs pair up"
    );
    inputs.into_iter().zip(outputs).collect()
}

/// Every input of `name` tokenizes to exactly llama.cpp's ids; returns how many there were.
fn matches_llama_cpp(name: &str) -> usize {
    let mut tokenizer: Tokenizer =
        gguf_tokenizer::from_gguf_file(&vocab(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
    // test-tokenizer-0 tokenizes with parse_special = false: special tokens in the text are text.
    tokenizer.set_encode_special_tokens(true);
    let cases = vectors(name);
    let mut failures = Vec::new();
    for (text, expected) in &cases {
        let got = tokenizer
            .encode(text.as_str(), false)
            .unwrap_or_else(|e| panic!("{name}: {text:?}: {e}"))
            .get_ids()
            .to_vec();
        if &got != expected {
            failures.push(format!(
                "{text:?}\n  llama.cpp {expected:?}\n  ours      {got:?}"
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{name}: {} of {} inputs differ:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
    assert!(
        cases.len() > 10,
        "{name}: too few vectors to prove anything"
    );
    cases.len()
}

#[test]
fn llama_bpe_matches_llama_cpp() {
    matches_llama_cpp("llama-bpe");
}

#[test]
fn llama_spm_matches_llama_cpp() {
    matches_llama_cpp("llama-spm");
}

#[test]
fn qwen2_matches_llama_cpp() {
    matches_llama_cpp("qwen2");
}

#[test]
fn phi_3_matches_llama_cpp() {
    matches_llama_cpp("phi-3");
}

#[test]
fn gpt_2_matches_llama_cpp() {
    matches_llama_cpp("gpt-2");
}

#[test]
fn qwen35_matches_llama_cpp() {
    matches_llama_cpp("qwen35");
}

#[test]
fn starcoder_matches_llama_cpp() {
    matches_llama_cpp("starcoder");
}

#[test]
fn refact_matches_llama_cpp() {
    matches_llama_cpp("refact");
}

#[test]
fn command_r_matches_llama_cpp() {
    matches_llama_cpp("command-r");
}

#[test]
fn falcon_matches_llama_cpp() {
    matches_llama_cpp("falcon");
}

#[test]
fn deepseek_coder_matches_llama_cpp() {
    matches_llama_cpp("deepseek-coder");
}

#[test]
fn deepseek_llm_matches_llama_cpp() {
    matches_llama_cpp("deepseek-llm");
}

#[test]
fn mpt_matches_llama_cpp() {
    matches_llama_cpp("mpt");
}

/// SmolLM2's vocabulary (`smollm`, the same regexes as `starcoder` above): ChatML's markers are
/// single special tokens, digits split one by one, and text round-trips.
#[test]
fn smollm2_vocabulary_from_its_gguf() {
    let tokenizer = gguf_tokenizer::from_gguf_file(&rigger_model_gen::smollm2()).expect("smollm2");
    let ids = |text: &str| {
        tokenizer
            .encode(text, false)
            .expect("encode")
            .get_ids()
            .to_vec()
    };
    assert_eq!(ids("<|im_start|>"), vec![1]);
    assert_eq!(ids("<|im_end|>"), vec![2]);
    assert_eq!(ids("<|im_start|>user\nHi<|im_end|>").first(), Some(&1));
    assert_eq!(ids("2024").len(), 4, "digits are split one by one");
    // The file says add_bos_token = false: nothing is added.
    assert_eq!(
        tokenizer.encode("Hello", true).expect("encode").get_ids(),
        tokenizer.encode("Hello", false).expect("encode").get_ids()
    );
    for text in [
        "Hello world",
        "  leading spaces and\ttabs\n\nnewlines",
        "héllo wörld — 你好 🦙",
    ] {
        let decoded = tokenizer.decode(&ids(text), false).expect("decode");
        assert_eq!(decoded, text);
    }
    // Special tokens are skipped when asked to.
    let chat = ids("<|im_start|>assistant\nParis<|im_end|>");
    assert_eq!(
        tokenizer.decode(&chat, true).expect("decode"),
        "assistant\nParis"
    );
}

fn refused(name: &str) -> String {
    match gguf_tokenizer::from_gguf_file(&vocab(name)) {
        Ok(_) => panic!("{name}: an uncovered vocabulary was accepted"),
        Err(e) => {
            assert_eq!(e.kind(), ErrorKind::Unsupported, "{e}");
            assert!(e.to_string().contains("supported: "), "{e}");
            e.to_string()
        }
    }
}

#[test]
fn uncovered_vocabularies_are_refused_by_name() {
    // WordPiece (bert) and Unigram (t5) models.
    assert!(refused("bert-bge").contains("\"bert\""));
    assert!(refused("nomic-bert-moe").contains("\"t5\""));
    // A byte-level BPE file that names no pre-tokenizer (llama.cpp guesses, and warns).
    assert!(refused("gpt-neox").contains("tokenizer.ggml.pre"));
}

#[test]
fn a_gguf_without_tokenizer_metadata_says_what_to_do() {
    use candle_core::quantized::gguf_file::Value;
    let path = rigger_model_gen::scratch::write_gguf(
        "no-tokenizer.gguf",
        &[("general.architecture", Value::String("llama".into()))],
        &[],
    );
    let err = gguf_tokenizer::from_gguf_file(&path).expect_err("no tokenizer metadata");
    rigger_model_gen::scratch::remove(&path);
    assert_eq!(err.kind(), ErrorKind::InvalidRequest, "{err}");
    assert!(
        err.hint().is_some_and(|h| h.contains("tokenizer.json")),
        "{err}"
    );
}
