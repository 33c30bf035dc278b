//! The shared conformance suite, twice: against the fixture vLLM in `support` (a strict local
//! server built from vLLM's and OpenAI's API documentation, so this runs without the MLX venv),
//! and against a real `mlx_lm.server` from the MLX venv serving the tiny generated model.
//!
//! The real server needs the MLX venv: `cargo xtask setup-mlx` (CI runs it first), or
//! `RIGGER_MLX_PYTHON`. Without it those tests fail with that instruction; they never skip
//! silently.
#![allow(clippy::unwrap_used)] // a panic is how a test reports failure

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use futures::StreamExt;
use rigger_conformance::ConformanceTarget;
use rigger_http_support::{ApiKey, RetryPolicy};
use rigger_openai_adapter::{OpenAiAdapter, OpenAiConfig, ServerKind};
use rigger_ports::{ErrorKind, GenerationRequest, InferenceError, LanguageModel, StreamEvent};
use support::mlx_server::{AdapterConfig, MlxServer};
use support::vllm::{self, FixtureVllm};

struct VllmTarget {
    vllm: FixtureVllm,
}

impl VllmTarget {
    /// No context length: the adapter reads vLLM's `max_model_len` from `/v1/models`.
    fn config(&self, model: &str) -> OpenAiConfig {
        OpenAiConfig {
            server: Some(ServerKind::Vllm),
            api_key: ApiKey::new(vllm::KEY),
            retry: RetryPolicy {
                initial_backoff: Duration::from_millis(10),
                ..RetryPolicy::default()
            },
            ..OpenAiConfig::new(self.vllm.base_url(), model)
        }
    }
}

#[async_trait]
impl ConformanceTarget for VllmTarget {
    async fn model(&self) -> Result<Arc<dyn LanguageModel>, InferenceError> {
        Ok(Arc::new(
            OpenAiAdapter::connect(self.config(vllm::MODEL)).await?,
        ))
    }

    async fn missing_model(
        &self,
        model_id: &str,
    ) -> Result<Arc<dyn LanguageModel>, InferenceError> {
        // Lazy on purpose: the request goes out, and the server's 404 is what gets mapped.
        Ok(Arc::new(OpenAiAdapter::new(self.config(model_id))?))
    }

    /// The fixture answers in milliseconds; a generation that was not cancelled on drop would
    /// keep its one slot busy for over 6 s, longer than this.
    fn patience(&self) -> Duration {
        Duration::from_secs(3)
    }
}

async fn fixture() -> VllmTarget {
    VllmTarget {
        vllm: FixtureVllm::start().await,
    }
}

rigger_conformance::conformance_suite!(vllm_fixture, target: fixture);

/// A server per scenario: the scenarios run in parallel, and mlx_lm.server serves seeded
/// requests one at a time, so a shared server would make each wait on the others (the context
/// scenario alone keeps it busy for tens of seconds prefilling a prompt it cannot refuse).
struct MlxLmTarget {
    server: MlxServer,
}

#[async_trait]
impl ConformanceTarget for MlxLmTarget {
    async fn model(&self) -> Result<Arc<dyn LanguageModel>, InferenceError> {
        let s = &self.server;
        Ok(Arc::new(
            OpenAiAdapter::connect(s.config(&s.model_id)).await?,
        ))
    }

    async fn missing_model(
        &self,
        model_id: &str,
    ) -> Result<Arc<dyn LanguageModel>, InferenceError> {
        Ok(Arc::new(
            OpenAiAdapter::connect(self.server.config(model_id)).await?,
        ))
    }
}

async fn mlx_lm_server() -> MlxLmTarget {
    let server = tokio::task::spawn_blocking(MlxServer::start).await.unwrap();
    MlxLmTarget { server }
}

rigger_conformance::conformance_suite!(mlx_lm_server, target: mlx_lm_server, skip: {
    exact_token_budget: Unsupported("mlx_lm.server has no ignore_eos/min_tokens: it cannot \
        generate past end-of-sequence, so the adapter refuses exact budgets"),
});

// The fixture itself: it refuses what vLLM would refuse, and its one slot stays taken while a
// response is still being read, so the suite's drop scenario can tell an abort from none.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fixture_refuses_a_body_vllm_would_not_take() {
    let target = fixture().await;
    // OpenAI proper's budget field: this fixture, like a strict server, refuses what it does
    // not know.
    let openai = OpenAiAdapter::new(OpenAiConfig {
        server: Some(ServerKind::OpenAi),
        context_length: Some(vllm::CONTEXT),
        ..target.config(vllm::MODEL)
    })
    .unwrap();
    let err = openai
        .generate(GenerationRequest::prompt("hi").with_max_tokens(4))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidRequest, "{err}");
    assert!(err.message().contains("max_completion_tokens"), "{err}");
    let wrong_key = OpenAiAdapter::new(OpenAiConfig {
        api_key: ApiKey::new("sk-wrong"),
        ..target.config(vllm::MODEL)
    })
    .unwrap();
    let err = wrong_key
        .generate(GenerationRequest::prompt("hi").with_max_tokens(4))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unauthorized, "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fixture_slot_stays_taken_while_a_response_is_read() {
    let target = fixture().await;
    let model = target.model().await.unwrap();
    let mut long = model
        .stream(GenerationRequest::prompt("Tell me a story").with_exact_tokens(400))
        .await
        .unwrap();
    assert!(matches!(long.next().await, Some(Ok(StreamEvent::Delta(_)))));
    // 400 tokens at 3 ms: the next request waits for the slot, over a second.
    let started = Instant::now();
    model
        .generate(GenerationRequest::prompt("hi").with_max_tokens(2))
        .await
        .unwrap();
    assert!(
        started.elapsed() > Duration::from_millis(900),
        "served at once while the slot was taken: {:?}",
        started.elapsed()
    );
    drop(long);
}
