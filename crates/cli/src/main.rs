//! `rigger`: the command line over the facade. For now `doctor`, which reports the machine, the
//! roles and a quick look at each backend compiled in; `enhance`, `decompose`, `run` and `models`
//! arrive with the pipeline and the factory.

use clap::{Parser, Subcommand};
use task_orchestrator::adapters::backend_reports;
use task_orchestrator::domain::model_role::ModelRole;

#[derive(Parser)]
#[command(
    name = "rigger",
    version,
    about = "Local-first LLM inference for task orchestration"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Report this machine, the pipeline roles and which backends are usable.
    Doctor,
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Doctor => doctor(),
    }
}

fn doctor() -> anyhow::Result<()> {
    println!("rigger {}", env!("CARGO_PKG_VERSION"));
    println!(
        "machine: {} {}, {} logical CPUs",
        std::env::consts::OS,
        std::env::consts::ARCH,
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!("\nroles:");
    for role in ModelRole::ALL {
        let speed = if role.needs_fast_inference() {
            " (fast model)"
        } else {
            ""
        };
        println!("  {role:<11}{}{speed}", role.description());
    }
    println!("\nbackends compiled in:");
    let reports = backend_reports();
    for r in &reports {
        let state = if r.usable { "usable  " } else { "unusable" };
        println!("  {:<10} {state}  {}", r.name, r.detail);
    }
    if !reports.iter().any(|r| r.usable) {
        println!("\nno backend is usable yet: follow one of the fixes above");
    }
    Ok(())
}
