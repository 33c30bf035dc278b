//! Fuzzing (property tests on arbitrary input, `cargo xtask fuzz` runs them longer): the SSE
//! framer never panics, never yields data past its cap, and ends on every input, however the
//! bytes are split into chunks.

use bytes::Bytes;
use futures::StreamExt;
use proptest::prelude::*;
use rigger_conformance::fuzz::config;
use rigger_http_support::sse_events_from;

/// Bytes that look like SSE often enough to reach the parser's states: field names, colons,
/// the three line endings, long runs, invalid UTF-8.
fn sse_like() -> impl Strategy<Value = Vec<u8>> {
    let piece = prop_oneof![
        Just(b"data:".to_vec()),
        Just(b"data: ".to_vec()),
        Just(b"event: x".to_vec()),
        Just(b"id: 1".to_vec()),
        Just(b"retry: 10".to_vec()),
        Just(b":comment".to_vec()),
        Just(b"\n".to_vec()),
        Just(b"\r\n".to_vec()),
        Just(b"\r".to_vec()),
        Just(vec![0xff, 0xfe]),
        Just(vec![b'a'; 300]),
        proptest::collection::vec(any::<u8>(), 0..16),
    ];
    proptest::collection::vec(piece, 0..64).prop_map(|pieces| pieces.concat())
}

fn frame(bytes: Vec<u8>, cuts: Vec<usize>, max_event: usize) -> Vec<Result<usize, String>> {
    let mut chunks = Vec::new();
    let mut rest = Bytes::from(bytes);
    for cut in cuts {
        if rest.is_empty() {
            break;
        }
        let at = cut % (rest.len() + 1);
        chunks.push(rest.split_to(at));
    }
    chunks.push(rest);
    let stream = futures::stream::iter(chunks.into_iter().map(Ok)).boxed();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a runtime");
    runtime.block_on(
        sse_events_from("fuzz", stream, max_event)
            .map(|event| event.map(|e| e.data.len()).map_err(|e| e.to_string()))
            .collect(),
    )
}

proptest! {
    #![proptest_config(config(512))]

    #[test]
    fn sse_framing_survives_anything(
        bytes in proptest::collection::vec(any::<u8>(), 0..2048),
        cuts in proptest::collection::vec(any::<usize>(), 0..8),
    ) {
        for len in frame(bytes, cuts, 256).into_iter().flatten() {
            prop_assert!(len <= 256);
        }
    }

    #[test]
    fn sse_framing_survives_sse_like_input(
        bytes in sse_like(),
        cuts in proptest::collection::vec(any::<usize>(), 0..8),
    ) {
        let max = 512;
        let events = frame(bytes, cuts, max);
        for len in events.iter().flatten() {
            prop_assert!(*len <= max);
        }
        // At most one error, and it ends the stream.
        let errors = events.iter().filter(|e| e.is_err()).count();
        prop_assert!(errors <= 1);
        if errors == 1 {
            prop_assert!(events.last().is_some_and(Result::is_err));
        }
    }
}
