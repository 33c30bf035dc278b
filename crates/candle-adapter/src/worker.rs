//! The worker thread of a loaded model. Requests queue on a channel and run one at a time with
//! a fresh KV cache; tokens go back through a bounded tokio channel, and a closed channel (the
//! stream was dropped) stops generation at the next token.

use std::sync::mpsc as std_mpsc;
use std::time::{Duration, Instant};

use candle_core::Device;
use rigger_ports::{
    Completion, ErrorKind, FinishReason, GrammarTimings, InferenceError, StopMatcher, StopStep,
    StreamEvent, TimingSource, Timings, Usage,
};
use tokenizers::Tokenizer;
use tokio::sync::mpsc;

use crate::BACKEND;
use crate::constrain::Grammar;
use crate::detokenize::Detokenizer;
use crate::sampling::{pick, sampler};
use crate::weights::{Weights, run_error};

pub(crate) type EventSender = mpsc::Sender<Result<StreamEvent, InferenceError>>;

/// The worker thread's half of a loaded model.
pub(crate) struct Worker {
    pub(crate) weights: Weights,
    pub(crate) eos: Vec<u32>,
}

/// One request, tokenized.
pub(crate) struct Job {
    pub(crate) prompt: Vec<u32>,
    pub(crate) sampling: SamplingParams,
    /// The output grammar of a JSON request: only tokens it allows are sampled, and generation
    /// ends where it ends.
    pub(crate) grammar: Option<Grammar>,
    pub(crate) events: EventSender,
    pub(crate) enqueued: Instant,
    /// How long loading the model took, when this request loaded it.
    pub(crate) load: Option<Duration>,
}

#[derive(Debug, Clone)]
pub(crate) struct SamplingParams {
    pub(crate) limit: u32,
    pub(crate) exact: bool,
    pub(crate) temperature: Option<f64>,
    pub(crate) top_k: Option<usize>,
    pub(crate) top_p: Option<f64>,
    pub(crate) seed: u64,
    pub(crate) stop: Vec<String>,
    pub(crate) repeat_penalty: f32,
    pub(crate) repeat_last_n: usize,
}

/// The worker thread's loop: one job at a time, until every sender is gone.
pub(crate) fn serve(
    mut worker: Worker,
    tokenizer: Tokenizer,
    device: Device,
    pool: Option<rayon::ThreadPool>,
    jobs: std_mpsc::Receiver<Job>,
) {
    for job in jobs {
        if job.events.is_closed() {
            continue; // cancelled while queued
        }
        let events = job.events.clone();
        let run = std::panic::AssertUnwindSafe(|| generate(&mut worker, &tokenizer, &device, job));
        let outcome = match &pool {
            Some(pool) => pool.install(|| std::panic::catch_unwind(run)),
            None => std::panic::catch_unwind(run),
        };
        let error = match outcome {
            Ok(Ok(())) => continue,
            Ok(Err(e)) => e,
            Err(panic) => {
                let what = panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                InferenceError::new(
                    ErrorKind::BackendCrashed,
                    BACKEND,
                    format!("the model panicked: {what}"),
                )
            }
        };
        let _ = events.blocking_send(Err(error));
    }
}

