//! Building a `/v1/chat/completions` request for one server kind: which budget field, which
//! stop sequences the server is told, the response format where the server enforces it, and the
//! exact-budget switches.

use rigger_ports::{GenerationRequest, InferenceError, ResponseFormat, TokenBudget};
use serde_json::Value;

use crate::BACKEND;
use crate::config::ServerKind;
use crate::wire::{ChatRequest, Message, StreamOptions};

/// OpenAI accepts at most this many stop sequences; longer lists are matched by the adapter
/// alone.
const OPENAI_MAX_STOPS: usize = 4;

/// The encoded body for `request` on `model`.
pub(crate) fn body(
    request: &GenerationRequest,
    model: &str,
    kind: ServerKind,
) -> Result<Vec<u8>, InferenceError> {
    serde_json::to_vec(&chat_request(request, model, kind))
        .map_err(|e| InferenceError::internal(BACKEND, format!("cannot encode the request: {e}")))
}

/// The body for `request`, already validated against `kind`'s capabilities.
pub(crate) fn chat_request<'a>(
    request: &'a GenerationRequest,
    model: &'a str,
    kind: ServerKind,
) -> ChatRequest<'a> {
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
    ChatRequest {
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
        let body = serde_json::to_value(chat_request(&r, "m", ServerKind::Vllm)).unwrap();
        assert_eq!(body["ignore_eos"], json!(true));
        assert_eq!(body["min_tokens"], json!(7));
        assert_eq!(body["max_tokens"], json!(7));
        assert!(body.get("stop").is_none());
        let body = serde_json::to_value(chat_request(&r, "m", ServerKind::LlamaServer)).unwrap();
        assert_eq!(body["ignore_eos"], json!(true));
        assert!(body.get("min_tokens").is_none());
    }

    #[test]
    fn openai_gets_the_new_budget_name_and_strict_schemas() {
        let r = GenerationRequest::prompt("hi").with_response_format(ResponseFormat::JsonSchema {
            name: "my answer!".into(),
            schema: json!({"type": "object"}),
        });
        let body = serde_json::to_value(chat_request(&r, "m", ServerKind::OpenAi)).unwrap();
        assert_eq!(body["max_completion_tokens"], json!(512));
        assert!(body.get("max_tokens").is_none());
        assert_eq!(
            body["response_format"],
            json!({"type": "json_schema", "json_schema": {"name": "my_answer_", "schema": {"type": "object"}, "strict": true}})
        );
        let body = serde_json::to_value(chat_request(&r, "m", ServerKind::MlxLm)).unwrap();
        assert!(body.get("response_format").is_none(), "mlx_lm ignores it");
    }
}
