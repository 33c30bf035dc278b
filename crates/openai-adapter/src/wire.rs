//! The JSON bodies of `/v1/chat/completions` and `/v1/models`. Private to this crate.

use serde::{Deserialize, Serialize};
use serde_json::Value;

#[derive(Debug, Serialize)]
pub(crate) struct ChatRequest<'a> {
    pub(crate) model: &'a str,
    pub(crate) messages: Vec<Message<'a>>,
    pub(crate) stream: bool,
    pub(crate) stream_options: StreamOptions,
    /// OpenAI proper deprecated `max_tokens` (its reasoning models refuse it); every other
    /// server knows `max_tokens`, and not all know the new name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) max_tokens: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) max_completion_tokens: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) temperature: Option<f32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) top_p: Option<f32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) top_k: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) seed: Option<u64>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub(crate) stop: Vec<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) response_format: Option<Value>,
    /// vLLM and llama-server: generate through end-of-sequence (exact budgets).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) ignore_eos: Option<bool>,
    /// vLLM: together with `ignore_eos`, no early end at all.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) min_tokens: Option<u32>,
}

#[derive(Debug, Serialize)]
pub(crate) struct Message<'a> {
    pub(crate) role: &'static str,
    pub(crate) content: &'a str,
}

#[derive(Debug, Serialize)]
pub(crate) struct StreamOptions {
    pub(crate) include_usage: bool,
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
