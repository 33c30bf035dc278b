//! 64 requests at once through the adapter: all complete or fail typed, no deadlock, the
//! process's memory bounded (rigger_conformance::load). The figures are printed.

use std::sync::Arc;
use std::time::Duration;

use rigger_candle_adapter::{CandleAdapter, CandleConfig};
use rigger_conformance::load::concurrent_load;
use rigger_ports::GenerationRequest;

mod support;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixty_four_concurrent_requests_on_the_tiny_model() {
    let path = support::tiny("model-q8_0.gguf");
    let model = CandleAdapter::connect(CandleConfig::new(path.display().to_string()))
        .await
        .expect("the tiny model loads");
    let request = GenerationRequest::prompt("Plan the v2 launch.").with_max_tokens(8);
    let figures = concurrent_load(Arc::new(model), request, 64, Duration::from_secs(300))
        .await
        .unwrap_or_else(|f| panic!("{f}"));
    eprintln!("candle, tiny Q8_0: {figures}");
    assert_eq!(figures.completed, 64, "{figures}");
    assert!(
        figures.peak_rss_growth.is_none_or(|g| g < 100 << 20),
        "{figures}"
    );
}
