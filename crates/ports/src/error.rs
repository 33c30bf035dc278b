//! The one error type that crosses every port.

use std::fmt;
use std::time::Duration;

type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// What went wrong, independent of the backend. Callers branch on this, never on messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The backend is not installed, not running or not reachable (e.g. `MLX_NOT_AVAILABLE`).
    NotAvailable,
    /// The backend runs but does not know the model.
    ModelNotFound,
    /// The model exists but could not be loaded (corrupt file, out of memory, bad config).
    ModelLoadFailed,
    /// The request itself is wrong (no messages, a parameter out of range, a bad schema).
    InvalidRequest,
    /// The prompt (plus the token budget) does not fit the model's context. Never truncated.
    ContextLengthExceeded,
    Timeout,
    RateLimited,
    Unauthorized,
    /// The backend process or engine died mid-request.
    BackendCrashed,
    /// The model answered, but not in the shape asked for (e.g. invalid JSON for a schema).
    MalformedOutput,
    /// The backend cannot do what the request asks (e.g. `top_k` on a server without it).
    Unsupported,
    /// The backend sent something this adapter does not understand.
    Protocol,
    Io,
    Internal,
}

impl ErrorKind {
    /// Every kind, in declaration order.
    pub const ALL: [ErrorKind; 14] = [
        ErrorKind::NotAvailable,
        ErrorKind::ModelNotFound,
        ErrorKind::ModelLoadFailed,
        ErrorKind::InvalidRequest,
        ErrorKind::ContextLengthExceeded,
        ErrorKind::Timeout,
        ErrorKind::RateLimited,
        ErrorKind::Unauthorized,
        ErrorKind::BackendCrashed,
        ErrorKind::MalformedOutput,
        ErrorKind::Unsupported,
        ErrorKind::Protocol,
        ErrorKind::Io,
        ErrorKind::Internal,
    ];

    /// The kind's name in settings: `as_str` in snake case (`not_available`, `rate_limited`,
    /// `protocol_error`, `i_o_error` is spelled `io`).
    pub fn setting_name(self) -> String {
        match self {
            ErrorKind::Io => "io".to_owned(),
            other => other.as_str().replace(' ', "_"),
        }
    }

    /// The kind a [`setting_name`](Self::setting_name) names (case and `-`/`_` ignored).
    pub fn from_setting_name(name: &str) -> Option<ErrorKind> {
        let wanted = name.trim().to_ascii_lowercase().replace('-', "_");
        Self::ALL.into_iter().find(|k| k.setting_name() == wanted)
    }

    /// Whether trying the same request again may succeed.
    pub fn retryable_by_default(self) -> bool {
        matches!(
            self,
            ErrorKind::Timeout | ErrorKind::RateLimited | ErrorKind::BackendCrashed | ErrorKind::Io
        )
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::NotAvailable => "not available",
            ErrorKind::ModelNotFound => "model not found",
            ErrorKind::ModelLoadFailed => "model load failed",
            ErrorKind::InvalidRequest => "invalid request",
            ErrorKind::ContextLengthExceeded => "context length exceeded",
            ErrorKind::Timeout => "timeout",
            ErrorKind::RateLimited => "rate limited",
            ErrorKind::Unauthorized => "unauthorized",
            ErrorKind::BackendCrashed => "backend crashed",
            ErrorKind::MalformedOutput => "malformed output",
            ErrorKind::Unsupported => "unsupported",
            ErrorKind::Protocol => "protocol error",
            ErrorKind::Io => "i/o error",
            ErrorKind::Internal => "internal error",
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

/// An error from a backend or a port: a kind to branch on, the backend that raised it, a message
/// that says what happened, and, where there is one, what to do about it.
///
/// Display reads `backend: [CODE: ]message[ (fix: hint)]`.
/// Boxed, so that `Result<T, InferenceError>` stays one pointer wide on the error side.
pub struct InferenceError(Box<Repr>);

#[derive(Debug)]
struct Repr {
    kind: ErrorKind,
    backend: String,
    message: String,
    code: Option<&'static str>,
    hint: Option<String>,
    retryable: bool,
    retry_after: Option<Duration>,
    raw_output: Option<String>,
    source: Option<BoxError>,
}

impl InferenceError {
    pub fn new(kind: ErrorKind, backend: impl Into<String>, message: impl Into<String>) -> Self {
        Self(Box::new(Repr {
            kind,
            backend: backend.into(),
            message: message.into(),
            code: None,
            hint: None,
            retryable: kind.retryable_by_default(),
            retry_after: None,
            raw_output: None,
            source: None,
        }))
    }

    pub fn invalid_request(backend: impl Into<String>, message: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidRequest, backend, message)
    }

    pub fn unsupported(backend: impl Into<String>, message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Unsupported, backend, message)
    }

