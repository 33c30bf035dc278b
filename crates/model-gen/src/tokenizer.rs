//! A byte-level BPE tokenizer built locally, sized for the shape: the three Llama special tokens,
//! the 256 byte tokens, then merges that build letter n-grams (with and without a leading space),
//! in a fixed order, until the vocabulary is full.

use std::path::Path;

use tokenizers::models::bpe::BPE;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::processors::template::TemplateProcessing;
use tokenizers::{AddedToken, Tokenizer};

use crate::GenError;

pub const UNK: &str = "<unk>";
pub const BOS: &str = "<s>";
pub const EOS: &str = "</s>";
pub const BOS_ID: u32 = 1;
pub const EOS_ID: u32 = 2;

/// A Zephyr-style chat template (the one TinyLlama-Chat uses), valid Jinja for both
/// minijinja and Python's jinja2. It emits BOS itself, as Llama templates do, because chat
/// front-ends (HF `apply_chat_template`, mlx-lm) encode the rendered text without adding special
/// tokens; engines must do the same so that every backend sees the same token ids.
pub const CHAT_TEMPLATE: &str = "{{ bos_token }}{% for message in messages %}<|{{ message['role'] }}|>\n{{ message['content'] }}</s>\n{% endfor %}{% if add_generation_prompt %}<|assistant|>\n{% endif %}";

/// llama.cpp's token types.
const TYPE_NORMAL: i32 = 1;
const TYPE_CONTROL: i32 = 3;

/// Letters by English frequency: earlier merges make more common n-grams.
const LETTERS: &str = "etaoinshrdlucmfwypvbgkjqxz";

pub struct Vocabulary {
    pub tokens: Vec<String>,
    pub token_types: Vec<i32>,
    pub merges: Vec<(String, String)>,
    /// Tokens the model must never produce: specials (so generation runs to its budget) and
    /// bytes that are not printable ASCII (so the text is printable).
    pub suppressed: Vec<bool>,
}

/// GPT-2's reversible map from bytes to printable characters.
fn byte_chars() -> Vec<char> {
    let printable =
        |b: u32| (33..=126).contains(&b) || (161..=172).contains(&b) || (174..=255).contains(&b);
    let mut extra = 0;
    (0u32..256)
        .map(|b| {
            if printable(b) {
                char::from_u32(b).unwrap_or('?')
            } else {
                extra += 1;
                char::from_u32(255 + extra).unwrap_or('?')
            }
        })
        .collect()
}

pub fn vocabulary(vocab_size: usize) -> Vocabulary {
    let mut tokens: Vec<String> = vec![UNK.into(), BOS.into(), EOS.into()];
    let mut token_types = vec![TYPE_CONTROL; 3];
    let mut suppressed = vec![true; 3];
    for (byte, c) in byte_chars().into_iter().enumerate() {
        tokens.push(c.to_string());
        token_types.push(TYPE_NORMAL);
        suppressed.push(!(0x20..=0x7e).contains(&byte));
    }
    let space = byte_chars()[usize::from(b' ')].to_string();
    let letters: Vec<String> = LETTERS.chars().map(String::from).collect();
    let mut merges = Vec::new();
    let wanted = vocab_size.saturating_sub(tokens.len());
    // Level by level: " x", "xy", " xy", then each n-gram (with and without the space) grows a
    // letter. Every merge joins two tokens that already exist.
    let mut plain: Vec<String> = letters.clone();
    let mut spaced: Vec<String> = Vec::new();
    for l in &letters {
        merges.push((space.clone(), l.clone()));
        spaced.push(format!("{space}{l}"));
    }
    while merges.len() < wanted {
        let mut next_plain = Vec::new();
        let mut next_spaced = Vec::new();
        for stem in &plain {
            for l in &letters {
                merges.push((stem.clone(), l.clone()));
                next_plain.push(format!("{stem}{l}"));
            }
        }
        for stem in &spaced {
            for l in &letters {
                merges.push((stem.clone(), l.clone()));
                next_spaced.push(format!("{stem}{l}"));
            }
        }
        plain = next_plain;
        spaced = next_spaced;
    }
    merges.truncate(wanted);
    for (a, b) in &merges {
        tokens.push(format!("{a}{b}"));
        token_types.push(TYPE_NORMAL);
        suppressed.push(false);
    }
    Vocabulary {
        tokens,
        token_types,
        merges,
        suppressed,
    }
}

/// Builds the `tokenizers` tokenizer for a vocabulary.
pub fn build(vocab: &Vocabulary) -> Result<Tokenizer, GenError> {
    let err = |e: tokenizers::Error| GenError::Tokenizer(e.to_string());
    let ids: tokenizers::models::bpe::Vocab = vocab
        .tokens
        .iter()
        .enumerate()
        .map(|(i, t)| (t.clone(), i as u32))
        .collect();
    let bpe = BPE::builder()
        .vocab_and_merges(ids, vocab.merges.clone())
        .unk_token(UNK.into())
        .build()
        .map_err(err)?;
    let mut tokenizer = Tokenizer::new(bpe);
    tokenizer.with_pre_tokenizer(Some(ByteLevel::new(false, true, true)));
    tokenizer.with_decoder(Some(ByteLevel::new(false, true, true)));
    let template = TemplateProcessing::builder()
        .try_single(format!("{BOS} $A"))
        .and_then(|b| b.try_pair(format!("{BOS} $A {BOS} $B")))
        .map_err(|e| GenError::Tokenizer(e.to_string()))?
        .special_tokens(vec![(BOS, BOS_ID)])
        .build()
        .map_err(|e| GenError::Tokenizer(e.to_string()))?;
    tokenizer.with_post_processor(Some(template));
    tokenizer.add_special_tokens(&[
        AddedToken::from(UNK, true),
        AddedToken::from(BOS, true),
        AddedToken::from(EOS, true),
    ]);
    Ok(tokenizer)
}

pub fn save(tokenizer: &Tokenizer, path: &Path) -> Result<(), GenError> {
    tokenizer
        .save(path, true)
        .map_err(|e| GenError::Tokenizer(format!("saving {}: {e}", path.display())))
}

pub fn tokenizer_config(max_len: usize) -> serde_json::Value {
    serde_json::json!({
        "add_bos_token": true,
        "add_eos_token": false,
        "bos_token": BOS,
        "eos_token": EOS,
        "unk_token": UNK,
        "chat_template": CHAT_TEMPLATE,
        "clean_up_tokenization_spaces": false,
        "model_max_length": max_len,
        "tokenizer_class": "PreTrainedTokenizerFast"
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vocabulary_has_the_requested_size_and_valid_merges() {
        for size in [512, 32_000] {
            let v = vocabulary(size);
            assert_eq!(v.tokens.len(), size);
            assert_eq!(v.token_types.len(), size);
            assert_eq!(v.suppressed.len(), size);
            let known: std::collections::HashSet<&str> =
                v.tokens.iter().map(String::as_str).collect();
            assert_eq!(known.len(), size, "tokens are unique");
            for (a, b) in &v.merges {
                assert!(known.contains(a.as_str()) && known.contains(b.as_str()));
            }
        }
    }

    #[test]
    fn tokenizer_round_trips_text_and_adds_bos() {
        let v = vocabulary(512);
        let t = build(&v).unwrap();
        let text = "the keeper lit a lamp, 42 times!";
        let enc = t.encode(text, true).unwrap();
        assert_eq!(enc.get_ids()[0], BOS_ID);
        assert!(enc.get_ids().len() < text.len(), "merges apply");
        assert_eq!(t.decode(enc.get_ids(), true).unwrap(), text);
    }
}
