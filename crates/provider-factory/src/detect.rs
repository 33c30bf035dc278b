//! Auto-detection: every compiled-in backend probed concurrently, with short timeouts, and a
//! report saying for each why it is or is not usable.

use std::fmt;
use std::time::Duration;

use rigger_ports::{ErrorKind, InferenceError};
use serde::Serialize;

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
    /// The first usable, auto-selectable backend in detection order.
    pub fn chosen(&self) -> Option<&BackendStatus> {
        self.backends.iter().find(|b| b.usable && b.auto_selectable)
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
            "start Ollama, set CANDLE_MODEL, set OPENAI_API_KEY / OPENAI_BASE_URL or \
             ANTHROPIC_API_KEY, or set TASK_ORCHESTRATOR_PROVIDER explicitly",
        )
    }
}

impl fmt::Display for DetectionReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let chosen = self.chosen().map(|b| b.provider);
        for b in &self.backends {
            let mark = if b.usable { "ok  " } else { "--  " };
            let pick = if Some(b.provider) == chosen {
                " (auto-selected)"
            } else {
                ""
            };
            writeln!(f, "  {mark}{:<10}{}{pick}", b.provider.as_str(), b.detail)?;
            if let Some(fix) = &b.fix {
                writeln!(f, "      {:<10}fix: {fix}", "")?;
            }
        }
        Ok(())
    }
}

fn status(
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
        detail: "not compiled into this build".into(),
        fix: Some(format!("rebuild with the `{provider}` feature")),
    }
}

/// Probes every backend concurrently.
pub async fn detect(vars: &Vars) -> DetectionReport {
    let (mlx, ollama, candle, openai, anthropic) = futures::join!(
        probe_mlx(vars),
        probe_ollama(vars),
        probe_candle(vars),
        probe_openai(vars),
        probe_anthropic(vars),
    );
    DetectionReport {
        backends: vec![mlx, ollama, candle, openai, anthropic],
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
                        InferenceError::new(
                            ErrorKind::Internal,
                            BACKEND,
                            format!("cannot start the detection runtime: {e}"),
                        )
                    })?;
                Ok(runtime.block_on(detect(&vars)))
            })
            .join()
            .unwrap_or_else(|_| {
                Err(InferenceError::new(
                    ErrorKind::Internal,
                    BACKEND,
                    "detection panicked",
                ))
            })
    })
}

async fn probe_mlx(vars: &Vars) -> BackendStatus {
    if !Provider::Mlx.is_compiled() {
        return not_compiled(Provider::Mlx);
    }
    #[cfg(feature = "mlx")]
    {
        let python = vars.get("PYTHON_PATH").map(std::path::PathBuf::from);
        let checked = tokio::task::spawn_blocking(move || match python {
            Some(p) => rigger_mlx_adapter::check_availability(Some(&p)),
            None => rigger_mlx_adapter::availability().clone(),
        })
        .await;
        let a = match checked {
            Ok(a) => a,
            Err(e) => return status(Provider::Mlx, false, format!("the check failed: {e}"), None),
        };
        let fix =
            Some("cargo xtask setup-mlx (or pip install mlx-lm), or set PYTHON_PATH".to_owned());
        let mut s = status(Provider::Mlx, a.available, a.reason.clone(), fix);
        let apple_silicon = cfg!(all(target_os = "macos", target_arch = "aarch64"));
        if a.available && !apple_silicon {
            s.auto_selectable = false;
            s.detail = format!(
                "{} — not auto-selected off Apple Silicon; set TASK_ORCHESTRATOR_PROVIDER=mlx to use it",
                a.reason
            );
        }
        s
    }
    #[cfg(not(feature = "mlx"))]
    {
        let _ = vars;
        not_compiled(Provider::Mlx)
    }
}

