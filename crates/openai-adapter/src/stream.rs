//! From server-sent events to the port's stream: text deltas, then one final record.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use futures::StreamExt;
use futures::stream::BoxStream;
use rigger_http_support::{SseEvent, Watchdog};
use rigger_ports::{
    Completion, ErrorKind, EventStream, FinishReason, InferenceError, StopMatcher, StopStep,
    StreamEvent, TimingSource, Timings, TokenBudget, Usage,
};
use tokio::sync::OwnedSemaphorePermit;

use crate::BACKEND;
use crate::errors::{self, ServerError};
use crate::wire::{Chunk, WireTimings, WireUsage};

/// What the decoder knows about the request it decodes the answer to.
#[derive(Debug, Clone)]
pub(crate) struct Expectations {
    pub model: String,
    pub budget: TokenBudget,
    /// Stop sequences the adapter matches on the text (empty for exact budgets).
    pub stops: Vec<String>,
    /// Whether the server was sent the stop sequences too.
    pub stops_sent: bool,
    /// vLLM: `stop_reason` names the matched stop, and is null for end-of-sequence.
    pub reports_stop_reason: bool,
    /// Checked against the usage when the server does not enforce it.
    pub context_length: Option<u32>,
}

/// Turns SSE payloads into port events. Separate from the transport so that tests and the
/// bench can feed it directly.
pub(crate) struct Decoder {
    expect: Expectations,
    matcher: StopMatcher,
    started: Instant,
    first_token: Option<Instant>,
    stopped_by_adapter: bool,
    finish_reason: Option<String>,
    stop_reason: Option<serde_json::Value>,
    usage: Option<WireUsage>,
    timings: Option<WireTimings>,
    /// `[DONE]` seen.
    done: bool,
    /// Bumped by what moves the generation on (text, a finish reason, usage, `[DONE]`), never
    /// by keep-alives: the stall clock restarts only when it changes.
    progress: u64,
}

impl Decoder {
    pub fn new(expect: Expectations, started: Instant) -> Self {
        Self {
            matcher: StopMatcher::new(&expect.stops),
            expect,
            started,
            first_token: None,
            stopped_by_adapter: false,
            finish_reason: None,
            stop_reason: None,
            usage: None,
            timings: None,
            done: false,
            progress: 0,
        }
    }

    pub fn progress(&self) -> u64 {
        self.progress
    }

    pub fn is_done(&self) -> bool {
        self.done
    }

    /// One event; text deltas to emit go into `out`.
    pub fn on_event(
        &mut self,
        event: &SseEvent,
        out: &mut VecDeque<StreamEvent>,
    ) -> Result<(), InferenceError> {
        if self.done {
            return Ok(());
        }
        let data = event.data.trim();
        if event.event == "error" {
            let server = serde_json::from_str::<serde_json::Value>(data)
                .ok()
                .and_then(|v| ServerError::from_json(&v).or(Some(ServerError::from_body(data))))
                .unwrap_or_else(|| ServerError::from_body(data));
            return Err(errors::from_stream_event(server, &self.expect.model));
        }
        if !event.event.is_empty() {
            tracing::debug!(backend = BACKEND, event = %event.event, "ignoring a named event");
            return Ok(());
        }
        if data == "[DONE]" {
            self.done = true;
            self.progress += 1;
            return Ok(());
        }
        if data.is_empty() {
            return Ok(());
        }
        let chunk: Chunk = serde_json::from_str(data).map_err(|e| {
            InferenceError::protocol(BACKEND, format!("a streamed chunk is not valid JSON: {e}"))
                .with_raw_output(data.to_owned())
        })?;
        if let Some(error) = &chunk.error {
            let server =
                ServerError::from_json(&serde_json::json!({ "error": error })).unwrap_or_default();
            return Err(errors::from_stream_event(server, &self.expect.model));
        }
        if let Some(usage) = chunk.usage {
            self.usage = Some(usage);
            self.progress += 1;
        }
        if let Some(timings) = chunk.timings {
            self.timings = Some(timings);
        }
        for choice in chunk.choices.into_iter().filter(|c| c.index == 0) {
            if let Some(text) = choice.delta.and_then(|d| d.content)
                && !text.is_empty()
            {
                self.on_text(&text, out);
            }
            if let Some(reason) = choice.finish_reason {
                self.progress += 1;
                self.finish_reason = Some(reason);
                self.stop_reason = choice.stop_reason;
            }
        }
        Ok(())
    }

