//! The supervised worker process. Each worker runs on its own thread with its own small tokio
//! runtime (so adapters on any runtime can share it); adapters talk to it through channels.
//! The worker's death turns every in-flight request into a `BackendCrashed` error, and the next
//! request starts a fresh worker.

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use rigger_ports::{ErrorKind, InferenceError};
use tokio::io::AsyncWriteExt;
use tokio::sync::{mpsc, oneshot};
use tokio_util::codec::{FramedRead, LinesCodec};

use crate::errors::crashed;
use crate::wire::{PROTOCOL, Reply, Request, WorkerErrorKind};
use crate::{BACKEND, PYTHON_VAR, codes};

/// The worker script, shipped inside the crate and passed to `python -c`.
pub const SCRIPT: &str = include_str!("worker.py");
/// What a request's channel receives.
#[derive(Debug)]
pub enum Event {
    Reply(Reply),
    Crashed(String),
}

enum Command {
    Send {
        id: u64,
        line: String,
        events: mpsc::UnboundedSender<Event>,
    },
    Cancel(u64),
}

/// The handshake's facts.
#[derive(Debug, Clone)]
pub struct Hello {
    pub mlx: String,
    pub mlx_lm: String,
    pub device: String,
    pub python_version: String,
    /// The llguidance version the worker constrains decoding with; `None` when it cannot.
    pub llguidance: Option<String>,
}

pub struct Worker {
    commands: mpsc::UnboundedSender<Command>,
    alive: Arc<AtomicBool>,
    pid: Arc<AtomicU32>,
    pub hello: Hello,
}

/// Debian/Ubuntu's OpenBLAS: preloaded on Linux because mlx's CPU wheel otherwise uses a
/// reference BLAS (measured: prompt processing 48x and decode 3x faster on f32 with it).
pub fn openblas() -> Option<&'static str> {
    const PATHS: [&str; 4] = [
        "/usr/lib/x86_64-linux-gnu/libopenblas.so.0",
        "/usr/lib/aarch64-linux-gnu/libopenblas.so.0",
        "/usr/lib/x86_64-linux-gnu/openblas-pthread/libopenblas.so.0",
        "/usr/lib64/libopenblas.so.0",
    ];
    if !cfg!(target_os = "linux") {
        return None;
    }
    PATHS.into_iter().find(|p| Path::new(p).exists())
}

impl Worker {
    /// Starts the worker and waits for its handshake.
    pub async fn start(
        python: &Path,
        startup_timeout: Duration,
    ) -> Result<Arc<Worker>, InferenceError> {
        let (ready_tx, ready_rx) = oneshot::channel();
        let (commands, command_rx) = mpsc::unbounded_channel();
        let alive = Arc::new(AtomicBool::new(true));
        let pid = Arc::new(AtomicU32::new(0));
        let (python_path, alive2, pid2) = (python.to_path_buf(), alive.clone(), pid.clone());
        std::thread::Builder::new()
            .name("rigger-mlx-worker".into())
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(r) => r,
                    Err(e) => {
                        let _ = ready_tx.send(Err(InferenceError::internal(
                            BACKEND,
                            format!("cannot start a runtime: {e}"),
                        )));
                        return;
                    }
                };
                runtime.block_on(supervise(
                    python_path,
                    startup_timeout,
                    ready_tx,
                    command_rx,
                    alive2,
                    pid2,
                ));
            })
            .map_err(|e| {
                InferenceError::internal(BACKEND, format!("cannot start the worker thread: {e}"))
            })?;
        let hello = ready_rx
            .await
            .map_err(|_| crashed("the MLX worker thread stopped during start-up"))??;
        Ok(Arc::new(Worker {
            commands,
            alive,
            pid,
            hello,
        }))
    }

    pub fn is_alive(&self) -> bool {
        self.alive.load(Ordering::SeqCst)
    }

    pub fn pid(&self) -> Option<u32> {
        Some(self.pid.load(Ordering::SeqCst)).filter(|p| *p != 0)
    }

    pub fn send(
        &self,
        id: u64,
        line: String,
        events: mpsc::UnboundedSender<Event>,
    ) -> Result<(), InferenceError> {
        self.commands
            .send(Command::Send { id, line, events })
            .map_err(|_| crashed("the MLX worker has stopped"))
    }

    pub fn cancel(&self, id: u64) {
        let _ = self.commands.send(Command::Cancel(id));
    }
}

