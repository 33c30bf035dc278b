//! The facade: one dependency for applications, exposing Rigger under the module paths the
//! user-facing guide (`MLX_SETUP.md`) uses, e.g. `task_orchestrator::domain::model_role::ModelRole`.
//!
//! Invariant: re-exports only; no logic lives here. The adapter paths
//! (`task_orchestrator::adapters::provider_factory::ProviderFactory`,
//! `task_orchestrator::adapters::mlx_subprocess_adapter::MlxSubprocessAdapter`) arrive with the
//! factory and MLX issues.

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

/// Backends and the factory that picks among them.
pub mod adapters {
    /// The backends compiled into this build, and a quick report on each.
    pub use rigger_provider_factory::{BackendReport, backend_reports, compiled_backends};
}

/// The README's Rust snippets compile as doctests.
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
pub struct ReadmeDoctests;
