//! `cargo xtask ci`: the one test command (README, `.ci/run` and the GitHub workflow call it).

use std::path::{Path, PathBuf};
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
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    // Tests record what they could not check on this machine here (rigger_model_gen::declare_skip).
    let skips = target.join("declared-skips.log");
    let _ = std::fs::remove_file(&skips);
    let tests = step(&root, "tests", &["test", "--workspace", "--no-fail-fast"]);
    report_skips(&skips);
    // A full disk once failed CI halfway through the tests: say how much the build took.
    println!(
        "xtask ci: {} holds {:.1} GiB",
        target.display(),
        tree_size(&target) as f64 / (1u64 << 30) as f64
    );
    tests?;
    println!("xtask ci: all steps passed");
    Ok(())
}

/// Lists the declared skips, once each: cargo hides a passing test's output, so without this a
/// machine lacking AVX-512 would pass the ISA tests without anyone seeing what went unchecked.
fn report_skips(log: &Path) {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let mut lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    lines.sort_unstable();
    lines.dedup();
    println!("xtask ci: {} declared skip(s) on this machine", lines.len());
    for line in lines {
        println!("xtask ci:   skipped: {line}");
    }
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
