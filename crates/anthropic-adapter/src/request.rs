//! The port's request as a Messages API body.
//!
//! - System messages go to the top-level `system` field (the API has no system role), joined in
//!   order with a blank line; empty ones are dropped.
//! - Consecutive messages of the same role become one message whose content is one text block
//!   per original message (the API combines consecutive turns the same way; doing it here keeps
//!   the body valid for servers that insist on alternation).
//! - The token budget is `max_tokens`, which the API requires (the port's requests always carry
//!   one; `GenerationRequest::new` defaults to 512).
//! - A JSON schema becomes `output_config.format` (constrained decoding on the API's side) for
//!   models that have it (Claude 4.5 and later, see `structured`), else a forced call of one tool
//!   whose `input_schema` is the schema.

use rigger_ports::{ChatRole, GenerationRequest, InferenceError, ResponseFormat};

use crate::stream::Output;
use crate::wire::{Content, Message, MessagesRequest, TextBlock, Tool, ToolChoice};
use crate::{BACKEND, structured};

/// The tool description: the model fills the tool's input with its whole reply.
const TOOL_DESCRIPTION: &str = "Give your reply by calling this tool: its input is the whole \
    reply, and it must be valid against the input schema.";

/// A request body ready to send (and re-send on retries), and what the text is made of.
#[derive(Debug, Clone)]
pub(crate) struct Prepared {
    pub body: bytes::Bytes,
    pub output: Output,
}

pub(crate) fn prepare(
    model: &str,
    request: &GenerationRequest,
) -> Result<Prepared, InferenceError> {
    if let Some(t) = request.temperature
        && t > 1.0
    {
        return Err(InferenceError::invalid_request(
            BACKEND,
            format!("temperature {t} is out of Anthropic's range 0.0..=1.0"),
        )
        .with_hint("use a temperature between 0 and 1"));
    }

    let system: Vec<&str> = request
        .messages
        .iter()
        .filter(|m| m.role == ChatRole::System && !m.content.is_empty())
        .map(|m| m.content.as_str())
        .collect();
    let system = (!system.is_empty()).then(|| system.join("\n\n"));

    let mut turns: Vec<(ChatRole, Vec<&str>)> = Vec::new();
    for m in request
        .messages
        .iter()
        .filter(|m| m.role != ChatRole::System)
    {
        match turns.last_mut() {
            Some((role, texts)) if *role == m.role => texts.push(&m.content),
            _ => turns.push((m.role, vec![m.content.as_str()])),
        }
    }
    if turns.is_empty() {
        return Err(InferenceError::invalid_request(
            BACKEND,
            "the request has only system messages",
        )
        .with_hint("add a user message"));
    }
    let messages = turns
        .into_iter()
        .map(|(role, texts)| Message {
            role: role.as_str(),
            content: match texts.as_slice() {
                [one] => Content::Text(one),
                _ => Content::Blocks(
                    texts
                        .into_iter()
                        .map(|text| TextBlock { kind: "text", text })
                        .collect(),
                ),
            },
        })
        .collect();

    let native = match &request.response_format {
        ResponseFormat::JsonSchema { schema, .. }
            if structured::has_native_structured_output(model) =>
        {
            structured::native_schema(schema)
        }
        _ => None,
    };
    let (tools, output) = match &request.response_format {
        ResponseFormat::JsonSchema { .. } if native.is_some() => (Vec::new(), Output::Text),
        ResponseFormat::JsonSchema { name, schema } => {
            check_object_schema(schema)?;
            let name = rigger_http_support::api_identifier(name, "reply");
            let tool = Tool {
                name: name.clone(),
                description: TOOL_DESCRIPTION,
                input_schema: schema,
            };
            (vec![tool], Output::ToolInput(name))
        }
        ResponseFormat::Text | ResponseFormat::Json => (Vec::new(), Output::Text),
    };
    let tool_choice = match &output {
        Output::ToolInput(name) => Some(ToolChoice { kind: "tool", name }),
        Output::Text => None,
    };
    let body = MessagesRequest {
        model,
        max_tokens: request.budget.limit(),
        messages,
        system,
        temperature: request.temperature,
        top_p: request.top_p,
        top_k: request.top_k,
        stop_sequences: &request.stop,
        stream: true,
        tools,
        tool_choice,
        output_config: native
            .map(|schema| serde_json::json!({"format": {"type": "json_schema", "schema": schema}})),
    };
    let body = serde_json::to_vec(&body).map_err(|e| {
        InferenceError::internal(BACKEND, format!("cannot serialise the request: {e}"))
    })?;
    Ok(Prepared {
        body: body.into(),
        output,
    })
}

