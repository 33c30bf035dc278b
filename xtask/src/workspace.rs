//! Where the workspace is and how to call cargo in it: shared by the tasks, so that none of them
//! imports another for it.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};

/// The cargo that runs this xtask (`CARGO`), or the one on the `PATH`.
pub fn cargo() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned())
}

/// The workspace root: the xtask's folder is one level below it.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// `cargo run [--release] -p <package> --bin <bin> -- <args>` from the workspace root: a task that
/// lives in a binary of its own crate, so that its dependencies are not the xtask's.
pub fn run_binary(
    package: &str,
    bin: &str,
    release: bool,
    args: &[OsString],
) -> anyhow::Result<()> {
    let mut command = Command::new(cargo());
    command.arg("run");
    if release {
        command.arg("--release");
    }
    command
        .args(["--quiet", "--package", package, "--bin", bin, "--"])
        .args(args)
        .current_dir(root());
    let status = command
        .status()
        .with_context(|| format!("could not run cargo for {bin}"))?;
    if !status.success() {
        bail!("{bin} failed ({status})");
    }
    Ok(())
}
