//! A fixture "engine" that answers the Messages API from the request it receives, built from
//! Anthropic's documentation (docs/backends/anthropic.md says which part came from which page).
//!
//! It cannot generate: its "tokens" are words of the prompt picked deterministically (the same
//! request gives the same reply when `temperature` is 0), but everything around them follows
//! the documentation: it is strict about headers and the body (unknown fields, a `system` role
//! in `messages`, a missing `max_tokens` or `stream` are refused with Anthropic's error shape),
//! honours `max_tokens` and `stop_sequences` the documented way (the stop sequence is not part
//! of the text; `stop_reason` says why it stopped), reports usage in `message_start` and
//! `message_delta`, streams the documented event flow with `ping`s, answers a forced tool call
//! with `input_json_delta`s, refuses prompts over its context window, and models a rate limit:
//! at most [`IN_FLIGHT_TOKENS`] of `max_tokens` in responses still being written, else a 429
//! `rate_limit_error` with `retry-after`. A client that does not abort a dropped stream keeps
//! its share taken (the body guard is released only when the body ends or is abandoned).

#![allow(dead_code)] // each test file uses a part

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use rigger_http_support::fixture::{FixtureResponse, FixtureServer, RecordedRequest};
use serde_json::{Value, json};

pub const KEY: &str = "sk-ant-fixture-0123456789abcdefghijklmnop";
pub const VERSION: &str = "2023-06-01";
pub const MODEL: &str = "claude-fixture-1";
/// The model's context window (`max_input_tokens`).
pub const CONTEXT: u32 = 2048;
/// The model's output limit (`max_tokens` in its model info).
pub const MAX_OUTPUT: u32 = 4096;
/// Output tokens (by `max_tokens`) allowed in responses still being written.
pub const IN_FLIGHT_TOKENS: u32 = CONTEXT / 2;
/// Between two content deltas.
pub const TOKEN_PAUSE: Duration = Duration::from_millis(10);

pub struct Engine {
    in_flight: Arc<AtomicU32>,
    sampled: AtomicU64,
}

/// Starts the engine on 127.0.0.1.
pub async fn start() -> FixtureServer {
    let engine = Engine {
        in_flight: Arc::new(AtomicU32::new(0)),
        sampled: AtomicU64::new(0),
    };
    FixtureServer::start(move |r| engine.handle(r))
        .await
        .expect("start the fixture server")
}

pub fn api_error(status: u16, kind: &str, message: &str) -> FixtureResponse {
    FixtureResponse::status(status)
        .header("request-id", "req_fixture")
        .json(&json!({
            "type": "error",
            "error": {"type": kind, "message": message},
            "request_id": "req_fixture"
        }))
}

/// One SSE event as Anthropic frames it: the event name, and the same name as the data's type.
pub fn sse(data: &Value) -> String {
    let name = data["type"].as_str().unwrap_or("message");
    format!("event: {name}\ndata: {data}\n\n")
}

struct Reservation {
    in_flight: Arc<AtomicU32>,
    tokens: u32,
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.in_flight.fetch_sub(self.tokens, Ordering::SeqCst);
    }
}

