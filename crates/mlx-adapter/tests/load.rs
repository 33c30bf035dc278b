//! 64 requests at once through the adapter: all complete or fail typed, no deadlock, the
//! process's memory bounded (rigger_conformance::load). The figures are printed.
//!
//! Needs the MLX venv: `cargo xtask setup-mlx` (CI runs it first), or `RIGGER_MLX_PYTHON`.

mod support;

use std::sync::Arc;
use std::time::Duration;

use rigger_conformance::load::concurrent_load;
use rigger_mlx_adapter::MlxSubprocessAdapter;
use rigger_ports::GenerationRequest;
use support::{config, tiny};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixty_four_concurrent_requests_on_the_tiny_model() {
    let model = MlxSubprocessAdapter::connect(config(&tiny()))
        .await
        .expect("the worker starts");
    let request = GenerationRequest::prompt("Plan the v2 launch.").with_max_tokens(8);
    let figures = concurrent_load(Arc::new(model), request, 64, Duration::from_secs(300))
        .await
        .unwrap_or_else(|f| panic!("{f}"));
    eprintln!("mlx, tiny: {figures}");
    assert_eq!(figures.completed, 64, "{figures}");
    assert!(
        figures.peak_rss_growth.is_none_or(|g| g < 100 << 20),
        "{figures}"
    );
}
