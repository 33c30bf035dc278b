//! The JSON bodies of `/v1/chat/completions` and `/v1/models`. Private to this crate.

use rigger_ports::{GenerationRequest, ResponseFormat, TokenBudget};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::config::ServerKind;

/// OpenAI accepts at most this many stop sequences; longer lists are matched by the adapter
/// alone.
const OPENAI_MAX_STOPS: usize = 4;

#[derive(Debug, Serialize)]
pub(crate) struct ChatRequest<'a> {
    model: &'a str,
    messages: Vec<Message<'a>>,
    stream: bool,
    stream_options: StreamOptions,
    /// OpenAI proper deprecated `max_tokens` (its reasoning models refuse it); every other
    /// server knows `max_tokens`, and not all know the new name.
    #[serde(skip_serializing_if = "Option::is_none")]
    max_tokens: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_completion_tokens: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    temperature: Option<f32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    top_p: Option<f32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    top_k: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    seed: Option<u64>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    stop: Vec<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    response_format: Option<Value>,
    /// vLLM and llama-server: generate through end-of-sequence (exact budgets).
    #[serde(skip_serializing_if = "Option::is_none")]
    ignore_eos: Option<bool>,
    /// vLLM: together with `ignore_eos`, no early end at all.
    #[serde(skip_serializing_if = "Option::is_none")]
    min_tokens: Option<u32>,
}

#[derive(Debug, Serialize)]
struct Message<'a> {
    role: &'static str,
    content: &'a str,
}

#[derive(Debug, Serialize)]
struct StreamOptions {
    include_usage: bool,
}

impl<'a> ChatRequest<'a> {
    /// The body for `request`, already validated against `kind`'s capabilities.
    pub fn new(request: &'a GenerationRequest, model: &'a str, kind: ServerKind) -> Self {
        let exact = request.budget.is_exact();
        let limit = request.budget.limit();
        let (max_tokens, max_completion_tokens) = match kind {
            ServerKind::OpenAi => (None, Some(limit)),
            _ => (Some(limit), None),
        };
        let stop = if stops_sent(request, kind) {
            request.stop.iter().map(String::as_str).collect()
        } else {
            Vec::new()
        };
        Self {
            model,
            messages: request
                .messages
                .iter()
                .map(|m| Message {
                    role: m.role.as_str(),
                    content: &m.content,
                })
                .collect(),
            stream: true,
            stream_options: StreamOptions {
                include_usage: true,
            },
            max_tokens,
            max_completion_tokens,
            temperature: request.temperature,
            top_p: request.top_p,
            top_k: request.top_k,
            seed: request.seed,
            stop,
            response_format: kind
                .capabilities()
                .native_structured_output
                .then(|| response_format(&request.response_format))
                .flatten(),
            ignore_eos: exact.then_some(true),
            min_tokens: match (request.budget, kind) {
                (TokenBudget::Exactly(n), ServerKind::Vllm) => Some(n),
                _ => None,
            },
        }
    }
}

/// Whether the server is told the stop sequences (the adapter matches them in any case).
pub(crate) fn stops_sent(request: &GenerationRequest, kind: ServerKind) -> bool {
    !request.budget.is_exact()
        && kind.server_matches_stop_text()
        && !(kind == ServerKind::OpenAi && request.stop.len() > OPENAI_MAX_STOPS)
}

fn response_format(format: &ResponseFormat) -> Option<Value> {
    match format {
        ResponseFormat::Text => None,
        ResponseFormat::Json => Some(serde_json::json!({"type": "json_object"})),
        ResponseFormat::JsonSchema { name, schema } => Some(serde_json::json!({
            "type": "json_schema",
            "json_schema": {"name": rigger_http_support::api_identifier(name, "response"), "schema": schema, "strict": true},
        })),
    }
}

