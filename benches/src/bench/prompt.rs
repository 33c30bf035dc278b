//! The benchmark prompt: one user message whose chat-templated form tokenizes to exactly the
//! requested number of tokens with the model's own tokenizer, so every backend processes the same
//! token ids.

use std::path::Path;

use anyhow::{Context, bail};
use rigger_candle_adapter::template::{self, ChatTemplate};
use rigger_ports::ChatMessage;
use tokenizers::Tokenizer;

/// Filler text: plain words, so every tokenizer handles it without special cases.
const FILLER: &str = "The keeper of the lighthouse wrote in his log every night: the wind, the \
    height of the waves, the ships that passed and the colour of the sky at dusk. ";

/// The model's chat template (`chat_template`, `bos_token` and `eos_token` of a
/// `tokenizer_config.json`), compiled by the Candle adapter's renderer: the one that renders the
/// adapter's own prompts, the way Hugging Face tokenizers (and so mlx-lm) render them.
pub fn template_from_tokenizer_config(path: &Path) -> anyhow::Result<ChatTemplate> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let config: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("{} is not JSON", path.display()))?;
    let Some(source) = template::from_tokenizer_config(&config).filter(|s| !s.is_empty()) else {
        bail!(
            "{} has no chat_template: every backend would fall back to a different plain \
             prompt, so the prompts would not be the same tokens; use a model with a chat template",
            path.display()
        );
    };
    let token = |key: &str| template::special_token(&config, key).unwrap_or_default();
    Ok(ChatTemplate::new(
        Some(source),
        token("bos_token"),
        token("eos_token"),
    )?)
}

/// The prompt text for one user message, with the generation prompt appended.
pub fn render(template: &ChatTemplate, user: &str) -> anyhow::Result<String> {
    Ok(template.render(&[ChatMessage::user(user)])?.text)
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
pub fn count(tokenizer: &Tokenizer, template: &ChatTemplate, user: &str) -> anyhow::Result<usize> {
    let text = render(template, user)?;
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
    template: &ChatTemplate,
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

    fn tiny() -> (Tokenizer, ChatTemplate) {
        let dir = rigger_model_gen::tiny_model().unwrap();
        let tokenizer = Tokenizer::from_file(dir.join("tokenizer.json")).unwrap();
        let template = template_from_tokenizer_config(&dir.join("tokenizer_config.json")).unwrap();
        (tokenizer, template)
    }

    #[test]
    fn the_prompt_tokenizes_to_exactly_the_requested_count() {
        let (tokenizer, template) = tiny();
        for target in [32, 33, 128, 257] {
            let p = exact_prompt(&tokenizer, &template, target).unwrap();
            assert_eq!(p.tokens, target);
            // Counted independently: render, then encode without added special tokens.
            let text = render(&template, &p.user).unwrap();
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
        let err = template_from_tokenizer_config(&path)
            .err()
            .unwrap()
            .to_string();
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(err.contains("no chat_template"), "{err}");
    }
}
