//! The benchmark prompt: one user message whose chat-templated form tokenizes to exactly the
//! requested number of tokens with the model's own tokenizer, so every backend processes the same
//! token ids.

use std::path::Path;

use anyhow::{Context, bail};
use minijinja::{Environment, context};
use tokenizers::Tokenizer;

/// Filler text: plain words, so every tokenizer handles it without special cases.
const FILLER: &str = "The keeper of the lighthouse wrote in his log every night: the wind, the \
    height of the waves, the ships that passed and the colour of the sky at dusk. ";

/// The model's chat template (the `chat_template` of `tokenizer_config.json`), rendered the way
/// Hugging Face tokenizers (and so mlx-lm and the Candle adapter) render it.
pub struct Template {
    env: Environment<'static>,
    bos: String,
    eos: String,
}

impl Template {
    pub fn new(source: &str, bos: &str, eos: &str) -> anyhow::Result<Self> {
        let mut env = Environment::new();
        env.add_function(
            "raise_exception",
            |msg: String| -> Result<String, minijinja::Error> {
                Err(minijinja::Error::new(
                    minijinja::ErrorKind::InvalidOperation,
                    msg,
                ))
            },
        );
        env.add_template_owned("chat", source.to_owned())
            .context("the model's chat template does not compile")?;
        Ok(Self {
            env,
            bos: bos.to_owned(),
            eos: eos.to_owned(),
        })
    }

    /// Reads `chat_template`, `bos_token` and `eos_token` from a `tokenizer_config.json`.
    pub fn from_tokenizer_config(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let config: serde_json::Value = serde_json::from_str(&text)
            .with_context(|| format!("{} is not JSON", path.display()))?;
        let token = |key: &str| match &config[key] {
            serde_json::Value::String(s) => s.clone(),
            // Some configs write special tokens as objects: {"content": "<s>", ...}.
            other => other["content"].as_str().unwrap_or_default().to_owned(),
        };
        let source = match &config["chat_template"] {
            serde_json::Value::String(s) => s.clone(),
            serde_json::Value::Array(list) => list
                .iter()
                .find(|t| t["name"] == "default")
                .or_else(|| list.first())
                .and_then(|t| t["template"].as_str())
                .map(str::to_owned)
                .unwrap_or_default(),
            _ => String::new(),
        };
        if source.is_empty() {
            bail!(
                "{} has no chat_template: every backend would fall back to a different plain \
                 prompt, so the prompts would not be the same tokens; use a model with a chat template",
                path.display()
            );
        }
        Self::new(&source, &token("bos_token"), &token("eos_token"))
    }

    /// The prompt text for one user message, with the generation prompt appended.
    pub fn render(&self, user: &str) -> anyhow::Result<String> {
        let template = self.env.get_template("chat")?;
        Ok(template.render(context! {
            messages => vec![context! { role => "user", content => user }],
            add_generation_prompt => true,
            bos_token => self.bos.as_str(),
            eos_token => self.eos.as_str(),
        })?)
    }
}

/// A user message and the token count of its rendered prompt.
#[derive(Debug, Clone, PartialEq)]
pub struct BenchPrompt {
    pub user: String,
    pub tokens: usize,
    /// The tokens the chat template adds around the message.
    pub template_tokens: usize,
}

/// Counts the tokens of a rendered prompt. The template writes BOS itself, so special tokens
/// are not added again (what the Candle adapter and `apply_chat_template` do).
pub fn count(tokenizer: &Tokenizer, template: &Template, user: &str) -> anyhow::Result<usize> {
    let text = template.render(user)?;
    let encoding = tokenizer
        .encode(text, false)
        .map_err(|e| anyhow::anyhow!("the tokenizer failed: {e}"))?;
    Ok(encoding.len())
}

/// A user message of filler text whose rendered prompt is exactly `target` tokens. The filler
/// grows a character at a time near the target: a token count can stay flat or jump when a merge
/// changes, so each length is checked, not predicted.
pub fn exact_prompt(
    tokenizer: &Tokenizer,
    template: &Template,
    target: usize,
) -> anyhow::Result<BenchPrompt> {
    let template_tokens = count(tokenizer, template, "")?;
    if target <= template_tokens {
        bail!(
            "--prompt-tokens {target} is too small: the chat template alone takes \
             {template_tokens} tokens; ask for at least {}",
            template_tokens + 1
        );
    }
    let filler = |chars: usize| -> String { FILLER.chars().cycle().take(chars).collect() };
    let tokens_at = |chars: usize| count(tokenizer, template, &filler(chars));
    // Largest length whose count is still below the target (counts grow with length overall).
    let (mut low, mut high) = (0usize, 1usize);
    while tokens_at(high)? < target {
        low = high;
        high *= 2;
        if high > 1 << 24 {
            bail!("could not reach {target} prompt tokens with filler text");
        }
    }
    while high - low > 1 {
        let mid = low + (high - low) / 2;
        if tokens_at(mid)? < target {
            low = mid;
        } else {
            high = mid;
        }
    }
    for chars in high..high + 64 {
        let user = filler(chars);
        let tokens = count(tokenizer, template, &user)?;
        if tokens == target {
            return Ok(BenchPrompt {
                user,
                tokens,
                template_tokens,
            });
        }
        if tokens > target + 2 {
            break;
        }
    }
    bail!(
        "no filler length tokenizes to exactly {target} prompt tokens; try a nearby --prompt-tokens"
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // a panic is how a test reports failure

    use super::*;

    fn tiny() -> (Tokenizer, Template) {
        let dir = rigger_model_gen::tiny_model().unwrap();
        let tokenizer = Tokenizer::from_file(dir.join("tokenizer.json")).unwrap();
        let template = Template::from_tokenizer_config(&dir.join("tokenizer_config.json")).unwrap();
        (tokenizer, template)
    }

    #[test]
    fn the_prompt_tokenizes_to_exactly_the_requested_count() {
        let (tokenizer, template) = tiny();
        for target in [32, 33, 128, 257] {
            let p = exact_prompt(&tokenizer, &template, target).unwrap();
            assert_eq!(p.tokens, target);
            // Counted independently: render, then encode without added special tokens.
            let text = template.render(&p.user).unwrap();
            assert!(text.starts_with("<s>"), "{text}");
            assert_eq!(tokenizer.encode(text, false).unwrap().len(), target);
        }
    }

    #[test]
    fn a_target_below_the_template_overhead_says_what_to_ask_for() {
        let (tokenizer, template) = tiny();
        let err = exact_prompt(&tokenizer, &template, 1)
            .unwrap_err()
            .to_string();
        assert!(err.contains("ask for at least"), "{err}");
    }

    #[test]
    fn a_config_without_a_chat_template_is_refused() {
        let dir = std::env::temp_dir().join(format!("rigger-bench-prompt-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("tokenizer_config.json");
        std::fs::write(&path, r#"{"bos_token": "<s>"}"#).unwrap();
        let err = Template::from_tokenizer_config(&path)
            .err()
            .unwrap()
            .to_string();
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(err.contains("no chat_template"), "{err}");
    }
}
