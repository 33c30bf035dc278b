//! Building a generation request: `/api/chat` with the messages, or `/api/generate` with a raw
//! prompt, carrying the sampling options, the sized `num_ctx`, the format and `keep_alive`.

use rigger_ports::{GenerationRequest, InferenceError, ResponseFormat};

use crate::config::KeepAlive;
use crate::{BACKEND, wire};

/// The endpoint and the JSON body for `request` on `model`; `raw_prompt` selects
/// `/api/generate` with `raw: true` (no chat template).
pub(crate) fn body(
    model: &str,
    request: &GenerationRequest,
    raw_prompt: Option<&str>,
    num_ctx: u32,
    keep_alive: Option<&KeepAlive>,
) -> Result<(&'static str, Vec<u8>), InferenceError> {
    let options = wire::Options {
        temperature: request.temperature,
        seed: request.seed,
        top_k: request.top_k,
        top_p: request.top_p,
        num_predict: request.budget.limit(),
        stop: &request.stop,
        num_ctx,
    };
    let format = match &request.response_format {
        ResponseFormat::Text => None,
        ResponseFormat::Json => Some(serde_json::Value::String("json".into())),
        ResponseFormat::JsonSchema { schema, .. } => Some(schema.clone()),
    };
    let keep_alive = keep_alive.map(|k| match k {
        KeepAlive::Duration(d) => serde_json::Value::String(d.clone()),
        KeepAlive::Seconds(s) => serde_json::Value::from(*s),
    });
    let (path, body) = match raw_prompt {
        Some(prompt) => (
            "/api/generate",
            serde_json::to_vec(&wire::GenerateRequest {
                model,
                prompt,
                raw: true,
                stream: true,
                format,
                options,
                keep_alive,
            }),
        ),
        None => (
            "/api/chat",
            serde_json::to_vec(&wire::ChatRequest {
                model,
                messages: request
                    .messages
                    .iter()
                    .map(|m| wire::Message {
                        role: m.role.as_str(),
                        content: &m.content,
                    })
                    .collect(),
                stream: true,
                format,
                options,
                keep_alive,
            }),
        ),
    };
    let body = body.map_err(|e| {
        InferenceError::internal(BACKEND, format!("cannot encode the request: {e}"))
    })?;
    Ok((path, body))
}
