//! The worker's failures in the port's terms, with the guide's codes and fixes.

use rigger_ports::{ErrorKind, InferenceError};

use crate::wire::WorkerErrorKind;
use crate::{BACKEND, codes};

/// Maps a worker `error` reply to the port's error.
pub(crate) fn worker_error(model: &str, kind: WorkerErrorKind, message: String) -> InferenceError {
    match kind {
        WorkerErrorKind::ModelNotFound => InferenceError::new(ErrorKind::ModelNotFound, BACKEND, message)
            .with_code(codes::MODEL_LOAD_FAILED)
            .with_hint(format!(
                "check that {model} exists (mlx-community on the Hugging Face hub) and pre-download it online: python -c \"import mlx_lm; mlx_lm.load('{model}')\""
            )),
        WorkerErrorKind::ModelLoadFailed => InferenceError::new(ErrorKind::ModelLoadFailed, BACKEND, message)
            .with_code(codes::MODEL_LOAD_FAILED)
            .with_hint("check the model folder (config.json, weights, tokenizer) and free disk space and memory"),
        WorkerErrorKind::ContextLengthExceeded => InferenceError::new(ErrorKind::ContextLengthExceeded, BACKEND, message)
            .with_hint("shorten the messages or lower max_tokens; nothing is truncated silently")
            .with_retryable(false),
        WorkerErrorKind::InvalidRequest => InferenceError::invalid_request(BACKEND, message),
        WorkerErrorKind::Unsupported => InferenceError::new(ErrorKind::Unsupported, BACKEND, message)
            .with_hint("run `cargo xtask setup-mlx` (it installs llguidance)")
            .with_retryable(false),
        WorkerErrorKind::Protocol => InferenceError::protocol(BACKEND, message),
        WorkerErrorKind::Internal | WorkerErrorKind::Other => InferenceError::internal(BACKEND, message)
            .with_hint("run with RUST_LOG=debug to see the worker's Python traceback"),
    }
}

/// The worker process or its pipe is gone.
pub(crate) fn crashed(message: impl Into<String>) -> InferenceError {
    InferenceError::new(ErrorKind::BackendCrashed, BACKEND, message)
}
