//! A scripted language model: a test double that proves the conformance suite itself.
//!
//! It behaves like a small single-slot engine — a fake tokenizer (one token per word), a
//! deterministic "sampler" (words picked by a hash of the prompt, seed and position), a real
//! per-token delay measured with real clocks, one generation at a time — and does everything the
//! port asks. Each [`Fault`] breaks exactly one behaviour, so the suite's own tests can show that
//! every scenario fails when an adapter gets that behaviour wrong. It proves the suite, not any
//! backend.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use futures::StreamExt;
use rigger_ports::{
    Capabilities, Completion, ErrorKind, EventStream, FinishReason, Generation, GenerationRequest,
    InferenceError, LanguageModel, ModelDescriptor, StopMatcher, StopStep, StreamEvent,
    TimingSource, Timings, TokenBudget, Usage, collect_stream, enforce_response_format,
};
use tokio::sync::{Mutex, mpsc};

use crate::ConformanceTarget;

/// One deliberate defect, each the kind of bug a real adapter could have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// `generate()` returns different text from the stream.
    GenerateDiffersFromStream,
    /// Generates one token more than the budget.
    OverrunsMaxTokens,
    /// Says `EndOfSequence` when the budget ran out.
    MislabelsFinishReason,
    /// Stops one token short of an exact budget.
    ShortOfExactBudget,
    /// Reports zero generation time, as if nothing was measured.
    MissingTimings,
    /// Ignores stop sequences.
    IgnoresStopSequences,
    /// Ends the text at a stop sequence but reports the finish reason as `Other("stop")`.
    ReportsStopAmbiguously,
    /// Keeps generating after the stream is dropped, holding the engine.
    KeepsRunningAfterDrop,
    /// Fails a request that finds the engine busy instead of queueing it.
    RejectsConcurrentRequests,
    /// Serves any model id with the default model.
    AcceptsUnknownModels,
    /// Generates from an empty conversation instead of refusing it.
    AcceptsEmptyMessages,
    /// Silently keeps the last tokens of an over-long prompt.
    TruncatesLongPrompts,
    /// Returns plain text for a JSON-schema request and calls it a success.
    IgnoresResponseFormat,
    /// Declares native structured output, yet answers a JSON-schema request with text (which
    /// the response-format check then rejects as MalformedOutput).
    ClaimsNativeStructuredOutput,
}

const WORDS: [&str; 16] = [
    "the", "keeper", "lit", "a", "lamp", "while", "waves", "broke", "over", "rocks", "and",
    "gulls", "cried", "into", "grey", "night",
];

/// The scripted model. Cheap to clone; clones share the engine slot.
#[derive(Clone)]
pub struct ScriptedModel {
    descriptor: ModelDescriptor,
    fault: Option<Fault>,
    engine: Arc<Mutex<()>>,
    token_delay: Duration,
}

impl ScriptedModel {
    pub const CONTEXT_LENGTH: u32 = 4096;
    /// Tokens after which the model ends on its own.
    pub const NATURAL_LENGTH: u32 = 200;

    /// Everything the port offers declared, except native structured output.
    pub fn capabilities() -> Capabilities {
        Capabilities {
            native_structured_output: false,
            ..Capabilities::all()
        }
    }

    pub fn new(fault: Option<Fault>) -> Self {
        Self::with_capabilities(fault, Self::capabilities())
    }

    /// A model declaring `capabilities`: a request for an undeclared feature is refused as
    /// Unsupported.
    pub fn with_capabilities(fault: Option<Fault>, capabilities: Capabilities) -> Self {
        Self {
            descriptor: ModelDescriptor {
                backend: "scripted".into(),
                model_id: "scripted-lighthouse".into(),
                context_length: Some(Self::CONTEXT_LENGTH),
                capabilities,
            },
            fault,
            engine: Arc::new(Mutex::new(())),
            token_delay: Duration::from_millis(2),
        }
    }

    fn has(&self, fault: Fault) -> bool {
        self.fault == Some(fault)
    }

    fn error(&self, kind: ErrorKind, message: impl Into<String>) -> InferenceError {
        InferenceError::new(kind, "scripted", message)
    }

    fn prompt_tokens(&self, request: &GenerationRequest) -> u32 {
        let words: usize = request
            .messages
            .iter()
            .map(|m| m.content.split_whitespace().count() + 3)
            .sum();
        u32::try_from(words).unwrap_or(u32::MAX)
    }
}

#[async_trait]
impl LanguageModel for ScriptedModel {
    fn descriptor(&self) -> &ModelDescriptor {
        &self.descriptor
    }

