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

/// The fuzz targets: every crate's integration test named `fuzz`, and unit-test modules named
/// `fuzz` (the MLX worker's reader is private to its crate).
const ROUNDS: &[&[&str]] = &[&["--test", "fuzz"], &["--lib", "--", "fuzz"]];

pub fn run(args: Args) -> anyhow::Result<()> {
    let root = workspace::root();
    let budget = Duration::from_secs(args.minutes * 60);
    let started = Instant::now();
    let mut round = 0;
    while started.elapsed() < budget {
        round += 1;
        for selection in ROUNDS {
            let status = Command::new(workspace::cargo())
                .args(["test", "--release", "--workspace"])
                .args(selection.iter())
                .env("PROPTEST_CASES", args.cases.to_string())
                .current_dir(&root)
                .status()
                .context("could not run cargo test")?;
            if !status.success() {
                bail!("a fuzz target failed in round {round} (the minimal input is above)");
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