fn invalid(message: impl AsRef<str>) -> FixtureResponse {
    api_error(400, "invalid_request_error", message.as_ref())
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Some(b) = std::str::from_utf8(&bytes[i + 1..i + 3])
                .ok()
                .and_then(|hex| u8::from_str_radix(hex, 16).ok())
        {
            out.push(b);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn model_info(id: &str) -> Value {
    json!({
        "type": "model",
        "id": id,
        "display_name": "Claude Fixture",
        "created_at": "2025-01-01T00:00:00Z",
        "max_input_tokens": CONTEXT,
        "max_tokens": MAX_OUTPUT
    })
}

impl Engine {
    fn handle(&self, r: &RecordedRequest) -> FixtureResponse {
        // Authentication first, as the API does.
        match r.header("x-api-key") {
            Some(KEY) => {}
            Some(_) => return api_error(401, "authentication_error", "invalid x-api-key"),
            None => return api_error(401, "authentication_error", "x-api-key header is required"),
        }
        match r.header("anthropic-version") {
            Some(VERSION) => {}
            Some(other) => {
                return invalid(format!(
                    "anthropic-version: {other:?} is not a valid version"
                ));
            }
            None => return invalid("anthropic-version: header is required"),
        }
        let path = r.path.split('?').next().unwrap_or("");
        match (r.method.as_str(), path) {
            ("GET", "/v1/models") => FixtureResponse::ok().json(&json!({
                "data": [model_info(MODEL), model_info("claude-fixture-2")],
                "has_more": false,
                "first_id": MODEL,
                "last_id": "claude-fixture-2"
            })),
            ("GET", p) if p.starts_with("/v1/models/") => {
                let id = percent_decode(&p["/v1/models/".len()..]);
                if id == MODEL {
                    FixtureResponse::ok().json(&model_info(&id))
                } else {
                    api_error(404, "not_found_error", &format!("model: {id}"))
                }
            }
            ("POST", "/v1/messages") => self.messages(r),
            _ => api_error(404, "not_found_error", "Not found"),
        }
    }

    fn messages(&self, r: &RecordedRequest) -> FixtureResponse {
        if !r
            .header("content-type")
            .is_some_and(|c| c.starts_with("application/json"))
        {
            return invalid("content-type must be application/json");
        }
        let Ok(Value::Object(body)) = serde_json::from_slice::<Value>(&r.body) else {
            return invalid("the request body is not a JSON object");
        };
        const KNOWN: &[&str] = &[
            "model",
            "max_tokens",
            "messages",
            "system",
            "temperature",
            "top_p",
            "top_k",
            "stop_sequences",
            "stream",
            "tools",
            "tool_choice",
            "metadata",
        ];
        if let Some(extra) = body.keys().find(|k| !KNOWN.contains(&k.as_str())) {
            return invalid(format!("{extra}: Extra inputs are not permitted"));
        }
        let Some(model) = body.get("model").and_then(Value::as_str) else {
            return invalid("model: Field required");
        };
        if model != MODEL {
            return api_error(404, "not_found_error", &format!("model: {model}"));
        }
        let max_tokens = match body.get("max_tokens").map(Value::as_u64) {
            None => return invalid("max_tokens: Field required"),
            Some(Some(n)) if n >= 1 => n as u32,
            Some(_) => return invalid("max_tokens: Input should be greater than or equal to 1"),
        };
        if max_tokens > MAX_OUTPUT {
            return invalid(format!(
                "max_tokens: {max_tokens} > {MAX_OUTPUT}, which is the maximum allowed number of output tokens for {MODEL}"
            ));
        }
        if body.get("stream") != Some(&Value::Bool(true)) {
            return invalid("stream: this fixture only answers streaming requests");
        }
        let temperature = match body.get("temperature") {
            None => None,
            Some(t) => match t.as_f64() {
                Some(t) if (0.0..=1.0).contains(&t) => Some(t),
                _ => return invalid("temperature: Input should be less than or equal to 1"),
            },
        };
        if let Some(p) = body.get("top_p")
            && !p.as_f64().is_some_and(|p| p > 0.0 && p <= 1.0)
        {
            return invalid("top_p: Input should be in (0, 1]");
        }
        if let Some(k) = body.get("top_k")
            && k.as_u64().is_none_or(|k| k == 0)
        {
            return invalid("top_k: Input should be a positive integer");
        }
        let stops: Vec<String> = match body.get("stop_sequences") {
            None => Vec::new(),
            Some(Value::Array(items)) => {
                let stops: Vec<String> = items
                    .iter()
                    .filter_map(|s| s.as_str().map(str::to_owned))
                    .collect();
                if stops.len() != items.len() || stops.iter().any(|s| s.trim().is_empty()) {
                    return invalid(
                        "stop_sequences: each stop sequence must be a non-blank string",
                    );
                }
                stops
            }
            Some(_) => return invalid("stop_sequences: Input should be a valid list"),
        };
        let mut prompt = String::new();
        match body.get("system") {
            None => {}
            Some(Value::String(s)) if !s.is_empty() => prompt.push_str(s),
            Some(_) => return invalid("system: Input should be a non-empty string"),
        }
        let Some(Value::Array(messages)) = body.get("messages") else {
            return invalid("messages: Field required");
        };
        if messages.is_empty() {
            return invalid("messages: at least one message is required");
        }
        let mut last_user = String::new();
        let mut previous_role = "";
        for (i, m) in messages.iter().enumerate() {
            let role = m.get("role").and_then(Value::as_str).unwrap_or("");
            match role {
                "user" | "assistant" => {}
                "system" => {
                    return invalid(format!(
                        "messages.{i}.role: Unexpected role \"system\". The Messages API accepts a \
                         top-level `system` parameter, not \"system\" as an input message role."
                    ));
                }
                other => return invalid(format!("messages.{i}.role: unknown role {other:?}")),
            }
            if i == 0 && role != "user" {
                return invalid("messages: first message must use the \"user\" role");
            }
            // The real API combines consecutive same-role turns; this fixture insists on
            // alternation, so it proves the adapter merges them itself.
            if role == previous_role {
                return invalid(format!(
                    "messages.{i}: roles must alternate between \"user\" and \"assistant\""
                ));
            }
            previous_role = role;
            let text = match m.get("content") {
                Some(Value::String(s)) if !s.is_empty() => s.clone(),
                Some(Value::Array(blocks)) if !blocks.is_empty() => {
                    let mut text = String::new();
                    for b in blocks {
                        match (
                            b.get("type").and_then(Value::as_str),
                            b.get("text").and_then(Value::as_str),
                        ) {
                            (Some("text"), Some(t)) if !t.is_empty() => {
                                text.push_str(t);
                                text.push('\n');
                            }
                            _ => {
                                return invalid(format!(
                                    "messages.{i}.content: text content blocks must be non-empty"
                                ));
                            }
                        }
                    }
                    text
                }
                _ => {
                    return invalid(format!(
                        "messages.{i}.content: content must be a non-empty string or list of blocks"
                    ));
                }
            };
            prompt.push('\n');
            prompt.push_str(&text);
            if role == "user" {
                last_user = text;
            }
        }
        let tool = match self.tool(&body) {
            Ok(tool) => tool,
            Err(response) => return response,
        };

        let input_tokens = prompt.split_whitespace().count() as u32 + 4 * messages.len() as u32;
        if input_tokens > CONTEXT {
            return invalid(format!(
                "prompt is too long: {input_tokens} tokens > {CONTEXT} maximum"
            ));
        }
        if input_tokens + max_tokens > CONTEXT {
            return invalid(format!(
                "input length and `max_tokens` exceed context limit: {input_tokens} + {max_tokens} > {CONTEXT}, decrease input length or `max_tokens` and try again"
            ));
        }
        // The rate limit on output tokens in flight.
        let reserved = self.in_flight.fetch_add(max_tokens, Ordering::SeqCst);
        let reservation = Reservation {
            in_flight: Arc::clone(&self.in_flight),
            tokens: max_tokens,
        };
        if reserved + max_tokens > IN_FLIGHT_TOKENS {
            drop(reservation);
            return api_error(
                429,
                "rate_limit_error",
                &format!("This request would exceed the limit of {IN_FLIGHT_TOKENS} output tokens in flight"),
            )
            .header("retry-after", "1");
        }

        let mut seed = fnv(&prompt);
        if temperature != Some(0.0) {
            seed ^= self
                .sampled
                .fetch_add(1, Ordering::SeqCst)
                .wrapping_mul(0x9e37_79b9);
        }
        let words: Vec<&str> = {
            let w: Vec<&str> = last_user.split_whitespace().collect();
            if w.is_empty() { vec!["…"] } else { w }
        };
        let (blocks, stop_reason, stop_sequence, output_tokens) = match &tool {
            None => text_reply(&words, seed, max_tokens, &stops),
            Some((name, schema)) => tool_reply(name, schema, &words, seed, max_tokens),
        };
        stream_response(
            input_tokens,
            blocks,
            stop_reason,
            stop_sequence,
            output_tokens,
        )
        .hold(reservation)
    }

    /// The forced tool, when the request has one: its name and input schema.
    fn tool(
        &self,
        body: &serde_json::Map<String, Value>,
    ) -> Result<Option<(String, Value)>, FixtureResponse> {
        let (tools, choice) = match (body.get("tools"), body.get("tool_choice")) {
            (None, None) => return Ok(None),
            (Some(Value::Array(tools)), Some(choice)) => (tools, choice),
            _ => {
                return Err(invalid(
                    "tools and tool_choice: this fixture wants both or neither",
                ));
            }
        };
        if choice.get("type").and_then(Value::as_str) != Some("tool") {
            return Err(invalid(
                "tool_choice: this fixture only answers {\"type\": \"tool\"}",
            ));
        }
        let wanted = choice.get("name").and_then(Value::as_str).unwrap_or("");
        let Some(tool) = tools
            .iter()
            .find(|t| t.get("name").and_then(Value::as_str) == Some(wanted))
        else {
            return Err(invalid(format!(
                "tool_choice.name: no tool named {wanted:?}"
            )));
        };
        let valid_name = !wanted.is_empty()
            && wanted.len() <= 64
            && wanted
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        if !valid_name {
            return Err(invalid(
                "tools.0.name: String should match pattern '^[a-zA-Z0-9_-]{1,64}$'",
            ));
        }
        match tool.get("input_schema") {
            Some(schema) if schema.get("type").and_then(Value::as_str) == Some("object") => {
                Ok(Some((wanted.to_owned(), schema.clone())))
            }
            _ => Err(invalid(
                "tools.0.input_schema: input_schema.type: Input should be 'object'",
            )),
        }
    }
}

fn fnv(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    })
}

