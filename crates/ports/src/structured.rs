//! Structured output: every backend's output is checked against the requested format, whether
//! or not the backend enforced it natively.

use futures::StreamExt;

use crate::{
    Completion, ErrorKind, EventStream, FinishReason, InferenceError, ResponseFormat, StreamEvent,
};

/// The final record of a generation whose output did not conform: the source of the
/// `MalformedOutput` error [`enforce_response_format`] returns, so the call's figures are not
/// lost with the answer ([`rejected_completion`]).
#[derive(Debug, Clone, PartialEq)]
pub struct RejectedCompletion(pub Completion);

impl std::fmt::Display for RejectedCompletion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the rejected generation ({} tokens, finish reason {:?})",
            self.0.usage.completion_tokens, self.0.finish_reason
        )
    }
}

impl std::error::Error for RejectedCompletion {}

/// The final record of the generation a `MalformedOutput` error rejected, when it has one.
pub fn rejected_completion(error: &InferenceError) -> Option<&Completion> {
    std::error::Error::source(error)
        .and_then(|s| s.downcast_ref::<RejectedCompletion>())
        .map(|r| &r.0)
}

pub(crate) fn compile(schema: &serde_json::Value) -> Result<jsonschema::Validator, String> {
    jsonschema::validator_for(schema).map_err(|e| e.to_string())
}

impl ResponseFormat {
    /// Checks a complete output. The error says what is wrong, for the repair prompt.
    pub fn check(&self, text: &str) -> Result<(), String> {
        let parse = || {
            serde_json::from_str::<serde_json::Value>(text.trim())
                .map_err(|e| format!("the output is not valid JSON: {e}"))
        };
        match self {
            ResponseFormat::Text => Ok(()),
            ResponseFormat::Json => parse().map(drop),
            ResponseFormat::JsonSchema { schema, .. } => {
                let value = parse()?;
                let validator = compile(schema)?;
                let problems: Vec<String> = validator
                    .iter_errors(&value)
                    .map(|e| format!("{} at {}", e, e.instance_path()))
                    .collect();
                if problems.is_empty() {
                    Ok(())
                } else {
                    Err(format!(
                        "the output does not match the schema: {}",
                        problems.join("; ")
                    ))
                }
            }
        }
    }
}

/// Wraps a stream so that, when the request asked for JSON, the final record is replaced by a
/// [`ErrorKind::MalformedOutput`] error (carrying the raw text) if the output does not conform.
/// Adapters wrap every stream with this; text streams pass through untouched.
pub fn enforce_response_format(
    backend: &str,
    format: ResponseFormat,
    stream: EventStream,
) -> EventStream {
    if format == ResponseFormat::Text {
        return stream;
    }
    let backend = backend.to_owned();
    let mut text = String::new();
    stream
        .map(move |event| match event {
            Ok(StreamEvent::Delta(delta)) => {
                text.push_str(&delta);
                Ok(StreamEvent::Delta(delta))
            }
            Ok(StreamEvent::Done(done)) => match format.check(&text) {
                Ok(()) => Ok(StreamEvent::Done(done)),
                Err(problem) => {
                    let mut err = if done.finish_reason == FinishReason::MaxTokens {
                        InferenceError::new(
                            ErrorKind::MalformedOutput,
                            backend.clone(),
                            format!(
                                "the token budget ({} tokens) ended before the answer was \
                                 complete: {problem}",
                                done.usage.completion_tokens
                            ),
                        )
                        .with_hint("raise max_tokens, or bound the schema's strings and arrays (maxLength, maxItems)")
                    } else {
                        InferenceError::new(ErrorKind::MalformedOutput, backend.clone(), problem)
                    };
                    err = err
                        .with_raw_output(std::mem::take(&mut text))
                        .with_source(RejectedCompletion(done));
                    Err(err)
                }
            },
            Err(e) => Err(e),
        })
        .boxed()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn schema() -> ResponseFormat {
        ResponseFormat::JsonSchema {
            name: "answer".into(),
            schema: json!({
                "type": "object",
                "properties": {"answer": {"type": "string"}},
                "required": ["answer"]
            }),
        }
    }

    #[test]
    fn checks_json_and_schema() {
        assert!(ResponseFormat::Text.check("anything").is_ok());
        assert!(ResponseFormat::Json.check(" [1, 2] ").is_ok());
        assert!(ResponseFormat::Json.check("{oops").is_err());
        assert!(schema().check(r#"{"answer": "yes"}"#).is_ok());
        let err = schema().check(r#"{"answer": 3}"#).unwrap_err();
        assert!(err.contains("does not match"), "{err}");
    }
}
