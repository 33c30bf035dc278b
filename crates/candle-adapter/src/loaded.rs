//! A loaded model with its worker thread, shared by every adapter on the same files: the
//! adapters hold it, a registry of weak references finds it, and the worker winds down when the
//! last adapter drops it.

use std::path::{Path, PathBuf};
use std::sync::mpsc as std_mpsc;
use std::sync::{Arc, Mutex, Weak};

use rigger_ports::{ErrorKind, InferenceError};

use crate::constrain::GrammarCompiler;
use crate::load::{self, ModelInfo};
use crate::source::ModelFiles;
use crate::worker::{self, Job};
use crate::{BACKEND, CandleConfig, DeviceKind, Kernels};

/// A loaded model: the queue to its worker thread and what the async side knows of it.
pub(crate) struct LoadedModel {
    jobs: Mutex<std_mpsc::Sender<Job>>,
    pub(crate) info: ModelInfo,
    /// The model's JSON grammars (built on the first structured request).
    pub(crate) grammars: GrammarCompiler,
}

/// What makes two loads the same model.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct ModelKey {
    weights: PathBuf,
    /// The tokenizer.json in play (a GGUF may carry its own), and whether it was configured:
    /// the same weights with another tokenizer are another model.
    tokenizer: (Option<PathBuf>, bool),
    device: DeviceKind,
    threads: Option<usize>,
    kernels: Kernels,
}

static LOADED: Mutex<Vec<(ModelKey, Weak<LoadedModel>)>> = Mutex::new(Vec::new());

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn already_loaded(key: &ModelKey) -> Option<Arc<LoadedModel>> {
    let mut loaded = lock(&LOADED);
    loaded.retain(|(_, m)| m.strong_count() > 0);
    loaded
        .iter()
        .find(|(k, _)| k == key)
        .and_then(|(_, m)| m.upgrade())
}

impl LoadedModel {
    /// Loads `files` and starts its worker thread, or returns the copy already loaded; the flag
    /// says whether this call loaded it.
    pub(crate) async fn start(
        files: ModelFiles,
        config: &CandleConfig,
    ) -> Result<(Arc<Self>, bool), InferenceError> {
        let key = ModelKey {
            weights: std::fs::canonicalize(files.key())
                .unwrap_or_else(|_| files.key().to_path_buf()),
            tokenizer: (
                files.tokenizer().map(Path::to_path_buf),
                config.tokenizer.is_some(),
            ),
            device: config.device,
            threads: config.threads,
            kernels: config.kernels,
        };
        if let Some(model) = already_loaded(&key) {
            return Ok((model, false));
        }
        let device_kind = config.device;
        let threads = config.threads;
        let kernels = config.kernels;
        let explicit_tokenizer = config.tokenizer.is_some();
        let (worker, info, device) = tokio::task::spawn_blocking(move || {
            let device = load::device(device_kind)?;
            load::load(&files, &device, kernels, explicit_tokenizer)
                .map(|(worker, info)| (worker, info, device))
        })
        .await
        .map_err(|e| {
            InferenceError::new(
                ErrorKind::BackendCrashed,
                BACKEND,
                format!("model loading panicked: {e}"),
            )
        })??;
        let pool = match threads {
            Some(n) => Some(
                rayon::ThreadPoolBuilder::new()
                    .num_threads(n)
                    .build()
                    .map_err(|e| {
                        InferenceError::internal(
                            BACKEND,
                            format!("cannot start {n} compute threads: {e}"),
                        )
                    })?,
            ),
            None => None,
        };
        let (jobs, queue) = std_mpsc::channel();
        // The worker detokenizes on its own thread; Tokenizer clones share their vocabulary data.
        let tokenizer = info.tokenizer.clone();
        let grammars = GrammarCompiler::new(info.tokenizer.clone(), worker.eos.clone());
        std::thread::Builder::new()
            .name("rigger-candle-worker".into())
            .spawn(move || worker::serve(worker, tokenizer, device, pool, queue))
            .map_err(|e| {
                InferenceError::internal(BACKEND, format!("cannot start the worker thread: {e}"))
            })?;
        let model = Arc::new(LoadedModel {
            jobs: Mutex::new(jobs),
            info,
            grammars,
        });
        let mut loaded = lock(&LOADED);
        if let Some(existing) = loaded
            .iter()
            .find(|(k, _)| *k == key)
            .and_then(|(_, m)| m.upgrade())
        {
            // Another adapter loaded it meanwhile; ours winds down when dropped, but this
            // request did spend the time loading.
            return Ok((existing, true));
        }
        loaded.push((key, Arc::downgrade(&model)));
        Ok((model, true))
    }

    /// Queues `job` for the worker thread.
    pub(crate) fn submit(&self, job: Job) -> Result<(), InferenceError> {
        lock(&self.jobs).send(job).map_err(|_| {
            InferenceError::new(
                ErrorKind::BackendCrashed,
                BACKEND,
                "the worker thread has stopped",
            )
        })
    }
}
