//! MLX backend: [`MlxSubprocessAdapter`] drives one long-lived Python worker running `mlx-lm`
//! and implements the model port over it.
//!
//! Role: keep models resident in a supervised worker (one per Python interpreter, shared by every
//! adapter using it), speak a small versioned JSON-lines protocol (the script ships in this
//! crate; prompts travel as data, never as code), stream tokens from `mlx_lm.stream_generate`,
//! and report mlx-lm's own figures as the port's timings.
//!
//! Invariant: depends on `rigger-ports` only among Rigger's crates; the worker's Python errors
//! cross the port only as [`InferenceError`]s with a kind, the spec's codes and a fix.
//!
//! ```no_run
//! use rigger_mlx_adapter::MlxSubprocessAdapter;
//!
//! if MlxSubprocessAdapter::is_available() {
//!     println!("MLX backend available - using optimized inference");
//! } else {
//!     println!("MLX not available - falling back to Ollama");
//! }
//! ```

mod config;
mod errors;
mod python;
mod request;
mod stream;
mod wire;
mod worker;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use async_trait::async_trait;
use rigger_ports::{
    Capabilities, ErrorKind, EventStream, GenerationRequest, InferenceError, LanguageModel,
    ModelDescriptor, ResponseFormat, enforce_response_format,
};
use tokio::sync::mpsc;

pub use config::{
    DEFAULT_MODEL, FIRST_TOKEN_TIMEOUT_VAR, HF_HOME_VAR, HUB_CACHE_VAR, IDLE_TIMEOUT_VAR,
    LOAD_TIMEOUT_VAR, MODEL_VAR, MlxConfig, PYTHON_VAR, STARTUP_TIMEOUT_VAR,
};
pub use python::{Availability, availability, check as check_availability};
pub use wire::PROTOCOL;
pub use worker::{Hello, openblas as openblas_preload};

/// The backend's name in descriptors and errors.
pub const BACKEND: &str = "mlx";

/// The guide's error codes.
pub mod codes {
    pub const MLX_NOT_AVAILABLE: &str = "MLX_NOT_AVAILABLE";
    pub const PYTHON_EXEC_FAILED: &str = "PYTHON_EXEC_FAILED";
    pub const MODEL_LOAD_FAILED: &str = "MODEL_LOAD_FAILED";
}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);
/// Workers by (python, dedicated adapter id): shared workers have no id.
type WorkerKey = (PathBuf, Option<u64>);
static WORKERS: Mutex<Option<HashMap<WorkerKey, Arc<worker::Worker>>>> = Mutex::new(None);

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The MLX adapter for one model.
pub struct MlxSubprocessAdapter {
    config: MlxConfig,
    worker_key: WorkerKey,
    initial: ModelDescriptor,
    loaded: OnceLock<ModelDescriptor>,
}

impl MlxSubprocessAdapter {
    /// The guide's check: macOS on Apple Silicon (or Linux with mlx installed), Python found,
    /// `mlx_lm` importable. Cached: the second call starts no Python.
    pub fn is_available() -> bool {
        python::availability().available
    }

    /// An adapter that starts the worker and loads the model on first use.
    pub fn new(config: MlxConfig) -> Result<Self, InferenceError> {
        let python = python::find(config.python.as_deref()).ok_or_else(|| {
            InferenceError::new(ErrorKind::NotAvailable, BACKEND, "Failed to execute Python: no Python found (tried PYTHON_PATH, .venv, python3, python)")
                .with_code(codes::PYTHON_EXEC_FAILED)
                .with_hint("install Python 3.9+ and run `cargo xtask setup-mlx`, or set PYTHON_PATH")
        })?;
        let initial = ModelDescriptor {
            backend: BACKEND.into(),
            model_id: config.model.clone(),
            context_length: None,
            capabilities: Capabilities {
                // The worker masks the sampler with llguidance when its Python has it
                // (`cargo xtask setup-mlx` installs it); otherwise the pipeline validates only.
                native_structured_output: python::can_constrain(&python),
                ..Capabilities::all()
            },
        };
        let dedicated = config
            .dedicated_worker
            .then(|| NEXT_ID.fetch_add(1, Ordering::Relaxed));
        Ok(Self {
            config,
            worker_key: (python, dedicated),
            initial,
            loaded: OnceLock::new(),
        })
    }

