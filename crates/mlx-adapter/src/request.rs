//! Building the worker's `generate` request from the port's request.

use rigger_ports::{GenerationRequest, ResponseFormat, TokenBudget};

use crate::wire::{Format, Message, Request};

/// The `generate` request `id` for `model`.
pub(crate) fn generate<'a>(id: u64, model: &'a str, request: &'a GenerationRequest) -> Request<'a> {
    Request::Generate {
        id,
        model,
        messages: Message::from_port(&request.messages),
        max_tokens: request.budget.limit(),
        exact: matches!(request.budget, TokenBudget::Exactly(_)),
        temperature: request.temperature,
        top_p: request.top_p,
        top_k: request.top_k,
        seed: request.seed,
        stop: &request.stop,
        format: match &request.response_format {
            ResponseFormat::Text => None,
            ResponseFormat::Json => Some(Format::Json),
            ResponseFormat::JsonSchema { schema, .. } => Some(Format::JsonSchema { schema }),
        },
    }
}
