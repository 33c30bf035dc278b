//! Turning generated tokens back into text as they arrive.

use rigger_ports::InferenceError;
use tokenizers::Tokenizer;

use crate::BACKEND;

/// Emits text as tokens arrive, holding back bytes that do not yet form whole characters.
pub(crate) struct Detokenizer<'a> {
    tokenizer: &'a Tokenizer,
    tokens: Vec<u32>,
    emitted: usize,
}

impl<'a> Detokenizer<'a> {
    pub(crate) fn new(tokenizer: &'a Tokenizer) -> Self {
        Self {
            tokenizer,
            tokens: Vec::new(),
            emitted: 0,
        }
    }

    /// The text `token` completes (empty while a character is still incomplete).
    pub(crate) fn push(&mut self, token: u32) -> Result<String, InferenceError> {
        self.tokens.push(token);
        let text = self
            .tokenizer
            .decode(&self.tokens, true)
            .map_err(|e| InferenceError::internal(BACKEND, format!("decoding failed: {e}")))?;
        if text.ends_with('\u{FFFD}')
            || text.len() < self.emitted
            || !text.is_char_boundary(self.emitted)
        {
            return Ok(String::new());
        }
        let new = text[self.emitted..].to_owned();
        self.emitted = text.len();
        // Keep the window short: decode cost stays flat however long the generation runs.
        if self.tokens.len() > 64 {
            let keep = self.tokens[self.tokens.len() - 8..].to_vec();
            if let Ok(tail) = self.tokenizer.decode(&keep, true)
                && !tail.contains('\u{FFFD}')
            {
                self.tokens = keep;
                self.emitted = tail.len();
            }
        }
        Ok(new)
    }
}