    /// [`MlxConfig::from_env`], then [`Self::new`].
    pub fn from_env() -> Result<Self, InferenceError> {
        Self::new(MlxConfig::from_env()?)
    }

    /// Starts the worker (if needed) and loads the model now, so the descriptor knows the
    /// context length and the first request pays no load time.
    pub async fn connect(config: MlxConfig) -> Result<Self, InferenceError> {
        let adapter = Self::new(config)?;
        adapter.load_model().await?;
        Ok(adapter)
    }

    /// The worker's handshake (mlx and mlx-lm versions, device), starting it if needed.
    pub async fn worker_info(&self) -> Result<Hello, InferenceError> {
        Ok(self.worker().await?.hello.clone())
    }

    /// The worker's process id, when one is running (for supervision tests and diagnostics).
    pub fn worker_pid(&self) -> Option<u32> {
        lock(&WORKERS)
            .as_ref()
            .and_then(|w| w.get(&self.worker_key))
            .filter(|w| w.is_alive())
            .and_then(|w| w.pid())
    }

    async fn worker(&self) -> Result<Arc<worker::Worker>, InferenceError> {
        if let Some(w) = lock(&WORKERS)
            .as_ref()
            .and_then(|w| w.get(&self.worker_key))
            .filter(|w| w.is_alive())
        {
            return Ok(w.clone());
        }
        let started =
            worker::Worker::start(&self.worker_key.0, self.config.startup_timeout).await?;
        tracing::info!(
            target: "rigger::mlx",
            "MLX worker started: mlx {}, mlx-lm {}, {} (python {})",
            started.hello.mlx, started.hello.mlx_lm, started.hello.device, started.hello.python_version
        );
        let mut workers = lock(&WORKERS);
        let map = workers.get_or_insert_with(HashMap::new);
        match map.get(&self.worker_key).filter(|w| w.is_alive()) {
            Some(existing) => Ok(existing.clone()), // another adapter started one meanwhile
            None => {
                map.insert(self.worker_key.clone(), started.clone());
                Ok(started)
            }
        }
    }

    async fn load_model(&self) -> Result<(), InferenceError> {
        let worker = self.worker().await?;
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        let (tx, mut rx) = mpsc::unbounded_channel();
        let line = wire::Request::Load {
            id,
            model: &self.config.model,
        };
        worker.send(id, line.to_line(), tx)?;
        self.await_loaded(&mut rx).await.map(drop)
    }

    /// Waits for the worker's `loaded` message; returns the load time when this request loaded.
    async fn await_loaded(
        &self,
        rx: &mut mpsc::UnboundedReceiver<worker::Event>,
    ) -> Result<Option<f64>, InferenceError> {
        let event = tokio::time::timeout(self.config.load_timeout, rx.recv())
            .await
            .map_err(|_| {
                InferenceError::timeout(
                    BACKEND,
                    format!(
                        "loading {} took longer than {:?}",
                        self.config.model, self.config.load_timeout
                    ),
                )
                .with_hint(format!(
                    "pre-download the model, or raise {}",
                    config::LOAD_TIMEOUT_VAR
                ))
            })?;
        match event {
            Some(worker::Event::Reply(wire::Reply::Loaded {
                context_length,
                load_seconds,
                ..
            })) => {
                let _ = self.loaded.set(ModelDescriptor {
                    context_length,
                    ..self.initial.clone()
                });
                Ok(load_seconds)
            }
            Some(worker::Event::Reply(wire::Reply::Error { kind, message, .. })) => {
                Err(errors::worker_error(&self.config.model, kind, message))
            }
            Some(worker::Event::Reply(other)) => Err(InferenceError::protocol(
                BACKEND,
                format!(
                    "expected \"loaded\" from the worker, got {:?}",
                    other.name()
                ),
            )),
            Some(worker::Event::Crashed(message)) => Err(InferenceError::new(
                ErrorKind::BackendCrashed,
                BACKEND,
                message,
            )),
            None => Err(InferenceError::new(
                ErrorKind::BackendCrashed,
                BACKEND,
                "the MLX worker stopped",
            )),
        }
    }
}