    async fn stream(&self, request: GenerationRequest) -> Result<EventStream, InferenceError> {
        if !(self.has(Fault::AcceptsEmptyMessages) && request.messages.is_empty()) {
            request.validate(&self.descriptor)?;
        }
        let mut prompt_tokens = self.prompt_tokens(&request);
        if prompt_tokens >= Self::CONTEXT_LENGTH {
            if self.has(Fault::TruncatesLongPrompts) {
                prompt_tokens = Self::CONTEXT_LENGTH - 1;
            } else {
                return Err(self
                    .error(
                        ErrorKind::ContextLengthExceeded,
                        format!(
                            "the prompt has {prompt_tokens} tokens; the context holds {}",
                            Self::CONTEXT_LENGTH
                        ),
                    )
                    .with_hint("shorten the prompt"));
            }
        }
        let guard = if self.has(Fault::RejectsConcurrentRequests) {
            self.engine
                .clone()
                .try_lock_owned()
                .map_err(|_| self.error(ErrorKind::BackendCrashed, "the engine is busy"))?
        } else {
            self.engine.clone().lock_owned().await
        };

        let mut hasher = DefaultHasher::new();
        for m in &request.messages {
            m.content.hash(&mut hasher);
        }
        request.seed.hash(&mut hasher);
        let key = hasher.finish();

        let (tx, rx) = mpsc::channel(1);
        let model = self.clone();
        let format = request.response_format.clone();
        tokio::spawn(async move {
            let _engine = guard;
            let started = Instant::now();
            // "Prompt processing": a delay per 16 prompt tokens.
            tokio::time::sleep(model.token_delay * (prompt_tokens / 16 + 1)).await;
            let prompt_duration = started.elapsed();
            let (limit, exact) = match request.budget {
                TokenBudget::UpTo(n) => (n, false),
                TokenBudget::Exactly(n) => (n, true),
            };
            let limit = match model.fault {
                Some(Fault::OverrunsMaxTokens) => limit + 1,
                Some(Fault::ShortOfExactBudget) if exact => limit - 1,
                _ => limit,
            };
            let stops = if exact || model.has(Fault::IgnoresStopSequences) {
                Vec::new()
            } else {
                request.stop.clone()
            };
            let mut matcher = StopMatcher::new(&stops);
            let mut ttft = None;
            let mut generated = 0;
            let mut finish = FinishReason::MaxTokens;
            let mut receiver_gone = false;
            while generated < limit {
                if !exact && generated >= Self::NATURAL_LENGTH {
                    finish = FinishReason::EndOfSequence;
                    break;
                }
                tokio::time::sleep(model.token_delay).await;
                let word = WORDS
                    [((key >> (generated % 60)) as usize + generated as usize * 7) % WORDS.len()];
                let piece = if generated == 0 {
                    word.to_owned()
                } else {
                    format!(" {word}")
                };
                generated += 1;
                ttft.get_or_insert_with(|| started.elapsed());
                let (text, stopped) = match matcher.push(&piece) {
                    StopStep::Emit(t) => (t, false),
                    StopStep::Stop(t) => (t, true),
                };
                if !text.is_empty()
                    && !receiver_gone
                    && tx.send(Ok(StreamEvent::Delta(text))).await.is_err()
                {
                    if !model.has(Fault::KeepsRunningAfterDrop) {
                        return;
                    }
                    receiver_gone = true;
                }
                if stopped {
                    finish = if model.has(Fault::ReportsStopAmbiguously) {
                        FinishReason::Other("stop".into())
                    } else {
                        FinishReason::StopSequence
                    };
                    break;
                }
            }
            let rest = matcher.finish();
            if !rest.is_empty() {
                let _ = tx.send(Ok(StreamEvent::Delta(rest))).await;
            }
            if model.has(Fault::MislabelsFinishReason) && finish == FinishReason::MaxTokens {
                finish = FinishReason::EndOfSequence;
            }
            let total = started.elapsed();
            let generation_duration = if model.has(Fault::MissingTimings) {
                Duration::ZERO
            } else {
                total - prompt_duration
            };
            let done = Completion {
                finish_reason: finish,
                usage: Usage {
                    prompt_tokens,
                    completion_tokens: generated,
                },
                timings: Timings {
                    load: None,
                    time_to_first_token: ttft,
                    prompt_tokens,
                    prompt_duration,
                    generated_tokens: generated,
                    generation_duration,
                    source: TimingSource::Backend,
                    grammar: None,
                },
            };
            let _ = tx.send(Ok(StreamEvent::Done(done))).await;
        });
        let events = tokio_stream(rx);
        if self.has(Fault::IgnoresResponseFormat) {
            Ok(events)
        } else {
            Ok(enforce_response_format("scripted", format, events))
        }
    }

    async fn generate(&self, request: GenerationRequest) -> Result<Generation, InferenceError> {
        let mut g = collect_stream("scripted", self.stream(request).await?).await?;
        if self.has(Fault::GenerateDiffersFromStream) {
            g.text.push_str(" (edited)");
        }
        Ok(g)
    }
}

fn tokio_stream(mut rx: mpsc::Receiver<Result<StreamEvent, InferenceError>>) -> EventStream {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx)).boxed()
}

/// A [`ConformanceTarget`] over a [`ScriptedModel`], optionally with one fault.
pub struct ScriptedTarget {
    fault: Option<Fault>,
    capabilities: Capabilities,
}

impl ScriptedTarget {
    pub fn new(fault: Option<Fault>) -> Self {
        let capabilities = Capabilities {
            native_structured_output: fault == Some(Fault::ClaimsNativeStructuredOutput),
            ..ScriptedModel::capabilities()
        };
        Self::with_capabilities(fault, capabilities)
    }

    /// A target whose model declares `capabilities`.
    pub fn with_capabilities(fault: Option<Fault>, capabilities: Capabilities) -> Self {
        Self {
            fault,
            capabilities,
        }
    }
}

#[async_trait]
impl ConformanceTarget for ScriptedTarget {
    async fn model(&self) -> Result<Arc<dyn LanguageModel>, InferenceError> {
        Ok(Arc::new(ScriptedModel::with_capabilities(
            self.fault,
            self.capabilities,
        )))
    }

    async fn missing_model(
        &self,
        model_id: &str,
    ) -> Result<Arc<dyn LanguageModel>, InferenceError> {
        if self.fault == Some(Fault::AcceptsUnknownModels) {
            return self.model().await;
        }
        Err(InferenceError::new(
            ErrorKind::ModelNotFound,
            "scripted",
            format!("model {model_id:?} is not one of the scripted models"),
        ))
    }

    fn patience(&self) -> Duration {
        Duration::from_secs(2)
    }
}