fn generate(
    worker: &mut Worker,
    tokenizer: &Tokenizer,
    device: &Device,
    mut job: Job,
) -> Result<(), InferenceError> {
    let p = &job.sampling;
    let started = Instant::now();
    let positions = job.prompt.len() + p.limit as usize;
    let mut session = worker.weights.session(device, positions)?;
    let mut logits = worker
        .weights
        .forward(&mut session, &job.prompt, 0, device)?;
    let prompt_duration = started.elapsed();
    let mut sampler = sampler(p);
    let mut stops = StopMatcher::new(if p.exact { &[] } else { &p.stop });
    let mut detok = Detokenizer::new(tokenizer);
    let mut history = job.prompt.clone();
    let mut generated = 0u32;
    let mut first_token = None;
    let mut grammar = job.grammar.take();
    // What each grammar step cost. (A budget that ends before the grammar does ends as
    // MaxTokens: the response-format check turns that into MalformedOutput, figures kept.)
    let mut mask_times = Vec::new();
    let finish = loop {
        if p.repeat_penalty != 1.0 {
            let start = history.len().saturating_sub(p.repeat_last_n);
            logits = candle_transformers::utils::apply_repeat_penalty(
                &logits,
                p.repeat_penalty,
                &history[start..],
            )
            .map_err(run_error)?;
        }
        let (next, step) = pick(&mut sampler, &logits, grammar.as_mut())?;
        // The tokens fed to the model next: the sampled one, then any the grammar forces (they
        // need no sampling: one forward pass takes them all).
        let mut fed = vec![next];
        if let Some(g) = grammar.as_mut() {
            mask_times.push(step.duration);
            if worker.eos.contains(&next) {
                // The mask offers end-of-sequence only where the grammar may end.
                generated += 1;
                first_token.get_or_insert_with(|| job.enqueued.elapsed());
                break FinishReason::EndOfSequence;
            }
            g.consume(next)?;
            if !g.is_stopped() {
                let room = p.limit.saturating_sub(generated + 1) as usize;
                let forced = g.forced();
                let forced = &forced[..forced.len().min(room)];
                for &t in forced {
                    g.consume(t)?;
                }
                fed.extend_from_slice(forced);
            }
        }
        let mut stopped = false;
        for &token in &fed {
            generated += 1;
            first_token.get_or_insert_with(|| job.enqueued.elapsed());
            history.push(token);
            if grammar.is_none() && !p.exact && worker.eos.contains(&token) {
                break;
            }
            let text = match stops.push(&detok.push(token)?) {
                StopStep::Emit(t) => t,
                StopStep::Stop(t) => {
                    stopped = true;
                    t
                }
            };
            if !text.is_empty()
                && job
                    .events
                    .blocking_send(Ok(StreamEvent::Delta(text)))
                    .is_err()
            {
                return Ok(()); // the stream was dropped: stop here
            }
            if stopped {
                break;
            }
        }
        if grammar.is_none() && !p.exact && worker.eos.contains(&next) {
            break FinishReason::EndOfSequence;
        }
        if stopped {
            break FinishReason::StopSequence;
        }
        if let Some(g) = grammar.as_mut()
            && g.is_stopped()
        {
            break FinishReason::EndOfSequence; // the grammar's end: the JSON is complete
        }
        if generated >= p.limit {
            break FinishReason::MaxTokens;
        }
        if job.events.is_closed() {
            return Ok(());
        }
        let pos = history.len() - fed.len();
        logits = worker.weights.forward(&mut session, &fed, pos, device)?;
    };
    let grammar_timings = GrammarTimings::of(&mask_times);
    if let Some(g) = &grammar_timings {
        tracing::debug!(
            steps = g.steps,
            p50_us = g.p50.as_micros() as u64,
            p99_us = g.p99.as_micros() as u64,
            "grammar time per sampled token"
        );
    }
    let rest = stops.finish();
    if !rest.is_empty() {
        let _ = job.events.blocking_send(Ok(StreamEvent::Delta(rest)));
    }
    let prompt_tokens = job.prompt.len() as u32;
    let done = Completion {
        finish_reason: finish,
        usage: Usage {
            prompt_tokens,
            completion_tokens: generated,
        },
        timings: Timings {
            load: job.load,
            time_to_first_token: first_token,
            prompt_tokens,
            prompt_duration,
            generated_tokens: generated,
            generation_duration: started.elapsed() - prompt_duration,
            source: TimingSource::Backend,
            grammar: grammar_timings,
        },
    };
    let _ = job.events.blocking_send(Ok(StreamEvent::Done(done)));
    Ok(())
}