/// Whether MLX can run with this configuration: the platform, the Python, and `import mlx.core,
/// mlx_lm` there (one Python start, uncached). `Ok` says what was found; the error says why not
/// and what to do. Starts no worker and loads no model.
pub async fn probe(config: &MlxConfig, timeout: Duration) -> Result<String, InferenceError> {
    let explicit = config.python.clone();
    let checked = tokio::time::timeout(
        timeout,
        tokio::task::spawn_blocking(move || python::check(explicit.as_deref())),
    )
    .await
    .map_err(|_| {
        InferenceError::timeout(
            BACKEND,
            format!("checking Python and mlx-lm took longer than {timeout:?}"),
        )
    })?
    .map_err(|e| InferenceError::internal(BACKEND, format!("the MLX check panicked: {e}")))?;
    if checked.available {
        return Ok(checked.reason);
    }
    Err(
        InferenceError::new(ErrorKind::NotAvailable, BACKEND, checked.reason)
            .with_code(codes::MLX_NOT_AVAILABLE)
            .with_hint(format!(
                "run `cargo xtask setup-mlx` (or `pip install mlx-lm`, plus `mlx[cpu]` on Linux), or set {PYTHON_VAR}"
            )),
    )
}

/// The models this configuration can serve without a download: the configured one, then the
/// hub cache's models that have a `config.json` (what mlx-lm loads), sorted. No Python starts.
pub async fn list_models(config: &MlxConfig) -> Result<Vec<String>, InferenceError> {
    let mut cached = config
        .hub_cache
        .as_deref()
        .map(cached_models)
        .unwrap_or_default();
    cached.sort();
    cached.retain(|m| *m != config.model);
    let mut models = vec![config.model.clone()];
    models.append(&mut cached);
    Ok(models)
}

/// `models--owner--repo` folders of a hub cache with a snapshot holding `config.json`.
fn cached_models(cache: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(cache) else {
        return Vec::new(); // no cache yet: nothing downloaded
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let name = entry.file_name().into_string().ok()?;
            let (owner, repo) = name.strip_prefix("models--")?.split_once("--")?;
            let has_config = std::fs::read_dir(entry.path().join("snapshots"))
                .ok()?
                .filter_map(Result::ok)
                .any(|snap| snap.path().join("config.json").is_file());
            has_config.then(|| format!("{owner}/{repo}"))
        })
        .collect()
}

#[async_trait]
impl LanguageModel for MlxSubprocessAdapter {
    fn descriptor(&self) -> &ModelDescriptor {
        self.loaded.get().unwrap_or(&self.initial)
    }

    async fn stream(&self, request: GenerationRequest) -> Result<EventStream, InferenceError> {
        request.validate(self.descriptor())?;
        let worker = self.worker().await?;
        if request.response_format != ResponseFormat::Text && worker.hello.llguidance.is_none() {
            return Err(InferenceError::new(
                ErrorKind::Unsupported,
                BACKEND,
                "structured output needs llguidance in the MLX worker's Python, and it has none",
            )
            .with_hint(
                "run `cargo xtask setup-mlx` (it installs llguidance), or `pip install llguidance`",
            ));
        }
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        let (tx, mut rx) = mpsc::unbounded_channel();
        let line = request::generate(id, &self.config.model, &request).to_line();
        worker.send(id, line, tx)?;
        let cancel = stream::CancelOnDrop::new(worker, id);
        let load_seconds = self.await_loaded(&mut rx).await?;
        let events = stream::events(
            rx,
            cancel,
            stream::Expect {
                model: self.config.model.clone(),
                load_seconds,
                first_token_timeout: self.config.first_token_timeout,
                idle_timeout: self.config.idle_timeout,
            },
        );
        Ok(enforce_response_format(
            BACKEND,
            request.response_format,
            events,
        ))
    }
}
