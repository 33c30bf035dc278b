#![allow(clippy::unwrap_used)] // a panic is how a test reports failure
//! The pipeline's logic, driven by mockall mocks of the model port: valid answers, an invalid
//! answer repaired, invalid twice, backend errors, fallback order, and the orchestrator's paths.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use futures::StreamExt;
use rigger_domain::{ModelRole, Route, Task, TaskId, TaskStatus};
use rigger_pipeline::{
    Cooldowns, FALLS_THROUGH, LlmComprehensionTester, LlmDecomposer, LlmEnhancer, LlmRouter,
    ModelChain, Orchestrator, PipelineEvent, RouterFallback, UnbuiltModel,
};
use rigger_ports::{
    Capabilities, ChatRole, Completion, ComprehensionTestPort, ErrorKind, EventStream,
    FinishReason, GenerationRequest, InferenceError, LanguageModel, MockLanguageModel,
    ModelDescriptor, StreamEvent, TaskDecompositionPort, TaskEnhancementPort, TaskRouterPort,
    TimingSource, Timings, Usage,
};

/// What a mock model does on one call.
enum Reply {
    Text(&'static str),
    /// `stream()` itself fails (before any event).
    SetupError(ErrorKind),
    /// The stream's first event is an error.
    FirstEventError(ErrorKind),
    /// One token, then an error.
    ErrorAfterToken(ErrorKind),
    /// The adapter rejected the output as malformed (what `enforce_response_format` does).
    Malformed(&'static str),
}

fn done(tokens: u32) -> StreamEvent {
    StreamEvent::Done(Completion {
        finish_reason: FinishReason::EndOfSequence,
        usage: Usage {
            prompt_tokens: 7,
            completion_tokens: tokens,
        },
        timings: Timings {
            load: None,
            time_to_first_token: Some(Duration::from_millis(5)),
            prompt_tokens: 7,
            prompt_duration: Duration::from_millis(5),
            generated_tokens: tokens,
            generation_duration: Duration::from_millis(20),
            source: TimingSource::Client,
            grammar: None,
        },
    })
}

fn error(kind: ErrorKind, backend: &str) -> InferenceError {
    InferenceError::new(kind, backend, format!("{kind} from {backend}"))
}

/// A mock model named `backend` answering `replies` in order, recording each request.
fn model(
    backend: &'static str,
    replies: Vec<Reply>,
    requests: Arc<Mutex<Vec<GenerationRequest>>>,
) -> Arc<dyn LanguageModel> {
    let mut mock = MockLanguageModel::new();
    mock.expect_descriptor().return_const(ModelDescriptor {
        backend: backend.to_owned(),
        model_id: format!("{backend}-model"),
        context_length: Some(4096),
        capabilities: Capabilities::all(),
    });
    let calls = replies.len();
    let replies = Mutex::new(replies.into_iter());
    mock.expect_stream().times(calls).returning(move |request| {
        requests.lock().unwrap().push(request);
        let reply = replies.lock().unwrap().next().unwrap();
        let events: Vec<Result<StreamEvent, InferenceError>> = match reply {
            Reply::SetupError(kind) => return Err(error(kind, backend)),
            Reply::Text(text) => vec![Ok(StreamEvent::Delta(text.to_owned())), Ok(done(3))],
            Reply::FirstEventError(kind) => vec![Err(error(kind, backend))],
            Reply::ErrorAfterToken(kind) => {
                vec![
                    Ok(StreamEvent::Delta("{".into())),
                    Err(error(kind, backend)),
                ]
            }
            Reply::Malformed(raw) => vec![
                Ok(StreamEvent::Delta(raw.to_owned())),
                Err(
                    InferenceError::new(ErrorKind::MalformedOutput, backend, "not JSON")
                        .with_raw_output(raw),
                ),
            ],
        };
        let stream: EventStream = futures::stream::iter(events).boxed();
        Ok(stream)
    });
    Arc::new(mock)
}

/// A model that only validates JSON (no constrained decoding), like Candle and MLX.
fn validating_model(
    replies: Vec<Reply>,
    requests: Arc<Mutex<Vec<GenerationRequest>>>,
) -> Arc<dyn LanguageModel> {
    let inner = model("candle", replies, requests);
    let mut descriptor = inner.descriptor().clone();
    descriptor.capabilities.native_structured_output = false;
    let mut mock = MockLanguageModel::new();
    mock.expect_descriptor().return_const(descriptor);
    mock.expect_stream().returning(move |request| {
        let inner = Arc::clone(&inner);
        futures::executor::block_on(async move { inner.stream(request).await })
    });
    Arc::new(mock)
}

fn log() -> Arc<Mutex<Vec<GenerationRequest>>> {
    Arc::new(Mutex::new(Vec::new()))
}

fn task() -> Task {
    Task::new(
        TaskId::new("T1").unwrap(),
        "Write the release notes",
        Utc::now(),
    )
    .unwrap()
    .with_description("For version 2.0, from the changelog.")
}

const ENHANCED: &str = r#"{"title": "Write the 2.0 release notes", "description": "Summarise the changelog for users."}"#;
const SUBTASKS: &str = r#"{"subtasks": [
    {"title": "Collect changes", "description": "Read the changelog."},
    {"title": "Draft notes", "description": "Write a first draft."},
    {"title": "Review", "description": "Get a review."}]}"#;
