//! Ollama's JSON bodies, as its API reference (`docs/api.md`) names the fields. Private: nothing
//! here crosses the port.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

#[derive(Debug, Serialize)]
pub(crate) struct ChatRequest<'a> {
    pub model: &'a str,
    pub messages: Vec<Message<'a>>,
    pub stream: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub format: Option<serde_json::Value>,
    pub options: Options<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keep_alive: Option<serde_json::Value>,
}

#[derive(Debug, Serialize)]
pub(crate) struct GenerateRequest<'a> {
    pub model: &'a str,
    pub prompt: &'a str,
    /// No template: the prompt goes to the model as it is.
    pub raw: bool,
    pub stream: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub format: Option<serde_json::Value>,
    pub options: Options<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keep_alive: Option<serde_json::Value>,
}

#[derive(Debug, Serialize)]
pub(crate) struct Message<'a> {
    pub role: &'a str,
    pub content: &'a str,
}

/// The Modelfile parameters Rigger sets (api.md, "Generate request (With options)").
#[derive(Debug, Serialize)]
pub(crate) struct Options<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub top_k: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f32>,
    pub num_predict: u32,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    pub stop: &'a [String],
    pub num_ctx: u32,
}

/// One NDJSON line of `/api/chat` or `/api/generate`: text (`message.content` or `response`),
/// or the final record (`done: true` with the figures), or `{"error": …}`.
#[derive(Debug, Deserialize)]
pub(crate) struct StreamLine {
    #[serde(default)]
    pub message: Option<ResponseMessage>,
    #[serde(default)]
    pub response: Option<String>,
    #[serde(default)]
    pub done: bool,
    #[serde(default)]
    pub done_reason: Option<String>,
    /// Durations are nanoseconds (api.md, "Conventions: Durations").
    #[serde(default)]
    pub load_duration: Option<u64>,
    #[serde(default)]
    pub prompt_eval_count: Option<u32>,
    #[serde(default)]
    pub prompt_eval_duration: Option<u64>,
    #[serde(default)]
    pub eval_count: Option<u32>,
    #[serde(default)]
    pub eval_duration: Option<u64>,
    #[serde(default)]
    pub error: Option<String>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct ResponseMessage {
    #[serde(default)]
    pub content: String,
}

#[derive(Debug, Deserialize)]
pub(crate) struct ErrorBody {
    pub error: String,
}

#[derive(Debug, Deserialize)]
pub(crate) struct VersionResponse {
    pub version: String,
}

#[derive(Debug, Deserialize)]
pub(crate) struct TagsResponse {
    #[serde(default)]
    pub models: Vec<TagModel>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct TagModel {
    pub name: String,
    #[serde(default)]
    pub modified_at: Option<String>,
    #[serde(default)]
    pub size: u64,
    #[serde(default)]
    pub digest: String,
    #[serde(default)]
    pub details: Option<Details>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct PsResponse {
    #[serde(default)]
    pub models: Vec<PsModel>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct PsModel {
    pub name: String,
    #[serde(default)]
    pub size: u64,
    #[serde(default)]
    pub size_vram: u64,
    #[serde(default)]
    pub digest: String,
    #[serde(default)]
    pub expires_at: Option<String>,
    #[serde(default)]
    pub details: Option<Details>,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct Details {
    #[serde(default)]
    pub format: String,
    #[serde(default)]
    pub family: String,
    #[serde(default)]
    pub families: Option<Vec<String>>,
    #[serde(default)]
    pub parameter_size: String,
    #[serde(default)]
    pub quantization_level: String,
}

#[derive(Debug, Serialize)]
pub(crate) struct ModelRef<'a> {
    pub model: &'a str,
}

#[derive(Debug, Serialize)]
pub(crate) struct PullRequest<'a> {
    pub model: &'a str,
    pub stream: bool,
}

#[derive(Debug, Serialize)]
pub(crate) struct CreateRequest<'a> {
    pub model: &'a str,
    /// File name → `sha256:<hex>` of a blob already on the server.
    pub files: BTreeMap<&'a str, String>,
    pub stream: bool,
}

#[derive(Debug, Deserialize)]
pub(crate) struct ShowResponse {
    #[serde(default)]
    pub template: String,
    #[serde(default)]
    pub system: String,
    #[serde(default)]
    pub parameters: String,
    #[serde(default)]
    pub details: Option<Details>,
    #[serde(default)]
    pub model_info: BTreeMap<String, serde_json::Value>,
}

/// One line of a `/api/pull` or `/api/create` stream.
#[derive(Debug, Deserialize)]
pub(crate) struct ProgressLine {
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default)]
    pub digest: Option<String>,
    #[serde(default)]
    pub total: Option<u64>,
    #[serde(default)]
    pub completed: Option<u64>,
    #[serde(default)]
    pub error: Option<String>,
}
