//! The tokenizer a GGUF file carries in its metadata (`tokenizer.ggml.*`), rebuilt as a
//! `tokenizers::Tokenizer` that tokenizes as llama.cpp does, so everything downstream
//! (prompt encoding, detokenizing, the vocabulary for constrained decoding) is the same whether
//! the model came with a `tokenizer.json` or not.
//!
//! Covered: `gpt2` vocabularies (byte-level BPE with `tokenizer.ggml.merges`), pre-tokenized by
//! the regexes llama.cpp names by `tokenizer.ggml.pre` (copied from llama.cpp's
//! `llama-vocab.cpp`), and `llama` (SentencePiece) vocabularies with `tokenizer.ggml.scores`:
//! BPE whose merges are every pair of tokens that concatenates to a token, ranked by that
//! token's score (what llama.cpp's SPM tokenizer does), with byte fallback and the `▁` space.
//! Anything else is refused, naming what it is and what is supported.

use std::collections::HashMap;
use std::fs::File;
use std::path::Path;

use candle_core::quantized::gguf_file::{self, Value};
use rigger_ports::{ErrorKind, InferenceError};
use tokenizers::decoders::byte_fallback::ByteFallback;
use tokenizers::decoders::fuse::Fuse;
use tokenizers::decoders::sequence::Sequence as DecoderSequence;
use tokenizers::decoders::strip::Strip;
use tokenizers::models::bpe::{BPE, Vocab};
use tokenizers::normalizers::{Prepend, Replace, Sequence as NormalizerSequence};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::sequence::Sequence as PreTokenizerSequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::processors::template::TemplateProcessing;
use tokenizers::{
    AddedToken, DecoderWrapper, NormalizerWrapper, PreTokenizerWrapper, SplitDelimiterBehavior,
    Tokenizer,
};

use crate::BACKEND;

/// `tokenizer.ggml.token_type` values (llama.cpp's `llama_token_type`).
const UNKNOWN: i32 = 2;
const CONTROL: i32 = 3;
const USER_DEFINED: i32 = 4;
const BYTE: i32 = 6;

/// SentencePiece's visible space.
const SPACE: &str = "\u{2581}";

// The pre-tokenizer regexes, verbatim from llama.cpp's `llm_tokenizer_bpe` (each splits the
// pieces the previous one left; matches and the text between them both become pieces).
const DEFAULT: &[&str] = &[
    "[\\p{P}\\$\\+<=>\\^~\\|]+",
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)",
    "\\p{N}+",
    "[0-9][0-9][0-9]",
];
const LLAMA3: &[&str] = &[
    "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
];
const DEEPSEEK_LLM: &[&str] = &[
    "[\r\n]",
    "\\s?[A-Za-zµÀ-ÖØ-öø-ƺƼ-ƿǄ-ʓʕ-ʯͰ-ͳͶͷͻ-ͽͿΆΈ-ΊΌΎ-ΡΣ-ϵϷ-ҁҊ-ԯԱ-ՖႠ-ჅᎠ-Ᏽᏸ-ᏽᲐ-ᲺᲽ-Ჿᴀ-ᴫᵫ-ᵷᵹ-ᶚḀ-ἕἘ-Ἕἠ-ὅὈ-Ὅὐ-ὗὙὛὝὟ-ώᾀ-ᾴᾶ-ᾼιῂ-ῄῆ-ῌῐ-ΐῖ-Ίῠ-Ῥῲ-ῴῶ-ῼℂℇℊ-ℓℕℙ-ℝℤΩℨK-ℭℯ-ℴℹℼ-ℿⅅ-ⅉⅎↃↄⰀ-ⱻⱾ-ⳤⳫ-ⳮⳲⳳꙀ-ꙭꚀ-ꚛꜢ-ꝯꝱ-ꞇꞋ-ꞎꭰ-ꮿﬀ-ﬆﬓ-ﬗＡ-Ｚａ-ｚ𐐀-𐑏𐒰-𐓓𐓘-𐓻𐲀-𐲲𐳀-𐳲𑢠-𑣟𞤀-𞥃]+",
    "\\s?[!-/:-~！-／：-～‘-‟　-。]+",
    "\\s+$",
    "[一-龥ࠀ-一가-퟿]+",
    "\\p{N}+",
];
const DEEPSEEK_CODER: &[&str] = &[
    "[\r\n]",
    "\\s?\\p{L}+",
    "\\s?\\p{P}+",
    "[一-龥ࠀ-一가-퟿]+",
    "\\p{N}",
];
const FALCON: &[&str] = &[
    "[\\p{P}\\$\\+<=>\\^~\\|`]+",
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)",
    "[0-9][0-9][0-9]",
];
const SMOLLM: &[&str] = &[
    "\\p{N}",
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)",
];
const GPT2: &[&str] =
    &["'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)"];
