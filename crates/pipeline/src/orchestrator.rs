use std::sync::Arc;

use chrono::{DateTime, Utc};
use rigger_domain::{
    ComprehensionTest, Enhancement, ModelRole, Route, RoutingDecision, Task, TaskId, TaskStatus,
};
use rigger_ports::{
    CallMetrics, ComprehensionTestPort, ErrorKind, InferenceError, Outcome, TaskDecompositionPort,
    TaskEnhancementPort, TaskRouterPort,
};
use serde::Serialize;

/// The model calls one pipeline step made.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StepReport {
    pub role: ModelRole,
    pub calls: Vec<CallMetrics>,
}

/// Everything a pipeline run produced, in the order it was produced. `steps` includes a failed
/// step's calls when it made any (e.g. answers rejected as malformed).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PipelineRun {
    /// The task, with its status moved along (PendingComprehensionTest after enhance → test,
    /// Decomposed after decompose, Errored when a step failed) and its complexity set.
    pub task: Task,
    pub routing: Option<RoutingDecision>,
    pub enhancement: Option<Enhancement>,
    pub comprehension_test: Option<ComprehensionTest>,
    /// New tasks whose `parent_id` is the task's id; the task's `subtask_ids` lists them.
    pub subtasks: Vec<Task>,
    pub steps: Vec<StepReport>,
}

/// A step failed: which one, why, and everything produced before it.
#[derive(Debug)]
pub struct PipelineFailure {
    pub role: ModelRole,
    pub error: InferenceError,
    pub partial: Box<PipelineRun>,
}

impl std::fmt::Display for PipelineFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "the {} step failed: {}", self.role, self.error)
    }
}

impl std::error::Error for PipelineFailure {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.error)
    }
}

/// Progress, as it happens.
#[derive(Debug, Clone)]
pub enum PipelineEvent<'a> {
    StepStarted {
        role: ModelRole,
    },
    StepFinished {
        role: ModelRole,
        calls: &'a [CallMetrics],
    },
    StepFailed {
        role: ModelRole,
        error: &'a InferenceError,
    },
}

