//! A real `mlx_lm.server` (model-gen's fixture), and the OpenAI adapter's configuration for it.

pub use rigger_model_gen::MlxServer;
use rigger_openai_adapter::{OpenAiConfig, ServerKind};

pub trait AdapterConfig {
    /// The adapter's configuration for this server, asking for `model`.
    fn config(&self, model: &str) -> OpenAiConfig;
}

impl AdapterConfig for MlxServer {
    fn config(&self, model: &str) -> OpenAiConfig {
        OpenAiConfig {
            server: Some(ServerKind::MlxLm),
            context_length: Some(self.context_length),
            ..OpenAiConfig::new(&self.base_url, model)
        }
    }
}
