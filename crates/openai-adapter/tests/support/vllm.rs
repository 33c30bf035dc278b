//! A fixture vLLM: a local server that speaks vLLM's OpenAI-compatible API (`/v1/models`,
//! `/v1/chat/completions` streamed as SSE) strictly, with a tiny deterministic "engine" behind it,
//! so the adapter's conformance does not depend only on the MLX venv.
//!
//! What it is, from vLLM's and OpenAI's API documentation: the bearer key checked; a strict
//! body (unknown fields, `stream: false`, no `stream_options.include_usage`, no `max_tokens`,
//! empty or malformed messages are refused with a 400 in vLLM's error shape); one word per token,
//! chosen by a hash of the messages, the seed and the position (temperature 0 and a seed make it
//! reproducible); `max_tokens` honoured (`finish_reason: "length"`); `ignore_eos` with
//! `min_tokens` generating exactly that many tokens; `stop` matched on the text, held back while
//! it could still match and never sent (`finish_reason: "stop"`, `stop_reason`: the string, or
//! null at end-of-sequence); `response_format: json_schema` answered with a value of the schema,
//! as guided decoding would; a usage chunk before `[DONE]`; the context length in `/v1/models`
//! (`max_model_len`) and a prompt over it refused with vLLM's message; an unknown model a 404.
//! One generation at a time: later requests wait for the slot until the one holding it has
//! written its last chunk or its client went away, so a client that does not abort a dropped
//! stream keeps it busy.
//!
//! What it is not: a model. Its tokens are words and its "guided decoding" writes a value of
//! the schema directly.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rigger_http_support::fixture::{FixtureResponse, FixtureServer, RecordedRequest};
use rigger_ports::{StopMatcher, StopStep};
use serde_json::{Map, Value, json};

pub const KEY: &str = "sk-vllm-fixture-0123456789";
/// The served model (vLLM names it by its path or `--served-model-name`).
pub const MODEL: &str = "rigger/fixture-llama";
/// `max_model_len`.
pub const CONTEXT: u32 = 4096;
/// Time per generated token. A generation that is not cancelled on drop (about half the
/// context: 2048 tokens) keeps the slot for over 6 s, longer than the suite's patience.
pub const TOKEN_TIME: Duration = Duration::from_millis(3);
/// Time spent on the prompt before the first token.
pub const PROMPT_TIME: Duration = Duration::from_millis(2);

const WORDS: &[&str] = &[
    " the", " keeper", " lit", " lamp", " as", " waves", " rose", " over", " rocks", " and",
    " wind", " howled", " through", " night", " while", " ships", " passed", " safely", ",", ".",
];

/// A running fixture vLLM; it stops when dropped.
pub struct FixtureVllm {
    pub server: FixtureServer,
}

impl FixtureVllm {
    pub async fn start() -> Self {
        let engine = Engine {
            slot: Arc::new(tokio::sync::Semaphore::new(1)),
            sampled: AtomicU64::new(0),
        };
        let server = FixtureServer::start(move |r| engine.handle(r))
            .await
            .expect("start the fixture server");
        Self { server }
    }

    /// The `.../v1` base URL.
    pub fn base_url(&self) -> String {
        format!("{}/v1", self.server.url())
    }
}

struct Engine {
    /// The one generation slot: a response takes it before its first token and gives it back
    /// when its body ends or its client goes away.
    slot: Arc<tokio::sync::Semaphore>,
    /// Requests sampled without a fixed seed, so that each differs.
    sampled: AtomicU64,
}

/// vLLM's error body (`ErrorResponse`), with the status as its `code`.
pub fn api_error(status: u16, kind: &str, message: &str) -> FixtureResponse {
    FixtureResponse::status(status).json(&json!({
        "error": {"message": message, "type": kind, "param": null, "code": status}
    }))
}

fn invalid(message: impl AsRef<str>) -> FixtureResponse {
    api_error(400, "BadRequestError", message.as_ref())
}

/// What the engine needs from a checked `/v1/chat/completions` body.
struct Call {
    messages: Vec<(String, String)>,
    max_tokens: u32,
    exact: bool,
    seed: Option<u64>,
    temperature: Option<f64>,
    stops: Vec<String>,
    schema: Option<Value>,
}

