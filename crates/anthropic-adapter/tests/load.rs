#![allow(clippy::unwrap_used)] // a panic is how a test reports failure

//! 64 requests at once through the adapter: all complete or fail typed, no deadlock, the
//! process's memory bounded (rigger_conformance::load). The figures are printed.
//! The fixture limits output tokens in flight and answers 429 beyond: requests retry, and
//! those whose retries run out fail typed.

mod support;

use std::sync::Arc;
use std::time::Duration;

use rigger_anthropic_adapter::{AnthropicAdapter, AnthropicConfig};
use rigger_conformance::load::concurrent_load;
use rigger_http_support::ApiKey;
use rigger_ports::GenerationRequest;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixty_four_concurrent_requests_against_the_fixture() {
    let server = support::start().await;
    let model = AnthropicAdapter::new(AnthropicConfig {
        base_url: server.url(),
        api_key: ApiKey::new(support::KEY),
        ..AnthropicConfig::new(support::MODEL)
    })
    .unwrap();
    let request = GenerationRequest::prompt("Plan the v2 launch.").with_max_tokens(8);
    let figures = concurrent_load(Arc::new(model), request, 64, Duration::from_secs(120))
        .await
        .unwrap_or_else(|f| panic!("{f}"));
    eprintln!("anthropic, fixture: {figures}");
    assert!(figures.completed > 0, "{figures}");
    assert!(
        figures.peak_rss_growth.is_none_or(|g| g < 100 << 20),
        "{figures}"
    );
}
