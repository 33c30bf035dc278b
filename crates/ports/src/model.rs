//! The language-model port.

use async_trait::async_trait;
use futures::StreamExt;
use futures::stream::BoxStream;
use serde::{Deserialize, Serialize};

use crate::{GenerationRequest, InferenceError, Timings};

/// What a model can do beyond plain sampled generation. A request that asks for something not
/// declared here is refused with [`crate::ErrorKind::Unsupported`] (see
/// [`GenerationRequest::validate`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Capabilities {
    pub seed: bool,
    pub top_k: bool,
    pub top_p: bool,
    pub stop_sequences: bool,
    /// [`crate::TokenBudget::Exactly`]: generate N tokens regardless of end-of-sequence.
    pub exact_token_budget: bool,
    /// The backend constrains output to a JSON schema itself; otherwise output is only validated.
    pub native_structured_output: bool,
}

impl Capabilities {
    /// Everything declared, e.g. for in-process engines that own their sampler.
    pub fn all() -> Self {
        Self {
            seed: true,
            top_k: true,
            top_p: true,
            stop_sequences: true,
            exact_token_budget: true,
            native_structured_output: true,
        }
    }
}

/// Which backend and model an adapter instance speaks to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelDescriptor {
    /// Short backend name: `mlx`, `ollama`, `candle`, `openai`, `anthropic`.
    pub backend: String,
    /// The model as the backend names it (hub id, path, Ollama tag, …).
    pub model_id: String,
    /// Prompt plus generated tokens the model can attend to, when known.
    pub context_length: Option<u32>,
    pub capabilities: Capabilities,
}

/// Why generation ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum FinishReason {
    /// The model produced its end-of-sequence token.
    EndOfSequence,
    /// The token budget ran out (also the normal end of an exact budget).
    MaxTokens,
    /// A stop sequence matched; it is not part of the text.
    StopSequence,
    /// The backend's filter stopped it.
    ContentFilter,
    /// A reason the backend named that has no kind here; kept verbatim.
    Other(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Usage {
    pub prompt_tokens: u32,
    pub completion_tokens: u32,
}

impl Usage {
    pub fn total(self) -> u32 {
        self.prompt_tokens + self.completion_tokens
    }
}

/// The final record of a generation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Completion {
    pub finish_reason: FinishReason,
    pub usage: Usage,
    pub timings: Timings,
}

/// One item of a generation stream: text as it comes, then exactly one [`StreamEvent::Done`] last.
#[derive(Debug, Clone, PartialEq)]
pub enum StreamEvent {
    Delta(String),
    Done(Completion),
}

/// A generation in progress. Dropping it cancels the work on the backend.
pub type EventStream = BoxStream<'static, Result<StreamEvent, InferenceError>>;

/// A finished generation: the whole text and its final record.
#[derive(Debug, Clone, PartialEq)]
pub struct Generation {
    pub text: String,
    pub completion: Completion,
}

/// The port every inference backend implements.
///
/// Object-safe (`Arc<dyn LanguageModel>`), so one trait hosts an in-process engine, a supervised
/// subprocess and HTTP clients alike: `stream` only promises an async setup phase (validate, load,
/// connect, enqueue) followed by a `'static` stream of events, which an engine thread, a pipe
/// reader or a response body can all feed. Errors found before any text (unknown model, bad
/// request, prompt too long) come from the setup; errors after it arrive in the stream.
#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait LanguageModel: Send + Sync {
    fn descriptor(&self) -> &ModelDescriptor;

    /// Starts a generation. Text arrives as [`StreamEvent::Delta`]s, then one
    /// [`StreamEvent::Done`]. Dropping the stream cancels the generation.
    async fn stream(&self, request: GenerationRequest) -> Result<EventStream, InferenceError>;

    /// The collected stream.
    async fn generate(&self, request: GenerationRequest) -> Result<Generation, InferenceError> {
        let backend = self.descriptor().backend.clone();
        collect_stream(&backend, self.stream(request).await?).await
    }
}

/// Collects a stream into a [`Generation`], checking the stream contract: a stream that ends
/// without its final record, or sends anything after it, is a protocol error.
pub async fn collect_stream(
    backend: &str,
    mut stream: EventStream,
) -> Result<Generation, InferenceError> {
    let mut text = String::new();
    while let Some(event) = stream.next().await {
        match event? {
            StreamEvent::Delta(delta) => text.push_str(&delta),
            StreamEvent::Done(completion) => {
                if stream.next().await.is_some() {
                    return Err(InferenceError::protocol(
                        backend,
                        "the stream sent events after its final record",
                    ));
                }
                return Ok(Generation { text, completion });
            }
        }
    }
    Err(
        InferenceError::protocol(backend, "the stream ended without a final record")
            .with_raw_output(text),
    )
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::{ErrorKind, TimingSource};

    fn done() -> StreamEvent {
        StreamEvent::Done(Completion {
            finish_reason: FinishReason::MaxTokens,
            usage: Usage {
                prompt_tokens: 1,
                completion_tokens: 2,
            },
            timings: Timings {
                load: None,
                time_to_first_token: None,
                prompt_tokens: 1,
                prompt_duration: Duration::ZERO,
                generated_tokens: 2,
                generation_duration: Duration::ZERO,
                source: TimingSource::Client,
                grammar: None,
            },
        })
    }

    fn stream_of(events: Vec<StreamEvent>) -> EventStream {
        futures::stream::iter(events.into_iter().map(Ok)).boxed()
    }

    #[tokio::test]
    async fn collects_text_and_final_record() {
        let g = collect_stream(
            "t",
            stream_of(vec![
                StreamEvent::Delta("a".into()),
                StreamEvent::Delta("b".into()),
                done(),
            ]),
        )
        .await
        .unwrap();
        assert_eq!(g.text, "ab");
        assert_eq!(g.completion.usage.total(), 3);
    }

    #[tokio::test]
    async fn a_broken_stream_contract_is_a_protocol_error_that_keeps_the_text() {
        let missing = collect_stream("t", stream_of(vec![StreamEvent::Delta("a".into())]))
            .await
            .unwrap_err();
        assert_eq!(missing.kind(), ErrorKind::Protocol);
        assert_eq!(missing.raw_output(), Some("a"));
        let extra = collect_stream("t", stream_of(vec![done(), StreamEvent::Delta("x".into())]))
            .await
            .unwrap_err();
        assert_eq!(extra.kind(), ErrorKind::Protocol);
    }
}