const QWEN2: &[&str] = &[
    "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
];
const QWEN35: &[&str] = &[
    "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?[\\p{L}\\p{M}]+|\\p{N}| ?[^\\s\\p{L}\\p{M}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
];

/// A `tokenizer.ggml.pre` name llama.cpp knows and we cover: its regexes, whether a word that
/// is a token is taken whole before merging (llama.cpp's `ignore_merges`), and whether BOS is
/// added when the file does not say.
struct PreTokenizer {
    regexes: &'static [&'static str],
    ignore_merges: bool,
    add_bos: bool,
}

/// Every `tokenizer.ggml.pre` name covered, grouped as llama.cpp groups them.
const PRE_TOKENIZERS: &[(&[&str], PreTokenizer)] = &[
    (
        &["llama3", "llama-v3", "llama-bpe", "falcon3"],
        PreTokenizer {
            regexes: LLAMA3,
            ignore_merges: true,
            add_bos: true,
        },
    ),
    (
        &["dbrx", "smaug-bpe"],
        PreTokenizer {
            regexes: LLAMA3,
            ignore_merges: false,
            add_bos: false,
        },
    ),
    (
        &["qwen2", "deepseek-r1-qwen", "stablelm2", "megrez"],
        PreTokenizer {
            regexes: QWEN2,
            ignore_merges: false,
            add_bos: false,
        },
    ),
    (
        &["qwen35"],
        PreTokenizer {
            regexes: QWEN35,
            ignore_merges: false,
            add_bos: false,
        },
    ),
    (
        &["gpt-2", "phi-2", "mpt", "olmo", "jais"],
        PreTokenizer {
            regexes: GPT2,
            ignore_merges: false,
            add_bos: false,
        },
    ),
    (
        &[
            "smollm",
            "starcoder",
            "refact",
            "command-r",
            "codeshell",
            "exaone",
            "minerva-7b",
        ],
        PreTokenizer {
            regexes: SMOLLM,
            ignore_merges: false,
            add_bos: false,
        },
    ),
    (
        &["falcon"],
        PreTokenizer {
            regexes: FALCON,
            ignore_merges: false,
            add_bos: false,
        },
    ),
    (
        &["deepseek-llm"],
        PreTokenizer {
            regexes: DEEPSEEK_LLM,
            ignore_merges: false,
            add_bos: false,
        },
    ),
    (
        // Named explicitly; a file without any `tokenizer.ggml.pre` is refused (llama.cpp
        // guesses this one for it and warns that quality suffers).
        &["default"],
        PreTokenizer {
            regexes: DEFAULT,
            ignore_merges: false,
            add_bos: false,
        },
    ),
    (
        &["deepseek-coder"],
        PreTokenizer {
            regexes: DEEPSEEK_CODER,
            ignore_merges: false,
            add_bos: false,
        },
    ),
];

/// The vocabularies covered, for error messages and the docs.
pub fn supported() -> String {
    let names: Vec<&str> = PRE_TOKENIZERS
        .iter()
        .flat_map(|(n, _)| n.iter().copied())
        .collect();
    format!(
        "tokenizer.ggml.model \"llama\" (SentencePiece), or \"gpt2\" with tokenizer.ggml.pre one of {}",
        names.join(", ")
    )
}

fn unsupported(what: String) -> InferenceError {
    InferenceError::unsupported(BACKEND, format!("{what}; supported: {}", supported())).with_hint(
        "put the model's tokenizer.json beside the GGUF (or set CANDLE_TOKENIZER) to use it instead",
    )
}

