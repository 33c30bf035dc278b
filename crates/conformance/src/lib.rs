//! The conformance suite: one set of behaviour scenarios that every adapter of the
//! [`LanguageModel`] port must pass against a real backend.
//!
//! Role: make "this adapter works" a checked statement. The scenario list is written once, in
//! [`__with_scenarios!`]: it defines [`Scenario`], dispatches [`run_scenario`] to the function of
//! the same name in `scenarios.rs`, and gives [`conformance_suite!`] one `#[test]` per scenario
//! in an adapter's `tests/conformance.rs`. [`scripted::ScriptedModel`] is a test double that
//! proves the suite itself: it passes when clean, and each scenario fails against the fault made
//! for it.
//!
//! A scenario an adapter does not run is a declared [`Skip`] of one of two kinds, and is never a
//! silent pass: it becomes an *ignored* test whose reason `cargo test` prints.
//! - [`Skip::Unsupported`]: the adapter's declared [`Capabilities`] lack the feature the scenario
//!   needs. A companion test checks the declaration: it fails if the capabilities declare the
//!   feature after all (or the scenario needs none), and if the adapter does not refuse a request
//!   using it with `ErrorKind::Unsupported`.
//! - [`Skip::DoubleCannot`]: the test double or the backend available here cannot do it; the
//!   reason says why.
//!
//! ```ignore
//! async fn target() -> MyTarget { MyTarget::start().await }
//! rigger_conformance::conformance_suite!(my_backend, target: target, skip: {
//!     exact_token_budget: Unsupported("the server has no way to ignore end-of-sequence"),
//!     stop_sequence_reported: DoubleCannot("the fixture does not say which stop matched"),
//! });
//! ```
//!
//! It expands into `my_backend::<scenario>` tests, `my_backend::unsupported::<scenario>` and
//! `my_backend::double_cannot::<scenario>` (ignored, with the reason), and
//! `my_backend::unsupported::<scenario>::is_declared_and_refused` (the companion check).

pub mod fuzz;
pub mod load;
pub mod non_cancelling;
mod scenarios;
pub mod scripted;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use rigger_ports::{Capabilities, ErrorKind, GenerationRequest, InferenceError, LanguageModel};

pub use scenarios::MISSING_MODEL_ID;

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

/// Why an adapter's suite does not run a scenario; the text is printed with the ignored test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Skip {
    /// The adapter's declared capabilities lack the feature (checked by a companion test).
    Unsupported(&'static str),
    /// The test double, or the real backend available here, cannot do it.
    DoubleCannot(&'static str),
}

/// A feature of [`Capabilities`] that a scenario needs; only such scenarios may be
/// [`Skip::Unsupported`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Capability {
    StopSequences,
    ExactTokenBudget,
}

impl Capability {
    /// The field's name in [`Capabilities`].
    pub fn name(self) -> &'static str {
        match self {
            Capability::StopSequences => "stop_sequences",
            Capability::ExactTokenBudget => "exact_token_budget",
        }
    }

    pub fn declared_in(self, capabilities: &Capabilities) -> bool {
        match self {
            Capability::StopSequences => capabilities.stop_sequences,
            Capability::ExactTokenBudget => capabilities.exact_token_budget,
        }
    }

    /// A small request that uses the feature, which an adapter without it must refuse.
    fn request(self) -> GenerationRequest {
        let request = GenerationRequest::prompt("Say hello.");
        match self {
            Capability::StopSequences => request.with_max_tokens(4).with_stop("."),
            Capability::ExactTokenBudget => request.with_exact_tokens(4),
        }
    }
}

