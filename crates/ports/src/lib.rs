//! Rigger's ports: the boundary between the application and every inference backend.
//!
//! Role: define the one [`LanguageModel`] trait that MLX, Ollama, Candle, OpenAI-compatible and
//! Anthropic adapters implement, the types that cross it ([`GenerationRequest`],
//! [`StreamEvent`], [`Timings`], [`InferenceError`]), and the application ports the pipeline
//! implements on top ([`TaskRouterPort`] and friends).
//!
//! Invariant: depends on `rigger-domain` plus async-trait, futures, serde, serde_json, jsonschema,
//! schemars and thiserror — never on a transport or engine (reqwest, candle, a Python bridge). Wire types
//! stay in their adapter; backend errors cross only as an [`InferenceError`] with a kind.
//!
//! Every trait here has a mockall mock behind the `mock` feature (`MockLanguageModel`, …).

mod application;
mod bounds;
mod error;
mod model;
mod request;
mod settings;
mod stop;
mod structured;
mod timings;
mod typed;

pub use application::{
    CallMetrics, ComprehensionTestPort, Outcome, TaskDecompositionPort, TaskEnhancementPort,
    TaskRouterPort,
};
pub use bounds::{ANSWER_SLACK_BYTES, BYTES_PER_TOKEN, answer_byte_limit, bound_answer};
pub use error::{ErrorKind, InferenceError};
pub use model::{
    Capabilities, Completion, EventStream, FinishReason, Generation, LanguageModel,
    ModelDescriptor, StreamEvent, Usage, collect_stream,
};
pub use request::{ChatMessage, ChatRole, GenerationRequest, ResponseFormat, TokenBudget};
pub use settings::{HF_HOME_VAR, HF_HUB_CACHE_VAR, Lookup, hf_hub_cache, setting};
pub use stop::{StopMatcher, StopStep};
pub use structured::{RejectedCompletion, enforce_response_format, rejected_completion};
pub use timings::{GrammarTimings, TimingSource, Timings};
pub use typed::{GenerateJson, TypedGeneration, response_format_for};

#[cfg(feature = "mock")]
pub use application::{
    MockComprehensionTestPort, MockTaskDecompositionPort, MockTaskEnhancementPort,
    MockTaskRouterPort,
};
#[cfg(feature = "mock")]
pub use model::MockLanguageModel;

/// Re-exported so adapters and callers name the same domain types as the ports do.
pub use rigger_domain as domain;
/// Re-exported for [`GenerateJson`]: derive `schemars::JsonSchema` on the answer's type.
pub use schemars;
