//! Bad model files give typed errors, never a panic or an abort: a truncated GGUF, one with the
//! wrong magic, one with a matrix of the wrong shape, and a file deleted while it is loaded
//! (which keeps working: the weights are read already).

use std::path::{Path, PathBuf};

use candle_core::quantized::GgmlDType;
use candle_core::quantized::gguf_file::Value;
use rigger_candle_adapter::{CandleAdapter, CandleConfig, Kernels};
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

/// The tiny model with one matrix narrower than its architecture needs (`blk.0.ffn_down` one
/// block of columns short): the CPU engine refuses it at load; candle's path, which does not
/// check shapes at load, fails the request typed, never panicking.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_matrix_of_the_wrong_shape_is_a_typed_failure() {
    let (metadata, mut tensors) = support::read_gguf(&support::tiny("model-q8_0.gguf"));
    let mut weights = support::Weights::new(3);
    for (name, tensor) in &mut tensors {
        if name == "blk.0.ffn_down.weight" {
            let dims = tensor.shape().dims().to_vec();
            *tensor = weights.tensor(&[dims[0], dims[1] - 32], GgmlDType::Q8_0, 0.5);
        }
    }
    let metadata: Vec<(&str, Value)> = metadata
        .iter()
        .map(|(k, v)| (k.as_str(), v.clone()))
        .collect();
    let path = support::write_gguf("mismatched.gguf", &metadata, &tensors);
    let engine = load(&path).await.err().expect("the engine checks shapes");
    assert_load_failure(&engine, "a narrow matrix on the CPU engine");
    assert!(engine.to_string().contains("ffn_down"), "{engine}");
    let config = CandleConfig {
        kernels: Kernels::Reference,
        ..CandleConfig::new(path.display().to_string())
    };
    match CandleAdapter::connect(config).await {
        Err(e) => assert_load_failure(&e, "a narrow matrix on candle's path"),
        Ok(model) => {
            let err = model
                .generate(GenerationRequest::prompt("Hi").with_max_tokens(4))
                .await
                .expect_err("a narrow matrix cannot multiply");
            assert_ne!(err.kind(), ErrorKind::MalformedOutput, "{err}");
        }
    }
    support::remove(&path);
}

/// The tiny model with one metadata number changed. Candle's models size themselves after the
/// metadata (fuzzing found corrupted headers that made one allocate until the OOM killer came), so a
/// number that disagrees with the tensors must fail the load, typed, on both paths.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_that_disagrees_with_the_tensors_is_a_typed_load_failure() {
    let (original, tensors) = support::read_gguf(&support::tiny("model-q8_0.gguf"));
    /// The key, how its value changes, and what the error must name.
    type Case = (&'static str, fn(u32) -> u32, &'static str);
    let cases: [Case; 6] = [
        ("embedding_length", |v| v * 2, "embedding_length"),
        ("block_count", |v| v + 1, "block_count"),
        ("attention.head_count", |_| 1 << 30, "attention heads"),
        ("feed_forward_length", |v| v - 32, "feed_forward_length"),
        ("context_length", |_| u32::MAX, "context_length"),
        ("rope.dimension_count", |_| 1 << 30, "rope.dimension_count"),
    ];
    for (key, change, named) in cases {
        let metadata: Vec<(String, Value)> = original
            .iter()
            .map(|(k, v)| match v {
                Value::U32(n) if k.ends_with(&format!(".{key}")) => {
                    (k.clone(), Value::U32(change(*n)))
                }
                _ => (k.clone(), v.clone()),
            })
            .collect();
        let metadata: Vec<(&str, Value)> = metadata
            .iter()
            .map(|(k, v)| (k.as_str(), v.clone()))
            .collect();
        let path = support::write_gguf(&format!("metadata-{key}.gguf"), &metadata, &tensors);
        for kernels in [Kernels::Auto, Kernels::Reference] {
            let config = CandleConfig {
                kernels,
                ..CandleConfig::new(path.display().to_string())
            };
            let err = CandleAdapter::connect(config)
                .await
                .err()
                .unwrap_or_else(|| panic!("{key} changed must not load ({kernels:?})"));
            assert_eq!(err.kind(), ErrorKind::ModelLoadFailed, "{key}: {err}");
            assert!(err.to_string().contains(named), "{key}: {err}");
        }
        support::remove(&path);
    }
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
