//! What a caller asks a model for.

use serde::{Deserialize, Serialize};

use crate::{ErrorKind, InferenceError, ModelDescriptor};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChatRole {
    System,
    User,
    Assistant,
}

impl ChatRole {
    pub fn as_str(self) -> &'static str {
        match self {
            ChatRole::System => "system",
            ChatRole::User => "user",
            ChatRole::Assistant => "assistant",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMessage {
    pub role: ChatRole,
    pub content: String,
}

impl ChatMessage {
    pub fn system(content: impl Into<String>) -> Self {
        Self {
            role: ChatRole::System,
            content: content.into(),
        }
    }

    pub fn user(content: impl Into<String>) -> Self {
        Self {
            role: ChatRole::User,
            content: content.into(),
        }
    }

    pub fn assistant(content: impl Into<String>) -> Self {
        Self {
            role: ChatRole::Assistant,
            content: content.into(),
        }
    }
}

/// How many tokens to generate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum TokenBudget {
    /// Stop at end-of-sequence, a stop sequence, or after this many tokens.
    UpTo(u32),
    /// Generate exactly this many tokens, ignoring end-of-sequence and stop sequences. For
    /// benchmarks: every backend then does the same amount of work.
    Exactly(u32),
}

impl TokenBudget {
    pub fn limit(self) -> u32 {
        match self {
            TokenBudget::UpTo(n) | TokenBudget::Exactly(n) => n,
        }
    }

    pub fn is_exact(self) -> bool {
        matches!(self, TokenBudget::Exactly(_))
    }
}

/// The shape the output must have.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub enum ResponseFormat {
    #[default]
    Text,
    /// Any JSON value.
    Json,
    /// JSON valid against this JSON Schema.
    JsonSchema {
        name: String,
        schema: serde_json::Value,
    },
}

/// One generation request, the same for every backend.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GenerationRequest {
    pub messages: Vec<ChatMessage>,
    pub budget: TokenBudget,
    /// `None` leaves the backend's default; `Some(0.0)` is greedy decoding.
    pub temperature: Option<f32>,
    pub top_p: Option<f32>,
    pub top_k: Option<u32>,
    pub seed: Option<u64>,
    pub stop: Vec<String>,
    pub response_format: ResponseFormat,
}

impl GenerationRequest {
    pub const DEFAULT_MAX_TOKENS: u32 = 512;

    pub fn new(messages: Vec<ChatMessage>) -> Self {
        Self {
            messages,
            budget: TokenBudget::UpTo(Self::DEFAULT_MAX_TOKENS),
            temperature: None,
            top_p: None,
            top_k: None,
            seed: None,
            stop: Vec::new(),
            response_format: ResponseFormat::Text,
        }
    }

    /// A single user message.
    pub fn prompt(text: impl Into<String>) -> Self {
        Self::new(vec![ChatMessage::user(text)])
    }

    pub fn with_max_tokens(mut self, n: u32) -> Self {
        self.budget = TokenBudget::UpTo(n);
        self
    }

    pub fn with_exact_tokens(mut self, n: u32) -> Self {
        self.budget = TokenBudget::Exactly(n);
        self
    }

    pub fn with_temperature(mut self, t: f32) -> Self {
        self.temperature = Some(t);
        self
    }

    pub fn with_top_p(mut self, p: f32) -> Self {
        self.top_p = Some(p);
        self
    }

    pub fn with_top_k(mut self, k: u32) -> Self {
        self.top_k = Some(k);
        self
    }

    pub fn with_seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }

    pub fn with_stop(mut self, stop: impl Into<String>) -> Self {
        self.stop.push(stop.into());
        self
    }

    pub fn with_response_format(mut self, format: ResponseFormat) -> Self {
        self.response_format = format;
        self
    }

    /// Checks the request against the rules every backend shares and against what this model
    /// declares it can do. Adapters call this first, so a bad request fails the same way
    /// everywhere and a feature a backend lacks is refused, not silently ignored.
    pub fn validate(&self, model: &ModelDescriptor) -> Result<(), InferenceError> {
        let backend = model.backend.as_str();
        let invalid = |msg: String| Err(InferenceError::invalid_request(backend, msg));
        if self.messages.is_empty() {
            return invalid(
                "the request has no messages; add at least one user message".to_owned(),
            );
        }
        if self.budget.limit() == 0 {
            return invalid("the token budget is 0; ask for at least 1 token".to_owned());
        }
        if let Some(t) = self.temperature
            && !(t.is_finite() && t >= 0.0)
        {
            return invalid(format!("temperature must be a finite number >= 0, got {t}"));
        }
        if let Some(p) = self.top_p
            && !(p > 0.0 && p <= 1.0)
        {
            return invalid(format!("top_p must be in (0, 1], got {p}"));
        }
        if self.top_k == Some(0) {
            return invalid("top_k must be at least 1".to_owned());
        }
        if self.stop.iter().any(String::is_empty) {
            return invalid("stop sequences must not be empty strings".to_owned());
        }
        if let ResponseFormat::JsonSchema { schema, .. } = &self.response_format {
            crate::structured::compile(schema).map_err(|e| {
                InferenceError::invalid_request(backend, format!("the JSON schema is invalid: {e}"))
            })?;
        }

        let caps = &model.capabilities;
        let unsupported = |what: &str| {
            Err(InferenceError::new(
                ErrorKind::Unsupported,
                backend,
                format!("{backend} does not support {what}; remove it from the request"),
            ))
        };
        if self.budget.is_exact() && !caps.exact_token_budget {
            return unsupported("an exact token budget");
        }
        if self.top_k.is_some() && !caps.top_k {
            return unsupported("top_k");
        }
        if self.top_p.is_some() && !caps.top_p {
            return unsupported("top_p");
        }
        if self.seed.is_some() && !caps.seed {
            return unsupported("a sampling seed");
        }
        if !self.stop.is_empty() && !caps.stop_sequences {
            return unsupported("stop sequences");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Capabilities;

    fn model(caps: Capabilities) -> ModelDescriptor {
        ModelDescriptor {
            backend: "test".into(),
            model_id: "m".into(),
            context_length: Some(64),
            capabilities: caps,
        }
    }

    #[test]
    fn common_rules_reject_bad_values_as_invalid_request() {
        let m = model(Capabilities::all());
        let ok = GenerationRequest::prompt("hi");
        assert!(ok.validate(&m).is_ok());
        for bad in [
            GenerationRequest::new(vec![]),
            ok.clone().with_max_tokens(0),
            ok.clone().with_temperature(f32::NAN),
            ok.clone().with_temperature(-1.0),
            ok.clone().with_top_p(0.0),
            ok.clone().with_top_k(0),
            ok.clone().with_stop(""),
            ok.clone().with_response_format(ResponseFormat::JsonSchema {
                name: "x".into(),
                schema: serde_json::json!({"type": 12}),
            }),
        ] {
            let err = bad.validate(&m).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::InvalidRequest, "{bad:?}");
        }
    }

    #[test]
    fn undeclared_features_are_refused_not_ignored() {
        let m = model(Capabilities::default());
        let base = GenerationRequest::prompt("hi");
        assert!(base.validate(&m).is_ok());
        for asks in [
            base.clone().with_exact_tokens(4),
            base.clone().with_top_k(5),
            base.clone().with_top_p(0.5),
            base.clone().with_seed(1),
            base.clone().with_stop("x"),
        ] {
            let err = asks.validate(&m).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::Unsupported, "{asks:?}");
            assert!(err.message().contains("does not support"));
        }
    }
}