fn word(words: &[&str], seed: u64, i: u64) -> String {
    let w = words[((seed.wrapping_add(i.wrapping_mul(7919))) % words.len() as u64) as usize];
    w.trim_matches(|c: char| !c.is_alphanumeric()).to_owned()
}

/// A text block: one word per token until end-of-sequence (after 300-399 tokens), the budget, or
/// a stop sequence, which is cut off.
fn text_reply(
    words: &[&str],
    seed: u64,
    max_tokens: u32,
    stops: &[String],
) -> (Vec<Block>, &'static str, Option<String>, u32) {
    let end_of_sequence = 300 + (seed % 100) as u32;
    let mut text = String::new();
    let mut pieces = Vec::new();
    for i in 0..max_tokens.min(end_of_sequence) {
        let piece = if i == 0 {
            word(words, seed, 0)
        } else {
            format!(" {}", word(words, seed, u64::from(i)))
        };
        text.push_str(&piece);
        let hit = stops
            .iter()
            .filter_map(|s| text.find(s.as_str()).map(|at| (at, s)))
            .min_by_key(|(at, _)| *at);
        if let Some((at, stop)) = hit {
            let emitted: usize = pieces.iter().map(String::len).sum();
            if at > emitted {
                pieces.push(text[emitted..at].to_owned());
            }
            return (
                vec![Block::Text(pieces)],
                "stop_sequence",
                Some(stop.clone()),
                i + 1,
            );
        }
        pieces.push(piece);
    }
    let n = pieces.len() as u32;
    let reason = if n == max_tokens {
        "max_tokens"
    } else {
        "end_turn"
    };
    (vec![Block::Text(pieces)], reason, None, n)
}

