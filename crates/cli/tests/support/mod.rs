//! What the CLI tests share: running the built `rigger` binary in a clean environment.

#![allow(clippy::unwrap_used)] // a panic is how a test reports failure

use std::process::{Command, Output};

use serde_json::Value;

/// Runs `rigger` with exactly `env` (plus PATH and HOME), from a scratch directory; returns the
/// exit code, stdout parsed as JSON (null when it is not), and both streams for messages.
pub fn rigger(args: &[&str], env: &[(&str, &str)]) -> (i32, Value, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_rigger"));
    cmd.args(args)
        .env_clear()
        .current_dir(env!("CARGO_TARGET_TMPDIR"));
    for key in ["PATH", "HOME"] {
        if let Some(v) = std::env::var_os(key) {
            cmd.env(key, v);
        }
    }
    cmd.envs(env.iter().copied());
    let Output {
        status,
        stdout,
        stderr,
    } = cmd.output().unwrap();
    let stdout = String::from_utf8_lossy(&stdout).into_owned();
    let stderr = String::from_utf8_lossy(&stderr).into_owned();
    let json = serde_json::from_str(&stdout).unwrap_or(Value::Null);
    (
        status.code().unwrap_or(-1),
        json,
        format!("stdout:\n{stdout}\nstderr:\n{stderr}"),
    )
}