    fn on_text(&mut self, text: &str, out: &mut VecDeque<StreamEvent>) {
        self.progress += 1;
        if self.first_token.is_none() {
            self.first_token = Some(Instant::now());
        }
        if self.stopped_by_adapter {
            // Past a stop sequence: the server generates on (it was not told, or matched
            // differently); its text is dropped, its usage is still awaited.
            return;
        }
        let emit = match self.matcher.push(text) {
            StopStep::Emit(t) => t,
            StopStep::Stop(t) => {
                self.stopped_by_adapter = true;
                t
            }
        };
        if !emit.is_empty() {
            out.push_back(StreamEvent::Delta(emit));
        }
    }

    /// The body ended (after `[DONE]` or not): the held-back text and the final record.
    pub fn finish(
        &mut self,
        out: &mut VecDeque<StreamEvent>,
    ) -> Result<Completion, InferenceError> {
        let ended = Instant::now();
        if !self.stopped_by_adapter {
            let held = self.matcher.finish();
            if !held.is_empty() {
                out.push_back(StreamEvent::Delta(held));
            }
        }
        let finish_reason = match (&self.finish_reason, self.done) {
            _ if self.stopped_by_adapter => FinishReason::StopSequence,
            (Some(reason), _) => self.map_finish_reason(reason),
            (None, true) => FinishReason::Other("unreported".to_owned()),
            (None, false) => {
                return Err(InferenceError::new(
                    ErrorKind::Io,
                    BACKEND,
                    "the stream ended before the server finished the generation",
                ));
            }
        };
        let usage = match (self.usage, self.timings) {
            (Some(u), _) => Usage {
                prompt_tokens: u.prompt_tokens,
                completion_tokens: u.completion_tokens,
            },
            (None, Some(t)) if t.prompt_n >= 0 => Usage {
                prompt_tokens: clamp(t.prompt_n + t.cache_n.unwrap_or(0)),
                completion_tokens: clamp(t.predicted_n),
            },
            (None, _) => {
                tracing::warn!(
                    backend = BACKEND,
                    "the server sent no usage; token counts are reported as 0 (unknown)"
                );
                Usage::default()
            }
        };
        let timings = match self.timings.filter(|t| t.prompt_n >= 0) {
            Some(t) => backend_timings(t),
            None => self.client_timings(usage, ended),
        };
        self.check_budget(usage)?;
        Ok(Completion {
            finish_reason,
            usage,
            timings,
        })
    }

    fn map_finish_reason(&self, reason: &str) -> FinishReason {
        match reason {
            "length" => FinishReason::MaxTokens,
            "content_filter" => FinishReason::ContentFilter,
            "stop" if !self.expect.stops_sent => FinishReason::EndOfSequence,
            // Told the stops, the server says "stop" for both end-of-sequence and a stop
            // sequence; only vLLM says which (`stop_reason`: the string, or a token id).
            "stop" => match &self.stop_reason {
                Some(serde_json::Value::String(_)) => FinishReason::StopSequence,
                Some(serde_json::Value::Number(_)) => FinishReason::EndOfSequence,
                None if self.expect.reports_stop_reason => FinishReason::EndOfSequence,
                _ => FinishReason::Other("stop".to_owned()),
            },
            other => FinishReason::Other(other.to_owned()),
        }
    }

    fn client_timings(&self, usage: Usage, ended: Instant) -> Timings {
        let ttft = self.first_token.map(|t| t - self.started);
        Timings {
            load: None,
            time_to_first_token: ttft,
            prompt_tokens: usage.prompt_tokens,
            prompt_duration: ttft.unwrap_or(Duration::ZERO),
            generated_tokens: usage.completion_tokens,
            generation_duration: self.first_token.map_or(Duration::ZERO, |t| ended - t),
            source: TimingSource::Client,
            grammar: None,
        }
    }

    fn check_budget(&self, usage: Usage) -> Result<(), InferenceError> {
        if let TokenBudget::Exactly(n) = self.expect.budget
            && self.usage.is_some()
            && usage.completion_tokens != n
        {
            return Err(InferenceError::protocol(
                BACKEND,
                format!(
                    "asked for exactly {n} tokens, the server generated {}: it does not honour ignore_eos",
                    usage.completion_tokens
                ),
            )
            .with_hint("set RIGGER_OPENAI_SERVER to the server's real kind, or do not ask for an exact budget"));
        }
        if let Some(ctx) = self.expect.context_length
            && usage.total() > ctx
        {
            return Err(InferenceError::new(
                ErrorKind::ContextLengthExceeded,
                BACKEND,
                format!(
                    "the prompt ({} tokens) plus the output ({} tokens) exceed the model's context of {ctx} tokens; the server does not enforce it, so the output is not trustworthy",
                    usage.prompt_tokens, usage.completion_tokens
                ),
            )
            .with_retryable(false)
            .with_hint("shorten the prompt or lower max_tokens"));
        }
        Ok(())
    }
}

