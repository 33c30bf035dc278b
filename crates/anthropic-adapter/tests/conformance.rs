#![allow(clippy::unwrap_used)] // a panic is how a test reports failure

//! The shared conformance suite against the fixture engine in `support` (a local server built
//! from Anthropic's Messages API documentation; no real Anthropic server runs here). What a pass
//! here means, scenario by scenario, is in docs/backends/anthropic.md.

mod support;

use std::sync::Arc;

use async_trait::async_trait;
use rigger_anthropic_adapter::{AnthropicAdapter, AnthropicConfig};
use rigger_conformance::ConformanceTarget;
use rigger_http_support::ApiKey;
use rigger_http_support::fixture::FixtureServer;
use rigger_ports::{InferenceError, LanguageModel};

struct FixtureTarget {
    server: FixtureServer,
}

impl FixtureTarget {
    fn config(&self, model: &str) -> AnthropicConfig {
        AnthropicConfig {
            base_url: self.server.url(),
            api_key: ApiKey::new(support::KEY),
            ..AnthropicConfig::new(model)
        }
    }
}

#[async_trait]
impl ConformanceTarget for FixtureTarget {
    async fn model(&self) -> Result<Arc<dyn LanguageModel>, InferenceError> {
        Ok(Arc::new(
            AnthropicAdapter::connect(self.config(support::MODEL)).await?,
        ))
    }

    async fn missing_model(
        &self,
        model_id: &str,
    ) -> Result<Arc<dyn LanguageModel>, InferenceError> {
        // Lazy on purpose: the scenario then meets the unknown model on its first request.
        Ok(Arc::new(AnthropicAdapter::new(self.config(model_id))?))
    }
}

async fn fixture() -> FixtureTarget {
    FixtureTarget {
        server: support::start().await,
    }
}

rigger_conformance::conformance_suite!(anthropic_fixture, target: fixture, skip: {
    exact_token_budget: Unsupported("the Messages API has no way to force N tokens (no \
        ignore-end-of-sequence); the adapter refuses TokenBudget::Exactly"),
});
