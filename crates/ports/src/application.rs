//! The application ports: what the task-orchestration app asks of its LLM steps.

use async_trait::async_trait;
use rigger_domain::{ComprehensionTest, Decomposition, Enhancement, RoutingDecision, Task};
use serde::{Deserialize, Serialize};

use crate::{FinishReason, InferenceError, Timings, Usage};

/// The figures of one model call made while producing a step's result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CallMetrics {
    pub backend: String,
    pub model_id: String,
    pub finish_reason: FinishReason,
    pub usage: Usage,
    pub timings: Timings,
}

/// A step's result together with every model call it took (a repair attempt is a second call).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Outcome<T> {
    pub value: T,
    pub calls: Vec<CallMetrics>,
}

/// Router: how complex is the task, and should it be enhanced or decomposed?
#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait TaskRouterPort: Send + Sync {
    async fn route(&self, task: &Task) -> Result<Outcome<RoutingDecision>, InferenceError>;
}

/// Enhancer: rewrite the task so it is clear and actionable.
#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait TaskEnhancementPort: Send + Sync {
    async fn enhance(&self, task: &Task) -> Result<Outcome<Enhancement>, InferenceError>;
}

/// Decomposer: split the task into subtasks.
#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait TaskDecompositionPort: Send + Sync {
    async fn decompose(&self, task: &Task) -> Result<Outcome<Decomposition>, InferenceError>;
}

/// Tester: write a question that checks the task was understood.
#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait ComprehensionTestPort: Send + Sync {
    async fn comprehension_test(
        &self,
        task: &Task,
    ) -> Result<Outcome<ComprehensionTest>, InferenceError>;
}