const QUESTION: &str = r#"{"question": "Who reads the notes?", "options": ["Users", "Robots", "Cats", "Nobody"], "answer": 1}"#;

#[tokio::test]
async fn a_valid_answer_becomes_the_value_with_its_call_figures() {
    let requests = log();
    let chain = ModelChain::single(model("mlx", vec![Reply::Text(ENHANCED)], requests.clone()));
    let outcome = LlmEnhancer::new(chain).enhance(&task()).await.unwrap();
    assert_eq!(
        outcome.value.title.as_deref(),
        Some("Write the 2.0 release notes")
    );
    assert_eq!(outcome.value.task_id.as_str(), "T1");
    assert_eq!(outcome.calls.len(), 1);
    assert_eq!(outcome.calls[0].backend, "mlx");
    assert_eq!(outcome.calls[0].usage.completion_tokens, 3);
    // The request asked for JSON with a schema and carried the task.
    let sent = &requests.lock().unwrap()[0];
    assert!(matches!(
        sent.response_format,
        rigger_ports::ResponseFormat::JsonSchema { .. }
    ));
    assert!(
        sent.messages
            .iter()
            .any(|m| m.content.contains("Write the release notes"))
    );
}

#[tokio::test]
async fn an_invalid_answer_is_repaired_once() {
    let requests = log();
    let replies = vec![
        Reply::Text(r#"{"subtasks": [{"title": "Only one", "description": ""}]}"#),
        Reply::Text(SUBTASKS),
    ];
    let chain = ModelChain::single(model("ollama", replies, requests.clone()));
    let outcome = LlmDecomposer::new(chain).decompose(&task()).await.unwrap();
    assert_eq!(outcome.value.subtasks().len(), 3);
    assert_eq!(outcome.calls.len(), 2, "the repair is a second call");
    // The repair request shows the model its answer and what was wrong.
    let sent = requests.lock().unwrap();
    assert_eq!(
        sent[0].temperature,
        Some(0.2),
        "the role's own temperature first"
    );
    let repair = &sent[1];
    // A near-greedy model repeats its mistake when asked again: the repair samples.
    assert_eq!(repair.temperature, Some(0.7));
    let n = repair.messages.len();
    assert_eq!(repair.messages[n - 2].role, ChatRole::Assistant);
    assert!(repair.messages[n - 2].content.contains("Only one"));
    assert!(
        repair.messages[n - 1].content.contains("not valid"),
        "{}",
        repair.messages[n - 1].content
    );
}

#[tokio::test]
async fn an_answer_rejected_by_the_adapter_is_repaired_too() {
    let replies = vec![
        Reply::Malformed("Sure! The question is..."),
        Reply::Text(QUESTION),
    ];
    let chain = ModelChain::single(model("candle", replies, log()));
    let outcome = LlmComprehensionTester::new(chain)
        .comprehension_test(&task())
        .await
        .unwrap();
    assert_eq!(outcome.value.answer.as_deref(), Some("Users"));
    assert_eq!(
        outcome.calls.len(),
        1,
        "the rejected call has no figures to report"
    );
}

#[tokio::test]
async fn invalid_twice_is_malformed_output_with_the_raw_text_and_no_canned_answer() {
    let replies = vec![
        Reply::Text("I cannot do that"),
        Reply::Text(r#"{"subtasks": []}"#),
    ];
    let chain = ModelChain::single(model("mlx", replies, log()));
    let err = LlmDecomposer::new(chain)
        .decompose(&task())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::MalformedOutput);
    assert_eq!(err.raw_output(), Some(r#"{"subtasks": []}"#));
    assert!(err.message().contains("2 attempt"), "{err}");
    assert!(
        err.hint()
            .unwrap()
            .contains("TASK_ORCHESTRATOR_DECOMPOSER_MODEL"),
        "{err}"
    );
}

#[tokio::test]
async fn a_domain_rule_violation_is_invalid_even_when_the_json_fits() {
    // Two options are the same: the schema allows it, the domain does not.
    let bad = r#"{"question": "Q?", "options": ["A", "B", "a", "C"], "answer": 1}"#;
    let chain = ModelChain::single(model(
        "mlx",
        vec![Reply::Text(bad), Reply::Text(bad)],
        log(),
    ));
    let err = LlmComprehensionTester::new(chain)
        .comprehension_test(&task())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::MalformedOutput);
}

#[tokio::test]
async fn without_native_structured_output_the_pipeline_checks_and_keeps_every_calls_figures() {
    let requests = log();
    let replies = vec![Reply::Text("nonsense"), Reply::Text("more nonsense")];
    let chain = ModelChain::single(validating_model(replies, requests.clone()));
    let err = LlmEnhancer::new(chain).enhance(&task()).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::MalformedOutput);
    assert_eq!(err.raw_output(), Some("more nonsense"));
    // Text was asked for (the schema is in the prompt), and both calls' figures survive the error.
    assert!(
        requests
            .lock()
            .unwrap()
            .iter()
            .all(|r| r.response_format == rigger_ports::ResponseFormat::Text)
    );
    let calls = rigger_pipeline::step_calls(&err);
    assert_eq!(calls.len(), 2);
    assert!(
        calls
            .iter()
            .all(|c| c.backend == "candle" && c.usage.completion_tokens == 3)
    );
}

#[tokio::test]
async fn backend_errors_are_returned_without_repair() {
    let chain = ModelChain::single(model(
        "openai",
        vec![Reply::SetupError(ErrorKind::Unauthorized)],
        log(),
    ));
    let err = LlmEnhancer::new(chain).enhance(&task()).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unauthorized);
}