/// One `data:` payload of the stream. `object` is not read: mlx_lm.server labels its usage
/// chunk `chat.completion`, others `chat.completion.chunk`.
#[derive(Debug, Deserialize)]
pub(crate) struct Chunk {
    #[serde(default)]
    pub choices: Vec<Choice>,
    #[serde(default)]
    pub usage: Option<WireUsage>,
    /// llama-server's own clocks.
    #[serde(default)]
    pub timings: Option<WireTimings>,
    #[serde(default)]
    pub error: Option<Value>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct Choice {
    #[serde(default)]
    pub index: u32,
    #[serde(default)]
    pub delta: Option<Delta>,
    #[serde(default)]
    pub finish_reason: Option<String>,
    /// vLLM: the stop string that matched, or a token id / null for end-of-sequence.
    #[serde(default)]
    pub stop_reason: Option<Value>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct Delta {
    #[serde(default)]
    pub content: Option<String>,
}

#[derive(Debug, Clone, Copy, Deserialize)]
pub(crate) struct WireUsage {
    #[serde(default)]
    pub prompt_tokens: u32,
    #[serde(default)]
    pub completion_tokens: u32,
}

/// llama.cpp's `timings` block (`result_timings` in its server). `prompt_n` counts the prompt
/// tokens it evaluated, without those reused from its cache (`cache_n`).
#[derive(Debug, Clone, Copy, Deserialize)]
pub(crate) struct WireTimings {
    #[serde(default)]
    pub cache_n: Option<i64>,
    pub prompt_n: i64,
    pub prompt_ms: f64,
    pub predicted_n: i64,
    pub predicted_ms: f64,
}

#[derive(Debug, Deserialize)]
pub(crate) struct ModelList {
    #[serde(default)]
    pub data: Vec<ModelEntry>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct ModelEntry {
    pub id: String,
    /// vLLM: the model's context length.
    #[serde(default)]
    pub max_model_len: Option<u32>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use rigger_ports::ChatMessage;
    use serde_json::json;

    #[test]
    fn exact_budgets_ask_for_ignore_eos_and_drop_stops() {
        let r = GenerationRequest::new(vec![ChatMessage::user("hi")])
            .with_exact_tokens(7)
            .with_stop("x");
        let body = serde_json::to_value(ChatRequest::new(&r, "m", ServerKind::Vllm)).unwrap();
        assert_eq!(body["ignore_eos"], json!(true));
        assert_eq!(body["min_tokens"], json!(7));
        assert_eq!(body["max_tokens"], json!(7));
        assert!(body.get("stop").is_none());
        let body =
            serde_json::to_value(ChatRequest::new(&r, "m", ServerKind::LlamaServer)).unwrap();
        assert_eq!(body["ignore_eos"], json!(true));
        assert!(body.get("min_tokens").is_none());
    }

    #[test]
    fn openai_gets_the_new_budget_name_and_strict_schemas() {
        let r = GenerationRequest::prompt("hi").with_response_format(ResponseFormat::JsonSchema {
            name: "my answer!".into(),
            schema: json!({"type": "object"}),
        });
        let body = serde_json::to_value(ChatRequest::new(&r, "m", ServerKind::OpenAi)).unwrap();
        assert_eq!(body["max_completion_tokens"], json!(512));
        assert!(body.get("max_tokens").is_none());
        assert_eq!(
            body["response_format"],
            json!({"type": "json_schema", "json_schema": {"name": "my_answer_", "schema": {"type": "object"}, "strict": true}})
        );
        let body = serde_json::to_value(ChatRequest::new(&r, "m", ServerKind::MlxLm)).unwrap();
        assert!(body.get("response_format").is_none(), "mlx_lm ignores it");
    }

    #[test]
    fn chunks_tolerate_missing_and_unknown_fields() {
        let c: Chunk = serde_json::from_str(
            r#"{"object":"chat.completion","choices":[],"usage":{"prompt_tokens":3,"completion_tokens":2,"total_tokens":5},"extra":1}"#,
        )
        .unwrap();
        assert!(c.choices.is_empty());
        assert_eq!(c.usage.unwrap().prompt_tokens, 3);
    }
}
