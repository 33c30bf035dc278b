use std::collections::VecDeque;
use std::io;

use bytes::Bytes;

use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use reqwest::Response;
use rigger_ports::{ErrorKind, InferenceError};
use tokio_util::codec::{FramedRead, LinesCodec, LinesCodecError};
use tokio_util::io::StreamReader;

use crate::send::{root_cause, transport_error};
use crate::sse::{SseError, SseEvent, SseParser};

/// The body of `response` as NDJSON lines (blank lines dropped), framed by tokio-util's
/// [`LinesCodec`]. A line longer than `max_line` bytes is a Protocol error, not an allocation
/// without bound; a connection that breaks off is an Io or Timeout error.
pub fn ndjson_lines(
    backend: &'static str,
    response: Response,
    max_line: usize,
) -> BoxStream<'static, Result<String, InferenceError>> {
    let bytes = response.bytes_stream().map_err(io::Error::other);
    FramedRead::new(
        StreamReader::new(bytes),
        LinesCodec::new_with_max_length(max_line),
    )
    .filter_map(move |line| async move {
        match line {
            Ok(line) if line.trim().is_empty() => None,
            Ok(line) => Some(Ok(line)),
            Err(LinesCodecError::MaxLineLengthExceeded) => Some(Err(InferenceError::protocol(
                backend,
                format!("a streamed line exceeds {max_line} bytes"),
            ))),
            Err(LinesCodecError::Io(err)) => Some(Err(body_error(backend, &err))),
        }
    })
    .boxed()
}

/// The largest SSE line, and the largest data of one event, read into memory (the same bound
/// as NDJSON lines: a streamed event is a few hundred bytes; this only stops a broken server).
pub const MAX_SSE_EVENT: usize = 1 << 20;

/// The body of `response` as server-sent events ([`SseParser`]: linear in the body's size). A
/// line or an event's data longer than `max_event` bytes is a Protocol error, not a buffer
/// without bound; a connection that breaks off is an Io or Timeout error.
pub fn sse_events(
    backend: &'static str,
    response: Response,
    max_event: usize,
) -> BoxStream<'static, Result<SseEvent, InferenceError>> {
    sse_events_from(backend, response.bytes_stream().boxed(), max_event)
}

/// [`sse_events`] over any byte stream (tests and benches feed memory).
pub fn sse_events_from(
    backend: &'static str,
    bytes: BoxStream<'static, Result<Bytes, reqwest::Error>>,
    max_event: usize,
) -> BoxStream<'static, Result<SseEvent, InferenceError>> {
    struct State {
        bytes: BoxStream<'static, Result<Bytes, reqwest::Error>>,
        parser: SseParser,
        ready: VecDeque<SseEvent>,
        /// Sent after the events completed before it.
        error: Option<InferenceError>,
        ended: bool,
    }
    let state = State {
        bytes,
        parser: SseParser::new(max_event),
        ready: VecDeque::new(),
        error: None,
        ended: false,
    };
    futures::stream::unfold(state, move |mut s| async move {
        loop {
            if let Some(event) = s.ready.pop_front() {
                return Some((Ok(event), s));
            }
            if let Some(error) = s.error.take() {
                return Some((Err(error), s));
            }
            if s.ended {
                return None;
            }
            let error = match s.bytes.next().await {
                None => {
                    // An event not closed by a blank line is dropped, as the SSE rules say.
                    s.ended = true;
                    continue;
                }
                Some(Ok(chunk)) => match s.parser.push(&chunk, &mut s.ready) {
                    Ok(()) => continue,
                    Err(SseError::TooLong(max)) => InferenceError::protocol(
                        backend,
                        format!("a streamed event line exceeds {max} bytes"),
                    ),
                    Err(SseError::NotUtf8) => {
                        InferenceError::protocol(backend, "the event stream is not UTF-8")
                    }
                },
                Some(Err(err)) => transport_body_error(backend, &err),
            };
            // Events completed before the fault still go out first; then the error, then the end.
            s.ended = true;
            s.error = Some(error);
        }
    })
    .boxed()
}

/// For the criterion bench only: frames `chunks` as one event stream with the parser the
/// adapters use and returns the bytes of data in the events (0 on an error). Not API.
#[doc(hidden)]
pub fn frame_sse_for_bench(chunks: &[Bytes], max_event: usize) -> usize {
    let mut parser = SseParser::new(max_event);
    let mut ready = VecDeque::new();
    let mut total = 0;
    for chunk in chunks {
        if parser.push(chunk, &mut ready).is_err() {
            return 0;
        }
        total += ready.drain(..).map(|e| e.data.len()).sum::<usize>();
    }
    total
}

fn body_error(backend: &str, err: &io::Error) -> InferenceError {
    match err
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<reqwest::Error>())
    {
        Some(reqwest_err) => transport_body_error(backend, reqwest_err),
        None => InferenceError::new(
            ErrorKind::Io,
            backend,
            format!("the response stream broke off: {}", root_cause(err)),
        ),
    }
}

fn transport_body_error(backend: &str, err: &reqwest::Error) -> InferenceError {
    if err.is_timeout() {
        return transport_error(backend, err);
    }
    InferenceError::new(
        ErrorKind::Io,
        backend,
        format!("the response stream broke off: {}", root_cause(err)),
    )
}
