//! Bad model files give typed errors, never a panic or an abort: a truncated GGUF, one with the
//! wrong magic, one whose metadata disagrees with its tensors' shapes, and a file deleted while
//! it is loaded (which keeps working: the weights are mapped or read already).

use std::path::{Path, PathBuf};

use candle_core::Device;
use candle_core::quantized::QTensor;
use candle_core::quantized::gguf_file::{self, Value};
use rigger_candle_adapter::{CandleAdapter, CandleConfig};
use rigger_ports::{ErrorKind, GenerationRequest, InferenceError, LanguageModel};

mod support;

/// A copy of the tiny Q8_0 model under `name`, with its tokenizer beside it, after `edit` has
/// had its way with the bytes.
fn broken_copy(name: &str, edit: impl FnOnce(Vec<u8>) -> Vec<u8>) -> PathBuf {
    let bytes = std::fs::read(support::tiny("model-q8_0.gguf")).expect("read the tiny model");
    let path = support::write_gguf(name, &[], &[]);
    std::fs::write(&path, edit(bytes)).expect("write the broken copy");
    path
}

async fn load(path: &Path) -> Result<CandleAdapter, InferenceError> {
    CandleAdapter::connect(CandleConfig::new(path.display().to_string())).await
}

fn assert_load_failure(err: &InferenceError, what: &str) {
    assert!(
        matches!(
            err.kind(),
            ErrorKind::ModelLoadFailed | ErrorKind::InvalidRequest
        ),
        "{what}: {:?}: {err}",
        err.kind()
    );
    assert!(!err.message().is_empty(), "{what}: an empty message");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_truncated_gguf_is_a_typed_load_failure() {
    for keep in [0.9, 0.5, 0.01] {
        let path = broken_copy(&format!("truncated-{keep}.gguf"), |mut b| {
            b.truncate((b.len() as f64 * keep) as usize);
            b
        });
        let err = load(&path)
            .await
            .err()
            .expect("a truncated file must not load");
        assert_load_failure(&err, &format!("truncated to {keep}"));
        support::remove(&path);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_that_is_not_gguf_is_a_typed_load_failure() {
    let path = broken_copy("magic.gguf", |mut b| {
        b[..4].copy_from_slice(b"NOPE");
        b
    });
    let err = load(&path)
        .await
        .err()
        .expect("a wrong magic must not load");
    assert_load_failure(&err, "wrong magic");
    support::remove(&path);
}

/// The tiny model with its metadata's embedding width doubled: every matrix now disagrees with
/// what the architecture expects.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tensors_that_disagree_with_the_metadata_are_a_typed_load_failure() {
    let source = support::tiny("model-q8_0.gguf");
    let mut file = std::fs::File::open(&source).expect("open the tiny model");
    let content = gguf_file::Content::read(&mut file).expect("read the tiny model");
    let tensors: Vec<(String, QTensor)> = content
        .tensor_infos
        .keys()
        .map(|name| {
            let tensor = content
                .tensor(&mut file, name, &Device::Cpu)
                .expect("read a tensor");
            (name.clone(), tensor)
        })
        .collect();
    let metadata: Vec<(String, Value)> = content
        .metadata
        .iter()
        .map(|(key, value)| {
            let value = match (key.ends_with(".embedding_length"), value) {
                (true, Value::U32(width)) => Value::U32(width * 2),
                _ => value.clone(),
            };
            (key.clone(), value)
        })
        .collect();
    let metadata: Vec<(&str, Value)> = metadata
        .iter()
        .map(|(k, v)| (k.as_str(), v.clone()))
        .collect();
    let path = support::write_gguf("mismatched.gguf", &metadata, &tensors);
    let err = load(&path)
        .await
        .err()
        .expect("mismatched shapes must not load");
    assert_load_failure(&err, "shapes against metadata");
    support::remove(&path);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_model_deleted_while_loaded_keeps_answering() {
    let path = broken_copy("deleted.gguf", |b| b);
    let model = load(&path).await.expect("the copy loads");
    std::fs::remove_file(&path).expect("delete the file");
    let answer = model
        .generate(GenerationRequest::prompt("Hi").with_exact_tokens(8))
        .await
        .expect("the loaded weights do not need the file");
    assert_eq!(answer.completion.usage.completion_tokens, 8);
    support::remove(&path);
}
