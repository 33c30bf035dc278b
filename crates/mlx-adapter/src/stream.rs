//! A request's replies from the worker as the port's events: `delta`s become text, `done`
//! becomes the final record with mlx-lm's own figures, `error` the port's error. Dropping the
//! stream before `done` tells the worker to stop that request.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use rigger_ports::{
    Completion, EventStream, FinishReason, GrammarTimings, InferenceError, StreamEvent,
    TimingSource, Timings, Usage,
};
use tokio::sync::mpsc;

use crate::errors::{crashed, worker_error};
use crate::wire::{DoneStats, Reply};
use crate::{BACKEND, worker};

/// Tells the worker to stop a request whose stream was dropped before it finished.
pub(crate) struct CancelOnDrop {
    worker: Arc<worker::Worker>,
    id: u64,
    armed: bool,
}

impl CancelOnDrop {
    pub(crate) fn new(worker: Arc<worker::Worker>, id: u64) -> Self {
        Self {
            worker,
            id,
            armed: true,
        }
    }
}

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        if self.armed {
            self.worker.cancel(self.id);
        }
    }
}

/// What the stream needs to know about its request.
pub(crate) struct Expect {
    pub model: String,
    /// The load time, when this request loaded the model.
    pub load_seconds: Option<f64>,
    pub first_token_timeout: Duration,
    pub idle_timeout: Duration,
}

struct State {
    rx: mpsc::UnboundedReceiver<worker::Event>,
    cancel: CancelOnDrop,
    expect: Expect,
    first: bool,
    finished: bool,
}

pub(crate) fn events(
    rx: mpsc::UnboundedReceiver<worker::Event>,
    cancel: CancelOnDrop,
    expect: Expect,
) -> EventStream {
    let state = State {
        rx,
        cancel,
        expect,
        first: true,
        finished: false,
    };
    futures::stream::unfold(state, |mut st| async move {
        if st.finished {
            return None;
        }
        let wait = if st.first {
            st.expect.first_token_timeout
        } else {
            st.expect.idle_timeout
        };
        let setting = if st.first {
            crate::config::FIRST_TOKEN_TIMEOUT_VAR
        } else {
            crate::config::IDLE_TIMEOUT_VAR
        };
        let item = match tokio::time::timeout(wait, st.rx.recv()).await {
            Err(_) => Err(InferenceError::timeout(
                BACKEND,
                format!("no token from the MLX worker within {wait:?}"),
            )
            .with_hint(format!("raise {setting} if the model needs longer"))),
            Ok(None) => Err(crashed("the MLX worker stopped")),
            Ok(Some(worker::Event::Crashed(message))) => Err(crashed(message)),
            Ok(Some(worker::Event::Reply(reply))) => match reply {
                Reply::Delta { text, .. } => {
                    st.first = false;
                    return Some((Ok(StreamEvent::Delta(text)), st));
                }
                Reply::Done { stats, .. } => {
                    st.cancel.armed = false;
                    Ok(StreamEvent::Done(completion(
                        &stats,
                        st.expect.load_seconds,
                    )))
                }
                Reply::Error { kind, message, .. } => {
                    Err(worker_error(&st.expect.model, kind, message))
                }
                other => Err(InferenceError::protocol(
                    BACKEND,
                    format!("unexpected worker message {:?}", other.name()),
                )),
            },
        };
        st.finished = true;
        Some((item, st))
    })
    .boxed()
}

fn completion(stats: &DoneStats, load_seconds: Option<f64>) -> Completion {
    tracing::debug!(target: "rigger::mlx", "peak memory {:.3} GB", stats.peak_memory_gb);
    if let Some(c) = &stats.constraint {
        tracing::debug!(
            target: "rigger::mlx",
            "grammar mask per token: p50 {:.3} ms, p99 {:.3} ms over {} tokens",
            c.mask_p50_ms,
            c.mask_p99_ms,
            c.masked_tokens
        );
    }
    let secs = |tokens: u32, tps: f64| {
        if tps > 0.0 {
            Duration::from_secs_f64(f64::from(tokens) / tps)
        } else {
            Duration::ZERO
        }
    };
    Completion {
        finish_reason: match stats.finish_reason.as_str() {
            "length" => FinishReason::MaxTokens,
            "stop" => FinishReason::EndOfSequence,
            "stop_sequence" => FinishReason::StopSequence,
            other => FinishReason::Other(other.to_owned()),
        },
        usage: Usage {
            prompt_tokens: stats.prompt_tokens,
            completion_tokens: stats.generation_tokens,
        },
        timings: Timings {
            load: load_seconds.map(Duration::from_secs_f64),
            time_to_first_token: stats.time_to_first_token.map(Duration::from_secs_f64),
            prompt_tokens: stats.prompt_tokens,
            prompt_duration: secs(stats.prompt_tokens, stats.prompt_tps),
            generated_tokens: stats.generation_tokens,
            // mlx-lm's rate is over its own count.
            generation_duration: secs(stats.mlx_generation_tokens, stats.generation_tps),
            source: TimingSource::Backend,
            grammar: stats.constraint.as_ref().map(|c| GrammarTimings {
                steps: c.masked_tokens,
                p50: Duration::from_secs_f64(c.mask_p50_ms.max(0.0) / 1e3),
                p99: Duration::from_secs_f64(c.mask_p99_ms.max(0.0) / 1e3),
            }),
        },
    }
}