#[tokio::test]
async fn fallback_moves_on_before_the_first_token_in_chain_order() {
    let requests = log();
    let chain = ModelChain::new(vec![
        model(
            "mlx",
            vec![Reply::SetupError(ErrorKind::NotAvailable)],
            requests.clone(),
        ),
        model(
            "ollama",
            vec![Reply::FirstEventError(ErrorKind::Timeout)],
            requests.clone(),
        ),
        model("candle", vec![Reply::Text(ENHANCED)], requests.clone()),
    ])
    .unwrap();
    let outcome = LlmEnhancer::new(chain).enhance(&task()).await.unwrap();
    assert_eq!(
        outcome.calls[0].backend, "candle",
        "the figures name the link that served"
    );
    assert_eq!(requests.lock().unwrap().len(), 3);
}

#[tokio::test]
async fn fallback_never_happens_after_the_first_token_or_on_other_kinds() {
    // After a token: the error is final, the next link is never called (its mock expects 0 calls).
    let chain = ModelChain::new(vec![
        model(
            "mlx",
            vec![Reply::ErrorAfterToken(ErrorKind::BackendCrashed)],
            log(),
        ),
        model("ollama", vec![], log()),
    ])
    .unwrap();
    let err = LlmEnhancer::new(chain).enhance(&task()).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::BackendCrashed);
    // A request the backend rejects is not a reason to try another backend.
    let chain = ModelChain::new(vec![
        model(
            "mlx",
            vec![Reply::SetupError(ErrorKind::ContextLengthExceeded)],
            log(),
        ),
        model("ollama", vec![], log()),
    ])
    .unwrap();
    let err = LlmEnhancer::new(chain).enhance(&task()).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ContextLengthExceeded);
}