impl Engine {
    fn handle(&self, r: &RecordedRequest) -> FixtureResponse {
        if r.header("authorization") != Some(format!("Bearer {KEY}").as_str()) {
            return api_error(401, "Unauthorized", "Unauthorized");
        }
        match (r.method.as_str(), r.path.as_str()) {
            ("GET", "/v1/models") => FixtureResponse::ok().json(&json!({
                "object": "list",
                "data": [{"id": MODEL, "object": "model", "created": 1_700_000_000,
                          "owned_by": "vllm", "root": MODEL, "parent": null,
                          "max_model_len": CONTEXT}]
            })),
            ("POST", "/v1/chat/completions") => match check(r) {
                Err(response) => response,
                Ok(call) => self.generate(call),
            },
            _ => FixtureResponse::status(404).json(&json!({"detail": "Not Found"})),
        }
    }

    fn generate(&self, call: Call) -> FixtureResponse {
        let prompt = prompt_tokens(&call.messages);
        if prompt + call.max_tokens > CONTEXT {
            return invalid(format!(
                "This model's maximum context length is {CONTEXT} tokens. However, you requested \
                 {} tokens ({prompt} in the messages, {} in the completion). Please reduce the \
                 length of the messages or completion.",
                prompt + call.max_tokens,
                call.max_tokens
            ));
        }
        let mut h = DefaultHasher::new();
        call.messages.hash(&mut h);
        match (call.seed, call.temperature) {
            (Some(seed), _) => seed.hash(&mut h),
            (None, Some(t)) if t <= 0.0 => {}
            (None, _) => self.sampled.fetch_add(1, Ordering::SeqCst).hash(&mut h),
        }
        let key = h.finish();
        let reply = match &call.schema {
            Some(schema) => guided(schema, key, call.max_tokens),
            None => text(&call, key),
        };
        let completion = reply.tokens;
        let pieces = &reply.pieces;

        let chunk = |delta: Value, finish: Value, stop: Value| {
            json!({"id": "chatcmpl-fixture", "object": "chat.completion.chunk",
                   "created": 1_700_000_000, "model": MODEL,
                   "choices": [{"index": 0, "delta": delta, "logprobs": null,
                                "finish_reason": finish, "stop_reason": stop}]})
        };
        let mut events = vec![chunk(
            json!({"role": "assistant", "content": ""}),
            Value::Null,
            Value::Null,
        )];
        let first_delta = events.len();
        for p in pieces {
            events.push(chunk(json!({"content": p}), Value::Null, Value::Null));
        }
        events.push(chunk(
            json!({}),
            json!(reply.finish),
            reply.stop_reason.clone(),
        ));
        events.push(
            json!({"id": "chatcmpl-fixture", "object": "chat.completion.chunk",
            "created": 1_700_000_000, "model": MODEL, "choices": [],
            "usage": {"prompt_tokens": prompt, "total_tokens": prompt + completion,
                      "completion_tokens": completion}}),
        );

        let mut response = FixtureResponse::ok()
            .header("content-type", "text/event-stream; charset=utf-8")
            .acquire(Arc::clone(&self.slot))
            .pause(PROMPT_TIME);
        for (i, event) in events.iter().enumerate() {
            if i >= first_delta && i < first_delta + pieces.len() {
                response = response.pause(TOKEN_TIME);
            }
            let text = format!("data: {event}\n\n");
            if i % 5 == 4 {
                // Every fifth event arrives in two writes.
                let cut = text.len() / 2;
                response = response
                    .chunk(&text.as_bytes()[..cut])
                    .chunk(&text.as_bytes()[cut..]);
            } else {
                response = response.chunk(text);
            }
        }
        response.chunk("data: [DONE]\n\n")
    }
}

/// Tokens of a prompt as the fixture counts them: words, plus a template's few per message.
fn prompt_tokens(messages: &[(String, String)]) -> u32 {
    let n: usize = messages
        .iter()
        .map(|(_, c)| c.split_whitespace().count() + 4)
        .sum();
    u32::try_from(n + 1).unwrap_or(u32::MAX)
}

fn word(key: u64, i: u64) -> &'static str {
    let mut h = DefaultHasher::new();
    (key, i).hash(&mut h);
    WORDS[(h.finish() % WORDS.len() as u64) as usize]
}

/// What the engine generated: the text deltas to send, the tokens it counts, and why it ended.
struct Reply {
    pieces: Vec<String>,
    tokens: u32,
    finish: &'static str,
    stop_reason: Value,
}

