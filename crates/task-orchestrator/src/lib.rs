//! The facade: one dependency for applications, exposing Rigger under the module paths the
//! user-facing guide (`MLX_SETUP.md`) uses, e.g.
//! `task_orchestrator::adapters::provider_factory::ProviderFactory` and
//! `task_orchestrator::domain::model_role::ModelRole`.
//!
//! Invariant: re-exports only; no logic lives here. Each adapter module exists when its cargo
//! feature is on (all are by default), and names its adapter's supported items one by one: a glob
//! would also re-export the `#[doc(hidden)]` hooks the adapters keep for `benches/` (checked by
//! `cargo xtask tidy` and by the `compile_fail` doctests below).

/// The domain: roles, tasks and their rules.
pub mod domain {
    pub use rigger_domain::*;

    /// `task_orchestrator::domain::model_role::ModelRole`, as the guide writes it.
    pub mod model_role {
        pub use rigger_domain::model_role::*;
    }

    pub mod task {
        pub use rigger_domain::task::*;
    }

    pub mod complexity {
        pub use rigger_domain::complexity::*;
    }
}

/// The ports: the model port and the application ports.
pub mod ports {
    pub use rigger_ports::*;
}

/// The LLM-backed role implementations and the orchestrator that chains them.
pub mod pipeline {
    pub use rigger_pipeline::*;
}

/// Backends and the factory that picks among them.
pub mod adapters {
    pub use rigger_provider_factory::{ProviderFactory, compiled_backends};

    /// `task_orchestrator::adapters::provider_factory::ProviderFactory`, as the guide writes it.
    pub mod provider_factory {
        pub use rigger_provider_factory::*;
    }

    /// `task_orchestrator::adapters::mlx_subprocess_adapter::MlxSubprocessAdapter`.
    #[cfg(feature = "mlx")]
    pub mod mlx_subprocess_adapter {
        pub use rigger_mlx_adapter::{
            Availability, BACKEND, DEFAULT_MODEL, HF_HOME_VAR, HUB_CACHE_VAR, Hello, MODEL_VAR,
            MlxConfig, MlxSubprocessAdapter, PROTOCOL, PYTHON_VAR, availability,
            check_availability, codes, list_models, openblas_preload, probe,
        };
    }

    #[cfg(feature = "candle")]
    pub mod candle_adapter {
        pub use rigger_candle_adapter::{
            BACKEND, CachedRepo, CandleAdapter, CandleConfig, DEFAULT_QUANT, DEFAULT_TEMPERATURE,
            DEVICE_VAR, DeviceKind, DownloadEvent, Grammar, GrammarCompiler, HF_ENDPOINT_VAR,
            HF_HOME_VAR, HF_HUB_CACHE_VAR, HF_HUB_OFFLINE_VAR, HF_TOKEN_VAR, HubFile, HubSettings,
            KERNELS_VAR, Kernels, MODEL_VAR, ModelFiles, ModelSource, ProgressSink,
            REPEAT_PENALTY_VAR, THREADS_VAR, TOKENIZER_VAR, cached_repos, cached_weights,
            list_models, no_progress, probe, pull, stderr_progress, template, token_bytes,
        };
    }

    #[cfg(feature = "ollama")]
    pub mod ollama_adapter {
        pub use rigger_ollama_adapter::{
            API_KEY_VAR, BACKEND, CAPABILITIES, DEFAULT_BASE_URL, DEFAULT_MODEL, DEFAULT_PORT,
            HOST_VAR, KeepAlive, MIN_NUM_CTX, MODEL_VAR, ModelDetails, ModelInfo, ModelSummary,
            OllamaAdapter, OllamaClient, OllamaConfig, Progress, ProgressStream, RunningModel,
            codes, estimate_prompt_tokens, list_models, parse_ollama_host, probe,
        };
    }

    #[cfg(feature = "openai")]
    pub mod openai_adapter {
        pub use rigger_openai_adapter::{
            API_KEY_VAR, BACKEND, BASE_URL_VAR, CONTEXT_LENGTH_VAR, DEFAULT_BASE_URL,
            IDLE_TIMEOUT_VAR, MAX_CONCURRENT_VAR, MODEL_VAR, OpenAiAdapter, OpenAiConfig,
            SERVER_VAR, ServerKind, list_models, probe,
        };
    }

    #[cfg(feature = "anthropic")]
    pub mod anthropic_adapter {
        pub use rigger_anthropic_adapter::{
            API_KEY_VAR, API_VERSION, AnthropicAdapter, AnthropicConfig, BACKEND, BASE_URL_VAR,
            CAPABILITIES, DEFAULT_BASE_URL, DEFAULT_MODEL, Decoded, EventDecoder, MODEL_VAR,
            Output, codes, list_models, probe,
        };
    }
}

pub mod spec;

/// The README's Rust snippets compile as doctests.
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
pub struct ReadmeDoctests;

/// The adapters' bench hooks stay out of the facade; the supported items are there.
///
/// ```
/// use task_orchestrator::adapters::candle_adapter::{CandleConfig, template::ChatTemplate};
/// use task_orchestrator::adapters::ollama_adapter::OllamaConfig;
/// use task_orchestrator::adapters::openai_adapter::OpenAiConfig;
/// ```
///
/// ```compile_fail
/// use task_orchestrator::adapters::ollama_adapter::decode_lines_for_bench;
/// ```
///
/// ```compile_fail
/// use task_orchestrator::adapters::openai_adapter::decode_payloads_for_bench;
/// ```
#[cfg(doctest)]
pub struct NoBenchHooks;
