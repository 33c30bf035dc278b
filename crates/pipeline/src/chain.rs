use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use futures::StreamExt;
use rigger_ports::{
    CallMetrics, Capabilities, Completion, ErrorKind, EventStream, GenerationRequest,
    InferenceError, LanguageModel, ModelDescriptor, StreamEvent, collect_stream,
    rejected_completion,
};

use crate::calls::FailedStepCalls;

/// The error kinds that, by default, move a call to the next link of a chain (the provider
/// factory lets users choose others: [`ModelChain::with_falls_through`]) — only when raised
/// before the first token, since a half-answered request can't be handed to another model unnoticed.
///
/// Each says "this link cannot serve now", not "this request is wrong", so another link may
/// well serve it:
/// - `NotAvailable`: the backend is not there (not running, not installed, not set up).
/// - `BackendCrashed`: the engine or worker died.
/// - `Timeout`: no headers or no first token in time.
/// - `ModelNotFound`: this backend lacks the model (e.g. not pulled on Ollama); the next link
///   names its own model.
/// - `ModelLoadFailed`: the model is there but does not load (memory, a corrupt file).
/// - `RateLimited`: the adapter's own retries are spent; another provider has its own quota.
///
/// The rest stop the chain, because the next link would fail the same way or the user must
/// see them: `InvalidRequest`, `ContextLengthExceeded` and `Unsupported` are about the request;
/// `Unauthorized` is a configuration error to fix, not to hide behind a fallback; after the
/// first token nothing falls through, and `MalformedOutput`, `Protocol`, `Io` and `Internal`
/// are faults to report.
pub const FALLS_THROUGH: [ErrorKind; 6] = [
    ErrorKind::NotAvailable,
    ErrorKind::BackendCrashed,
    ErrorKind::Timeout,
    ErrorKind::ModelNotFound,
    ErrorKind::ModelLoadFailed,
    ErrorKind::RateLimited,
];

/// How long a link that just fell through is skipped by default.
pub const DEFAULT_COOLDOWN: Duration = Duration::from_secs(30);

/// Links that fell through recently, by `backend:model`: a link that is down is skipped for a
/// while instead of costing every request its timeout. Shared between chains (the provider
/// factory gives every role's chain the same one), so one role's failure spares the others.
#[derive(Debug)]
pub struct Cooldowns {
    period: Duration,
    failed_at: Mutex<HashMap<String, Instant>>,
}

impl Cooldowns {
    /// Links are skipped for `period` after falling through; `Duration::ZERO` never skips.
    pub fn new(period: Duration) -> Self {
        Self {
            period,
            failed_at: Mutex::new(HashMap::new()),
        }
    }

    pub fn period(&self) -> Duration {
        self.period
    }

    /// When `link` fell through, if that was less than the period ago.
    fn cooling_since(&self, link: &str) -> Option<Instant> {
        let failed_at = self
            .failed_at
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        failed_at
            .get(link)
            .copied()
            .filter(|at| at.elapsed() < self.period)
    }

    fn failed(&self, link: &str) {
        if self.period.is_zero() {
            return;
        }
        self.failed_at
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(link.to_owned(), Instant::now());
    }

    fn served(&self, link: &str) {
        self.failed_at
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(link);
    }
}

impl Default for Cooldowns {
    fn default() -> Self {
        Self::new(DEFAULT_COOLDOWN)
    }
}

/// A role's model: one or more links tried in order (e.g. MLX → Ollama → Candle).
#[derive(Clone)]
pub struct ModelChain {
    links: Vec<Arc<dyn LanguageModel>>,
    cooldowns: Arc<Cooldowns>,
    falls_through: Arc<[ErrorKind]>,
}

impl std::fmt::Debug for ModelChain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe())
    }
}

impl ModelChain {
    /// A chain of `links`, tried in order. An empty chain is an InvalidRequest error.
    pub fn new(links: Vec<Arc<dyn LanguageModel>>) -> Result<Self, InferenceError> {
        if links.is_empty() {
            return Err(InferenceError::invalid_request(
                "pipeline",
                "a model chain needs at least one model",
            ));
        }
        Ok(Self {
            links,
            cooldowns: Arc::default(),
            falls_through: Arc::from(FALLS_THROUGH),
        })
    }

    pub fn single(model: Arc<dyn LanguageModel>) -> Self {
        Self {
            links: vec![model],
            cooldowns: Arc::default(),
            falls_through: Arc::from(FALLS_THROUGH),
        }
    }

    /// The same chain, moving to the next link on errors of these kinds (before the first
    /// token) instead of [`FALLS_THROUGH`].
    pub fn with_falls_through(mut self, kinds: Arc<[ErrorKind]>) -> Self {
        self.falls_through = kinds;
        self
    }

    /// The same chain, remembering recent failures in `cooldowns` (shared with other chains).
    pub fn with_cooldowns(mut self, cooldowns: Arc<Cooldowns>) -> Self {
        self.cooldowns = cooldowns;
        self
    }

    pub fn links(&self) -> &[Arc<dyn LanguageModel>] {
        &self.links
    }

    /// `backend:model → backend:model`, for progress lines and errors.
    pub fn describe(&self) -> String {
        self.links
            .iter()
            .map(|l| format!("{}:{}", l.descriptor().backend, l.descriptor().model_id))
            .collect::<Vec<_>>()
            .join(" → ")
    }

