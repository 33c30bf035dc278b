//! Chat templates: the model's own Jinja template (from `tokenizer_config.json` or the GGUF's
//! `tokenizer.chat_template`) rendered with minijinja, or a plain fallback for models without one.
//!
//! Public so that other tools render prompts exactly as the adapter does (the bench builds its
//! prompts of an exact token count with it): one renderer in the workspace.

use minijinja::{Environment, ErrorKind as JinjaErrorKind, context};
use rigger_ports::{ChatMessage, ErrorKind, InferenceError};

use crate::BACKEND;

/// A compiled chat template, or the plain fallback.
pub struct ChatTemplate {
    env: Option<Environment<'static>>,
    bos: String,
    eos: String,
}

/// A rendered prompt, and whether the tokenizer should still add its special tokens (the model's
/// own template writes BOS itself; the fallback does not).
pub struct Rendered {
    pub text: String,
    pub add_special_tokens: bool,
}

impl ChatTemplate {
    /// Compiles `source` (the plain fallback when `None`); `bos` and `eos` are the texts the
    /// template sees as `bos_token` and `eos_token`.
    pub fn new(source: Option<String>, bos: String, eos: String) -> Result<Self, InferenceError> {
        let env = match source {
            None => {
                tracing::info!(target: "rigger::candle", "the model has no chat template; using the plain fallback");
                None
            }
            Some(source) => {
                let mut env = Environment::new();
                env.add_function(
                    "raise_exception",
                    |msg: String| -> Result<String, minijinja::Error> {
                        Err(minijinja::Error::new(JinjaErrorKind::InvalidOperation, msg))
                    },
                );
                env.add_template_owned("chat", source).map_err(|e| {
                    InferenceError::new(
                        ErrorKind::ModelLoadFailed,
                        BACKEND,
                        format!("the model's chat template does not compile: {e}"),
                    )
                })?;
                Some(env)
            }
        };
        Ok(Self { env, bos, eos })
    }

    /// Whether this is the plain fallback (the model has no template of its own).
    pub fn is_fallback(&self) -> bool {
        self.env.is_none()
    }

    /// The prompt for `messages`, with the generation prompt appended.
    pub fn render(&self, messages: &[ChatMessage]) -> Result<Rendered, InferenceError> {
        let Some(env) = &self.env else {
            let mut text = String::new();
            for m in messages {
                let who = match m.role {
                    rigger_ports::ChatRole::System => "System",
                    rigger_ports::ChatRole::User => "User",
                    rigger_ports::ChatRole::Assistant => "Assistant",
                };
                text.push_str(&format!("{who}: {}\n", m.content));
            }
            text.push_str("Assistant:");
            return Ok(Rendered {
                text,
                add_special_tokens: true,
            });
        };
        let messages: Vec<_> = messages
            .iter()
            .map(|m| context! { role => m.role.as_str(), content => m.content.as_str() })
            .collect();
        let template = env.get_template("chat").map_err(|e| {
            InferenceError::internal(BACKEND, format!("chat template missing: {e}"))
        })?;
        let text = template
            .render(context! {
                messages => messages,
                add_generation_prompt => true,
                bos_token => self.bos.as_str(),
                eos_token => self.eos.as_str(),
            })
            .map_err(|e| {
                InferenceError::invalid_request(
                    BACKEND,
                    format!("the model's chat template rejected the messages: {e}"),
                )
            })?;
        Ok(Rendered {
            text,
            add_special_tokens: false,
        })
    }
}

/// The chat template in a `tokenizer_config.json` value: a string, or a list of named templates.
pub fn from_tokenizer_config(config: &serde_json::Value) -> Option<String> {
    match &config["chat_template"] {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Array(list) => list
            .iter()
            .find(|t| t["name"] == "default")
            .or_else(|| list.first())
            .and_then(|t| t["template"].as_str().map(String::from)),
        _ => None,
    }
}

/// A special token's text in `tokenizer_config.json` (a string or `{"content": ...}`).
pub fn special_token(config: &serde_json::Value, key: &str) -> Option<String> {
    match &config[key] {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Object(o) => o.get("content").and_then(|c| c.as_str()).map(String::from),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_the_models_template_with_bos_and_generation_prompt() {
        let t = ChatTemplate::new(
            Some("{{ bos_token }}{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}{% endfor %}{% if add_generation_prompt %}<|assistant|>{% endif %}".into()),
            "<s>".into(),
            "</s>".into(),
        )
        .unwrap();
        let r = t
            .render(&[ChatMessage::system("be brief"), ChatMessage::user("hi")])
            .unwrap();
        assert_eq!(r.text, "<s><|system|>be brief<|user|>hi<|assistant|>");
        assert!(!r.add_special_tokens);
    }

    #[test]
    fn template_errors_are_typed() {
        let bad = ChatTemplate::new(Some("{% for %}".into()), "<s>".into(), "</s>".into());
        assert_eq!(
            bad.err().map(|e| e.kind()),
            Some(ErrorKind::ModelLoadFailed)
        );
        let raising = ChatTemplate::new(
            Some("{{ raise_exception('roles must alternate') }}".into()),
            "".into(),
            "".into(),
        )
        .unwrap();
        let err = raising.render(&[ChatMessage::user("x")]).err().unwrap();
        assert_eq!(err.kind(), ErrorKind::InvalidRequest);
        assert!(err.message().contains("roles must alternate"));
    }

    #[test]
    fn fallback_is_plain_and_reads_tokenizer_config_shapes() {
        let t = ChatTemplate::new(None, "<s>".into(), "</s>".into()).unwrap();
        assert!(t.is_fallback());
        let r = t.render(&[ChatMessage::user("hi")]).unwrap();
        assert_eq!(r.text, "User: hi\nAssistant:");
        assert!(r.add_special_tokens);
        let cfg = serde_json::json!({"chat_template": [{"name": "tool_use", "template": "x"}, {"name": "default", "template": "y"}],
            "bos_token": {"content": "<s>"}, "eos_token": "</s>"});
        assert_eq!(from_tokenizer_config(&cfg).as_deref(), Some("y"));
        assert_eq!(special_token(&cfg, "bos_token").as_deref(), Some("<s>"));
        assert_eq!(special_token(&cfg, "eos_token").as_deref(), Some("</s>"));
    }
}
