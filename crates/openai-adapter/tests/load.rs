//! 64 requests at once through the adapter: all complete or fail typed, no deadlock, the
//! process's memory bounded (rigger_conformance::load). The figures are printed.

mod support;

use std::sync::Arc;
use std::time::Duration;

use rigger_conformance::load::concurrent_load;
use rigger_openai_adapter::{OpenAiAdapter, OpenAiConfig, ServerKind};
use rigger_ports::GenerationRequest;
use support::{delta, event, finish, serve, usage};

/// A server that answers every request at once, a token every 5 ms (a busy vLLM's pace).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixty_four_concurrent_requests_against_a_paced_server() {
    let server = serve(|_| {
        let mut response = rigger_http_support::fixture::FixtureResponse::ok()
            .header("content-type", "text/event-stream");
        for piece in [
            "Plan", " the", " launch", ":", " first", " the", " risks", ".",
        ] {
            response = response
                .pause(Duration::from_millis(5))
                .chunk(event(&delta(piece)));
        }
        response
            .chunk(event(&finish("length")))
            .chunk(event(&usage(12, 8)))
            .chunk("data: [DONE]\n\n")
    })
    .await;
    let model = OpenAiAdapter::new(OpenAiConfig {
        server: Some(ServerKind::Vllm),
        context_length: Some(4096),
        ..OpenAiConfig::new(format!("{}/v1/", server.url()), "test-model")
    })
    .expect("the adapter");
    let request = GenerationRequest::prompt("Plan the v2 launch.").with_max_tokens(8);
    let figures = concurrent_load(Arc::new(model), request, 64, Duration::from_secs(60))
        .await
        .unwrap_or_else(|f| panic!("{f}"));
    eprintln!("openai, paced fixture: {figures}");
    assert_eq!(figures.completed, 64, "{figures}");
    assert_eq!(server.requests().len(), 64);
    assert!(
        figures.peak_rss_growth.is_none_or(|g| g < 100 << 20),
        "{figures}"
    );
}