fn malformed(what: impl std::fmt::Display) -> InferenceError {
    InferenceError::new(
        ErrorKind::ModelLoadFailed,
        BACKEND,
        format!("the GGUF's tokenizer metadata is malformed: {what}"),
    )
}

/// Reads only the metadata of the GGUF at `path` (not its tensors) and builds its tokenizer.
/// Errors: the file has no tokenizer metadata (`InvalidRequest`), a vocabulary not covered
/// (`Unsupported`, naming it), malformed metadata (`ModelLoadFailed`).
pub fn from_gguf_file(path: &Path) -> Result<Tokenizer, InferenceError> {
    let mut file = File::open(path).map_err(|e| {
        InferenceError::new(
            ErrorKind::Io,
            BACKEND,
            format!("cannot open {}: {e}", path.display()),
        )
    })?;
    let content = gguf_file::Content::read(&mut file).map_err(|e| {
        InferenceError::new(
            ErrorKind::ModelLoadFailed,
            BACKEND,
            format!("{} is not a valid GGUF file: {e}", path.display()),
        )
    })?;
    from_metadata(&content.metadata)?.ok_or_else(|| no_tokenizer(path))
}

/// The error for a GGUF without tokenizer metadata and no `tokenizer.json` given.
pub(crate) fn no_tokenizer(path: &Path) -> InferenceError {
    InferenceError::invalid_request(
        BACKEND,
        format!(
            "{} has no tokenizer in its metadata (tokenizer.ggml.tokens) and no tokenizer.json beside it",
            path.display()
        ),
    )
    .with_hint("put the model's tokenizer.json beside the GGUF, or set CANDLE_TOKENIZER to one")
}

/// The tokenizer in a GGUF's metadata; `None` when it has none (`tokenizer.ggml.tokens`).
pub(crate) fn from_metadata(
    md: &HashMap<String, Value>,
) -> Result<Option<Tokenizer>, InferenceError> {
    let Some(tokens) = md.get("tokenizer.ggml.tokens") else {
        return Ok(None);
    };
    let tokens: Vec<&str> = tokens
        .to_vec()
        .map_err(malformed)?
        .iter()
        .map(|v| v.to_string().map(String::as_str))
        .collect::<Result<_, _>>()
        .map_err(malformed)?;
    let model = string(md, "tokenizer.ggml.model")?.unwrap_or_default();
    let types: Vec<i32> = match md.get("tokenizer.ggml.token_type") {
        Some(v) => v
            .to_vec()
            .map_err(malformed)?
            .iter()
            .map(Value::to_i32)
            .collect::<Result<_, _>>()
            .map_err(malformed)?,
        None => vec![1; tokens.len()],
    };
    if types.len() != tokens.len() {
        return Err(malformed(format!(
            "{} token types for {} tokens",
            types.len(),
            tokens.len()
        )));
    }
    let bos = id(md, "tokenizer.ggml.bos_token_id")?;
    let eos = id(md, "tokenizer.ggml.eos_token_id")?;
    let (mut tokenizer, default_add_bos) = match model.as_str() {
        "gpt2" => {
            let Some(pre) = string(md, "tokenizer.ggml.pre")? else {
                return Err(unsupported(
                    "the GGUF's byte-level BPE vocabulary names no pre-tokenizer (tokenizer.ggml.pre)"
                        .to_owned(),
                ));
            };
            let Some((_, pre_tokenizer)) = PRE_TOKENIZERS
                .iter()
                .find(|(names, _)| names.contains(&pre.as_str()))
            else {
                return Err(unsupported(format!(
                    "the GGUF's pre-tokenizer {pre:?} (tokenizer.ggml.pre) is not covered"
                )));
            };
            (
                byte_level_bpe(md, &tokens, pre_tokenizer)?,
                pre_tokenizer.add_bos,
            )
        }
        "llama" => (sentencepiece(md, &tokens, &types)?, true),
        other => {
            return Err(unsupported(format!(
                "the GGUF's tokenizer model {other:?} (tokenizer.ggml.model) is not covered"
            )));
        }
    };
    // Added tokens are matched in the text before the model sees it: control and unknown
    // tokens as special ones (skipped when decoding), user-defined ones always.
    let added: Vec<AddedToken> = tokens
        .iter()
        .zip(&types)
        .filter(|(_, t)| matches!(**t, UNKNOWN | CONTROL | USER_DEFINED))
        .map(|(text, t)| AddedToken::from(*text, *t != USER_DEFINED).normalized(false))
        .collect();
    let (special, user): (Vec<AddedToken>, Vec<AddedToken>) =
        added.into_iter().partition(|t| t.special);
    tokenizer.add_special_tokens(&special);
    tokenizer.add_tokens(&user);
    let add_bos = flag(md, "tokenizer.ggml.add_bos_token")?.unwrap_or(default_add_bos);
    let add_eos = flag(md, "tokenizer.ggml.add_eos_token")?.unwrap_or(false);
    let text = |id: u32| tokens.get(id as usize).map(|t| (t.to_string(), id));
    let bos = bos.and_then(text).filter(|_| add_bos);
    let eos = eos.and_then(text).filter(|_| add_eos);
    if bos.is_some() || eos.is_some() {
        let wrap = |body: &str| {
            let mut parts = Vec::new();
            if let Some((t, _)) = &bos {
                parts.push(t.clone());
            }
            parts.push(body.to_owned());
            if let Some((t, _)) = &eos {
                parts.push(t.clone());
            }
            parts.join(" ")
        };
        let specials: Vec<(String, u32)> = bos.iter().chain(eos.iter()).cloned().collect();
        let processor = TemplateProcessing::builder()
            .try_single(wrap("$A"))
            .and_then(|b| b.try_pair(wrap("$A:0") + " " + &wrap("$B:1")))
            .map_err(malformed)?
            .special_tokens(specials)
            .build()
            .map_err(malformed)?;
        tokenizer.with_post_processor(Some(processor));
    }
    Ok(Some(tokenizer))
}