/// A model missing on one backend (not pulled on Ollama), one that does not load, and a rate
/// limit that outlasted the adapter's retries are this link's problem, not the request's.
#[tokio::test]
async fn a_missing_model_a_failed_load_and_a_rate_limit_fall_through() {
    for kind in [
        ErrorKind::ModelNotFound,
        ErrorKind::ModelLoadFailed,
        ErrorKind::RateLimited,
    ] {
        let chain = ModelChain::new(vec![
            model("ollama", vec![Reply::SetupError(kind)], log()),
            model("candle", vec![Reply::Text(ENHANCED)], log()),
        ])
        .unwrap();
        let outcome = LlmEnhancer::new(chain).enhance(&task()).await.unwrap();
        assert_eq!(outcome.calls[0].backend, "candle", "{kind}");
    }
}

/// The set of kinds that fall through is the chain's to choose: with `unauthorized` added, a
/// link whose key is refused hands over to the next; with the set emptied, even an absent
/// backend stops the chain.
#[tokio::test]
async fn the_kinds_that_fall_through_can_be_chosen() {
    // The second link answers only where the chain is expected to reach it.
    let chain = |first: ErrorKind, reached: bool| {
        let second = if reached {
            vec![Reply::Text(ENHANCED)]
        } else {
            vec![]
        };
        ModelChain::new(vec![
            model("openai", vec![Reply::SetupError(first)], log()),
            model("candle", second, log()),
        ])
        .unwrap()
    };
    let stops = LlmEnhancer::new(chain(ErrorKind::Unauthorized, false))
        .enhance(&task())
        .await
        .unwrap_err();
    assert_eq!(stops.kind(), ErrorKind::Unauthorized, "not by default");
    let widened: Arc<[ErrorKind]> =
        Arc::from([FALLS_THROUGH.as_slice(), &[ErrorKind::Unauthorized]].concat());
    let outcome =
        LlmEnhancer::new(chain(ErrorKind::Unauthorized, true).with_falls_through(widened))
            .enhance(&task())
            .await
            .unwrap();
    assert_eq!(outcome.calls[0].backend, "candle");
    let none: Arc<[ErrorKind]> = Arc::from(Vec::new());
    let err = LlmEnhancer::new(chain(ErrorKind::NotAvailable, false).with_falls_through(none))
        .enhance(&task())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotAvailable);
}

/// A link that just fell through is skipped on the next calls (its mock allows one call), and
/// tried again once the cooldown is over.
#[tokio::test]
async fn a_link_that_fell_through_is_skipped_during_its_cooldown() {
    let requests = log();
    let cooldowns = Arc::new(Cooldowns::new(Duration::from_millis(300)));
    let chain = ModelChain::new(vec![
        model(
            "ollama",
            vec![
                Reply::SetupError(ErrorKind::NotAvailable),
                Reply::Text(ENHANCED),
            ],
            requests.clone(),
        ),
        model(
            "candle",
            vec![Reply::Text(ENHANCED), Reply::Text(ENHANCED)],
            log(),
        ),
    ])
    .unwrap()
    .with_cooldowns(cooldowns);
    let enhancer = LlmEnhancer::new(chain);
    assert_eq!(
        enhancer.enhance(&task()).await.unwrap().calls[0].backend,
        "candle"
    );
    assert_eq!(
        enhancer.enhance(&task()).await.unwrap().calls[0].backend,
        "candle"
    );
    assert_eq!(
        requests.lock().unwrap().len(),
        1,
        "skipped while cooling down"
    );
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(
        enhancer.enhance(&task()).await.unwrap().calls[0].backend,
        "ollama"
    );
}