/// Plain text: a word per token until the budget, end-of-sequence (after 200-299 tokens, unless
/// `ignore_eos`) or a stop sequence, which is held back while it could still match and not sent.
fn text(call: &Call, key: u64) -> Reply {
    let end_of_sequence = if call.exact {
        u32::MAX
    } else {
        200 + (key % 100) as u32
    };
    let mut matcher = StopMatcher::new(&call.stops);
    let mut raw = String::new();
    let mut pieces = Vec::new();
    let mut tokens = 0;
    while tokens < call.max_tokens.min(end_of_sequence) {
        let w = word(key, u64::from(tokens));
        let piece = if tokens == 0 { w.trim_start() } else { w };
        tokens += 1;
        raw.push_str(piece);
        let (emit, stopped) = match matcher.push(piece) {
            StopStep::Emit(t) => (t, false),
            StopStep::Stop(t) => (t, true),
        };
        if !emit.is_empty() {
            pieces.push(emit);
        }
        if stopped {
            let matched = call
                .stops
                .iter()
                .filter_map(|s| raw.find(s.as_str()).map(|at| (at, s)))
                .min_by_key(|(at, _)| *at)
                .map(|(_, s)| s.clone());
            return Reply {
                pieces,
                tokens,
                finish: "stop",
                stop_reason: json!(matched),
            };
        }
    }
    let rest = matcher.finish();
    if !rest.is_empty() {
        pieces.push(rest);
    }
    Reply {
        pieces,
        tokens,
        finish: if tokens == call.max_tokens {
            "length"
        } else {
            "stop"
        },
        stop_reason: Value::Null,
    }
}

/// Guided decoding: a value of the schema, streamed as up to 8 characters per token.
fn guided(schema: &Value, key: u64, max_tokens: u32) -> Reply {
    let json = value_for(schema, schema, key).to_string();
    let chars: Vec<char> = json.chars().collect();
    let mut pieces: Vec<String> = chars.chunks(8).map(|c| c.iter().collect()).collect();
    let finish = if pieces.len() as u32 > max_tokens {
        pieces.truncate(max_tokens as usize);
        "length"
    } else {
        "stop"
    };
    Reply {
        tokens: pieces.len() as u32,
        pieces,
        finish,
        stop_reason: Value::Null,
    }
}

/// A value of `schema` (as guided decoding would produce one): local `$ref`s resolved against
/// `root`, the first `enum` value, arrays of `minItems` items (at least one), strings cut to
/// `maxLength`.
fn value_for(root: &Value, schema: &Value, key: u64) -> Value {
    if let Some(target) = schema.get("$ref").and_then(Value::as_str) {
        let resolved = target
            .strip_prefix('#')
            .and_then(|pointer| root.pointer(pointer))
            .unwrap_or(&Value::Null);
        return value_for(root, resolved, key);
    }
    if let Some(first) = schema
        .get("enum")
        .and_then(Value::as_array)
        .and_then(|v| v.first())
    {
        return first.clone();
    }
    match schema.get("type").and_then(Value::as_str) {
        Some("object") => {
            let mut out = Map::new();
            if let Some(Value::Object(props)) = schema.get("properties") {
                for (i, (name, sub)) in props.iter().enumerate() {
                    out.insert(
                        name.clone(),
                        value_for(root, sub, key.wrapping_add(i as u64)),
                    );
                }
            }
            Value::Object(out)
        }
        Some("array") => {
            let count = schema
                .get("minItems")
                .and_then(Value::as_u64)
                .unwrap_or(1)
                .max(1);
            let items = schema.get("items").unwrap_or(&Value::Null);
            (0..count)
                .map(|i| value_for(root, items, key.wrapping_add(i)))
                .collect()
        }
        Some("integer") | Some("number") => json!(key % 100),
        Some("boolean") => json!(key.is_multiple_of(2)),
        Some("null") => Value::Null,
        _ => {
            let text = word(key, 0).trim_start();
            let max = schema
                .get("maxLength")
                .and_then(Value::as_u64)
                .map_or(usize::MAX, |m| m as usize);
            json!(text.chars().take(max).collect::<String>())
        }
    }
}

