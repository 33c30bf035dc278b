//! The weights of a loaded model, whichever code runs them: the CPU engine
//! (`rigger-cpu-engine`) or one of candle's models, behind one `session` + `forward` pair.

use candle_core::{DType, Device, Tensor};
use candle_transformers::models::{
    llama, quantized_gemma3, quantized_llama, quantized_phi3, quantized_qwen2, quantized_qwen3,
};
use rigger_ports::InferenceError;

use crate::BACKEND;

pub(crate) enum Weights {
    /// The CPU engine (quantized llama, qwen2, qwen3, phi3 and gemma3 models on the CPU).
    Cpu(rigger_cpu_engine::Model),
    Quantized(quantized_llama::ModelWeights),
    Qwen2(quantized_qwen2::ModelWeights),
    Phi3(quantized_phi3::ModelWeights),
    Qwen3(quantized_qwen3::ModelWeights),
    Gemma3(quantized_gemma3::ModelWeights),
    Full {
        model: llama::Llama,
        config: llama::Config,
        dtype: DType,
    },
}

/// Per-request state of the weights: the KV cache.
pub(crate) enum Session {
    Cpu(rigger_cpu_engine::KvCache),
    Quantized,
    Full(llama::Cache),
}

/// A failure while running the model (either code), for the request that ran it.
pub(crate) fn run_error(e: impl std::fmt::Display) -> InferenceError {
    InferenceError::internal(BACKEND, format!("the model failed: {e}"))
}

impl Weights {
    /// A fresh session with room for `positions` tokens.
    pub(crate) fn session(
        &self,
        device: &Device,
        positions: usize,
    ) -> Result<Session, InferenceError> {
        Ok(match self {
            Weights::Cpu(model) => Session::Cpu(model.cache(positions)),
            Weights::Quantized(_)
            | Weights::Qwen2(_)
            | Weights::Phi3(_)
            | Weights::Qwen3(_)
            | Weights::Gemma3(_) => Session::Quantized,
            Weights::Full { config, dtype, .. } => {
                Session::Full(llama::Cache::new(true, *dtype, config, device).map_err(run_error)?)
            }
        })
    }

    /// Logits (f32, one row) for the last of `tokens`, which start at position `pos`.
    pub(crate) fn forward(
        &mut self,
        session: &mut Session,
        tokens: &[u32],
        pos: usize,
        device: &Device,
    ) -> Result<Tensor, InferenceError> {
        if let (Weights::Cpu(model), Session::Cpu(cache)) = (&*self, &mut *session) {
            if cache.len() != pos {
                return Err(run_error(format!(
                    "position {pos} does not follow the cache's {}",
                    cache.len()
                )));
            }
            let logits = model.forward(cache, tokens).map_err(run_error)?;
            let vocab = logits.len();
            return Tensor::from_vec(logits, vocab, device).map_err(run_error);
        }
        self.forward_candle(session, tokens, pos, device)
            .map_err(run_error)
    }

    fn forward_candle(
        &mut self,
        session: &mut Session,
        tokens: &[u32],
        pos: usize,
        device: &Device,
    ) -> candle_core::Result<Tensor> {
        let input = Tensor::new(tokens, device)?.unsqueeze(0)?;
        let logits = match (self, session) {
            // Position 0 resets the internal KV cache of quantized_llama, qwen2, phi3 and gemma3: a
            // fresh cache per request.
            (Weights::Quantized(m), Session::Quantized) => m.forward(&input, pos)?,
            (Weights::Qwen2(m), Session::Quantized) => m.forward(&input, pos)?,
            (Weights::Phi3(m), Session::Quantized) => m.forward(&input, pos)?,
            (Weights::Gemma3(m), Session::Quantized) => m.forward(&input, pos)?,
            // quantized_qwen3 keeps appending to its cache: clear it for a new request.
            (Weights::Qwen3(m), Session::Quantized) => {
                if pos == 0 {
                    m.clear_kv_cache();
                }
                m.forward(&input, pos)?
            }
            (Weights::Full { model, .. }, Session::Full(cache)) => {
                model.forward(&input, pos, cache)?
            }
            _ => candle_core::bail!("session does not match the weights"),
        };
        logits.squeeze(0)?.to_dtype(DType::F32)
    }
}
