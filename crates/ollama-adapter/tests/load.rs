//! 64 requests at once through the adapter: all complete or fail typed, no deadlock, the
//! process's memory bounded (rigger_conformance::load). The figures are printed.
//! The fixture Ollama runs one generation at a time and answers 503 while busy, as Ollama does
//! when its queue is full: requests retry, and those whose retries run out fail typed.

mod support;

use std::sync::Arc;
use std::time::Duration;

use rigger_conformance::load::concurrent_load;
use rigger_ollama_adapter::OllamaAdapter;
use rigger_ports::GenerationRequest;
use support::FixtureOllama;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixty_four_concurrent_requests_against_a_one_slot_server() {
    let ollama = FixtureOllama::start().await;
    let model = OllamaAdapter::connect(support::config(&ollama.url(), support::MODEL))
        .await
        .expect("the adapter");
    let request = GenerationRequest::prompt("Plan the v2 launch.").with_max_tokens(8);
    let figures = concurrent_load(Arc::new(model), request, 64, Duration::from_secs(120))
        .await
        .unwrap_or_else(|f| panic!("{f}"));
    eprintln!("ollama, one-slot fixture: {figures}");
    assert!(figures.completed > 0, "{figures}");
    assert!(
        figures.peak_rss_growth.is_none_or(|g| g < 100 << 20),
        "{figures}"
    );
}