/// The one list of scenarios: `Variant snake_name [capability it needs, if any] "what it
/// checks";`. Everything else that enumerates scenarios expands from here through `$callback`.
#[doc(hidden)]
#[macro_export]
macro_rules! __with_scenarios {
    ($callback:ident ! $args:tt) => {
        $crate::$callback! { $args
            StreamMatchesGenerate stream_matches_generate []
                "streamed text equals generate() at temperature 0 with a seed";
            MaxTokensRespected max_tokens_respected []
                "no more tokens than max_tokens, and the finish reason says why it stopped";
            ExactTokenBudget exact_token_budget [ExactTokenBudget]
                "an exact budget of N yields exactly N tokens";
            UsageAndTimings usage_and_timings []
                "usage and timings are present, agree, and give finite positive tokens/s";
            StopSequences stop_sequences [StopSequences]
                "text ends just before the first stop sequence, which is not emitted";
            StopSequenceReported stop_sequence_reported [StopSequences]
                "a matched stop sequence is reported as the finish reason StopSequence";
            DropCancelsGeneration drop_cancels_generation []
                "dropping a stream mid-way frees the backend for the next request";
            ConcurrentRequests concurrent_requests []
                "8 concurrent requests all complete with the same greedy text";
            UnknownModel unknown_model []
                "an unknown model id is a ModelNotFound error naming the model";
            EmptyMessages empty_messages []
                "a request without messages is an InvalidRequest error";
            ContextLengthExceeded context_length_exceeded []
                "a prompt over the context length is a ContextLengthExceeded error, never truncated";
            JsonSchema json_schema []
                "a JSON-schema request yields valid JSON (always, where native structured output is declared), or a typed MalformedOutput/Unsupported error";
            JsonSchemaNested json_schema_nested []
                "as json_schema, with $ref, bounded arrays, enums and optional fields";
        }
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __define_scenarios {
    ({} $($variant:ident $name:ident [$($cap:ident)?] $what:literal;)*) => {
        /// The behaviours every adapter is held to.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Scenario { $($variant,)* }

        impl Scenario {
            pub const ALL: &'static [Scenario] = &[$(Scenario::$variant,)*];

            /// The test's name (snake case), as used in skip declarations.
            pub fn name(self) -> &'static str {
                match self { $(Scenario::$variant => stringify!($name),)* }
            }

            /// What the scenario checks.
            pub fn description(self) -> &'static str {
                match self { $(Scenario::$variant => $what,)* }
            }

            /// The declared capability the scenario needs, if any: only then may an adapter
            /// skip it as [`Skip::Unsupported`].
            pub fn capability(self) -> Option<Capability> {
                match self { $(Scenario::$variant => None$(.or(Some(Capability::$cap)))?,)* }
            }
        }

        /// Runs one scenario against a target.
        pub async fn run_scenario(
            scenario: Scenario,
            target: &dyn ConformanceTarget,
        ) -> Result<(), Failure> {
            let patience = target.patience();
            match scenario { $(Scenario::$variant => scenarios::$name(target, patience).await,)* }
        }
    };
}

__with_scenarios!(__define_scenarios! {});

