//! A generation body (NDJSON) as the port's events: text lines become deltas, the `done` line
//! becomes the final record with Ollama's figures, an `{"error": …}` line becomes an error.
//! Dropping the stream drops the response body, which closes the connection: Ollama stops
//! generating when its client goes away.

use std::time::{Duration, Instant};

use futures::StreamExt;
use futures::stream::BoxStream;
use reqwest::{Response, StatusCode};
use rigger_http_support::{Watchdog, ndjson_lines};
use rigger_ports::{
    Completion, ErrorKind, EventStream, FinishReason, InferenceError, StreamEvent, TimingSource,
    Timings, Usage,
};

use crate::config::IDLE_TIMEOUT_VAR;
use crate::errors::{error_from_message, unparseable};
use crate::{BACKEND, wire};

/// A generation line is tens of bytes; this only bounds memory against a broken server.
const MAX_LINE: usize = 1 << 20;

/// What the stream needs to know about its request.
pub(crate) struct Expect {
    pub started: Instant,
    /// The total deadline, and the first-token limit until text arrives.
    pub watchdog: Watchdog,
    /// The stall limit once text flows.
    pub idle_timeout: Duration,
    pub num_predict: u32,
    /// Ollama says `done_reason: "stop"` for end-of-sequence and for a stop sequence alike.
    pub has_stops: bool,
    pub model: String,
}

struct State {
    lines: BoxStream<'static, Result<String, InferenceError>>,
    expect: Expect,
    first_text: Option<Duration>,
    /// The final record, when its line also carried text (sent as a delta first).
    pending_done: Option<Completion>,
    finished: bool,
}

pub(crate) fn events(response: Response, expect: Expect) -> EventStream {
    events_from_lines(ndjson_lines(BACKEND, response, MAX_LINE), expect)
}

/// The same, from lines already framed (the bench feeds them from memory).
pub(crate) fn events_from_lines(
    lines: BoxStream<'static, Result<String, InferenceError>>,
    expect: Expect,
) -> EventStream {
    let state = State {
        lines,
        expect,
        first_text: None,
        pending_done: None,
        finished: false,
    };
    futures::stream::unfold(state, |mut state| async move {
        if state.finished {
            return None;
        }
        let event = next_event(&mut state).await;
        // After the final record or an error, nothing more.
        if !matches!(event, Ok(StreamEvent::Delta(_))) {
            state.finished = true;
        }
        Some((event, state))
    })
    .boxed()
}

async fn next_event(state: &mut State) -> Result<StreamEvent, InferenceError> {
    if let Some(done) = state.pending_done.take() {
        return Ok(StreamEvent::Done(done));
    }
    loop {
        // Lines without text (keep-alives) do not restart the stall clock: only text and the
        // final record are progress.
        let line = match state.expect.watchdog.next(&mut state.lines).await {
            Err(e) => return Err(e),
            Ok(None) => {
                return Err(InferenceError::new(
                    ErrorKind::Io,
                    BACKEND,
                    "the connection closed before Ollama's final record (`done: true`)",
                ));
            }
            Ok(Some(line)) => line?,
        };
        let parsed: wire::StreamLine =
            serde_json::from_str(&line).map_err(|e| unparseable(&line, &e))?;
        if let Some(message) = parsed.error {
            return Err(error_from_message(
                &message,
                StatusCode::OK,
                Some(&state.expect.model),
            ));
        }
        let text = parsed
            .message
            .as_ref()
            .map(|m| m.content.as_str())
            .or(parsed.response.as_deref())
            .unwrap_or_default();
        if !text.is_empty() {
            if state.first_text.is_none() {
                state.first_text = Some(state.expect.started.elapsed());
                state
                    .expect
                    .watchdog
                    .set_stall(state.expect.idle_timeout, IDLE_TIMEOUT_VAR);
            }
            state.expect.watchdog.progressed();
        }
        if parsed.done {
            let done = completion(&parsed, state);
            if text.is_empty() {
                return Ok(StreamEvent::Done(done));
            }
            // The docs' final records carry no text, but nothing forbids it: text first.
            state.pending_done = Some(done);
            return Ok(StreamEvent::Delta(text.to_owned()));
        }
        if !text.is_empty() {
            return Ok(StreamEvent::Delta(text.to_owned()));
        }
    }
}

fn completion(done: &wire::StreamLine, state: &State) -> Completion {
    let prompt_tokens = done.prompt_eval_count.unwrap_or(0);
    let generated = done.eval_count.unwrap_or(0);
    let finish_reason = match done.done_reason.as_deref() {
        Some("length") => FinishReason::MaxTokens,
        Some("stop") if state.expect.has_stops => FinishReason::Other("stop".into()),
        Some("stop") => FinishReason::EndOfSequence,
        Some(other) => FinishReason::Other(other.to_owned()),
        // Servers before `done_reason` existed: the budget tells.
        None if generated >= state.expect.num_predict => FinishReason::MaxTokens,
        None => FinishReason::EndOfSequence,
    };
    let ns = |v: Option<u64>| Duration::from_nanos(v.unwrap_or(0));
    Completion {
        finish_reason,
        usage: Usage {
            prompt_tokens,
            completion_tokens: generated,
        },
        timings: Timings {
            load: done.load_duration.map(Duration::from_nanos),
            time_to_first_token: state.first_text,
            prompt_tokens,
            prompt_duration: ns(done.prompt_eval_duration),
            generated_tokens: generated,
            generation_duration: ns(done.eval_duration),
            source: TimingSource::Backend,
            grammar: None,
        },
    }
}