fn string(md: &HashMap<String, Value>, key: &str) -> Result<Option<String>, InferenceError> {
    md.get(key)
        .map(|v| {
            v.to_string()
                .cloned()
                .map_err(|e| malformed(format!("{key}: {e}")))
        })
        .transpose()
}

fn id(md: &HashMap<String, Value>, key: &str) -> Result<Option<u32>, InferenceError> {
    md.get(key)
        .map(|v| {
            v.to_u64()
                .map(|n| n as u32)
                .map_err(|e| malformed(format!("{key}: {e}")))
        })
        .transpose()
}

fn flag(md: &HashMap<String, Value>, key: &str) -> Result<Option<bool>, InferenceError> {
    md.get(key)
        .map(|v| v.to_bool().map_err(|e| malformed(format!("{key}: {e}"))))
        .transpose()
}

/// The vocabulary as the BPE model wants it. Where a text repeats, the last id wins, as in
/// llama.cpp's text-to-token map.
fn vocab(tokens: &[&str]) -> Vocab {
    tokens
        .iter()
        .enumerate()
        .map(|(id, t)| (t.to_string(), id as u32))
        .collect()
}

/// `gpt2`: byte-level BPE over the file's merges, split first by the pre-tokenizer's regexes.
fn byte_level_bpe(
    md: &HashMap<String, Value>,
    tokens: &[&str],
    pre: &PreTokenizer,
) -> Result<Tokenizer, InferenceError> {
    let vocab = vocab(tokens);
    let merges: Vec<(String, String)> = match md.get("tokenizer.ggml.merges") {
        Some(v) => v
            .to_vec()
            .map_err(malformed)?
            .iter()
            .map(|m| {
                let m = m.to_string().map_err(malformed)?;
                m.split_once(' ')
                    .map(|(a, b)| (a.to_owned(), b.to_owned()))
                    .ok_or_else(|| malformed(format!("merge {m:?} is not two tokens")))
            })
            .collect::<Result<_, _>>()?,
        None => return Err(malformed("a gpt2 vocabulary without tokenizer.ggml.merges")),
    };
    let model = BPE::builder()
        .vocab_and_merges(vocab, merges)
        .ignore_merges(pre.ignore_merges)
        .build()
        .map_err(malformed)?;
    let mut steps: Vec<PreTokenizerWrapper> = Vec::new();
    for regex in pre.regexes {
        let split = Split::new(
            SplitPattern::Regex((*regex).to_owned()),
            SplitDelimiterBehavior::Isolated,
            false,
        )
        .map_err(|e| malformed(format!("pre-tokenizer regex {regex:?}: {e}")))?;
        steps.push(split.into());
    }
    steps.push(ByteLevel::new(false, true, false).into());
    let mut tokenizer = Tokenizer::new(model);
    tokenizer.with_pre_tokenizer(Some(PreTokenizerSequence::new(steps)));
    tokenizer.with_decoder(Some(ByteLevel::default()));
    Ok(tokenizer)
}

