//! Constrained decoding: JSON and JSON-schema requests are compiled by llguidance into a grammar
//! over the model's own vocabulary, and the sampler may only pick tokens the grammar allows, so
//! the answer is well-formed by construction and generation ends where the grammar does.
//!
//! The token trie is built from the `tokenizers::Tokenizer` the adapter already holds (whatever
//! built it: a `tokenizer.json` or GGUF metadata): byte-level BPE tokens map the GPT-2
//! byte-to-unicode alphabet back to bytes; SentencePiece tokens turn `▁` into a space and
//! `<0xNN>` into that byte; special added tokens are marked special, so no grammar ever emits them.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use llguidance::api::TopLevelGrammar;
use llguidance::toktrie::{SimpleVob, TokEnv, TokRxInfo, TokTrie, TokenId, TokenizerEnv};
use llguidance::{JsonCompileOptions, Matcher, ParserFactory};
use rigger_ports::{InferenceError, ResponseFormat};
use tokenizers::Tokenizer;

use crate::BACKEND;

/// Compiled grammars kept per model; beyond this many distinct schemas the cache starts over.
const CACHE_LIMIT: usize = 64;

/// The bytes of every token id of `tokenizer` (an id the vocabulary skips has no bytes), special
/// tokens prefixed with toktrie's special-token marker.
pub fn token_bytes(tokenizer: &Tokenizer) -> Result<Vec<Vec<u8>>, String> {
    let decoder = serde_json::to_value(tokenizer.get_decoder())
        .map_err(|e| format!("the tokenizer's decoder cannot be read: {e}"))?;
    let mut decoders = vec![&decoder];
    if let Some(list) = decoder.get("decoders").and_then(|d| d.as_array()) {
        decoders.extend(list);
    }
    let kind = |k: &str| decoders.iter().any(|d| d["type"].as_str() == Some(k));
    let byte_level = kind("ByteLevel");
    let byte_fallback = kind("ByteFallback");
    // SentencePiece writes spaces as `▁` (a Metaspace decoder or a Replace step undoes it).
    let space = decoders
        .iter()
        .find_map(|d| match d["type"].as_str() {
            Some("Metaspace") => d["replacement"].as_str(),
            Some("Replace") if d["content"].as_str() == Some(" ") => {
                d["pattern"]["String"].as_str()
            }
            _ => None,
        })
        .and_then(|s| s.chars().next());
    if !byte_level && !byte_fallback && space.is_none() {
        return Err(format!(
            "the tokenizer's decoder ({}) is neither byte-level BPE nor SentencePiece",
            decoder["type"].as_str().unwrap_or("none")
        ));
    }
    let unicode_to_byte = gpt2_bytes();
    let added = tokenizer.get_added_tokens_decoder();
    let size = tokenizer.get_vocab_size(true);
    let mut words = vec![Vec::new(); size];
    for (name, id) in tokenizer.get_vocab(true) {
        let Some(slot) = words.get_mut(id as usize) else {
            continue;
        };
        *slot = if let Some(token) = added.get(&id) {
            // Added tokens are stored as their text, not in the model's byte alphabet.
            let mut bytes = Vec::with_capacity(token.content.len() + 1);
            if token.special {
                bytes.push(TokTrie::SPECIAL_TOKEN_MARKER);
            }
            bytes.extend_from_slice(token.content.as_bytes());
            bytes
        } else if byte_level {
            name.chars()
                .map(|c| unicode_to_byte.get(&c).copied())
                .collect::<Option<Vec<u8>>>()
                .ok_or_else(|| {
                    format!("token {id} ({name:?}) is outside the byte-level alphabet")
                })?
        } else if let Some(byte) = byte_token(&name).filter(|_| byte_fallback) {
            vec![byte]
        } else {
            match space {
                Some(s) => name.replace(s, " ").into_bytes(),
                None => name.into_bytes(),
            }
        };
    }
    Ok(words)
}

