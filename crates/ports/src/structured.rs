//! Structured output: every backend's output is checked against the requested format, whether
//! or not the backend enforced it natively.

use futures::StreamExt;

use crate::{ErrorKind, EventStream, InferenceError, ResponseFormat, StreamEvent};

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
                    Err(
                        InferenceError::new(ErrorKind::MalformedOutput, backend.clone(), problem)
                            .with_raw_output(std::mem::take(&mut text)),
                    )
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
