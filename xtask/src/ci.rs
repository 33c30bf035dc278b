//! `cargo xtask ci`: the one test command (README, `.ci/run` and the GitHub workflow call it).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, bail};

pub fn run() -> anyhow::Result<()> {
    let root = workspace_root();
    // The MLX adapter's tests run against real mlx-lm: make (or reuse) the venv first.
    println!("xtask ci: mlx venv: cargo xtask setup-mlx");
    crate::setup_mlx::run(crate::setup_mlx::Args::default())?;
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
    step(&root, "tests", &["test", "--workspace", "--no-fail-fast"])?;
    println!("xtask ci: all steps passed");
    Ok(())
}

fn step(root: &Path, name: &str, args: &[&str]) -> anyhow::Result<()> {
    println!("xtask ci: {name}: cargo {}", args.join(" "));
    let started = Instant::now();
    let status = Command::new(cargo())
        .args(args)
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

pub fn cargo() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned())
}

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}
