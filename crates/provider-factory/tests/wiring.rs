#![allow(clippy::unwrap_used)] // a panic is how a test reports failure
//! Each HTTP adapter reached through the factory, end to end against a fixture server that speaks
//! its API: detection order, the adapter built from the settings, and a pipeline step whose
//! figures name the backend that served it.

use chrono::Utc;
use rigger_domain::{ModelRole, Task, TaskId};
use rigger_http_support::fixture::{FixtureResponse, FixtureServer};
use rigger_provider_factory::{Provider, ProviderFactory, Vars};
use serde_json::json;

fn task() -> Task {
    Task::new(
        TaskId::new("T1").unwrap(),
        "Fix the typo in the README",
        Utc::now(),
    )
    .unwrap()
}

const ROUTING: &str = r#"{"complexity": 2, "route": "enhance", "reason": "one small edit"}"#;

fn ollama_fixture() -> impl Fn(&rigger_http_support::fixture::RecordedRequest) -> FixtureResponse {
    |req| match req.path.as_str() {
        "/api/version" => FixtureResponse::ok().json(&json!({"version": "0.5.1"})),
        "/api/show" => FixtureResponse::ok().json(&json!({
            "model_info": {"general.architecture": "llama", "llama.context_length": 8192}
        })),
        "/api/chat" => {
            let (a, b) = ROUTING.split_at(20);
            let line = |content: &str| {
                json!({"model": "phi3", "created_at": "2024-01-01T00:00:00Z",
                       "message": {"role": "assistant", "content": content}, "done": false})
                .to_string()
                    + "\n"
            };
            let done = json!({"model": "phi3", "created_at": "2024-01-01T00:00:00Z",
                "message": {"role": "assistant", "content": ""}, "done": true, "done_reason": "stop",
                "total_duration": 5_000_000, "load_duration": 1_000_000, "prompt_eval_count": 120,
                "prompt_eval_duration": 2_000_000, "eval_count": 18, "eval_duration": 2_000_000});
            FixtureResponse::ok()
                .header("content-type", "application/x-ndjson")
                .chunk(line(a))
                .chunk(line(b))
                .chunk(done.to_string() + "\n")
        }
        _ => FixtureResponse::status(404).chunk("404 page not found"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_reachable_ollama_is_auto_detected_before_candle_and_serves_the_router() {
    let server = FixtureServer::start(ollama_fixture()).await.unwrap();
    let vars = Vars::from_map([
        ("OLLAMA_HOST", server.url()),
        ("CANDLE_MODEL", "/models/tiny.gguf".to_owned()),
        ("PYTHON_PATH", "/nonexistent/python3".to_owned()),
    ]);
    let factory = tokio::task::spawn_blocking(move || ProviderFactory::from_vars(vars))
        .await
        .unwrap()
        .unwrap();
    let plan = factory.plan(ModelRole::Router);
    assert_eq!(plan.links[0].provider, Provider::Ollama);
    assert_eq!(plan.links[0].model, "phi3");
    let ollama = factory
        .detection()
        .unwrap()
        .status(Provider::Ollama)
        .unwrap();
    assert!(
        ollama.usable && ollama.detail.contains("0.5.1"),
        "{ollama:?}"
    );

    let outcome = factory
        .create_router_adapter()
        .unwrap()
        .route(&task())
        .await
        .unwrap();
    assert_eq!(outcome.value.complexity.get(), 2);
    assert_eq!(outcome.calls[0].backend, "ollama");
    assert_eq!(outcome.calls[0].model_id, "phi3");
    assert_eq!(outcome.calls[0].usage.prompt_tokens, 120);
    let chat = server
        .requests()
        .into_iter()
        .find(|r| r.path == "/api/chat")
        .unwrap()
        .json();
    assert_eq!(chat["model"], "phi3");
    assert!(
        chat["format"].is_object(),
        "Ollama constrains natively: the schema is sent: {chat}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn openai_compatible_servers_are_reached_through_the_factory() {
    let server = FixtureServer::start(|req| match req.path.as_str() {
        "/v1/models" => FixtureResponse::ok().json(&json!({"object": "list", "data": [{"id": "served", "object": "model"}]})),
        "/v1/chat/completions" => {
            let chunk = |delta: serde_json::Value, finish: serde_json::Value| {
                format!("data: {}\n\n", json!({"id": "c1", "object": "chat.completion.chunk", "created": 1,
                    "model": "served", "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}))
            };
            let usage = json!({"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "served",
                "choices": [], "usage": {"prompt_tokens": 80, "completion_tokens": 12, "total_tokens": 92}});
            FixtureResponse::ok()
                .header("content-type", "text/event-stream")
                .chunk(chunk(json!({"role": "assistant", "content": r#"{"description": "#}), json!(null)))
                .chunk(chunk(json!({"content": r#""Correct the misspelled word in README.md."}"#}), json!(null)))
                .chunk(chunk(json!({}), json!("stop")))
                .chunk(format!("data: {usage}\n\ndata: [DONE]\n\n"))
        }
        _ => FixtureResponse::status(404).json(&json!({"error": "not found"})),
    })
    .await
    .unwrap();
    let vars = Vars::from_map([
        ("OPENAI_BASE_URL", format!("{}/v1", server.url())),
        ("OPENAI_MODEL", "served".to_owned()),
        ("TASK_ORCHESTRATOR_PROVIDER", "openai".to_owned()),
    ]);
    let factory = ProviderFactory::from_vars(vars.clone()).unwrap();
    let outcome = factory
        .create_enhancement_adapter()
        .unwrap()
        .enhance(&task())
        .await
        .unwrap();
    assert_eq!(
        outcome.value.description,
        "Correct the misspelled word in README.md."
    );
    assert_eq!(outcome.calls[0].backend, "openai");
    assert_eq!(outcome.calls[0].usage.completion_tokens, 12);

    let report = rigger_provider_factory::detect(&vars).await;
    assert!(report.status(Provider::OpenAi).unwrap().usable, "{report}");
    let listed = rigger_provider_factory::list_models(&vars).await;
    let openai = listed.iter().find(|(p, _)| *p == Provider::OpenAi).unwrap();
    assert_eq!(openai.1.as_ref().unwrap(), &["served"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn anthropic_is_reached_through_the_factory_with_its_headers() {
    let server = FixtureServer::start(|req| {
        if req.path.starts_with("/v1/models") {
            return FixtureResponse::ok().json(&json!({"id": "claude-sonnet-4-5", "type": "model",
                "display_name": "Claude", "created_at": "2025-01-01T00:00:00Z"}));
        }
        let event = |name: &str, data: serde_json::Value| format!("event: {name}\ndata: {data}\n\n");
        let answer = r#"{"question": "Which file has the typo?", "options": ["README.md", "Cargo.toml", "LICENSE", "build.rs"], "answer": 1}"#;
        FixtureResponse::ok()
            .header("content-type", "text/event-stream")
            .chunk(event("message_start", json!({"type": "message_start", "message": {"id": "msg_1", "type": "message",
                "role": "assistant", "content": [], "model": "claude-sonnet-4-5", "stop_reason": null,
                "stop_sequence": null, "usage": {"input_tokens": 90, "output_tokens": 1}}})))
            .chunk(event("content_block_start", json!({"type": "content_block_start", "index": 0,
                "content_block": {"type": "text", "text": ""}})))
            .chunk(event("content_block_delta", json!({"type": "content_block_delta", "index": 0,
                "delta": {"type": "text_delta", "text": answer}})))
            .chunk(event("content_block_stop", json!({"type": "content_block_stop", "index": 0})))
            .chunk(event("message_delta", json!({"type": "message_delta",
                "delta": {"stop_reason": "end_turn", "stop_sequence": null}, "usage": {"output_tokens": 30}})))
            .chunk(event("message_stop", json!({"type": "message_stop"})))
    })
    .await
    .unwrap();
    let factory = ProviderFactory::new_with_vars(
        "anthropic",
        "",
        Vars::from_map([
            ("ANTHROPIC_API_KEY", "sk-ant-test-key-0123456789"),
            ("ANTHROPIC_BASE_URL", server.url().as_str()),
        ]),
    )
    .unwrap();
    assert_eq!(
        factory.plan(ModelRole::Tester).links[0].model,
        rigger_anthropic_adapter::DEFAULT_MODEL
    );
    let outcome = factory
        .create_comprehension_test_adapter()
        .unwrap()
        .comprehension_test(&task())
        .await
        .unwrap();
    assert_eq!(outcome.value.answer.as_deref(), Some("README.md"));
    assert_eq!(outcome.calls[0].backend, "anthropic");
    let sent = server
        .requests()
        .into_iter()
        .find(|r| r.path == "/v1/messages")
        .unwrap();
    assert_eq!(sent.header("x-api-key"), Some("sk-ant-test-key-0123456789"));
    assert!(sent.header("anthropic-version").is_some());
}

#[test]
fn the_anthropic_default_is_the_adapters() {
    for role in ModelRole::ALL {
        assert_eq!(
            rigger_provider_factory::role_default(Provider::Anthropic, role),
            Some(rigger_anthropic_adapter::DEFAULT_MODEL)
        );
    }
}

/// A link whose adapter cannot be built (here Anthropic's own host without a key) does not
/// fail the role: the call falls through to the next link, and the failure stays visible.
#[tokio::test(flavor = "multi_thread")]
async fn a_link_that_cannot_be_built_falls_through_to_the_next() {
    let server = FixtureServer::start(ollama_fixture()).await.unwrap();
    let vars = Vars::from_map([
        ("OLLAMA_HOST", server.url()),
        ("TASK_ORCHESTRATOR_PROVIDER", "anthropic".to_owned()),
        ("TASK_ORCHESTRATOR_FALLBACK", "ollama:phi3".to_owned()),
    ]);
    let factory = ProviderFactory::from_vars(vars).unwrap();
    let chain = factory.model_chain_for_role(ModelRole::Router).unwrap();
    assert_eq!(chain.links().len(), 2, "{chain:?}");
    let outcome = factory
        .create_router_adapter()
        .expect("one unbuildable link does not fail the role")
        .route(&task())
        .await
        .unwrap();
    assert_eq!(outcome.calls[0].backend, "ollama");
}

/// When no link can be built, building the role fails, naming every link.
#[test]
fn a_chain_without_a_buildable_link_fails_naming_each() {
    let vars = Vars::from_map([
        ("TASK_ORCHESTRATOR_PROVIDER", "anthropic"),
        ("TASK_ORCHESTRATOR_FALLBACK", "anthropic:claude-other"),
    ]);
    let factory = ProviderFactory::from_vars(vars).unwrap();
    let err = factory.model_chain_for_role(ModelRole::Router).unwrap_err();
    assert!(err.message().contains("claude-other"), "{err}");
    assert!(err.message().contains("claude-sonnet-4-5"), "{err}");
    assert!(
        err.message().contains("no link of the chain can be built"),
        "{err}"
    );
}
