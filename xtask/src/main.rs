//! `cargo xtask`: the project's tasks, one module each, as plain Rust (no shell scripts to drift).
//!
//! - `ci`: everything CI checks — format, clippy with warnings denied, the whole test suite.
//! - `tidy`: the architecture invariants over the dependency graph (also run as a test).
//! - `gen-model`: a synthetic model of a real architecture, in HF and GGUF formats.
//! - `setup-mlx`: a project-local venv with pinned mlx-lm.
//! - `bench`: one model on every backend, side by side (docs/bench.md).

mod bench;
mod ci;
mod gen_model;
mod setup_mlx;
mod tidy;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "cargo xtask", about = "Rigger's project tasks")]
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
    /// Generate a synthetic model (seeded random weights of a real architecture).
    GenModel(gen_model::Args),
    /// Create or update the project's MLX venv (.venv) with pinned mlx-lm.
    SetupMlx(setup_mlx::Args),
    /// One model on every backend, side by side: tokens/s, TTFT, memory, against the ceiling.
    Bench(bench::Args),
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
        Task::GenModel(args) => gen_model::run(args),
        Task::SetupMlx(args) => setup_mlx::run(args).map(drop),
        Task::Bench(args) => bench::run(args),
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
