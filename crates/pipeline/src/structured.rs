use rigger_domain::ModelRole;
use rigger_ports::{
    CallMetrics, ChatMessage, ErrorKind, GenerationRequest, InferenceError, Outcome, ResponseFormat,
};
use serde_json::Value;

use crate::calls::{FailedStepCalls, step_calls};
use crate::chain::ModelChain;
use crate::settings::{RoleSettings, RoleVar, role_var};

/// The JSON value in a model's answer: the whole answer, or failing that the first JSON object in
/// it (models often wrap JSON in a code fence or a sentence). serde_json does the parsing.
pub fn extract_json(text: &str) -> Option<Value> {
    let trimmed = text.trim();
    if let Ok(value) = serde_json::from_str::<Value>(trimmed) {
        return Some(value);
    }
    trimmed
        .char_indices()
        .filter(|(_, c)| *c == '{')
        .find_map(|(start, _)| {
            serde_json::Deserializer::from_str(&trimmed[start..])
                .into_iter::<Value>()
                .next()
                .and_then(Result::ok)
                .filter(Value::is_object)
        })
}

/// The least temperature a repair attempt samples at. A near-greedy model asked again with its
/// own mistake in view tends to repeat it (SmolLM2-135M writes the same subtask title twice,
/// greedily, every time); sampling lets the second answer differ. The grammar still holds it to
/// the schema, so only the content varies.
pub(crate) const REPAIR_MIN_TEMPERATURE: f32 = 0.7;

/// One structured call: ask for JSON matching `schema`, check it with `accept` (the domain's
/// rules), and on a bad answer ask again, showing the model its answer and what was wrong, up to
/// `settings.repair_attempts` times, sampling at [`REPAIR_MIN_TEMPERATURE`] or more. Then:
/// MalformedOutput with the last raw answer.
///
/// The schema goes to the backend as the request's response format only when the model declares
/// native structured output (the backend then constrains decoding); otherwise the request asks for
/// text, the prompt describes the JSON, and the answer is checked here against the same schema —
/// so every call's figures are kept, including those of rejected answers.
pub(crate) async fn call_json<T>(
    chain: &ModelChain,
    role: ModelRole,
    mut messages: Vec<ChatMessage>,
    schema_name: &str,
    schema: Value,
    settings: &RoleSettings,
    accept: impl Fn(Value) -> Result<T, String>,
) -> Result<Outcome<T>, InferenceError> {
    let format = ResponseFormat::JsonSchema {
        name: schema_name.to_owned(),
        schema: schema.clone(),
    };
    let native = chain
        .links()
        .iter()
        .all(|l| l.descriptor().capabilities.native_structured_output);
    let requested = if native {
        format.clone()
    } else {
        ResponseFormat::Text
    };
    let mut calls: Vec<CallMetrics> = Vec::new();
    let mut attempt = 0;
    loop {
        attempt += 1;
        let mut request = GenerationRequest::new(messages.clone())
            .with_max_tokens(settings.max_tokens)
            .with_response_format(requested.clone());
        let temperature = if attempt > 1 {
            Some(
                settings
                    .temperature
                    .map_or(REPAIR_MIN_TEMPERATURE, |t| t.max(REPAIR_MIN_TEMPERATURE)),
            )
        } else {
            settings.temperature
        };
        if let Some(t) = temperature {
            request = request.with_temperature(t);
        }
        let (raw, problem, backend) = match chain.generate(request).await {
            Ok((text, metrics)) => {
                let backend = metrics.backend.clone();
                calls.push(metrics);
                let verdict = match extract_json(&text) {
                    None => Err("the answer contains no JSON object".to_owned()),
                    Some(value) => format
                        .check(&value.to_string())
                        .and_then(|()| accept(value)),
                };
                match verdict {
                    Ok(value) => return Ok(Outcome { value, calls }),
                    Err(problem) => (text, problem, backend),
                }
            }
            // The adapter validated the output itself and rejected it: the same case as above,
            // the call's figures carried by the error (the chain attaches them).
            Err(err) if err.kind() == ErrorKind::MalformedOutput && err.raw_output().is_some() => {
                calls.extend_from_slice(step_calls(&err));
                let raw = err.raw_output().unwrap_or_default().to_owned();
                (raw, err.message().to_owned(), err.backend().to_owned())
            }
            Err(err) => return Err(attach_calls(err, calls)),
        };
        tracing::debug!(%role, attempt, %problem, "the model's answer was invalid");
        if attempt > settings.repair_attempts {
            return Err(InferenceError::new(
                ErrorKind::MalformedOutput,
                backend,
                format!(
                    "the {role} model gave no valid answer in {attempt} attempt(s); last problem: {problem}"
                ),
            )
            .with_raw_output(raw)
            .with_hint(format!(
                "use a larger or instruction-tuned model for this role ({}), or allow more \
                 repair attempts",
                role_var(role, RoleVar::Model)
            ))
            .with_source(FailedStepCalls { calls }));
        }
        messages.push(ChatMessage::assistant(quoted_for_repair(&raw)));
        messages.push(ChatMessage::user(format!(
            "That answer is not valid: {problem}. Reply again with only one JSON object that \
             matches this schema, and nothing else:\n{schema}"
        )));
    }
}

/// The most of an invalid answer quoted back to the model in the repair turn. A valid answer
/// fits well within it (every string of a role's schema is bounded); a runaway answer would
/// otherwise be sent back whole, costing its length again in prompt tokens.
pub const MAX_QUOTED_ANSWER: usize = 8 * 1024;

/// `raw` as the repair turn quotes it: whole when short, else its first [`MAX_QUOTED_ANSWER`]
/// bytes (cut on a character boundary) and a note saying how much was cut.
fn quoted_for_repair(raw: &str) -> String {
    if raw.len() <= MAX_QUOTED_ANSWER {
        return raw.to_owned();
    }
    let mut end = MAX_QUOTED_ANSWER;
    while !raw.is_char_boundary(end) {
        end -= 1;
    }
    format!(
        "{}\n[… cut here: the answer was {} bytes, only the first {end} are quoted]",
        &raw[..end],
        raw.len()
    )
}

/// `err` with the step's calls attached as its source (when there were any), everything else kept.
fn attach_calls(err: InferenceError, calls: Vec<CallMetrics>) -> InferenceError {
    if calls.is_empty() {
        return err;
    }
    err.with_source(FailedStepCalls { calls })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_answers_are_quoted_cut_and_say_so() {
        assert_eq!(quoted_for_repair("{\"a\": 1}"), "{\"a\": 1}");
        let long = "é".repeat(MAX_QUOTED_ANSWER); // two bytes each: a cut may fall inside one
        let quoted = quoted_for_repair(&long);
        assert!(quoted.len() < MAX_QUOTED_ANSWER + 100, "{}", quoted.len());
        assert!(quoted.ends_with(&format!(
            "the answer was {} bytes, only the first {MAX_QUOTED_ANSWER} are quoted]",
            long.len()
        )));
    }

    #[test]
    fn extracts_json_from_fences_and_prose() {
        assert_eq!(extract_json(r#" {"a": 1} "#).unwrap()["a"], 1);
        assert_eq!(extract_json("```json\n{\"a\": 2}\n```").unwrap()["a"], 2);
        assert_eq!(
            extract_json("Sure! Here it is: {\"a\": {\"b\": 3}} hope it helps").unwrap()["a"]["b"],
            3
        );
        assert_eq!(extract_json("{broken {\"a\": 4}").unwrap()["a"], 4);
        assert!(extract_json("no json here").is_none());
        assert!(extract_json("[1, 2").is_none());
    }
}
