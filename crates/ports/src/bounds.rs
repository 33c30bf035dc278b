//! An answer's size bounded by its token budget: a server that streams megabytes of text for a
//! short request is stopped instead of read whole.

use futures::StreamExt;

use crate::{EventStream, InferenceError, StreamEvent};

/// Bytes of text one token may plausibly take. A token is about 4 bytes of English and rarely
/// more than 16 even for rare scripts; 32 leaves room for any real tokenizer.
pub const BYTES_PER_TOKEN: u64 = 32;
/// Added to every budget: small budgets still fit the longest single tokens and whitespace.
pub const ANSWER_SLACK_BYTES: u64 = 64 * 1024;

/// The most bytes of text an answer of `max_tokens` tokens is read up to.
pub fn answer_byte_limit(max_tokens: u32) -> u64 {
    u64::from(max_tokens)
        .saturating_mul(BYTES_PER_TOKEN)
        .saturating_add(ANSWER_SLACK_BYTES)
}

/// Passes `stream` through until its text passes [`answer_byte_limit`]; then yields a Protocol
/// error and ends, which drops `stream` (for an HTTP adapter: closes the connection, so the
/// server stops generating). Text up to the limit is kept: the error carries none of it.
pub fn bound_answer(backend: &str, max_tokens: u32, stream: EventStream) -> EventStream {
    let backend = backend.to_owned();
    let limit = answer_byte_limit(max_tokens);
    // `None` once over the limit: the inner stream is dropped at that moment.
    futures::stream::unfold(Some((stream, 0u64)), move |state| {
        let backend = backend.clone();
        async move {
            let (mut stream, mut seen) = state?;
            let event = stream.next().await?;
            if let Ok(StreamEvent::Delta(text)) = &event {
                seen = seen.saturating_add(text.len() as u64);
                if seen > limit {
                    let error = InferenceError::protocol(
                        backend,
                        format!(
                            "the answer passed {limit} bytes of text for a budget of {max_tokens} tokens; the server does not honour max_tokens, so reading stopped"
                        ),
                    )
                    .with_retryable(false)
                    .with_hint("check the server: it ignores the request's max_tokens");
                    return Some((Err(error), None));
                }
            }
            Some((event, Some((stream, seen))))
        }
    })
    .boxed()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;

    #[test]
    fn an_endless_answer_is_cut_at_its_budget() {
        let chunk = "x".repeat(1024);
        let endless = futures::stream::repeat_with(move || Ok(StreamEvent::Delta(chunk.clone())));
        let bounded = bound_answer("t", 512, endless.boxed());
        let events: Vec<_> = futures::executor::block_on(bounded.collect::<Vec<_>>());
        let (last, text) = events.split_last().unwrap();
        let err = last.as_ref().unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Protocol);
        assert!(err.to_string().contains("512 tokens"), "{err}");
        let read = text.len() as u64 * 1024;
        assert!(read <= answer_byte_limit(512), "{read}");
    }

    #[test]
    fn an_answer_within_its_budget_passes_untouched() {
        let events = vec![
            Ok(StreamEvent::Delta("hello".into())),
            Ok(StreamEvent::Delta(" world".into())),
        ];
        let bounded = bound_answer("t", 4, futures::stream::iter(events).boxed());
        let out: Vec<_> = futures::executor::block_on(bounded.collect::<Vec<_>>());
        assert_eq!(out.len(), 2);
        assert!(out.iter().all(Result::is_ok));
    }
}
