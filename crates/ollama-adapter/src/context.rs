//! Sizing `num_ctx`. Ollama cuts a prompt that does not fit its context window without an error,
//! and its default window (2048 or 4096 tokens, by version) is often smaller than the model's.
//! So every request carries a `num_ctx` big enough for the prompt plus the budget, and a request
//! that cannot fit the model at all is refused before it is sent.

use rigger_ports::{ChatMessage, ErrorKind, InferenceError};

use crate::BACKEND;

/// The smallest `num_ctx` sent: Ollama's own historical default. Sizes are rounded up to powers
/// of two from here, because a new `num_ctx` makes Ollama reload the model; a handful of sizes
/// keeps reloads rare.
pub const MIN_NUM_CTX: u32 = 2048;

/// Chat-template tokens around each message (role headers, end-of-turn markers): the templates
/// of Ollama's library use 3 to 8; 16 leaves room.
const PER_MESSAGE_OVERHEAD: u32 = 16;
/// The template's fixed part (BOS, the assistant header, a date line some templates add).
const PROMPT_OVERHEAD: u32 = 64;

/// An upper bound on the prompt's tokens, without the model's tokenizer (Ollama's documented API
/// has no tokenize endpoint): one token per UTF-8 byte of every message, plus the template's
/// overhead. Byte-level BPE (Llama 3, Qwen, GPT-2 style) never makes more tokens than bytes, and
/// SentencePiece with byte fallback (Llama 2, Mistral) makes at most one per byte plus a prefix,
/// so the estimate is never under the true count. It is over by about 4x for English text: the
/// price of never letting a prompt be cut.
pub fn estimate_prompt_tokens(messages: &[ChatMessage], raw: bool) -> u32 {
    let content: u64 = messages.iter().map(|m| m.content.len() as u64).sum();
    let overhead = if raw {
        // A raw prompt is sent as it is; only a BOS token may be added.
        u64::from(PER_MESSAGE_OVERHEAD)
    } else {
        u64::from(PROMPT_OVERHEAD) + u64::from(PER_MESSAGE_OVERHEAD) * messages.len() as u64
    };
    u32::try_from(content + overhead).unwrap_or(u32::MAX)
}

/// The `num_ctx` for a request: room for `prompt_estimate + budget`, rounded up to a power of two
/// (at least [`MIN_NUM_CTX`]) and capped at the model's context length; or the configured fixed
/// size. A request that does not fit is ContextLengthExceeded, never truncated.
pub(crate) fn size_num_ctx(
    prompt_estimate: u32,
    budget: u32,
    context_length: Option<u32>,
    fixed: Option<u32>,
) -> Result<u32, InferenceError> {
    let needed = prompt_estimate.saturating_add(budget);
    let limit = fixed.or(context_length);
    if let Some(limit) = limit
        && needed > limit
    {
        let which = if fixed.is_some() {
            "the configured num_ctx"
        } else {
            "the model's context length"
        };
        return Err(InferenceError::new(
            ErrorKind::ContextLengthExceeded,
            BACKEND,
            format!(
                "the prompt (estimated at up to {prompt_estimate} tokens, one per byte) plus max_tokens {budget} \
                 exceeds {which} of {limit} tokens; Ollama would cut the prompt, so it was not sent"
            ),
        )
        .with_retryable(false)
        .with_hint("shorten the prompt or lower max_tokens"));
    }
    if let Some(fixed) = fixed {
        return Ok(fixed);
    }
    let rounded = needed
        .checked_next_power_of_two()
        .unwrap_or(u32::MAX)
        .max(MIN_NUM_CTX);
    Ok(context_length.map_or(rounded, |ctx| rounded.min(ctx)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_estimate_never_undercounts_bytes_and_counts_the_template() {
        let m = vec![ChatMessage::system("abc"), ChatMessage::user("héllo")];
        // 3 + 6 bytes, 2 messages.
        assert_eq!(estimate_prompt_tokens(&m, false), 9 + 64 + 32);
        assert_eq!(estimate_prompt_tokens(&m[1..], true), 6 + 16);
    }

    #[test]
    fn num_ctx_is_rounded_capped_and_refuses_what_does_not_fit() {
        assert_eq!(size_num_ctx(100, 100, Some(8192), None).unwrap(), 2048);
        assert_eq!(size_num_ctx(2000, 100, Some(8192), None).unwrap(), 4096);
        assert_eq!(size_num_ctx(5000, 100, Some(8192), None).unwrap(), 8192);
        assert_eq!(size_num_ctx(100, 100, Some(1024), None).unwrap(), 1024);
        assert_eq!(size_num_ctx(100, 100, None, None).unwrap(), 2048);
        assert_eq!(size_num_ctx(9000, 100, None, None).unwrap(), 16384);
        assert_eq!(
            size_num_ctx(100, 100, Some(8192), Some(3000)).unwrap(),
            3000
        );

        let e = size_num_ctx(8000, 193, Some(8192), None).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::ContextLengthExceeded);
        assert!(!e.is_retryable());
        assert!(e.message().contains("8192"), "{e}");
        let e = size_num_ctx(2900, 200, Some(8192), Some(3000)).unwrap_err();
        assert!(e.message().contains("configured num_ctx"), "{e}");
        // Exactly full fits.
        assert_eq!(size_num_ctx(8000, 192, Some(8192), None).unwrap(), 8192);
    }
}
