use std::io;

use eventsource_stream::{EventStreamError, Eventsource};
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use reqwest::Response;
use rigger_ports::{ErrorKind, InferenceError};
use tokio_util::codec::{FramedRead, LinesCodec, LinesCodecError};
use tokio_util::io::StreamReader;

use crate::send::{root_cause, transport_error};

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

/// One server-sent event. `event` is empty when the server named none (SSE's default
/// "message"); comment lines (`: keepalive`) never become events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    pub event: String,
    pub data: String,
}

/// The body of `response` as server-sent events, parsed by the `eventsource-stream` crate.
pub fn sse_events(
    backend: &'static str,
    response: Response,
) -> BoxStream<'static, Result<SseEvent, InferenceError>> {
    response
        .bytes_stream()
        .eventsource()
        .map(move |event| match event {
            Ok(e) => Ok(SseEvent {
                event: if e.event == "message" {
                    String::new()
                } else {
                    e.event
                },
                data: e.data,
            }),
            Err(EventStreamError::Transport(err)) => Err(transport_body_error(backend, &err)),
            Err(EventStreamError::Utf8(err)) => Err(InferenceError::protocol(
                backend,
                format!("event stream is not UTF-8: {err}"),
            )),
            Err(EventStreamError::Parser(err)) => Err(InferenceError::protocol(
                backend,
                format!("malformed event stream: {err}"),
            )),
        })
        .boxed()
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