/// When every link is cooling down, they are all tried rather than none.
#[tokio::test]
async fn when_every_link_is_cooling_down_they_are_tried_anyway() {
    let chain = ModelChain::new(vec![model(
        "ollama",
        vec![
            Reply::SetupError(ErrorKind::NotAvailable),
            Reply::Text(ENHANCED),
        ],
        log(),
    )])
    .unwrap();
    let enhancer = LlmEnhancer::new(chain);
    assert_eq!(
        enhancer.enhance(&task()).await.unwrap_err().kind(),
        ErrorKind::NotAvailable
    );
    assert_eq!(
        enhancer.enhance(&task()).await.unwrap().calls[0].backend,
        "ollama"
    );
}

/// A link whose adapter could not be built fails as NotAvailable, quoting why, so the chain
/// falls through and the final error still names it.
#[tokio::test]
async fn an_unbuilt_link_falls_through_and_is_named() {
    let why = InferenceError::invalid_request("anthropic", "no API key is configured")
        .with_hint("set ANTHROPIC_API_KEY");
    let unbuilt: Arc<dyn LanguageModel> = Arc::new(UnbuiltModel::new("anthropic", "claude", &why));
    let chain = ModelChain::new(vec![
        unbuilt.clone(),
        model("candle", vec![Reply::Text(ENHANCED)], log()),
    ])
    .unwrap();
    let outcome = LlmEnhancer::new(chain).enhance(&task()).await.unwrap();
    assert_eq!(outcome.calls[0].backend, "candle");

    let chain = ModelChain::new(vec![
        unbuilt,
        model(
            "candle",
            vec![Reply::SetupError(ErrorKind::NotAvailable)],
            log(),
        ),
    ])
    .unwrap();
    let err = LlmEnhancer::new(chain).enhance(&task()).await.unwrap_err();
    assert!(
        err.message().contains("anthropic:claude failed")
            && err.message().contains("no API key is configured"),
        "{err}"
    );
}

#[tokio::test]
async fn when_every_link_fails_the_error_lists_each_attempt() {
    let chain = ModelChain::new(vec![
        model(
            "mlx",
            vec![Reply::SetupError(ErrorKind::NotAvailable)],
            log(),
        ),
        model(
            "ollama",
            vec![Reply::SetupError(ErrorKind::NotAvailable)],
            log(),
        ),
        model(
            "candle",
            vec![Reply::SetupError(ErrorKind::BackendCrashed)],
            log(),
        ),
    ])
    .unwrap();
    let err = LlmEnhancer::new(chain).enhance(&task()).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::BackendCrashed);
    let message = err.message();
    let mlx = message.find("mlx:mlx-model failed").unwrap();
    let ollama = message.find("ollama:ollama-model failed").unwrap();
    assert!(mlx < ollama, "{message}");
    assert!(
        message.starts_with("backend crashed from candle"),
        "{message}"
    );
}

#[tokio::test]
async fn the_router_uses_the_heuristic_only_when_asked() {
    let chain = || {
        ModelChain::single(model(
            "mlx",
            vec![Reply::SetupError(ErrorKind::NotAvailable)],
            log(),
        ))
    };
    let err = LlmRouter::new(chain()).route(&task()).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotAvailable);

    let outcome = LlmRouter::new(chain())
        .with_fallback(RouterFallback::Heuristic)
        .route(&task())
        .await
        .unwrap();
    assert!(
        outcome.value.reason.starts_with("heuristic fallback"),
        "{}",
        outcome.value.reason
    );
    assert!(outcome.calls.is_empty());
}

