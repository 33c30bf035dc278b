//! Picking the next token from the logits: temperature, top-k, top-p (candle's sampler).

use candle_transformers::generation::{LogitsProcessor, Sampling};

use crate::worker::SamplingParams;

/// The temperature when a request names none (llama.cpp's default).
pub const DEFAULT_TEMPERATURE: f64 = 0.8;

pub(crate) fn sampler(p: &SamplingParams) -> LogitsProcessor {
    let temperature = p.temperature.unwrap_or(DEFAULT_TEMPERATURE);
    let sampling = match (p.top_k, p.top_p) {
        _ if temperature <= 0.0 => Sampling::ArgMax,
        (None, None) => Sampling::All { temperature },
        (Some(k), None) => Sampling::TopK { k, temperature },
        (None, Some(p)) => Sampling::TopP { p, temperature },
        (Some(k), Some(p)) => Sampling::TopKThenTopP { k, p, temperature },
    };
    LogitsProcessor::from_sampling(p.seed, sampling)
}