/// A tool's input is always a JSON object, so only object schemas can be forced through one.
fn check_object_schema(schema: &serde_json::Value) -> Result<(), InferenceError> {
    let is_object = match schema.get("type") {
        Some(serde_json::Value::String(t)) => t == "object",
        None => schema.get("properties").is_some(),
        Some(_) => false,
    };
    if is_object {
        Ok(())
    } else {
        Err(InferenceError::unsupported(
            BACKEND,
            "Anthropic structured output (a forced tool call) needs a JSON schema whose top level \
             is an object",
        )
        .with_hint("wrap the value in an object schema, e.g. {\"type\":\"object\",\"properties\":{\"value\":…}}"))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // a panic is how a test reports failure

    use super::*;
    use rigger_ports::{ChatMessage, ErrorKind};
    use serde_json::json;

    fn body(request: &GenerationRequest) -> serde_json::Value {
        serde_json::from_slice(&prepare("m", request).unwrap().body).unwrap()
    }

    #[test]
    fn system_goes_top_level_and_same_role_turns_merge_into_blocks() {
        let request = GenerationRequest::new(vec![
            ChatMessage::system("Be brief."),
            ChatMessage::user("one"),
            ChatMessage::system("Use French."),
            ChatMessage::user("two"),
            ChatMessage::assistant("deux"),
        ])
        .with_max_tokens(7)
        .with_temperature(0.0)
        .with_stop("END");
        assert_eq!(
            body(&request),
            json!({
                "model": "m",
                "max_tokens": 7,
                "system": "Be brief.\n\nUse French.",
                "messages": [
                    {"role": "user", "content": [
                        {"type": "text", "text": "one"}, {"type": "text", "text": "two"}]},
                    {"role": "assistant", "content": "deux"}
                ],
                "temperature": 0.0,
                "stop_sequences": ["END"],
                "stream": true
            })
        );
    }

    #[test]
    fn a_schema_becomes_a_forced_tool_call() {
        let schema = json!({"type": "object", "properties": {"a": {"type": "string"}}});
        let request =
            GenerationRequest::prompt("hi").with_response_format(ResponseFormat::JsonSchema {
                name: "my answer!".into(),
                schema: schema.clone(),
            });
        let b = body(&request);
        assert_eq!(b["tools"][0]["name"], "my_answer_");
        assert_eq!(b["tools"][0]["input_schema"], schema);
        assert_eq!(
            b["tool_choice"],
            json!({"type": "tool", "name": "my_answer_"})
        );
        let plain =
            body(&GenerationRequest::prompt("hi").with_response_format(ResponseFormat::Json));
        assert!(plain.get("tools").is_none() && plain.get("tool_choice").is_none());
    }

    #[test]
    fn a_schema_goes_to_output_config_on_models_that_take_it() {
        let schema = json!({"type": "object", "properties": {"a": {"type": "string",
            "maxLength": 5}}, "required": ["a"]});
        let request =
            GenerationRequest::prompt("hi").with_response_format(ResponseFormat::JsonSchema {
                name: "answer".into(),
                schema,
            });
        let prepared = prepare("claude-sonnet-4-5", &request).unwrap();
        assert!(matches!(prepared.output, Output::Text));
        let b: serde_json::Value = serde_json::from_slice(&prepared.body).unwrap();
        assert!(b.get("tools").is_none() && b.get("tool_choice").is_none());
        assert_eq!(
            b["output_config"],
            json!({"format": {"type": "json_schema", "schema": {"type": "object",
                "properties": {"a": {"type": "string"}}, "required": ["a"],
                "additionalProperties": false}}})
        );
        // An older model, or a schema the API cannot take: the forced tool call.
        assert!(body(&request).get("output_config").is_none());
        let open =
            GenerationRequest::prompt("hi").with_response_format(ResponseFormat::JsonSchema {
                name: "answer".into(),
                schema: json!({"type": "object", "additionalProperties": true}),
            });
        let b: serde_json::Value =
            serde_json::from_slice(&prepare("claude-sonnet-4-5", &open).unwrap().body).unwrap();
        assert!(b.get("output_config").is_none() && b.get("tools").is_some());
    }

    #[test]
    fn what_the_api_cannot_take_is_refused_before_sending() {
        let only_system = GenerationRequest::new(vec![ChatMessage::system("x")]);
        assert_eq!(
            prepare("m", &only_system).unwrap_err().kind(),
            ErrorKind::InvalidRequest
        );
        let hot = GenerationRequest::prompt("x").with_temperature(1.5);
        let err = prepare("m", &hot).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidRequest);
        assert!(err.hint().is_some());
        let array =
            GenerationRequest::prompt("x").with_response_format(ResponseFormat::JsonSchema {
                name: "list".into(),
                schema: json!({"type": "array"}),
            });
        assert_eq!(
            prepare("m", &array).unwrap_err().kind(),
            ErrorKind::Unsupported
        );
    }
}