/// Checks a [`Skip::Unsupported`] declaration: the scenario needs a capability, the adapter does
/// not declare it, and a request using it is refused with `ErrorKind::Unsupported` (never
/// silently ignored).
pub async fn check_unsupported(
    scenario: Scenario,
    target: &dyn ConformanceTarget,
) -> Result<(), Failure> {
    let Some(capability) = scenario.capability() else {
        return Err(Failure(format!(
            "`{}` needs no capability, so no adapter may skip it as Unsupported; \
             run it, or skip it as DoubleCannot with the reason",
            scenario.name()
        )));
    };
    let model = target
        .model()
        .await
        .map_err(|e| Failure(format!("the target could not provide its model: {e}")))?;
    let descriptor = model.descriptor();
    if capability.declared_in(&descriptor.capabilities) {
        return Err(Failure(format!(
            "`{}` is skipped as Unsupported, but {} declares `{}`: run the scenario, or fix the \
             declaration",
            scenario.name(),
            descriptor.backend,
            capability.name()
        )));
    }
    let refused = tokio::time::timeout(target.patience(), model.generate(capability.request()))
        .await
        .map_err(|_| Failure("the request did not finish in time".into()))?;
    match refused {
        Err(e) if e.kind() == ErrorKind::Unsupported => Ok(()),
        Err(e) => Err(Failure(format!(
            "a request using `{}` should be refused as Unsupported, got {:?}: {e}",
            capability.name(),
            e.kind()
        ))),
        Ok(g) => Err(Failure(format!(
            "a request using the undeclared `{}` succeeded ({:?}): it must be refused, not \
             silently ignored",
            capability.name(),
            g.text
        ))),
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("conformance: could not build a tokio runtime")
}

/// The scenarios of one test binary share their backend (one loaded model, one worker). The
/// drop scenario times requests against each other, so it runs alone among them: the others
/// take this lock shared, it takes it exclusively.
static TIMED_ALONE: std::sync::RwLock<()> = std::sync::RwLock::new(());

/// Runs one scenario on a fresh runtime and panics with the failure; what the macro's tests call.
pub fn run_blocking<T, F>(scenario: Scenario, make_target: impl FnOnce() -> F)
where
    T: ConformanceTarget,
    F: Future<Output = T>,
{
    if let Err(failure) = outcome_blocking(scenario, make_target) {
        panic!(
            "conformance scenario `{}` ({}) failed: {failure}",
            scenario.name(),
            scenario.description()
        );
    }
}

/// Runs one scenario on a fresh runtime, as [`run_blocking`] does (the drop scenario alone
/// among this binary's scenarios), and returns its outcome: for tests that show a scenario
/// failing against a deliberately broken target.
pub fn outcome_blocking<T, F>(scenario: Scenario, make_target: impl FnOnce() -> F) -> Outcome
where
    T: ConformanceTarget,
    F: Future<Output = T>,
{
    // A scenario that failed (panicked) while holding the lock leaves it poisoned; the lock
    // guards no data, so the next scenario goes ahead.
    let (_shared, _alone);
    if scenario == Scenario::DropCancelsGeneration {
        _alone = TIMED_ALONE
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
    } else {
        _shared = TIMED_ALONE
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
    }
    runtime().block_on(async {
        let target = make_target().await;
        run_scenario(scenario, &target).await
    })
}

/// What a scenario returns.
pub type Outcome = Result<(), Failure>;

/// [`check_unsupported`] on a fresh runtime, panicking with the failure; what the macro's
/// companion tests call.
pub fn check_unsupported_blocking<T, F>(scenario: Scenario, make_target: impl FnOnce() -> F)
where
    T: ConformanceTarget,
    F: Future<Output = T>,
{
    let outcome = runtime().block_on(async {
        let target = make_target().await;
        check_unsupported(scenario, &target).await
    });
    if let Err(failure) = outcome {
        panic!(
            "the Unsupported skip of `{}` is wrong: {failure}",
            scenario.name()
        );
    }
}

/// Expands into a module of one `#[test]` per [`Scenario`] for one adapter.
///
/// `target` names an `async fn() -> impl ConformanceTarget` (it may panic when the backend cannot
/// be set up: a missing backend is a failure, not a skip). `skip` declares the scenarios this
/// adapter does not run, each as `name: Unsupported("why")` or `name: DoubleCannot("why")` (see
/// [`Skip`]). They become `#[ignore = why]` tests in the modules `unsupported` and
/// `double_cannot`, so `cargo test` lists them as ignored with the reason and
/// `cargo test -- --ignored` still runs them. A skip naming no scenario, naming one twice, or of
/// another kind does not compile.
#[macro_export]
macro_rules! conformance_suite {
    ($suite:ident, target: $make:path $(, skip: { $($skip:ident : $kind:ident ( $reason:literal )),* $(,)? })? $(,)?) => {
        mod $suite {
            #[allow(unused_imports)]
            use super::*;
            $crate::__with_scenarios!(__conformance_tests! { ($) $make, [$($($skip = $kind;)*)?] });

            #[allow(unused_imports)]
            mod unsupported {
                use super::*;
                $($( $crate::__skipped_test!(Unsupported, $kind, $skip, $reason, $make); )*)?
            }

            #[allow(unused_imports)]
            mod double_cannot {
                use super::*;
                $($( $crate::__skipped_test!(DoubleCannot, $kind, $skip, $reason, $make); )*)?
            }

            // Each skip is of a known kind, and names a scenario at most once.
            const _: () = { $($( let _ = $crate::Skip::$kind($reason); )*)? };
            #[allow(non_upper_case_globals, dead_code)]
            mod __skipped { $($( const $skip: () = (); )*)? }
        }
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_tests {
    ({ ($d:tt) $make:path, $skips:tt } $($variant:ident $name:ident [$($cap:ident)?] $what:literal;)*) => {
        /// The scenario of each name, for the skipped tests to run on demand.
        #[allow(non_upper_case_globals, dead_code)]
        mod __scenario {
            $( pub const $name: $crate::Scenario = $crate::Scenario::$variant; )*
        }
        $(
            // A local matcher per scenario: a test unless the skips name this scenario.
            macro_rules! __rigger_conformance_select {
                ([$name = $d kind:ident; $d($d rest:tt)*]) => {};
                ([$d other:ident = $d kind:ident; $d($d rest:tt)*]) => {
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

/// One skipped scenario's tests, when its kind is the module's: the ignored test that runs the
/// scenario on demand and, for Unsupported, the companion that checks the declaration.
#[doc(hidden)]
#[macro_export]
macro_rules! __skipped_test {
    (Unsupported, Unsupported, $name:ident, $reason:literal, $make:path) => {
        #[test]
        #[ignore = $reason]
        fn $name() {
            $crate::run_blocking(super::__scenario::$name, || $make());
        }

        mod $name {
            use super::*;

            #[test]
            fn is_declared_and_refused() {
                $crate::check_unsupported_blocking(super::super::__scenario::$name, || $make());
            }
        }
    };
    (DoubleCannot, DoubleCannot, $name:ident, $reason:literal, $make:path) => {
        #[test]
        #[ignore = $reason]
        fn $name() {
            $crate::run_blocking(super::__scenario::$name, || $make());
        }
    };
    ($module:ident, $kind:ident, $name:ident, $reason:literal, $make:path) => {};
}