async fn probe_candle(vars: &Vars) -> BackendStatus {
    if !Provider::Candle.is_compiled() {
        return not_compiled(Provider::Candle);
    }
    let fix = Some("set CANDLE_MODEL to a .gguf file, a safetensors folder or a hub id".to_owned());
    let Some(model) = vars.get("CANDLE_MODEL") else {
        return status(Provider::Candle, false, "CANDLE_MODEL is not set", fix);
    };
    let path = std::path::Path::new(&model);
    let looks_local = path.is_absolute() || model.starts_with('.') || model.ends_with(".gguf");
    if path.exists() {
        status(
            Provider::Candle,
            true,
            format!("CANDLE_MODEL={model} (loaded on first use)"),
            None,
        )
    } else if looks_local {
        status(
            Provider::Candle,
            false,
            format!("CANDLE_MODEL={model} does not exist"),
            fix,
        )
    } else {
        status(
            Provider::Candle,
            true,
            format!("CANDLE_MODEL={model}: a hub id, resolved through the hub cache on first use"),
            None,
        )
    }
}

async fn probe_ollama(vars: &Vars) -> BackendStatus {
    #[cfg(feature = "ollama")]
    {
        use rigger_ollama_adapter::{OllamaConfig, probe};
        let fix = Some("start Ollama (`ollama serve`), or point OLLAMA_HOST at it".to_owned());
        let lookup = vars.lookup();
        match OllamaConfig::from_vars(&lookup) {
            Err(e) => status(
                Provider::Ollama,
                false,
                e.message().to_owned(),
                Some("fix OLLAMA_HOST".into()),
            ),
            Ok(config) => match probe(&config, PROBE_TIMEOUT).await {
                Ok(found) => status(Provider::Ollama, true, found, None),
                Err(e) => status(Provider::Ollama, false, e.message().to_owned(), fix),
            },
        }
    }
    #[cfg(not(feature = "ollama"))]
    {
        let _ = vars;
        not_compiled(Provider::Ollama)
    }
}

/// OpenAI-compatible: usable when a key or a base URL is set and the server answers.
async fn probe_openai(vars: &Vars) -> BackendStatus {
    #[cfg(feature = "openai")]
    {
        use rigger_openai_adapter::{OpenAiConfig, probe};
        if vars.get("OPENAI_API_KEY").is_none() && vars.get("OPENAI_BASE_URL").is_none() {
            return status(
                Provider::OpenAi,
                false,
                "OPENAI_API_KEY and OPENAI_BASE_URL are not set",
                Some("set OPENAI_BASE_URL to a server's /v1 base (vLLM, llama-server, mlx_lm.server) or OPENAI_API_KEY".into()),
            );
        }
        let lookup = vars.lookup();
        let fix = Some("check OPENAI_BASE_URL, OPENAI_API_KEY and that the server runs".to_owned());
        match OpenAiConfig::from_vars(&lookup) {
            Err(e) => status(Provider::OpenAi, false, e.message().to_owned(), fix),
            Ok(config) => match probe(&config, PROBE_TIMEOUT).await {
                Ok(found) => status(Provider::OpenAi, true, found, None),
                Err(e) => status(Provider::OpenAi, false, e.message().to_owned(), fix),
            },
        }
    }
    #[cfg(not(feature = "openai"))]
    {
        let _ = vars;
        not_compiled(Provider::OpenAi)
    }
}

/// Anthropic: usable when `ANTHROPIC_API_KEY` is set and the API answers.
async fn probe_anthropic(vars: &Vars) -> BackendStatus {
    #[cfg(feature = "anthropic")]
    {
        use rigger_anthropic_adapter::{AnthropicConfig, probe};
        if vars.get("ANTHROPIC_API_KEY").is_none() {
            return status(
                Provider::Anthropic,
                false,
                "ANTHROPIC_API_KEY is not set",
                Some("set ANTHROPIC_API_KEY".into()),
            );
        }
        let lookup = vars.lookup();
        let config = AnthropicConfig::from_vars(&lookup);
        match probe(&config, PROBE_TIMEOUT).await {
            Ok(found) => status(Provider::Anthropic, true, found, None),
            Err(e) => status(
                Provider::Anthropic,
                false,
                e.message().to_owned(),
                Some("check ANTHROPIC_API_KEY, ANTHROPIC_BASE_URL and the network".into()),
            ),
        }
    }
    #[cfg(not(feature = "anthropic"))]
    {
        let _ = vars;
        not_compiled(Provider::Anthropic)
    }
}