fn clamp(n: i64) -> u32 {
    u32::try_from(n.max(0)).unwrap_or(u32::MAX)
}

fn millis(ms: f64) -> Duration {
    if ms.is_finite() && ms > 0.0 {
        Duration::from_secs_f64(ms / 1e3)
    } else {
        Duration::ZERO
    }
}

/// llama-server's clocks: prompt evaluation, then decoding. Its `prompt_n` excludes tokens
/// reused from its prompt cache, so it can be smaller than the usage's prompt tokens.
fn backend_timings(t: WireTimings) -> Timings {
    let generated = clamp(t.predicted_n);
    Timings {
        load: None,
        time_to_first_token: (generated > 0).then(|| millis(t.prompt_ms)),
        prompt_tokens: clamp(t.prompt_n),
        prompt_duration: millis(t.prompt_ms),
        generated_tokens: generated,
        generation_duration: millis(t.predicted_ms),
        source: TimingSource::Backend,
        grammar: None,
    }
}

struct State {
    events: Option<BoxStream<'static, Result<SseEvent, InferenceError>>>,
    decoder: Decoder,
    pending: VecDeque<StreamEvent>,
    watchdog: Watchdog,
    /// Held until the stream is dropped or ends: the concurrency slot of this request.
    permit: Option<OwnedSemaphorePermit>,
}

/// The port's stream over a response's events. Dropping it drops the response body, which
/// closes the connection: the server sees the client go and stops generating.
pub(crate) fn event_stream(
    events: BoxStream<'static, Result<SseEvent, InferenceError>>,
    decoder: Decoder,
    watchdog: Watchdog,
    permit: Option<OwnedSemaphorePermit>,
) -> EventStream {
    let state = State {
        events: Some(events),
        decoder,
        pending: VecDeque::new(),
        watchdog,
        permit,
    };
    futures::stream::unfold(state, |mut s| async move {
        loop {
            if let Some(event) = s.pending.pop_front() {
                return Some((Ok(event), s));
            }
            let events = s.events.as_mut()?;
            let next = if s.decoder.is_done() {
                None
            } else {
                match s.watchdog.next(events).await {
                    Ok(next) => next,
                    Err(error) => return Some((Err(error), s.end())),
                }
            };
            let outcome = match next {
                Some(Ok(event)) => {
                    let mut pending = std::mem::take(&mut s.pending);
                    let before = s.decoder.progress();
                    let result = s.decoder.on_event(&event, &mut pending);
                    if s.decoder.progress() != before {
                        s.watchdog.progressed();
                    }
                    s.pending = pending;
                    match result {
                        Ok(()) => continue,
                        Err(e) => Err(e),
                    }
                }
                Some(Err(e)) => Err(e),
                None => {
                    let mut pending = std::mem::take(&mut s.pending);
                    let result = s.decoder.finish(&mut pending);
                    s.pending = pending;
                    result.map(|c| {
                        s.pending.push_back(StreamEvent::Done(c));
                    })
                }
            };
            match outcome {
                Ok(()) => {
                    s = s.end();
                    continue;
                }
                Err(e) => return Some((Err(e), s.end())),
            }
        }
    })
    .boxed()
}

impl State {
    /// Nothing more is read: the body and the concurrency slot are released now, not when
    /// the caller gets round to dropping the stream.
    fn end(mut self) -> Self {
        self.events = None;
        self.permit = None;
        self
    }
}

/// For the bench: decodes `payloads` as one stream and returns the text length. Not API.
#[doc(hidden)]
pub fn decode_payloads_for_bench(payloads: &[String]) -> usize {
    let mut decoder = Decoder::new(
        Expectations {
            model: "bench".to_owned(),
            budget: TokenBudget::UpTo(u32::MAX),
            stops: Vec::new(),
            stops_sent: false,
            reports_stop_reason: false,
            context_length: None,
        },
        Instant::now(),
    );
    let mut out = VecDeque::new();
    let mut len = 0;
    for data in payloads {
        let event = SseEvent {
            event: String::new(),
            data: data.clone(),
        };
        if decoder.on_event(&event, &mut out).is_err() {
            return 0;
        }
        for e in out.drain(..) {
            if let StreamEvent::Delta(t) = e {
                len += t.len();
            }
        }
    }
    len
}
