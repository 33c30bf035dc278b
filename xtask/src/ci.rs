//! `cargo xtask ci`: the one test command (README, `.ci/run` and the GitHub workflow call it).

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, bail};

use crate::{fetch_models, setup_mlx, workspace};

pub fn run() -> anyhow::Result<()> {
    let root = workspace::root();
    // The MLX adapter's tests run against real mlx-lm: make (or reuse) the venv first.
    println!("xtask ci: mlx venv: cargo xtask setup-mlx");
    let python = setup_mlx::run(setup_mlx::Args::default())?;
    // Real models (SmolLM2, llama.cpp's vocabulary vectors), cached outside the clone.
    println!("xtask ci: test models: cargo xtask fetch-models");
    fetch_models::run(&python)?;
    step(&root, "format", &["fmt", "--all", "--", "--check"])?;
    step(
        &root,
        "clippy",
        &[
            "clippy",
            "--workspace",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ],
    )?;
    let tests = step(&root, "tests", &["test", "--workspace", "--no-fail-fast"]);
    // A full disk once failed CI halfway through the tests: say how much the build took.
    let target = root.join("target");
    println!(
        "xtask ci: {} holds {:.1} GiB",
        target.display(),
        tree_size(&target) as f64 / (1u64 << 30) as f64
    );
    tests?;
    println!("xtask ci: all steps passed");
    Ok(())
}

fn step(root: &Path, name: &str, args: &[&str]) -> anyhow::Result<()> {
    println!("xtask ci: {name}: cargo {}", args.join(" "));
    let started = Instant::now();
    let status = Command::new(workspace::cargo())
        .args(args)
        // A CI build is cold: incremental state would only cost time and disk.
        .env("CARGO_INCREMENTAL", "0")
        .current_dir(root)
        .status()
        .with_context(|| format!("could not run cargo for the {name} step"))?;
    println!(
        "xtask ci: {name} finished in {:.1}s",
        started.elapsed().as_secs_f64()
    );
    if !status.success() {
        bail!("the {name} step failed ({status})");
    }
    Ok(())
}

/// Bytes under `path`, not following links; what cannot be read counts as nothing.
fn tree_size(path: &Path) -> u64 {
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return 0;
    };
    if !meta.is_dir() {
        return meta.len();
    }
    std::fs::read_dir(path)
        .map(|entries| {
            entries
                .flatten()
                .map(|entry| tree_size(&entry.path()))
                .sum()
        })
        .unwrap_or(0)
}