/// Checks a `/v1/chat/completions` request the way a strict vLLM would, and for what Rigger
/// must send it.
fn check(r: &RecordedRequest) -> Result<Call, FixtureResponse> {
    if !r
        .header("content-type")
        .is_some_and(|c| c.starts_with("application/json"))
    {
        return Err(invalid("content-type must be application/json"));
    }
    if r.header("accept") != Some("text/event-stream") {
        return Err(invalid("a streaming request must accept text/event-stream"));
    }
    let Ok(Value::Object(body)) = serde_json::from_slice::<Value>(&r.body) else {
        return Err(invalid("the request body is not a JSON object"));
    };
    const KNOWN: &[&str] = &[
        "model",
        "messages",
        "stream",
        "stream_options",
        "max_tokens",
        "temperature",
        "top_p",
        "top_k",
        "seed",
        "stop",
        "response_format",
        "ignore_eos",
        "min_tokens",
    ];
    if let Some(extra) = body.keys().find(|k| !KNOWN.contains(&k.as_str())) {
        return Err(invalid(format!("{extra}: Extra inputs are not permitted")));
    }
    let model = body.get("model").and_then(Value::as_str).unwrap_or("");
    if model != MODEL {
        return Err(api_error(
            404,
            "NotFoundError",
            &format!("The model `{model}` does not exist."),
        ));
    }
    if body.get("stream") != Some(&Value::Bool(true)) {
        return Err(invalid(
            "stream: this fixture only answers streaming requests",
        ));
    }
    if body.get("stream_options") != Some(&json!({"include_usage": true})) {
        return Err(invalid(
            "stream_options: include_usage must be true, or the usage is never reported",
        ));
    }
    let max_tokens = match body.get("max_tokens").and_then(Value::as_u64) {
        Some(n) if n >= 1 => u32::try_from(n).unwrap_or(u32::MAX),
        _ => return Err(invalid("max_tokens: required here, and at least 1")),
    };
    let temperature = match body.get("temperature") {
        None => None,
        Some(t) => match t.as_f64() {
            Some(t) if t >= 0.0 => Some(t),
            _ => return Err(invalid("temperature: must be a number >= 0")),
        },
    };
    if let Some(p) = body.get("top_p")
        && !p.as_f64().is_some_and(|p| p > 0.0 && p <= 1.0)
    {
        return Err(invalid("top_p must be in (0, 1]"));
    }
    if let Some(k) = body.get("top_k")
        && !(k.as_i64() == Some(-1) || k.as_u64().is_some_and(|k| k >= 1))
    {
        return Err(invalid("top_k must be -1 (disable), or at least 1"));
    }
    let seed = match body.get("seed") {
        None => None,
        Some(s) => Some(
            s.as_u64()
                .ok_or_else(|| invalid("seed: must be an integer"))?,
        ),
    };
    let stops: Vec<String> = match body.get("stop") {
        None => Vec::new(),
        Some(Value::Array(items)) => {
            let stops: Vec<String> = items
                .iter()
                .filter_map(|s| s.as_str().map(str::to_owned))
                .collect();
            if stops.len() != items.len() || stops.iter().any(String::is_empty) {
                return Err(invalid("stop: each stop must be a non-empty string"));
            }
            stops
        }
        Some(_) => return Err(invalid("stop: Rigger sends a list")),
    };
    let exact = match (body.get("ignore_eos"), body.get("min_tokens")) {
        (None, None) => false,
        (Some(Value::Bool(true)), Some(min)) if min.as_u64() == Some(u64::from(max_tokens)) => {
            if !stops.is_empty() {
                return Err(invalid(
                    "an exact budget with stop sequences: the stops could end it early",
                ));
            }
            true
        }
        _ => {
            return Err(invalid(
                "ignore_eos and min_tokens: an exact budget sends both, min_tokens = max_tokens",
            ));
        }
    };
    let schema = match body.get("response_format") {
        None => None,
        Some(format) => match (format["type"].as_str(), &format["json_schema"]) {
            (Some("json_schema"), Value::Object(spec))
                if spec
                    .get("name")
                    .and_then(Value::as_str)
                    .is_some_and(|n| !n.is_empty())
                    && spec.get("schema").is_some_and(Value::is_object) =>
            {
                spec.get("schema").cloned()
            }
            (Some("json_object"), _) => Some(json!({"type": "object"})),
            _ => {
                return Err(invalid(
                    "response_format: expected {\"type\": \"json_schema\", \"json_schema\": {\"name\", \"schema\"}}",
                ));
            }
        },
    };
    let Some(Value::Array(messages)) = body.get("messages") else {
        return Err(invalid("messages: Field required"));
    };
    if messages.is_empty() {
        return Err(invalid("messages: at least one message is required"));
    }
    let mut parsed = Vec::new();
    for (i, m) in messages.iter().enumerate() {
        let Some(obj) = m.as_object().filter(|o| o.len() == 2) else {
            return Err(invalid(format!(
                "messages.{i}: a message has exactly a role and a content"
            )));
        };
        let role = obj.get("role").and_then(Value::as_str).unwrap_or("");
        if !["system", "user", "assistant"].contains(&role) {
            return Err(invalid(format!("messages.{i}.role: unknown role {role:?}")));
        }
        let Some(content) = obj.get("content").and_then(Value::as_str) else {
            return Err(invalid(format!("messages.{i}.content: must be a string")));
        };
        parsed.push((role.to_owned(), content.to_owned()));
    }
    Ok(Call {
        messages: parsed,
        max_tokens,
        exact,
        seed,
        temperature,
        stops,
        schema,
    })
}