pub type ProgressObserver = Arc<dyn Fn(&PipelineEvent<'_>) + Send + Sync>;

/// Runs the heterogeneous pipeline: route → enhance → test, or route → decompose. Each role is any
/// implementation of its port (usually the LLM-backed ones of this crate, each on its own model).
#[derive(Clone)]
pub struct Orchestrator {
    router: Arc<dyn TaskRouterPort>,
    enhancer: Arc<dyn TaskEnhancementPort>,
    decomposer: Arc<dyn TaskDecompositionPort>,
    tester: Arc<dyn ComprehensionTestPort>,
    observer: Option<ProgressObserver>,
    clock: fn() -> DateTime<Utc>,
}

impl Orchestrator {
    pub fn new(
        router: Arc<dyn TaskRouterPort>,
        enhancer: Arc<dyn TaskEnhancementPort>,
        decomposer: Arc<dyn TaskDecompositionPort>,
        tester: Arc<dyn ComprehensionTestPort>,
    ) -> Self {
        Self {
            router,
            enhancer,
            decomposer,
            tester,
            observer: None,
            clock: Utc::now,
        }
    }

    /// Calls `observer` as each step starts, finishes or fails.
    pub fn with_observer(mut self, observer: ProgressObserver) -> Self {
        self.observer = Some(observer);
        self
    }

    pub fn with_clock(mut self, clock: fn() -> DateTime<Utc>) -> Self {
        self.clock = clock;
        self
    }

    fn emit(&self, event: PipelineEvent<'_>) {
        if let Some(observer) = &self.observer {
            observer(&event);
        }
    }

    /// Runs the whole pipeline on `task` (which must be able to move to the pipeline's states,
    /// e.g. Todo or Errored).
    pub async fn run(&self, task: Task) -> Result<PipelineRun, PipelineFailure> {
        let mut run = PipelineRun {
            task,
            routing: None,
            enhancement: None,
            comprehension_test: None,
            subtasks: Vec::new(),
            steps: Vec::new(),
        };
        let decision = self
            .step(&mut run, ModelRole::Router, |t| {
                let router = Arc::clone(&self.router);
                async move { router.route(&t).await }
            })
            .await?;
        run.task.complexity = Some(decision.complexity);
        let route = decision.route;
        run.routing = Some(decision);

        match route {
            Route::Enhance => {
                self.transition(
                    &mut run,
                    ModelRole::Enhancer,
                    TaskStatus::PendingEnhancement,
                )?;
                let enhancement = self
                    .step(&mut run, ModelRole::Enhancer, |t| {
                        let enhancer = Arc::clone(&self.enhancer);
                        async move { enhancer.enhance(&t).await }
                    })
                    .await?;
                // The Tester asks about the task as the Enhancer left it.
                let mut enhanced = run.task.clone();
                if let Some(title) = &enhancement.title {
                    enhanced.title.clone_from(title);
                }
                enhanced.description.clone_from(&enhancement.description);
                run.enhancement = Some(enhancement);
                self.transition(
                    &mut run,
                    ModelRole::Tester,
                    TaskStatus::PendingComprehensionTest,
                )?;
                let test = self
                    .step(&mut run, ModelRole::Tester, move |_| {
                        let tester = Arc::clone(&self.tester);
                        async move { tester.comprehension_test(&enhanced).await }
                    })
                    .await?;
                run.comprehension_test = Some(test);
            }
            Route::Decompose => {
                self.transition(
                    &mut run,
                    ModelRole::Decomposer,
                    TaskStatus::PendingDecomposition,
                )?;
                let decomposition = self
                    .step(&mut run, ModelRole::Decomposer, |t| {
                        let decomposer = Arc::clone(&self.decomposer);
                        async move { decomposer.decompose(&t).await }
                    })
                    .await?;
                let ids: Result<Vec<TaskId>, _> = (1..=decomposition.subtasks().len())
                    .map(|n| TaskId::new(format!("{}.{n}", run.task.id)))
                    .collect();
                let now = (self.clock)();
                let applied = ids.and_then(|ids| decomposition.apply(&mut run.task, ids, now));
                match applied {
                    Ok(subtasks) => run.subtasks = subtasks,
                    Err(e) => return Err(self.fail(run, ModelRole::Decomposer, domain_error(e))),
                }
            }
        }
        Ok(run)
    }

    async fn step<T, F, Fut>(
        &self,
        run: &mut PipelineRun,
        role: ModelRole,
        call: F,
    ) -> Result<T, PipelineFailure>
    where
        F: FnOnce(Task) -> Fut,
        Fut: std::future::Future<Output = Result<Outcome<T>, InferenceError>>,
    {
        self.emit(PipelineEvent::StepStarted { role });
        match call(run.task.clone()).await {
            Ok(outcome) => {
                self.emit(PipelineEvent::StepFinished {
                    role,
                    calls: &outcome.calls,
                });
                run.steps.push(StepReport {
                    role,
                    calls: outcome.calls,
                });
                Ok(outcome.value)
            }
            Err(error) => {
                let calls = crate::calls::step_calls(&error).to_vec();
                if !calls.is_empty() {
                    run.steps.push(StepReport { role, calls });
                }
                Err(self.fail(std::mem::replace(run, empty_run(&run.task)), role, error))
            }
        }
    }

    fn transition(
        &self,
        run: &mut PipelineRun,
        role: ModelRole,
        next: TaskStatus,
    ) -> Result<(), PipelineFailure> {
        let now = (self.clock)();
        match run.task.transition(next, now) {
            Ok(()) => Ok(()),
            Err(e) => Err(self.fail(
                std::mem::replace(run, empty_run(&run.task)),
                role,
                domain_error(e),
            )),
        }
    }

    fn fail(
        &self,
        mut run: PipelineRun,
        role: ModelRole,
        error: InferenceError,
    ) -> PipelineFailure {
        self.emit(PipelineEvent::StepFailed {
            role,
            error: &error,
        });
        let now = (self.clock)();
        if run.task.status.can_transition_to(TaskStatus::Errored) {
            // Cannot fail: checked on the line above.
            let _ = run.task.transition(TaskStatus::Errored, now);
        }
        PipelineFailure {
            role,
            error,
            partial: Box::new(run),
        }
    }
}

fn empty_run(task: &Task) -> PipelineRun {
    PipelineRun {
        task: task.clone(),
        routing: None,
        enhancement: None,
        comprehension_test: None,
        subtasks: Vec::new(),
        steps: Vec::new(),
    }
}

fn domain_error(e: rigger_domain::DomainError) -> InferenceError {
    InferenceError::new(ErrorKind::InvalidRequest, "pipeline", e.to_string())
        .with_hint("the task's current status does not allow this step; reset it to todo first")
}