/// `<0xNN>`: SentencePiece's byte-fallback token for byte NN.
fn byte_token(name: &str) -> Option<u8> {
    let hex = name.strip_prefix("<0x")?.strip_suffix('>')?;
    (hex.len() == 2)
        .then(|| u8::from_str_radix(hex, 16).ok())
        .flatten()
}

/// GPT-2's byte-to-unicode table, inverted: printable Latin-1 bytes stand for themselves, the
/// rest are shifted to U+0100 onwards in byte order.
fn gpt2_bytes() -> HashMap<char, u8> {
    let printable = |b: u8| matches!(b, b'!'..=b'~' | 0xA1..=0xAC | 0xAE..=0xFF);
    let mut next = 0x100u32;
    (0..=255u8)
        .map(|b| {
            let c = if printable(b) {
                char::from(b)
            } else {
                next += 1;
                char::from_u32(next - 1).unwrap_or(char::REPLACEMENT_CHARACTER)
            };
            (c, b)
        })
        .collect()
}

/// The model's tokenizer as llguidance sees it: the trie for masks, the real tokenizer for
/// canonical tokenizations (so forced tokens are the ones the model would have seen).
struct ModelTokEnv {
    trie: TokTrie,
    tokenizer: Tokenizer,
}

impl TokenizerEnv for ModelTokEnv {
    fn tok_trie(&self) -> &TokTrie {
        &self.trie
    }

    fn tokenize_bytes(&self, s: &[u8]) -> Vec<TokenId> {
        match self
            .tokenizer
            .encode(String::from_utf8_lossy(s).as_ref(), false)
        {
            Ok(encoding) => encoding.get_ids().to_vec(),
            Err(_) => self.trie.greedy_tokenize(s),
        }
    }
}

/// Builds llguidance's view of `tokenizer`; `eos` ends generation when the grammar accepts.
fn tok_env(tokenizer: &Tokenizer, eos: &[u32]) -> Result<TokEnv, String> {
    let words = token_bytes(tokenizer)?;
    let (&first, _) = eos
        .split_first()
        .ok_or("the model declares no end-of-sequence token")?;
    let info = TokRxInfo::new(words.len() as u32, first);
    let trie = TokTrie::from(&info, &words).with_eos_tokens(eos);
    Ok(Arc::new(ModelTokEnv {
        trie,
        tokenizer: tokenizer.clone(),
    }))
}

/// The grammar compiler of one loaded model: the parser factory (built on the first structured
/// request: it precomputes over the whole vocabulary) and the compiled grammars, by schema text.
pub struct GrammarCompiler {
    tokenizer: Tokenizer,
    eos: Vec<u32>,
    factory: OnceLock<Result<ParserFactory, String>>,
    compiled: Mutex<HashMap<String, Matcher>>,
}

impl GrammarCompiler {
    /// A compiler for the model whose vocabulary `tokenizer` holds and whose end-of-sequence
    /// tokens are `eos`. Cheap: the work happens on the first [`compile`](Self::compile).
    pub fn new(tokenizer: Tokenizer, eos: Vec<u32>) -> Self {
        Self {
            tokenizer,
            eos,
            factory: OnceLock::new(),
            compiled: Mutex::new(HashMap::new()),
        }
    }

    /// Builds the token trie and parser factory now (the first [`compile`](Self::compile) would).
    pub fn warm(&self) -> Result<(), InferenceError> {
        self.factory().map(drop)
    }

    fn factory(&self) -> Result<&ParserFactory, InferenceError> {
        self.factory
            .get_or_init(|| {
                let env = tok_env(&self.tokenizer, &self.eos)?;
                let mut factory = ParserFactory::new_simple(&env).map_err(|e| e.to_string())?;
                factory.quiet();
                Ok(factory)
            })
            .as_ref()
            .map_err(|e| {
                InferenceError::new(
                    rigger_ports::ErrorKind::Unsupported,
                    BACKEND,
                    format!("this model's vocabulary cannot be used for constrained decoding: {e}"),
                )
                .with_hint("ask for plain text and validate the JSON yourself")
            })
    }

