//! What only a real `mlx_lm.server` (from the project's MLX venv, serving the tiny generated
//! model on 127.0.0.1) shows: its usage chunk and client-side timings, its own unknown-model
//! error, and that it ignores `response_format`. The shared conformance suite runs against it
//! in `conformance.rs`.
//!
//! Needs the MLX venv: `cargo xtask setup-mlx` (CI runs it first), or `RIGGER_MLX_PYTHON`.
//! Without it these tests fail with that instruction; they never skip silently.
#![allow(clippy::unwrap_used)] // a panic is how a test reports failure

mod support;

use rigger_openai_adapter::OpenAiAdapter;
use rigger_ports::{ErrorKind, GenerationRequest, LanguageModel, ResponseFormat, TimingSource};
use support::mlx_server::{AdapterConfig, MlxServer};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn timings_are_client_clocks_and_usage_comes_from_its_usage_chunk() {
    let s = MlxServer::start();
    runtime().block_on(async {
        let model = OpenAiAdapter::connect(s.config(&s.model_id)).await.unwrap();
        let g = model
            .generate(
                GenerationRequest::prompt("Say something")
                    .with_max_tokens(6)
                    .with_temperature(0.0),
            )
            .await
            .unwrap();
        // mlx_lm.server sends no timings block: the adapter's clocks, and it says so.
        assert_eq!(g.completion.timings.source, TimingSource::Client);
        assert!(g.completion.usage.prompt_tokens > 0, "{:?}", g.completion);
        assert!(g.completion.usage.completion_tokens > 0);
    });
}

#[test]
fn a_model_the_server_lacks_is_model_not_found_from_the_server_itself() {
    // Not through connect(): the request goes out and mlx_lm.server's own failure is mapped.
    // A server of its own, because a failed load unloads the served model.
    let s = MlxServer::start();
    runtime().block_on(async {
        let model = OpenAiAdapter::new(s.config("rigger-test/no-such-model")).unwrap();
        let err = model
            .generate(GenerationRequest::prompt("hi").with_max_tokens(2))
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::ModelNotFound, "{err}");
        assert!(
            err.to_string().contains("rigger-test/no-such-model"),
            "{err}"
        );
    });
}

#[test]
fn an_ignored_response_format_surfaces_as_malformed_output_with_the_raw_text() {
    let s = MlxServer::start();
    runtime().block_on(async {
        let model = OpenAiAdapter::connect(s.config(&s.model_id)).await.unwrap();
        assert!(!model.descriptor().capabilities.native_structured_output);
        let err = model
            .generate(
                GenerationRequest::prompt("Reply in JSON")
                    .with_max_tokens(12)
                    .with_temperature(0.0)
                    .with_response_format(ResponseFormat::JsonSchema {
                        name: "answer".into(),
                        schema: serde_json::json!({"type": "object", "required": ["answer"]}),
                    }),
            )
            .await
            .unwrap_err();
        // The random-weight model cannot write JSON, and mlx_lm.server does not constrain it.
        assert_eq!(err.kind(), ErrorKind::MalformedOutput, "{err}");
        assert!(err.raw_output().is_some_and(|raw| !raw.is_empty()));
    });
}
