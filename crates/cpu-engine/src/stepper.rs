//! A model run one token at a time from a fixed prompt, outside any server: the criterion bench
//! of the decode step and the tests that compare the engine's logits with candle's use it.

use std::path::Path;

use crate::error::{Error, Result};
use crate::isa::Isa;
use crate::models::{KvCache, Model, load_gguf};

/// A loaded model, its KV cache and a prompt of token ids.
pub struct DecodeStepper {
    model: Model,
    cache: KvCache,
    prompt: Vec<u32>,
}

impl DecodeStepper {
    /// Loads the GGUF model at `path` for the kernels of `isa`; `prompt` must hold a token.
    pub fn open(path: &Path, isa: Isa, prompt: Vec<u32>) -> Result<Self> {
        if prompt.is_empty() {
            return Err(Error::InvalidInput("the prompt is empty".into()));
        }
        let model = load_gguf(path, isa)?;
        let cache = model.cache(0);
        Ok(Self {
            model,
            cache,
            prompt,
        })
    }

    pub fn model(&self) -> &Model {
        &self.model
    }

    /// A fresh cache holding only the prompt; returns the logits after it.
    pub fn restart(&mut self) -> Result<Vec<f32>> {
        self.cache = self.model.cache(self.prompt.len() + 1024);
        self.model.forward(&mut self.cache, &self.prompt)
    }

    /// Runs `token` at the next position; returns its logits.
    pub fn feed(&mut self, token: u32) -> Result<Vec<f32>> {
        self.model.forward(&mut self.cache, &[token])
    }

    /// One decode step on a token taken from the prompt (after the prompt itself, the first
    /// time); returns how many positions the cache holds.
    pub fn step(&mut self) -> Result<usize> {
        if self.cache.is_empty() {
            self.restart()?;
        }
        let token = self.prompt[self.cache.len() % self.prompt.len()];
        self.feed(token)?;
        Ok(self.cache.len())
    }
}
