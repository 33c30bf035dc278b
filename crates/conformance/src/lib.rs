//! The conformance suite: one set of behaviour scenarios that every adapter of the
//! [`LanguageModel`] port must pass against a real backend.
//!
//! Role: make "this adapter works" a checked statement. Each scenario is a public async function
//! over an `Arc<dyn LanguageModel>`; [`conformance_suite!`] expands them into one `#[test]` per
//! scenario in an adapter's test file. A scenario the adapter cannot run is declared in the macro
//! with its reason and becomes an *ignored* test whose reason `cargo test` prints — a skip is never
//! a pass. [`scripted::ScriptedModel`] is a test double that proves the suite itself: it passes
//! when clean, and each scenario fails against the fault made for it.
//!
//! ```ignore
//! async fn target() -> MyTarget { MyTarget::start().await }
//! rigger_conformance::conformance_suite!(my_backend, target: target, skip: {
//!     exact_token_budget: "the server has no way to ignore end-of-sequence",
//! });
//! ```

mod scenarios;
pub mod scripted;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use rigger_ports::{InferenceError, LanguageModel};

pub use scenarios::{MISSING_MODEL_ID, run_scenario};

/// What an adapter's test provides: the backend under test, running.
#[async_trait]
pub trait ConformanceTarget: Send + Sync {
    /// The model under test, ready to generate.
    async fn model(&self) -> Result<Arc<dyn LanguageModel>, InferenceError>;

    /// The same backend, configured with a model id it does not have. Failing here with
    /// `ModelNotFound` is as good as failing on the first request.
    async fn missing_model(&self, model_id: &str)
    -> Result<Arc<dyn LanguageModel>, InferenceError>;

    /// The longest any single step may take before the scenario fails as hung.
    fn patience(&self) -> Duration {
        Duration::from_secs(120)
    }
}

/// Why a scenario failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure(pub String);

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Failure {}

macro_rules! scenarios {
    ($($variant:ident => $name:literal: $what:literal,)*) => {
        /// The behaviours every adapter is held to.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Scenario { $($variant,)* }

        impl Scenario {
            pub const ALL: &'static [Scenario] = &[$(Scenario::$variant,)*];

            /// The test's name (snake case), as used in skip declarations.
            pub fn name(self) -> &'static str {
                match self { $(Scenario::$variant => $name,)* }
            }

            /// What the scenario checks.
            pub fn description(self) -> &'static str {
                match self { $(Scenario::$variant => $what,)* }
            }
        }
    };
}

scenarios! {
    StreamMatchesGenerate => "stream_matches_generate":
        "streamed text equals generate() at temperature 0 with a seed",
    MaxTokensRespected => "max_tokens_respected":
        "no more tokens than max_tokens, and the finish reason says why it stopped",
    ExactTokenBudget => "exact_token_budget":
        "an exact budget of N yields exactly N tokens",
    UsageAndTimings => "usage_and_timings":
        "usage and timings are present, agree, and give finite positive tokens/s",
    StopSequences => "stop_sequences":
        "text ends just before the first stop sequence, which is not emitted",
    DropCancelsGeneration => "drop_cancels_generation":
        "dropping a stream mid-way frees the backend for the next request",
    ConcurrentRequests => "concurrent_requests":
        "8 concurrent requests all complete with the same greedy text",
    UnknownModel => "unknown_model":
        "an unknown model id is a ModelNotFound error naming the model",
    EmptyMessages => "empty_messages":
        "a request without messages is an InvalidRequest error",
    ContextLengthExceeded => "context_length_exceeded":
        "a prompt over the context length is a ContextLengthExceeded error, never truncated",
    JsonSchema => "json_schema":
        "a JSON-schema request yields valid JSON, or a typed MalformedOutput/Unsupported error",
}

/// Runs one scenario on a fresh runtime and panics with the failure; what the macro's tests call.
pub fn run_blocking<T, F>(scenario: Scenario, make_target: impl FnOnce() -> F)
where
    T: ConformanceTarget,
    F: Future<Output = T>,
{
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("conformance: could not build a tokio runtime");
    let outcome = runtime.block_on(async {
        let target = make_target().await;
        run_scenario(scenario, &target).await
    });
    if let Err(failure) = outcome {
        panic!(
            "conformance scenario `{}` ({}) failed: {failure}",
            scenario.name(),
            scenario.description()
        );
    }
}

/// Expands into a module of one `#[test]` per [`Scenario`] for one adapter.
///
/// `target` names an `async fn() -> impl ConformanceTarget` (it may panic when the backend cannot
/// be set up: a missing backend is a failure, not a skip). `skip` declares the scenarios this
/// adapter cannot run, each with its reason; they become `#[ignore = reason]` tests, so
/// `cargo test` lists them as ignored with the reason, and `cargo test -- --ignored` still runs
/// them. A skip naming no scenario does not compile.
#[macro_export]
macro_rules! conformance_suite {
    ($suite:ident, target: $make:path $(, skip: { $($skip:ident : $reason:literal),* $(,)? })? $(,)?) => {
        mod $suite {
            #[allow(unused_imports)]
            use super::*;
            $crate::__conformance_tests! {
                ($) $make, [$($($skip = $reason;)*)?]
                stream_matches_generate StreamMatchesGenerate
                max_tokens_respected MaxTokensRespected
                exact_token_budget ExactTokenBudget
                usage_and_timings UsageAndTimings
                stop_sequences StopSequences
                drop_cancels_generation DropCancelsGeneration
                concurrent_requests ConcurrentRequests
                unknown_model UnknownModel
                empty_messages EmptyMessages
                context_length_exceeded ContextLengthExceeded
                json_schema JsonSchema
            }
            // Every declared skip must name a generated test.
            const _: () = { $($( let _: fn() = $skip; )*)? };
        }
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_tests {
    (($d:tt) $make:path, $skips:tt $($name:ident $variant:ident)*) => {
        $(
            // A local matcher per scenario: finds this scenario's reason among the skips, if any.
            macro_rules! __rigger_conformance_select {
                ([$name = $d reason:literal; $d($d rest:tt)*]) => {
                    #[test]
                    #[ignore = $d reason]
                    fn $name() {
                        $crate::run_blocking($crate::Scenario::$variant, || $make());
                    }
                };
                ([$d other:ident = $d reason:literal; $d($d rest:tt)*]) => {
                    __rigger_conformance_select!([$d($d rest)*]);
                };
                ([]) => {
                    #[test]
                    fn $name() {
                        $crate::run_blocking($crate::Scenario::$variant, || $make());
                    }
                };
            }
            __rigger_conformance_select!($skips);
        )*
    };
}
