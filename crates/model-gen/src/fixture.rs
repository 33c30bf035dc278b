//! The tiny model shared by the test suite: generated once per `target/` into
//! `target/rigger-models/`, then reused by every test binary.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::generate::{GENERATOR_REVISION, GenOptions, Manifest, generate};
use crate::{GenError, shape};

static TINY: Mutex<Option<PathBuf>> = Mutex::new(None);

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target"))
}

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
    let mut cached = TINY.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(dir) = cached.as_ref() {
        return Ok(dir.clone());
    }
    let root = target_dir().join("rigger-models");
    let dir = root.join(format!("tiny-seed0-r{GENERATOR_REVISION}"));
    if Manifest::read(&dir).is_err() {
        std::fs::create_dir_all(&root).map_err(|e| GenError::io(&root, e))?;
        let scratch = root.join(format!("tiny-tmp-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&scratch);
        generate(&scratch, &GenOptions::new(shape("tiny")?), &|_| {})?;
        if std::fs::rename(&scratch, &dir).is_err() {
            // Another process won the race; its copy is identical.
            let _ = std::fs::remove_dir_all(&scratch);
            Manifest::read(&dir)?;
        }
    }
    *cached = Some(dir.clone());
    Ok(dir)
}
