use std::sync::Arc;

use futures::StreamExt;
use rigger_ports::{
    CallMetrics, Completion, ErrorKind, GenerationRequest, InferenceError, LanguageModel,
    StreamEvent, collect_stream, rejected_completion,
};

use crate::structured::FailedStepCalls;

/// The error kinds that move a call to the next link of a chain — only when raised before the
/// first token, since a half-answered request can't be handed to another model unnoticed.
pub const FALLS_THROUGH: [ErrorKind; 3] = [
    ErrorKind::NotAvailable,
    ErrorKind::BackendCrashed,
    ErrorKind::Timeout,
];

/// A role's model: one or more links tried in order (e.g. MLX → Ollama → Candle).
#[derive(Clone)]
pub struct ModelChain {
    links: Vec<Arc<dyn LanguageModel>>,
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
        Ok(Self { links })
    }

    pub fn single(model: Arc<dyn LanguageModel>) -> Self {
        Self { links: vec![model] }
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
        for link in &self.links {
            let descriptor = link.descriptor();
            let name = format!("{}:{}", descriptor.backend, descriptor.model_id);
            let mut stream = match link.stream(request.clone()).await {
                Ok(stream) => stream,
                Err(err) if falls_through(&err) => {
                    tracing::warn!(link = %name, error = %err, "falling back to the next model");
                    attempts.push((name, err));
                    continue;
                }
                Err(err) => return Err(with_attempts(err, &attempts)),
            };
            let first = match stream.next().await {
                Some(Err(err)) if falls_through(&err) => {
                    tracing::warn!(link = %name, error = %err, "falling back to the next model");
                    attempts.push((name, err));
                    continue;
                }
                Some(Err(err)) => return Err(with_attempts(err, &attempts)),
                Some(Ok(first)) => first,
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

fn falls_through(err: &InferenceError) -> bool {
    FALLS_THROUGH.contains(&err.kind())
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