async fn supervise(
    python: PathBuf,
    startup_timeout: Duration,
    ready: oneshot::Sender<Result<Hello, InferenceError>>,
    mut commands: mpsc::UnboundedReceiver<Command>,
    alive: Arc<AtomicBool>,
    pid: Arc<AtomicU32>,
) {
    let mut command = tokio::process::Command::new(&python);
    command
        .arg("-u")
        .arg("-c")
        .arg(SCRIPT)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    if let (Some(blas), None) = (openblas(), std::env::var_os("LD_PRELOAD")) {
        tracing::debug!(target: "rigger::mlx", "preloading {blas} for mlx's CPU matmuls");
        command.env("LD_PRELOAD", blas);
    }
    let mut child = match command.spawn() {
        Ok(c) => c,
        Err(e) => {
            alive.store(false, Ordering::SeqCst);
            let _ = ready.send(Err(InferenceError::new(
                ErrorKind::NotAvailable,
                BACKEND,
                format!("Failed to execute Python {}: {e}", python.display()),
            )
            .with_code(codes::PYTHON_EXEC_FAILED)
            .with_hint(format!(
                "install Python 3.9+ and run `cargo xtask setup-mlx`, or set {PYTHON_VAR}"
            ))));
            return;
        }
    };
    pid.store(child.id().unwrap_or(0), Ordering::SeqCst);
    let (Some(mut stdin), Some(stdout), Some(stderr)) =
        (child.stdin.take(), child.stdout.take(), child.stderr.take())
    else {
        alive.store(false, Ordering::SeqCst);
        let _ = ready.send(Err(crashed("the worker's pipes could not be opened")));
        return;
    };
    let mut lines = FramedRead::new(stdout, LinesCodec::new_with_max_length(64 << 20));
    let recent_stderr = Arc::new(Mutex::new(VecDeque::new()));
    let recent = recent_stderr.clone();
    tokio::spawn(async move {
        let mut err_lines = FramedRead::new(stderr, LinesCodec::new());
        while let Some(Ok(line)) = err_lines.next().await {
            tracing::debug!(target: "rigger::mlx::worker", "{line}");
            let mut r = recent.lock().unwrap_or_else(|p| p.into_inner());
            if r.len() == 20 {
                r.pop_front();
            }
            r.push_back(line);
        }
    });
    let last_stderr = |recent: &Arc<Mutex<VecDeque<String>>>| {
        recent
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    };

    // Handshake.
    let hello = match tokio::time::timeout(startup_timeout, lines.next()).await {
        Ok(Some(Ok(line))) => handshake(&python, &line),
        _ => None,
    };
    let hello = hello.unwrap_or_else(|| {
        Err(crashed(format!(
            "the MLX worker did not complete its handshake within {startup_timeout:?} \
             (raise {} if importing mlx takes longer here); stderr:\n{}",
            crate::config::STARTUP_TIMEOUT_VAR,
            last_stderr(&recent_stderr)
        )))
    });
    let failed = hello.is_err();
    let _ = ready.send(hello);
    if failed {
        alive.store(false, Ordering::SeqCst);
        return;
    }

    let mut pending: HashMap<u64, mpsc::UnboundedSender<Event>> = HashMap::new();
    let reason = loop {
        tokio::select! {
            cmd = commands.recv() => match cmd {
                None => break None, // every adapter is gone: stop the worker
                Some(Command::Send { id, line, events }) => {
                    pending.insert(id, events);
                    if stdin.write_all(format!("{line}\n").as_bytes()).await.is_err() {
                        break Some("its stdin closed".to_owned());
                    }
                }
                Some(Command::Cancel(id)) => {
                    if pending.remove(&id).is_some() {
                        let cancel = format!("{}\n", Request::Cancel { id }.to_line());
                        if stdin.write_all(cancel.as_bytes()).await.is_err() {
                            break Some("its stdin closed".to_owned());
                        }
                    }
                }
            },
            line = lines.next() => match line {
                Some(Ok(text)) => {
                    let Some(reply) = read_reply(&text) else {
                        tracing::warn!(target: "rigger::mlx", "unexpected worker output: {text}");
                        continue;
                    };
                    let Some(id) = reply.id() else {
                        tracing::warn!(target: "rigger::mlx", "worker message without id: {text}");
                        continue;
                    };
                    let last = reply.is_last();
                    if let Some(events) = pending.get(&id) && events.send(Event::Reply(reply)).is_err() {
                        pending.remove(&id);
                        let cancel = format!("{}\n", Request::Cancel { id }.to_line());
                        let _ = stdin.write_all(cancel.as_bytes()).await;
                        continue;
                    }
                    if last {
                        pending.remove(&id);
                    }
                }
                Some(Err(e)) => tracing::warn!(target: "rigger::mlx", "unreadable worker output: {e}"),
                None => break Some("its output ended".to_owned()),
            },
        }
    };
    alive.store(false, Ordering::SeqCst);
    if let Some(reason) = reason {
        let status = tokio::time::timeout(Duration::from_secs(2), child.wait()).await;
        let status = match status {
            Ok(Ok(s)) => s.to_string(),
            _ => "still running".to_owned(),
        };
        tokio::time::sleep(Duration::from_millis(50)).await; // let the stderr reader drain
        let message = format!(
            "the MLX worker died ({reason}; {status}); last stderr:\n{}",
            last_stderr(&recent_stderr)
        );
        tracing::warn!(target: "rigger::mlx", "{message}");
        for (_, events) in pending.drain() {
            let _ = events.send(Event::Crashed(message.clone()));
        }
    }
    let _ = child.kill().await;
}

