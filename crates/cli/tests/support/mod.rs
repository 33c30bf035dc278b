//! What the CLI tests share: running the built `rigger` binary in a clean environment.

#![allow(clippy::unwrap_used)] // a panic is how a test reports failure

use std::process::{Command, Output};

use serde_json::Value;

fn command(args: &[&str], env: &[(&str, &str)]) -> Command {
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
    cmd
}

fn outcome(status: std::process::ExitStatus, stdout: &[u8], stderr: &[u8]) -> (i32, Value, String) {
    let stdout = String::from_utf8_lossy(stdout).into_owned();
    let stderr = String::from_utf8_lossy(stderr).into_owned();
    let json = serde_json::from_str(&stdout).unwrap_or(Value::Null);
    (
        status.code().unwrap_or(-1),
        json,
        format!("stdout:\n{stdout}\nstderr:\n{stderr}"),
    )
}

/// Runs `rigger` with exactly `env` (plus PATH and HOME), from a scratch directory; returns the
/// exit code, stdout parsed as JSON (null when it is not), and both streams for messages.
#[allow(dead_code)] // the fault suite uses the measured variant
pub fn rigger(args: &[&str], env: &[(&str, &str)]) -> (i32, Value, String) {
    let Output {
        status,
        stdout,
        stderr,
    } = command(args, env).output().unwrap();
    outcome(status, &stdout, &stderr)
}

/// [`rigger`], also returning the process's peak resident memory in bytes as Linux reports it
/// (`VmHWM`, read every few milliseconds while it runs; `None` elsewhere).
#[allow(dead_code)] // the fault suite uses it
pub fn rigger_with_peak_memory(
    args: &[&str],
    env: &[(&str, &str)],
) -> (i32, Value, String, Option<u64>) {
    use std::io::Read;
    use std::process::Stdio;
    let mut child = command(args, env)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let drain = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            let _ = pipe.read_to_end(&mut bytes);
            bytes
        })
    };
    let stdout = drain(Box::new(child.stdout.take().unwrap()));
    let stderr = drain(Box::new(child.stderr.take().unwrap()));
    let status_file = format!("/proc/{}/status", child.id());
    let mut peak = None;
    let status = loop {
        if let Some(hwm) = std::fs::read_to_string(&status_file).ok().and_then(|s| {
            let line = s.lines().find(|l| l.starts_with("VmHWM:"))?.to_owned();
            line.split_whitespace().nth(1)?.parse::<u64>().ok()
        }) {
            peak = Some(hwm * 1024);
        }
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    };
    let (code, json, output) = outcome(status, &stdout.join().unwrap(), &stderr.join().unwrap());
    (code, json, output, peak)
}