    /// The grammar that enforces `format`, fresh for one generation (`None` for text). A schema
    /// llguidance cannot enforce is an `InvalidRequest` naming what it could not compile.
    pub fn compile(&self, format: &ResponseFormat) -> Result<Option<Grammar>, InferenceError> {
        let mut schema = match format {
            ResponseFormat::Text => return Ok(None),
            ResponseFormat::Json => serde_json::json!({}),
            ResponseFormat::JsonSchema { schema, .. } => match schema {
                serde_json::Value::Object(_) => schema.clone(),
                // A boolean schema: `true` allows anything; `false` nothing.
                serde_json::Value::Bool(true) => serde_json::json!({}),
                other => {
                    return Err(InferenceError::invalid_request(
                        BACKEND,
                        format!("the JSON schema {other} allows no answer"),
                    ));
                }
            },
        };
        // Compact JSON and no \uXXXX escapes: six tokens for one character are budget a small
        // model would waste (every character can be written as itself).
        JsonCompileOptions {
            whitespace_flexible: false,
            json_allowed_escapes: Some("nrbtf\"\\".to_owned()),
            ..JsonCompileOptions::default()
        }
        .apply_to(&mut schema);
        let key = schema.to_string();
        let mut compiled = self.compiled.lock().unwrap_or_else(|p| p.into_inner());
        let matcher = match compiled.get(&key) {
            Some(m) => m.deep_clone(),
            None => {
                let factory = self.factory()?;
                let parser = factory
                    .create_parser(TopLevelGrammar::from_json_schema(schema))
                    .map_err(|e| {
                        InferenceError::invalid_request(
                            BACKEND,
                            format!("the JSON schema cannot be enforced during decoding: {e}"),
                        )
                        .with_hint(
                            "remove or rewrite the schema feature named above (see llguidance's \
                             JSON-schema support)",
                        )
                    })?;
                let matcher = Matcher::new(Ok(parser));
                if compiled.len() >= CACHE_LIMIT {
                    compiled.clear();
                }
                compiled.insert(key, matcher.deep_clone());
                matcher
            }
        };
        Ok(Some(Grammar {
            matcher,
            vocab: self.tokenizer.get_vocab_size(true),
        }))
    }
}

/// One generation's grammar state.
pub struct Grammar {
    matcher: Matcher,
    vocab: usize,
}

impl Clone for Grammar {
    /// An independent copy (the parser state and its caches).
    fn clone(&self) -> Self {
        Self {
            matcher: self.matcher.deep_clone(),
            vocab: self.vocab,
        }
    }
}

fn grammar_error(what: &str, e: impl std::fmt::Display) -> InferenceError {
    InferenceError::internal(
        BACKEND,
        format!("the output grammar failed while {what}: {e}"),
    )
}

impl Grammar {
    /// Whether `token` may come next (cheap: no mask is computed).
    pub fn allows(&mut self, token: u32) -> bool {
        (token as usize) < self.vocab && matches!(self.matcher.validate_tokens(&[token]), Ok(1))
    }

    /// How many tokens may come next (computes the full mask, as a rejected token does).
    pub fn count_allowed(&mut self) -> Result<usize, InferenceError> {
        self.mask().map(|m| m.num_set())
    }

    /// The tokens that may come next.
    pub(crate) fn mask(&mut self) -> Result<SimpleVob, InferenceError> {
        self.matcher
            .compute_mask()
            .map_err(|e| grammar_error("computing the token mask", e))
    }

    /// Advances the grammar past `token`.
    pub fn consume(&mut self, token: u32) -> Result<(), InferenceError> {
        self.matcher
            .consume_token(token)
            .map_err(|e| grammar_error("advancing", e))
    }

    /// The tokens the grammar forces next (none when there is a choice), not yet consumed.
    pub fn forced(&mut self) -> Vec<u32> {
        self.matcher.compute_ff_tokens()
    }

    /// Whether the grammar has ended (nothing more may follow).
    pub fn is_stopped(&self) -> bool {
        self.matcher.is_stopped()
    }

    /// Whether the output so far is complete (it may end here).
    pub fn is_accepting(&mut self) -> bool {
        self.matcher.is_accepting().unwrap_or(false)
    }
}