/// A forced tool call: a value for the schema (strings from the prompt's words), streamed as
/// partial JSON of up to 8 characters per token.
fn tool_reply(
    name: &str,
    schema: &Value,
    words: &[&str],
    seed: u64,
    max_tokens: u32,
) -> (Vec<Block>, &'static str, Option<String>, u32) {
    let value = value_for(schema, words, seed);
    let json = value.to_string();
    let chars: Vec<char> = json.chars().collect();
    let mut pieces: Vec<String> = chars.chunks(8).map(|c| c.iter().collect()).collect();
    let reason = if pieces.len() as u32 > max_tokens {
        pieces.truncate(max_tokens as usize);
        "max_tokens"
    } else {
        "tool_use"
    };
    let n = pieces.len() as u32;
    (vec![Block::Tool(name.to_owned(), pieces)], reason, None, n)
}

fn value_for(schema: &Value, words: &[&str], seed: u64) -> Value {
    match schema.get("type").and_then(Value::as_str) {
        Some("object") => {
            let mut out = serde_json::Map::new();
            if let Some(Value::Object(props)) = schema.get("properties") {
                for (i, (key, sub)) in props.iter().enumerate() {
                    out.insert(
                        key.clone(),
                        value_for(sub, words, seed.wrapping_add(i as u64)),
                    );
                }
            }
            Value::Object(out)
        }
        Some("array") => json!([]),
        Some("integer") | Some("number") => json!(seed % 100),
        Some("boolean") => json!(seed.is_multiple_of(2)),
        Some("null") => Value::Null,
        _ => json!(word(words, seed, 0)),
    }
}

