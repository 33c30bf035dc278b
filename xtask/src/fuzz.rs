//! `cargo xtask fuzz --minutes N`: the fuzz targets (property tests named `fuzz` in each crate,
//! bounded to a few hundred cases in CI) run again and again with many cases each, fresh random
//! inputs every round, until the time is up. A failure stops it and shows the minimal input.

use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::workspace;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// How long to fuzz, in minutes.
    #[arg(long, default_value_t = 10)]
    minutes: u64,
    /// Cases per target per round.
    #[arg(long, default_value_t = 20_000)]
    cases: u32,
}

/// The crates with a fuzz target: integration tests named `fuzz`, or (MLX) a unit-test module.
const TARGETS: &[(&str, &str)] = &[
    ("rigger-http-support", "--test=fuzz"),
    ("rigger-openai-adapter", "--test=fuzz"),
    ("rigger-ollama-adapter", "--test=fuzz"),
    ("rigger-anthropic-adapter", "--test=fuzz"),
    ("rigger-provider-factory", "--test=fuzz"),
    ("rigger-candle-adapter", "--test=fuzz"),
    ("rigger-mlx-adapter", "--lib"),
];

pub fn run(args: Args) -> anyhow::Result<()> {
    let root = workspace::root();
    let budget = Duration::from_secs(args.minutes * 60);
    let started = Instant::now();
    let mut round = 0;
    while started.elapsed() < budget {
        round += 1;
        for (package, target) in TARGETS {
            let mut command = Command::new(workspace::cargo());
            command
                .args(["test", "--release", "--workspace", target])
                .args(["--package", package])
                .args(["--", "fuzz"])
                .env("PROPTEST_CASES", args.cases.to_string())
                .current_dir(&root);
            let status = command
                .status()
                .with_context(|| format!("could not run cargo for {package}"))?;
            if !status.success() {
                bail!("fuzzing {package} failed in round {round} (the minimal input is above)");
            }
            if started.elapsed() >= budget {
                break;
            }
        }
        println!(
            "xtask fuzz: round {round} done after {:.0?}: {} cases per target",
            started.elapsed(),
            args.cases
        );
    }
    println!(
        "xtask fuzz: {round} round(s), no failure, in {:.0?}",
        started.elapsed()
    );
    Ok(())
}
