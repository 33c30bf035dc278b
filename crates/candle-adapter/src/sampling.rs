//! Picking the next token from the logits: temperature, top-k, top-p (candle's sampler), and
//! for structured requests only among the tokens the output grammar allows.

use candle_core::Tensor;
use candle_transformers::generation::{LogitsProcessor, Sampling};
use rigger_ports::InferenceError;

use crate::BACKEND;
use crate::constrain::{Grammar, apply_mask};
use crate::weights::run_error;
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

/// What one constrained draw cost: the grammar's work only (sampling costs the same either way).
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct MaskStep {
    pub(crate) duration: std::time::Duration,
}

/// The next token: `sampler` over `logits`, restricted to what `grammar` allows.
///
/// mistral.rs's recipe: sample unconstrained, keep the token if the grammar allows it (a check of
/// one token, microseconds), otherwise compute the full mask and sample again from the allowed
/// tokens. For plain sampling the result has exactly the masked distribution (a rejected draw
/// resamples from the allowed set in proportion to its weights) and greedy picks the masked
/// argmax; with top-k/top-p the first draw is truncated before the mask. Computing the mask
/// every step costs far more (`benches/benches/constrain.rs`).
pub(crate) fn pick(
    sampler: &mut LogitsProcessor,
    logits: &Tensor,
    grammar: Option<&mut Grammar>,
) -> Result<(u32, MaskStep), InferenceError> {
    let Some(grammar) = grammar else {
        return Ok((
            sampler.sample(logits).map_err(run_error)?,
            MaskStep::default(),
        ));
    };
    // Only the grammar's work is timed: sampling costs the same with or without it.
    let mut spent = std::time::Duration::ZERO;
    let draft = sampler.sample(logits).map_err(run_error)?;
    let started = std::time::Instant::now();
    let allowed = grammar.allows(draft);
    spent += started.elapsed();
    if allowed {
        return Ok((draft, MaskStep { duration: spent }));
    }
    let mut values = logits
        .flatten_all()
        .and_then(|l| l.to_dtype(candle_core::DType::F32))
        .and_then(|l| l.to_vec1::<f32>())
        .map_err(run_error)?;
    let started = std::time::Instant::now();
    let mask = grammar.mask()?;
    apply_mask(&mask, &mut values);
    spent += started.elapsed();
    if values.iter().all(|v| *v == f32::NEG_INFINITY) {
        return Err(InferenceError::internal(
            BACKEND,
            "the output grammar allows no token of this model's vocabulary",
        ));
    }
    let masked =
        Tensor::from_vec(values, logits.elem_count(), logits.device()).map_err(run_error)?;
    let step = MaskStep { duration: spent };
    Ok((sampler.sample(&masked).map_err(run_error)?, step))
}
