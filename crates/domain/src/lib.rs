//! Rigger's domain: the vocabulary of the task-orchestration app and its rules.
//!
//! Role: say *what* a task, a role, a decomposition or a routing decision is, and which values
//! are valid. Invariant: no IO, no async, no clock and no randomness — time and ids come in as
//! arguments, so every function here is deterministic and testable without a runtime. (A tidy
//! test in `xtask` fails if this crate ever pulls in tokio or reqwest.)

pub mod complexity;
pub mod error;
pub mod model_role;
pub mod task;

pub use complexity::{ComplexityScore, Route, RoutingDecision};
pub use error::DomainError;
pub use model_role::{ModelRole, ParseModelRoleError};
pub use task::{
    ComprehensionTest, Decomposition, Enhancement, SubtaskDraft, Task, TaskId, TaskStatus,
};