#[tokio::test]
async fn the_router_answer_is_checked_against_the_score_range() {
    let replies = vec![
        Reply::Text(r#"{"complexity": 42, "route": "decompose", "reason": "big"}"#),
        Reply::Text(r#"{"complexity": 8, "route": "decompose", "reason": "many parts"}"#),
    ];
    let chain = ModelChain::single(model("mlx", replies, log()));
    let outcome = LlmRouter::new(chain).route(&task()).await.unwrap();
    assert_eq!(outcome.value.route, Route::Decompose);
    assert_eq!(outcome.value.complexity.get(), 8);
    assert_eq!(outcome.calls.len(), 2);
}

fn orchestrator(
    router: &'static str,
    fail_tester: bool,
) -> (Orchestrator, Arc<Mutex<Vec<String>>>) {
    let chain = |replies| ModelChain::single(model("mlx", replies, log()));
    let tester_reply = if fail_tester {
        Reply::SetupError(ErrorKind::Unauthorized)
    } else {
        Reply::Text(QUESTION)
    };
    let decomposes = router.contains("decompose");
    let events = Arc::new(Mutex::new(Vec::new()));
    let seen = events.clone();
    let o = Orchestrator::new(
        Arc::new(LlmRouter::new(chain(vec![Reply::Text(router)]))),
        Arc::new(LlmEnhancer::new(chain(if decomposes {
            vec![]
        } else {
            vec![Reply::Text(ENHANCED)]
        }))),
        Arc::new(LlmDecomposer::new(chain(if decomposes {
            vec![Reply::Text(SUBTASKS)]
        } else {
            vec![]
        }))),
        Arc::new(LlmComprehensionTester::new(chain(if decomposes {
            vec![]
        } else {
            vec![tester_reply]
        }))),
    )
    .with_observer(Arc::new(move |e: &PipelineEvent<'_>| {
        let line = match e {
            PipelineEvent::StepStarted { role } => format!("start {role}"),
            PipelineEvent::StepFinished { role, calls } => format!("done {role} {}", calls.len()),
            PipelineEvent::StepFailed { role, error } => format!("fail {role} {}", error.kind()),
        };
        seen.lock().unwrap().push(line);
    }));
    (o, events)
}

#[tokio::test]
async fn orchestrator_routes_to_enhance_then_test() {
    let (o, events) = orchestrator(
        r#"{"complexity": 2, "route": "enhance", "reason": "small"}"#,
        false,
    );
    let run = o.run(task()).await.unwrap();
    assert_eq!(run.task.status, TaskStatus::PendingComprehensionTest);
    assert_eq!(run.task.complexity.unwrap().get(), 2);
    assert!(run.enhancement.is_some() && run.comprehension_test.is_some());
    assert!(run.subtasks.is_empty());
    let roles: Vec<ModelRole> = run.steps.iter().map(|s| s.role).collect();
    assert_eq!(
        roles,
        [ModelRole::Router, ModelRole::Enhancer, ModelRole::Tester]
    );
    assert_eq!(
        *events.lock().unwrap(),
        [
            "start router",
            "done router 1",
            "start enhancer",
            "done enhancer 1",
            "start tester",
            "done tester 1"
        ]
    );
}

#[tokio::test]
async fn orchestrator_routes_to_decompose_and_links_subtasks() {
    let (o, _) = orchestrator(
        r#"{"complexity": 8, "route": "decompose", "reason": "many parts"}"#,
        false,
    );
    let run = o.run(task()).await.unwrap();
    assert_eq!(run.task.status, TaskStatus::Decomposed);
    assert_eq!(run.subtasks.len(), 3);
    assert_eq!(run.task.subtask_ids.len(), 3);
    for (id, sub) in run.task.subtask_ids.iter().zip(&run.subtasks) {
        assert_eq!(&sub.id, id);
        assert_eq!(sub.parent_id.as_ref(), Some(&run.task.id));
    }
    assert_eq!(run.subtasks[0].id.as_str(), "T1.1");
}

#[tokio::test]
async fn a_failed_step_returns_what_was_produced_and_marks_the_task_errored() {
    let (o, events) = orchestrator(
        r#"{"complexity": 2, "route": "enhance", "reason": "small"}"#,
        true,
    );
    let failure = o.run(task()).await.unwrap_err();
    assert_eq!(failure.role, ModelRole::Tester);
    assert_eq!(failure.error.kind(), ErrorKind::Unauthorized);
    assert_eq!(failure.partial.task.status, TaskStatus::Errored);
    assert!(failure.partial.routing.is_some() && failure.partial.enhancement.is_some());
    assert_eq!(failure.partial.steps.len(), 2);
    assert_eq!(
        events.lock().unwrap().last().unwrap(),
        "fail tester unauthorized"
    );
}
