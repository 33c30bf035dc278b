//! The worker protocol: one JSON object per line, tagged by `type`. Requests go to the worker's
//! stdin, replies come back on its stdout; every reply but the handshake carries the request's
//! `id`. `worker.py` is the other side; [`PROTOCOL`] changes whenever either side's shape does.

use rigger_ports::ChatMessage;
use serde::{Deserialize, Serialize};

/// The protocol this side speaks; the worker announces its own in the handshake.
pub const PROTOCOL: u64 = 3;

/// Adapter to worker.
#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Request<'a> {
    /// Load `model` (if not loaded) and answer `loaded`.
    Load { id: u64, model: &'a str },
    /// Load if needed (answering `loaded`), then stream `delta`s and end with `done`.
    Generate {
        id: u64,
        model: &'a str,
        messages: Vec<Message<'a>>,
        max_tokens: u32,
        /// Generate exactly `max_tokens`: end-of-sequence is banned and stops are ignored.
        exact: bool,
        temperature: Option<f32>,
        top_p: Option<f32>,
        top_k: Option<u32>,
        seed: Option<u64>,
        stop: &'a [String],
        /// Constrain decoding to this format (llguidance in the worker); absent for text.
        #[serde(skip_serializing_if = "Option::is_none")]
        format: Option<Format<'a>>,
    },
    /// Stop request `id` at its next token (it answers `cancelled`).
    Cancel { id: u64 },
}

/// A structured-output constraint the worker compiles to a grammar.
#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Format<'a> {
    /// Any JSON value.
    Json,
    /// A value of this JSON Schema.
    JsonSchema { schema: &'a serde_json::Value },
}

#[derive(Debug, Serialize)]
pub struct Message<'a> {
    pub role: &'static str,
    pub content: &'a str,
}

impl<'a> Message<'a> {
    pub fn from_port(messages: &'a [ChatMessage]) -> Vec<Self> {
        messages
            .iter()
            .map(|m| Message {
                role: m.role.as_str(),
                content: &m.content,
            })
            .collect()
    }
}

impl Request<'_> {
    /// The request as one line, without the newline.
    pub fn to_line(&self) -> String {
        // Plain data (numbers, strings, options): serialising it cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// Worker to adapter.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Reply {
    /// The handshake, first line of a worker that started.
    Hello {
        protocol: u64,
        mlx: String,
        mlx_lm: String,
        device: String,
        python: String,
        /// The llguidance version when the worker can constrain decoding, else null.
        #[serde(default)]
        llguidance: Option<String>,
    },
    /// The handshake of a worker that cannot import mlx / mlx-lm; it exits after this line.
    /// (It also names its protocol, which does not matter then.)
    Unavailable { error: String },
    /// The model is loaded; `load_seconds` is set when this request loaded it.
    Loaded {
        id: u64,
        context_length: Option<u32>,
        load_seconds: Option<f64>,
    },
    /// Text (possibly several tokens', see `COALESCE_S` in worker.py).
    Delta { id: u64, text: String },
    /// The end of a generation, with mlx-lm's figures.
    Done { id: u64, stats: Box<DoneStats> },
    /// The request failed; `id` is absent when the worker could not read the request at all.
    Error {
        id: Option<u64>,
        kind: WorkerErrorKind,
        message: String,
    },
    /// The request was cancelled before it finished.
    Cancelled { id: u64 },
}

impl Reply {
    /// The request this reply belongs to (none for the handshake).
    pub fn id(&self) -> Option<u64> {
        match self {
            Reply::Hello { .. } | Reply::Unavailable { .. } => None,
            Reply::Loaded { id, .. }
            | Reply::Delta { id, .. }
            | Reply::Done { id, .. }
            | Reply::Cancelled { id } => Some(*id),
            Reply::Error { id, .. } => *id,
        }
    }

    /// Whether nothing more comes for this request after this reply.
    pub fn is_last(&self) -> bool {
        matches!(
            self,
            Reply::Done { .. } | Reply::Error { .. } | Reply::Cancelled { .. }
        )
    }

    /// The short name of the reply, for messages about unexpected ones.
    pub fn name(&self) -> &'static str {
        match self {
            Reply::Hello { .. } => "hello",
            Reply::Unavailable { .. } => "unavailable",
            Reply::Loaded { .. } => "loaded",
            Reply::Delta { .. } => "delta",
            Reply::Done { .. } => "done",
            Reply::Error { .. } => "error",
            Reply::Cancelled { .. } => "cancelled",
        }
    }
}