pub enum Block {
    Text(Vec<String>),
    Tool(String, Vec<String>),
}

/// The documented event flow, one event per chunk, with every fifth event split in two (so
/// the client meets events cut across reads) and a pause before every content delta.
fn stream_response(
    input_tokens: u32,
    blocks: Vec<Block>,
    stop_reason: &str,
    stop_sequence: Option<String>,
    output_tokens: u32,
) -> FixtureResponse {
    let mut events = vec![json!({"type": "message_start", "message": {
        "id": "msg_fixture", "type": "message", "role": "assistant", "content": [],
        "model": MODEL, "stop_reason": null, "stop_sequence": null,
        "usage": {"input_tokens": input_tokens, "output_tokens": 1}
    }})];
    let mut deltas = Vec::new();
    for (index, block) in blocks.into_iter().enumerate() {
        match block {
            Block::Text(pieces) => {
                events.push(json!({"type": "content_block_start", "index": index, "content_block": {"type": "text", "text": ""}}));
                events.push(json!({"type": "ping"}));
                for p in pieces {
                    deltas.push(events.len());
                    events.push(json!({"type": "content_block_delta", "index": index, "delta": {"type": "text_delta", "text": p}}));
                }
            }
            Block::Tool(name, pieces) => {
                events.push(json!({"type": "content_block_start", "index": index, "content_block": {"type": "tool_use", "id": "toolu_fixture", "name": name, "input": {}}}));
                events.push(json!({"type": "content_block_delta", "index": index, "delta": {"type": "input_json_delta", "partial_json": ""}}));
                for p in pieces {
                    deltas.push(events.len());
                    events.push(json!({"type": "content_block_delta", "index": index, "delta": {"type": "input_json_delta", "partial_json": p}}));
                }
            }
        }
        events.push(json!({"type": "content_block_stop", "index": index}));
    }
    events.push(json!({"type": "message_delta", "delta": {"stop_reason": stop_reason, "stop_sequence": stop_sequence}, "usage": {"output_tokens": output_tokens}}));
    events.push(json!({"type": "message_stop"}));

    let mut response = FixtureResponse::ok()
        .header("content-type", "text/event-stream; charset=utf-8")
        .header("cache-control", "no-cache")
        .header("request-id", "req_fixture");
    for (i, event) in events.iter().enumerate() {
        if deltas.contains(&i) {
            response = response.pause(TOKEN_PAUSE);
        }
        let text = sse(event);
        if i % 5 == 4 {
            let mut cut = text.len() / 2;
            while !text.is_char_boundary(cut) {
                cut -= 1;
            }
            response = response
                .chunk(text[..cut].to_owned())
                .chunk(text[cut..].to_owned());
        } else {
            response = response.chunk(text);
        }
    }
    response
}
