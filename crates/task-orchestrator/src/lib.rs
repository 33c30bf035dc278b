//! The facade: one dependency for applications, exposing Rigger under the module paths the
//! user-facing guide (`MLX_SETUP.md`) uses, e.g.
//! `task_orchestrator::adapters::provider_factory::ProviderFactory` and
//! `task_orchestrator::domain::model_role::ModelRole`.
//!
//! Invariant: re-exports only; no logic lives here. Each adapter module exists when its cargo
//! feature is on (all are by default).

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
        pub use rigger_mlx_adapter::*;
    }

    #[cfg(feature = "candle")]
    pub mod candle_adapter {
        pub use rigger_candle_adapter::*;
    }

    #[cfg(feature = "ollama")]
    pub mod ollama_adapter {
        pub use rigger_ollama_adapter::*;
    }

    #[cfg(feature = "openai")]
    pub mod openai_adapter {
        pub use rigger_openai_adapter::*;
    }

    #[cfg(feature = "anthropic")]
    pub mod anthropic_adapter {
        pub use rigger_anthropic_adapter::*;
    }
}

pub mod spec;

/// The README's Rust snippets compile as doctests.
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
pub struct ReadmeDoctests;
