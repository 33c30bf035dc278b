//! Default models per provider and role: ids that exist on each backend's model hub.

use rigger_domain::ModelRole;

use crate::Provider;

/// The environment variable naming a provider's model (it applies to every role).
pub fn model_var(provider: Provider) -> &'static str {
    match provider {
        Provider::Mlx => "MLX_MODEL",
        Provider::Ollama => "OLLAMA_MODEL",
        Provider::Candle => "CANDLE_MODEL",
        Provider::OpenAi => "OPENAI_MODEL",
        Provider::Anthropic => "ANTHROPIC_MODEL",
    }
}

/// The model a role gets on a provider when nothing is configured. MLX and Ollama follow the
/// guide's choices (a fast model routes, a reasoning model decomposes); Candle has no default
/// (it needs a local file or a hub id with a GGUF, named by `CANDLE_MODEL`); OpenAI-compatible
/// servers serve whatever they were started with, so `OPENAI_MODEL` is required too.
pub fn role_default(provider: Provider, role: ModelRole) -> Option<&'static str> {
    match (provider, role) {
        (Provider::Mlx, ModelRole::Router | ModelRole::Tester) => {
            Some("mlx-community/Phi-3-mini-4k-instruct")
        }
        (Provider::Mlx, ModelRole::Decomposer) => Some("mlx-community/orca-2-7b"),
        (Provider::Mlx, ModelRole::Enhancer) => Some("mlx-community/Mistral-7B-Instruct-v0.2"),
        (Provider::Ollama, ModelRole::Router) => Some("phi3"),
        (Provider::Ollama, ModelRole::Decomposer) => Some("orca2"),
        (Provider::Ollama, ModelRole::Enhancer) => Some("llama3.1"),
        (Provider::Ollama, ModelRole::Tester) => Some("mistral"),
        (Provider::Anthropic, _) => Some(ANTHROPIC_DEFAULT_MODEL),
        (Provider::Candle | Provider::OpenAi, _) => None,
    }
}

/// Anthropic's default when `ANTHROPIC_MODEL` is unset: a current model id, which will age.
pub const ANTHROPIC_DEFAULT_MODEL: &str = "claude-sonnet-4-5";