    /// Generates with the first link that gets as far as its first event; returns the text and
    /// the figures of the call, naming the link that served it. When every link fails, the error
    /// lists each attempt.
    pub async fn generate(
        &self,
        request: GenerationRequest,
    ) -> Result<(String, CallMetrics), InferenceError> {
        let mut attempts: Vec<(String, InferenceError)> = Vec::new();
        let names: Vec<String> = self
            .links
            .iter()
            .map(|l| format!("{}:{}", l.descriptor().backend, l.descriptor().model_id))
            .collect();
        // A link that fell through lately is skipped while another link is still worth trying;
        // when every link is cooling down they are all tried, as without cooldowns.
        let cooling: Vec<Option<Instant>> = names
            .iter()
            .map(|n| self.cooldowns.cooling_since(n))
            .collect();
        let skip_cooling = cooling.iter().any(Option::is_none);
        for ((link, name), cooling) in self.links.iter().zip(names).zip(cooling) {
            let descriptor = link.descriptor();
            if let Some(since) = cooling.filter(|_| skip_cooling) {
                let err = InferenceError::new(
                    ErrorKind::NotAvailable,
                    descriptor.backend.clone(),
                    format!(
                        "skipped: it fell through {:.0?} ago (cooldown {:?})",
                        since.elapsed(),
                        self.cooldowns.period()
                    ),
                );
                attempts.push((name, err));
                continue;
            }
            let mut stream = match link.stream(request.clone()).await {
                Ok(stream) => stream,
                Err(err) if self.falls_through.contains(&err.kind()) => {
                    tracing::warn!(link = %name, error = %err, "falling back to the next model");
                    self.cooldowns.failed(&name);
                    attempts.push((name, err));
                    continue;
                }
                Err(err) => return Err(with_attempts(err, &attempts)),
            };
            let first = match stream.next().await {
                Some(Err(err)) if self.falls_through.contains(&err.kind()) => {
                    tracing::warn!(link = %name, error = %err, "falling back to the next model");
                    self.cooldowns.failed(&name);
                    attempts.push((name, err));
                    continue;
                }
                Some(Err(err)) => return Err(with_attempts(err, &attempts)),
                Some(Ok(first)) => {
                    self.cooldowns.served(&name);
                    first
                }
                None => {
                    let err = InferenceError::protocol(
                        descriptor.backend.clone(),
                        "the stream ended without any event",
                    );
                    return Err(with_attempts(err, &attempts));
                }
            };
            let rest =
                futures::stream::once(async move { Ok::<StreamEvent, InferenceError>(first) })
                    .chain(stream)
                    .boxed();
            let metrics = |completion: Completion| CallMetrics {
                backend: descriptor.backend.clone(),
                model_id: descriptor.model_id.clone(),
                finish_reason: completion.finish_reason,
                usage: completion.usage,
                timings: completion.timings,
            };
            let generation = match collect_stream(&descriptor.backend, rest).await {
                Ok(generation) => generation,
                Err(err) => {
                    // An answer the adapter rejected still cost a call: keep its figures.
                    let rejected = rejected_completion(&err).cloned().map(metrics);
                    let err = match rejected {
                        Some(call) => err.with_source(FailedStepCalls { calls: vec![call] }),
                        None => err,
                    };
                    return Err(with_attempts(err, &attempts));
                }
            };
            return Ok((generation.text, metrics(generation.completion)));
        }
        let Some((_, last)) = attempts.pop() else {
            return Err(InferenceError::invalid_request(
                "pipeline",
                "the model chain is empty",
            ));
        };
        Err(with_attempts(last, &attempts))
    }
}

/// A link whose adapter could not even be built (e.g. MLX without Python): it stays in its
/// chain and fails every call as `NotAvailable`, quoting why, so the chain falls through to
/// the next link and the aggregated error names it, instead of the whole role failing.
pub struct UnbuiltModel {
    descriptor: ModelDescriptor,
    kind: ErrorKind,
    message: String,
    code: Option<&'static str>,
    hint: Option<String>,
}

impl UnbuiltModel {
    pub fn new(
        backend: impl Into<String>,
        model_id: impl Into<String>,
        error: &InferenceError,
    ) -> Self {
        Self {
            descriptor: ModelDescriptor {
                backend: backend.into(),
                model_id: model_id.into(),
                context_length: None,
                // It never answers, so it claims nothing that would hold the other links back
                // (the pipeline asks for native structured output only if every link has it).
                capabilities: Capabilities::all(),
            },
            kind: error.kind(),
            message: error.message().to_owned(),
            code: error.code(),
            hint: error.hint().map(str::to_owned),
        }
    }
}

#[async_trait]
impl LanguageModel for UnbuiltModel {
    fn descriptor(&self) -> &ModelDescriptor {
        &self.descriptor
    }

    async fn stream(&self, _request: GenerationRequest) -> Result<EventStream, InferenceError> {
        let code = self.code.map(|c| format!("{c}: ")).unwrap_or_default();
        let mut error = InferenceError::new(
            ErrorKind::NotAvailable,
            self.descriptor.backend.clone(),
            format!(
                "could not be set up ({}): {code}{}",
                self.kind, self.message
            ),
        );
        if let Some(hint) = &self.hint {
            error = error.with_hint(hint.clone());
        }
        Err(error)
    }
}

/// The final error, naming every earlier link that was tried and why it was passed over.
fn with_attempts(err: InferenceError, attempts: &[(String, InferenceError)]) -> InferenceError {
    if attempts.is_empty() {
        return err;
    }
    let tried: Vec<String> = attempts
        .iter()
        .map(|(name, e)| format!("{name} failed: {e}"))
        .collect();
    let message = format!("{} (after fallback: {})", err.message(), tried.join("; "));
    err.with_message(message)
}