/// A generation's figures, as mlx-lm reports them.
#[derive(Debug, Clone, Deserialize)]
pub struct DoneStats {
    /// `length`, `stop` (end of sequence) or `stop_sequence`.
    pub finish_reason: String,
    pub prompt_tokens: u32,
    pub prompt_tps: f64,
    /// Tokens this adapter received (the end-of-sequence token included).
    pub generation_tokens: u32,
    /// mlx-lm's own count, which `generation_tps` is computed over.
    pub mlx_generation_tokens: u32,
    pub generation_tps: f64,
    pub peak_memory_gb: f64,
    pub time_to_first_token: Option<f64>,
    /// The grammar mask's cost, for a constrained (structured-output) generation.
    #[serde(default)]
    pub constraint: Option<ConstraintStats>,
}

/// What masking the sampler with the grammar cost, per generated token.
#[derive(Debug, Clone, Deserialize)]
pub struct ConstraintStats {
    pub mask_p50_ms: f64,
    pub mask_p99_ms: f64,
    pub masked_tokens: u32,
}

/// What kind of failure an `error` reply reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WorkerErrorKind {
    ModelNotFound,
    ModelLoadFailed,
    ContextLengthExceeded,
    InvalidRequest,
    /// The worker cannot do what was asked (structured output without llguidance).
    Unsupported,
    Protocol,
    Internal,
    /// A kind this side does not know (a newer worker).
    #[serde(other)]
    Other,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_tagged_lines() {
        let stop = vec!["END".to_owned()];
        let messages = [ChatMessage::user("hi")];
        let line = Request::Generate {
            id: 7,
            model: "m",
            messages: Message::from_port(&messages),
            max_tokens: 4,
            exact: false,
            temperature: Some(0.0),
            top_p: None,
            top_k: None,
            seed: Some(1),
            stop: &stop,
            format: None,
        }
        .to_line();
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["type"], "generate");
        assert_eq!(v["messages"][0]["role"], "user");
        assert_eq!(v["stop"][0], "END");
        assert!(
            v.get("format").is_none(),
            "text requests carry no format: {line}"
        );
        let schema = serde_json::json!({"type": "object"});
        let constrained = Request::Generate {
            id: 8,
            model: "m",
            messages: Message::from_port(&messages),
            max_tokens: 4,
            exact: false,
            temperature: None,
            top_p: None,
            top_k: None,
            seed: None,
            stop: &stop,
            format: Some(Format::JsonSchema { schema: &schema }),
        }
        .to_line();
        let v: serde_json::Value = serde_json::from_str(&constrained).unwrap();
        assert_eq!(v["format"]["type"], "json_schema");
        assert_eq!(v["format"]["schema"], schema);
        assert_eq!(
            Request::Cancel { id: 3 }.to_line(),
            r#"{"type":"cancel","id":3}"#
        );
    }

    #[test]
    fn replies_parse_by_type_and_unknown_error_kinds_are_kept() {
        let done: Reply = serde_json::from_str(
            r#"{"type":"done","id":1,"stats":{"finish_reason":"length","prompt_tokens":3,"prompt_tps":10.0,"generation_tokens":2,"mlx_generation_tokens":2,"generation_tps":5.0,"peak_memory_gb":0.1,"time_to_first_token":0.2}}"#,
        )
        .unwrap();
        assert!(done.is_last() && done.id() == Some(1));
        let err: Reply = serde_json::from_str(
            r#"{"type":"error","id":null,"kind":"something_new","message":"x"}"#,
        )
        .unwrap();
        assert!(matches!(
            err,
            Reply::Error {
                id: None,
                kind: WorkerErrorKind::Other,
                ..
            }
        ));
        let hello: Reply = serde_json::from_str(
            r#"{"type":"hello","protocol":3,"mlx":"0.1","mlx_lm":"0.2","device":"cpu","python":"3.12"}"#,
        )
        .unwrap();
        assert_eq!(hello.id(), None);
        assert!(serde_json::from_str::<Reply>(r#"{"type":"delta","id":1}"#).is_err());
    }
}