/// The handshake line as the worker's facts, or why it cannot serve; `None` when the line is
/// not a handshake at all.
fn handshake(python: &Path, line: &str) -> Option<Result<Hello, InferenceError>> {
    let mismatch = |protocol: Option<u64>| {
        InferenceError::protocol(
            BACKEND,
            format!("the worker speaks protocol {protocol:?}, this adapter {PROTOCOL}"),
        )
        .with_hint("the worker script and the adapter come from different Rigger versions; rebuild")
    };
    match serde_json::from_str::<Reply>(line) {
        Ok(Reply::Unavailable { error, .. }) => Some(Err(InferenceError::new(
            ErrorKind::NotAvailable,
            BACKEND,
            format!(
                "MLX backend is not available: {} cannot import mlx-lm ({error})",
                python.display()
            ),
        )
        .with_code(codes::MLX_NOT_AVAILABLE)
        .with_hint(
            "run `cargo xtask setup-mlx` (or `pip install mlx-lm`, plus `mlx[cpu]` on Linux)",
        ))),
        Ok(Reply::Hello { protocol, .. }) if protocol != PROTOCOL => {
            Some(Err(mismatch(Some(protocol))))
        }
        Ok(Reply::Hello {
            mlx,
            mlx_lm,
            device,
            python,
            llguidance,
            ..
        }) => Some(Ok(Hello {
            mlx,
            mlx_lm,
            device,
            python_version: python,
            llguidance,
        })),
        // Another protocol's handshake may not parse as ours: say so if it names its version.
        _ => serde_json::from_str::<serde_json::Value>(line)
            .ok()
            .and_then(|v| v.get("protocol").and_then(serde_json::Value::as_u64))
            .filter(|p| *p != PROTOCOL)
            .map(|p| Err(mismatch(Some(p)))),
    }
}

/// A reply line; one that does not parse but names its request becomes a protocol error for
/// that request, so that the request fails at once instead of waiting for its timeout.
fn read_reply(line: &str) -> Option<Reply> {
    match serde_json::from_str::<Reply>(line) {
        Ok(reply) => Some(reply),
        Err(e) => {
            let id = serde_json::from_str::<serde_json::Value>(line)
                .ok()?
                .get("id")?
                .as_u64()?;
            Some(Reply::Error {
                id: Some(id),
                kind: WorkerErrorKind::Protocol,
                message: format!("unreadable worker reply ({e}): {line}"),
            })
        }
    }
}

/// Fuzzing (property tests on arbitrary input, `cargo xtask fuzz` runs them longer): whatever
/// the worker prints, reading it as a handshake or a reply never panics, and an unreadable reply
/// that names its request becomes that request's Protocol error.
#[cfg(test)]
mod fuzz {
    use proptest::prelude::*;
    use rigger_conformance::fuzz::config;

    use super::*;

    /// Lines that are often the worker's JSON: its tags and fields, values of any type.
    fn reply_like() -> impl Strategy<Value = String> {
        let field = (
            proptest::sample::select(vec![
                "type",
                "id",
                "text",
                "stats",
                "kind",
                "message",
                "protocol",
                "mlx",
                "mlx_lm",
                "device",
                "python",
                "llguidance",
                "error",
                "finish_reason",
                "prompt_tokens",
            ]),
            prop_oneof![
                proptest::sample::select(vec![
                    "\"hello\"",
                    "\"delta\"",
                    "\"done\"",
                    "\"error\"",
                    "\"unavailable\"",
                    "\"loaded\"",
                    "3",
                    "-1",
                    "null",
                    "1e999",
                    "{}",
                    "[]",
                    "\"x\"",
                ])
                .prop_map(str::to_owned),
                any::<u64>().prop_map(|n| n.to_string()),
            ],
        )
            .prop_map(|(k, v)| format!("\"{k}\":{v}"));
        prop_oneof![
            proptest::collection::vec(field, 0..8)
                .prop_map(|fields| format!("{{{}}}", fields.join(","))),
            ".{0,80}",
        ]
    }

    proptest! {
        #![proptest_config(config(1024))]

        #[test]
        fn worker_output_is_read_without_panics(line in reply_like()) {
            let _ = handshake(Path::new("python3"), &line);
            let read = read_reply(&line);
            if serde_json::from_str::<Reply>(&line).is_err()
                && let Some(reply) = read
            {
                let is_protocol_error = matches!(
                    reply,
                    Reply::Error { id: Some(_), kind: WorkerErrorKind::Protocol, .. }
                );
                prop_assert!(is_protocol_error);
            }
        }
    }
}