/// Sets the logits of every token `mask` forbids (and any beyond the vocabulary) to -inf.
pub(crate) fn apply_mask(mask: &SimpleVob, logits: &mut [f32]) {
    for (i, l) in logits.iter_mut().enumerate() {
        if i >= mask.len() || !mask.is_allowed(i as u32) {
            *l = f32::NEG_INFINITY;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gpt2_alphabet_round_trips_every_byte() {
        let map = gpt2_bytes();
        assert_eq!(map.len(), 256);
        assert_eq!(map[&'Ġ'], b' ');
        assert_eq!(map[&'Ċ'], b'\n');
        assert_eq!(map[&'a'], b'a');
    }

    /// A SentencePiece-style tokenizer (as built from GGUF `llama` metadata): `▁` for spaces,
    /// `<0xNN>` byte fallback, control tokens special.
    fn sentencepiece() -> Tokenizer {
        use tokenizers::decoders::byte_fallback::ByteFallback;
        use tokenizers::decoders::fuse::Fuse;
        use tokenizers::decoders::sequence::Sequence;
        use tokenizers::decoders::strip::Strip;
        use tokenizers::models::bpe::BPE;
        use tokenizers::normalizers::replace::Replace;
        use tokenizers::{AddedToken, DecoderWrapper};
        let names = [
            "<unk>", "<s>", "</s>", "<0x0A>", "<0xE2>", "▁", "a", "b", "▁a", "ab",
        ];
        let vocab: tokenizers::models::bpe::Vocab = names
            .iter()
            .enumerate()
            .map(|(i, n)| (n.to_string(), i as u32))
            .collect();
        let merges = vec![("▁".into(), "a".into()), ("a".into(), "b".into())];
        let bpe = BPE::builder()
            .vocab_and_merges(vocab, merges)
            .byte_fallback(true)
            .unk_token("<unk>".into())
            .build()
            .unwrap();
        let mut t = Tokenizer::new(bpe);
        t.with_decoder(Some(DecoderWrapper::Sequence(Sequence::new(vec![
            DecoderWrapper::Replace(Replace::new("▁", " ").unwrap()),
            DecoderWrapper::ByteFallback(ByteFallback::new()),
            DecoderWrapper::Fuse(Fuse::new()),
            DecoderWrapper::Strip(Strip::new(' ', 1, 0)),
        ]))));
        t.add_special_tokens(&[
            AddedToken::from("<unk>", true),
            AddedToken::from("<s>", true),
            AddedToken::from("</s>", true),
        ]);
        t
    }

    #[test]
    fn sentencepiece_vocabularies_map_to_bytes() {
        let words = token_bytes(&sentencepiece()).unwrap();
        assert_eq!(words[1], b"\xFF<s>");
        assert_eq!(words[3], b"\n");
        assert_eq!(words[4], [0xE2]);
        assert_eq!(words[5], b" ");
        assert_eq!(words[8], b" a");
        assert_eq!(words[9], b"ab");
    }

    #[test]
    fn byte_level_vocabularies_map_to_bytes() {
        let t = rigger_model_gen::synthetic_tokenizer(600).unwrap();
        let words = token_bytes(&t).unwrap();
        assert_eq!(words.len(), t.get_vocab_size(true));
        for (id, word) in words.iter().enumerate() {
            let id = id as u32;
            if t.get_added_tokens_decoder().contains_key(&id) {
                assert_eq!(word[0], TokTrie::SPECIAL_TOKEN_MARKER);
            } else if word.is_ascii() {
                // What the tokenizer itself decodes the token to.
                assert_eq!(t.decode(&[id], false).unwrap().as_bytes(), word.as_slice());
            }
        }
        let space_a = t.encode(" a", false).unwrap().get_ids()[0];
        assert_eq!(words[space_a as usize], b" a");
    }

    #[test]
    fn sentencepiece_byte_tokens() {
        assert_eq!(byte_token("<0x0A>"), Some(b'\n'));
        assert_eq!(byte_token("<0xZZ>"), None);
        assert_eq!(byte_token("<0x0A0>"), None);
    }
}
