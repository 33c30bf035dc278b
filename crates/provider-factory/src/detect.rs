//! Auto-detection: every compiled-in backend probed concurrently, with short timeouts, and a
//! report saying for each why it is or is not usable.

use std::fmt;
use std::time::Duration;

use rigger_ports::{ErrorKind, InferenceError};
use serde::Serialize;

use crate::backends;
use crate::vars::Vars;
use crate::{BACKEND, Provider};

/// How long a network probe may take.
pub const PROBE_TIMEOUT: Duration = Duration::from_millis(800);

/// One backend's state on this machine.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BackendStatus {
    pub provider: Provider,
    pub compiled: bool,
    pub usable: bool,
    /// Whether auto-detection may pick it (MLX only on Apple Silicon, as the guide says).
    pub auto_selectable: bool,
    /// Picked only when no backend is auto-selectable: Candle with its built-in default models
    /// (downloaded from the hub on first use) when `CANDLE_MODEL` is not set.
    pub last_resort: bool,
    /// What was found, or why it is not usable.
    pub detail: String,
    /// What to do to make it usable, when it is not.
    pub fix: Option<String>,
}

/// Every backend's status, in detection order, and the one auto-detection picks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DetectionReport {
    pub backends: Vec<BackendStatus>,
}

impl DetectionReport {
    /// The first usable, auto-selectable backend in detection order; else the usable last
    /// resort (Candle's built-in defaults).
    pub fn chosen(&self) -> Option<&BackendStatus> {
        self.backends
            .iter()
            .find(|b| b.usable && b.auto_selectable)
            .or_else(|| self.backends.iter().find(|b| b.usable && b.last_resort))
    }

    pub fn status(&self, provider: Provider) -> Option<&BackendStatus> {
        self.backends.iter().find(|b| b.provider == provider)
    }

    /// The error from-env construction returns when nothing is usable.
    pub fn nothing_usable(&self) -> InferenceError {
        InferenceError::new(
            ErrorKind::NotAvailable,
            BACKEND,
            format!("no backend is usable on this machine:\n{self}"),
        )
        .with_hint(
            "start Ollama, set CANDLE_MODEL, download the built-in models while online \
             (rigger pull --all), set OPENAI_API_KEY / OPENAI_BASE_URL or ANTHROPIC_API_KEY, \
             or set TASK_ORCHESTRATOR_PROVIDER explicitly",
        )
    }
}

impl fmt::Display for DetectionReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let chosen = self.chosen();
        for b in &self.backends {
            let mark = if b.usable { "ok  " } else { "--  " };
            let pick = match chosen {
                Some(c) if c.provider == b.provider && c.auto_selectable => " (auto-selected)",
                Some(c) if c.provider == b.provider => " (selected: nothing else is usable)",
                _ => "",
            };
            writeln!(f, "  {mark}{:<10}{}{pick}", b.provider.as_str(), b.detail)?;
            if let Some(fix) = &b.fix {
                writeln!(f, "      {:<10}fix: {fix}", "")?;
            }
        }
        Ok(())
    }
}

/// A compiled-in backend's status; a fix is kept only when it is not usable.
pub(crate) fn status(
    provider: Provider,
    usable: bool,
    detail: impl Into<String>,
    fix: Option<String>,
) -> BackendStatus {
    BackendStatus {
        provider,
        compiled: true,
        usable,
        auto_selectable: usable,
        last_resort: false,
        detail: detail.into(),
        fix: if usable { None } else { fix },
    }
}

fn not_compiled(provider: Provider) -> BackendStatus {
    BackendStatus {
        provider,
        compiled: false,
        usable: false,
        auto_selectable: false,
        last_resort: false,
        detail: "not compiled into this build".into(),
        fix: Some(format!("rebuild with the `{provider}` feature")),
    }
}

/// Probes every backend concurrently; the report lists every provider, compiled in or not.
pub async fn detect(vars: &Vars) -> DetectionReport {
    let probes = Provider::ALL.map(|provider| async move {
        match backends::get(provider) {
            Some(backend) => backend.probe(vars).await,
            None => not_compiled(provider),
        }
    });
    DetectionReport {
        backends: futures::future::join_all(probes).await,
    }
}
/// [`detect`] for synchronous callers, on its own thread and runtime (so it works inside and
/// outside a tokio runtime alike).
pub(crate) fn detect_blocking(vars: &Vars) -> Result<DetectionReport, InferenceError> {
    let vars = vars.clone();
    std::thread::scope(|scope| {
        scope
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|e| {
                        InferenceError::internal(
                            BACKEND,
                            format!("cannot start the detection runtime: {e}"),
                        )
                    })?;
                Ok(runtime.block_on(detect(&vars)))
            })
            .join()
            .unwrap_or_else(|_| Err(InferenceError::internal(BACKEND, "detection panicked")))
    })
}