/// `llama` (SentencePiece): BPE whose merges are every split of a token into two tokens,
/// ranked by the merged token's score, highest first — the merge order of llama.cpp's SPM
/// tokenizer — with byte fallback (`<0xNN>` tokens) and spaces as `▁`.
fn sentencepiece(
    md: &HashMap<String, Value>,
    tokens: &[&str],
    types: &[i32],
) -> Result<Tokenizer, InferenceError> {
    let scores: Vec<f32> = match md.get("tokenizer.ggml.scores") {
        Some(v) => v
            .to_vec()
            .map_err(malformed)?
            .iter()
            .map(Value::to_f32)
            .collect::<Result<_, _>>()
            .map_err(malformed)?,
        None => {
            return Err(malformed(
                "a llama vocabulary without tokenizer.ggml.scores",
            ));
        }
    };
    if scores.len() != tokens.len() {
        return Err(malformed(format!(
            "{} scores for {} tokens",
            scores.len(),
            tokens.len()
        )));
    }
    let vocab = vocab(tokens);
    let mut ranked: Vec<(f32, u32, &str, &str)> = Vec::new();
    for (id, token) in tokens.iter().enumerate() {
        if types[id] == BYTE {
            continue;
        }
        for (at, _) in token.char_indices().skip(1) {
            let (left, right) = token.split_at(at);
            if vocab.contains_key(left) && vocab.contains_key(right) {
                ranked.push((scores[id], id as u32, left, right));
            }
        }
    }
    // Highest score first; equal scores by id, so the order is deterministic.
    ranked.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    let merges: Vec<(String, String)> = ranked
        .into_iter()
        .map(|(_, _, l, r)| (l.to_owned(), r.to_owned()))
        .collect();
    let unk = id(md, "tokenizer.ggml.unknown_token_id")?
        .and_then(|id| tokens.get(id as usize))
        .or_else(|| {
            tokens
                .iter()
                .zip(types)
                .find(|(_, t)| **t == UNKNOWN)
                .map(|(t, _)| t)
        });
    let mut builder = BPE::builder()
        .vocab_and_merges(vocab, merges)
        .byte_fallback(true)
        .fuse_unk(true);
    if let Some(unk) = unk {
        builder = builder.unk_token((*unk).to_owned());
    }
    let model = builder.build().map_err(malformed)?;
    // llama.cpp puts a space before the text (and after every special token) unless the file
    // says not to (`add_space_prefix`), then writes spaces as ▁.
    let prefix = flag(md, "tokenizer.ggml.add_space_prefix")?.unwrap_or(true);
    let replace = Replace::new(" ", SPACE).map_err(malformed)?;
    let mut normalizers: Vec<NormalizerWrapper> = Vec::new();
    if prefix {
        normalizers.push(Prepend::new(SPACE.to_owned()).into());
    }
    normalizers.push(replace.into());
    let mut decoders: Vec<DecoderWrapper> = vec![
        Replace::new(SPACE, " ").map_err(malformed)?.into(),
        ByteFallback::new().into(),
        Fuse::new().into(),
    ];
    if prefix {
        decoders.push(Strip::new(' ', 1, 0).into());
    }
    let mut tokenizer = Tokenizer::new(model);
    tokenizer.with_normalizer(Some(NormalizerSequence::new(normalizers)));
    tokenizer.with_decoder(Some(DecoderSequence::new(decoders)));
    Ok(tokenizer)
}