    pub fn protocol(backend: impl Into<String>, message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Protocol, backend, message)
    }

    /// A deadline passed: connecting, loading, the first token, or the gap between two tokens
    /// took longer than configured. Retryable (the kind's default); say which deadline in
    /// `message` and which setting raises it with [`with_hint`](Self::with_hint).
    pub fn timeout(backend: impl Into<String>, message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Timeout, backend, message)
    }

    /// A fault on our side, not the backend's or the request's: a thread or runtime that could
    /// not start, a task that panicked, an invariant that did not hold. Not retryable.
    pub fn internal(backend: impl Into<String>, message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Internal, backend, message)
    }

    /// The same error with a new message (e.g. with context added); everything else is kept.
    pub fn with_message(mut self, message: impl Into<String>) -> Self {
        self.0.message = message.into();
        self
    }

    /// A stable code for scripts and docs, e.g. `MLX_NOT_AVAILABLE`.
    pub fn with_code(mut self, code: &'static str) -> Self {
        self.0.code = Some(code);
        self
    }

    /// What the user should do about it, e.g. "run `cargo xtask setup-mlx`".
    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.0.hint = Some(hint.into());
        self
    }

    pub fn with_source(mut self, source: impl Into<BoxError>) -> Self {
        self.0.source = Some(source.into());
        self
    }

    pub fn with_retryable(mut self, retryable: bool) -> Self {
        self.0.retryable = retryable;
        self
    }

    pub fn with_retry_after(mut self, after: Duration) -> Self {
        self.0.retry_after = Some(after);
        self
    }

    /// The model's text, kept so that nothing is lost when output is rejected.
    pub fn with_raw_output(mut self, raw: impl Into<String>) -> Self {
        self.0.raw_output = Some(raw.into());
        self
    }

    pub fn kind(&self) -> ErrorKind {
        self.0.kind
    }

    pub fn backend(&self) -> &str {
        &self.0.backend
    }

    pub fn message(&self) -> &str {
        &self.0.message
    }

    pub fn code(&self) -> Option<&'static str> {
        self.0.code
    }

    pub fn hint(&self) -> Option<&str> {
        self.0.hint.as_deref()
    }

    pub fn is_retryable(&self) -> bool {
        self.0.retryable
    }

    pub fn retry_after(&self) -> Option<Duration> {
        self.0.retry_after
    }

    pub fn raw_output(&self) -> Option<&str> {
        self.0.raw_output.as_deref()
    }
}

impl fmt::Debug for InferenceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl fmt::Display for InferenceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: ", self.0.backend)?;
        if let Some(code) = self.0.code {
            write!(f, "{code}: ")?;
        }
        f.write_str(&self.0.message)?;
        if let Some(after) = self.0.retry_after {
            // A wait the server asked for is the user's to see, however long it is.
            write!(f, " (the server asks to retry after {} s)", after.as_secs())?;
        }
        if let Some(hint) = &self.0.hint {
            write!(f, " (fix: {hint})")?;
        }
        Ok(())
    }
}

impl std::error::Error for InferenceError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0
            .source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_has_a_setting_name_that_reads_back() {
        for kind in ErrorKind::ALL {
            assert_eq!(
                ErrorKind::from_setting_name(&kind.setting_name()),
                Some(kind)
            );
        }
        assert_eq!(
            ErrorKind::from_setting_name(" Rate-Limited "),
            Some(ErrorKind::RateLimited)
        );
        assert_eq!(ErrorKind::from_setting_name("nope"), None);
    }

    #[test]
    fn with_message_keeps_everything_else() {
        let err = InferenceError::new(ErrorKind::RateLimited, "b", "slow down")
            .with_code("CODE")
            .with_hint("wait")
            .with_retry_after(Duration::from_secs(3))
            .with_raw_output("raw")
            .with_message("slow down (after 3 attempts)");
        assert_eq!(err.message(), "slow down (after 3 attempts)");
        assert_eq!(
            (err.kind(), err.backend(), err.code()),
            (ErrorKind::RateLimited, "b", Some("CODE"))
        );
        assert_eq!((err.hint(), err.raw_output()), (Some("wait"), Some("raw")));
        assert_eq!(err.retry_after(), Some(Duration::from_secs(3)));
        assert!(
            err.to_string().contains("retry after 3 s"),
            "the wait is in the message: {err}"
        );
        assert!(err.is_retryable());
    }

    #[test]
    fn display_carries_backend_code_message_and_fix() {
        let err = InferenceError::new(
            ErrorKind::NotAvailable,
            "mlx",
            "MLX backend is not available",
        )
        .with_code("MLX_NOT_AVAILABLE")
        .with_hint("run `cargo xtask setup-mlx`");
        assert_eq!(
            err.to_string(),
            "mlx: MLX_NOT_AVAILABLE: MLX backend is not available (fix: run `cargo xtask setup-mlx`)"
        );
        assert_eq!(err.kind(), ErrorKind::NotAvailable);
        assert!(!err.is_retryable());
    }

    #[test]
    fn timeout_and_internal_constructors_set_kind_and_retryability() {
        let t = InferenceError::timeout("b", "no token within 5s");
        assert_eq!(
            (t.kind(), t.backend(), t.message()),
            (ErrorKind::Timeout, "b", "no token within 5s")
        );
        assert!(t.is_retryable());
        let i = InferenceError::internal("b", "thread did not start");
        assert_eq!(i.kind(), ErrorKind::Internal);
        assert!(!i.is_retryable());
    }

    #[test]
    fn retryable_follows_kind_unless_overridden_and_keeps_source() {
        let io = std::io::Error::other("pipe closed");
        let err =
            InferenceError::new(ErrorKind::BackendCrashed, "mlx", "worker died").with_source(io);
        assert!(err.is_retryable());
        assert!(std::error::Error::source(&err).is_some());
        let err = err.with_retryable(false);
        assert!(!err.is_retryable());
    }
}
