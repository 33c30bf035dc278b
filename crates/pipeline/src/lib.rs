//! The role pipeline: implementations of the application ports (`TaskRouterPort`,
//! `TaskEnhancementPort`, `TaskDecompositionPort`, `ComprehensionTestPort`) on top of any
//! `LanguageModel`, and the [`Orchestrator`] that chains them (route → enhance → test, or
//! route → decompose).
//!
//! Each role builds its prompt from the task, asks for JSON with a schema, checks the answer
//! against the domain's rules, and on an invalid answer makes a bounded repair attempt (the model
//! sees its answer and what was wrong with it). When that fails too, the caller gets a
//! `MalformedOutput` error carrying the raw text — never a canned substitute.
//!
//! Invariant: depends on `rigger-ports` and `rigger-domain` only, never on an adapter; models are
//! seen solely through the port. A role's model is a [`ModelChain`]: when a link cannot serve
//! before its first token (see [`FALLS_THROUGH`]), the next link is tried, and the failed link
//! is skipped for a while ([`Cooldowns`]).

mod calls;
mod chain;
mod orchestrator;
mod roles;
mod settings;
mod structured;

pub use calls::{FailedStepCalls, step_calls};
pub use chain::{Cooldowns, DEFAULT_COOLDOWN, FALLS_THROUGH, ModelChain, UnbuiltModel};
pub use orchestrator::{
    Orchestrator, PipelineEvent, PipelineFailure, PipelineRun, ProgressObserver, StepReport,
};
pub use roles::{LlmComprehensionTester, LlmDecomposer, LlmEnhancer, LlmRouter, RouterFallback};
pub use settings::{RoleSettings, RoleVar, role_var};
pub use structured::extract_json;
