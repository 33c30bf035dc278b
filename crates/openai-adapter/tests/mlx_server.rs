//! The shared conformance suite against a real `mlx_lm.server` (from the project's MLX venv)
//! serving the tiny generated model on 127.0.0.1, plus what only a real server shows: its
//! `: keepalive` comments, its usage chunk, and that it ignores `response_format`.
//!
//! Needs the MLX venv: `cargo xtask setup-mlx` (CI runs it first), or `RIGGER_MLX_PYTHON`.
//! Without it these tests fail with that instruction; they never skip silently.
#![allow(clippy::unwrap_used)] // a panic is how a test reports failure

use std::io::Read;
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use rigger_conformance::ConformanceTarget;
use rigger_openai_adapter::{OpenAiAdapter, OpenAiConfig, ServerKind};
use rigger_ports::{
    ErrorKind, GenerationRequest, InferenceError, LanguageModel, ResponseFormat, TimingSource,
};

/// A running `mlx_lm.server`. It is started through a shell that kills it when this process's
/// end of its stdin closes: on drop, and also when the test binary dies without unwinding.
struct MlxServer {
    child: Child,
    base_url: String,
    model_id: String,
    context_length: u32,
}

impl Drop for MlxServer {
    fn drop(&mut self) {
        // Closing the shell's stdin makes it kill the server (killing the shell would orphan it).
        drop(self.child.stdin.take());
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind(("127.0.0.1", 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl MlxServer {
    fn start() -> Self {
        let python = rigger_model_gen::mlx_python();
        let model_dir = rigger_model_gen::tiny_model()
            .unwrap()
            .canonicalize()
            .unwrap();
        let config: serde_json::Value =
            serde_json::from_slice(&std::fs::read(model_dir.join("config.json")).unwrap()).unwrap();
        // mlx_lm.server neither enforces nor reports a context length, so the adapter checks the
        // declared one against the usage the server reports. Declaring a quarter of the model's
        // window keeps the over-long prompt of the context scenario (twice the declared window)
        // small enough for CPU prefill within the suite's patience, even on a loaded CI machine.
        let context_length = config["max_position_embeddings"].as_u64().unwrap() as u32 / 4;
        let port = free_port();
        let log = std::env::temp_dir().join(format!("rigger-mlx-server-{port}.log"));
        // mlx_lm.server's /v1/models scans the hub cache and, when the folder is missing,
        // fails after sending its 200 headers (an empty body). An empty cache of its own.
        let hub_cache = std::env::temp_dir().join(format!("rigger-mlx-hub-cache-{port}"));
        std::fs::create_dir_all(&hub_cache).unwrap();
        let script = r#""$0" -m mlx_lm.server --model "$1" --host 127.0.0.1 --port "$2" >"$3" 2>&1 &
server=$!
read _ignored
kill $server"#;
        let child = Command::new("sh")
            .arg("-c")
            .arg(script)
            .arg(&python)
            .arg(&model_dir)
            .arg(port.to_string())
            .arg(&log)
            // No hub access here: an unknown model must fail at once, not wait on the network.
            .env("HF_HUB_OFFLINE", "1")
            .env("HF_HUB_CACHE", &hub_cache)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let server = MlxServer {
            child,
            base_url: format!("http://127.0.0.1:{port}/v1"),
            model_id: model_dir.display().to_string(),
            context_length,
        };
        server.wait_ready(port, &log);
        server
    }

    fn wait_ready(&self, port: u16, log: &Path) {
        let deadline = Instant::now() + Duration::from_secs(120);
        while Instant::now() < deadline {
            if let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", port)) {
                use std::io::Write;
                let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
                let _ = stream.write_all(
                    b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
                );
                let mut reply = String::new();
                let _ = stream.read_to_string(&mut reply);
                if reply.starts_with("HTTP/1.0 200") || reply.starts_with("HTTP/1.1 200") {
                    return;
                }
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        let output = std::fs::read_to_string(log).unwrap_or_default();
        panic!("mlx_lm.server did not become ready within 120 s; its output:\n{output}");
    }

    fn config(&self, model: &str) -> OpenAiConfig {
        OpenAiConfig {
            server: Some(ServerKind::MlxLm),
            context_length: Some(self.context_length),
            ..OpenAiConfig::new(&self.base_url, model)
        }
    }
}

/// A server per scenario: the scenarios run in parallel, and mlx_lm.server serves seeded
/// requests one at a time, so a shared server would make each wait on the others (the context
/// scenario alone keeps it busy for tens of seconds prefilling a prompt it cannot refuse).
struct MlxLmTarget {
    server: MlxServer,
}

#[async_trait]
impl ConformanceTarget for MlxLmTarget {
    async fn model(&self) -> Result<Arc<dyn LanguageModel>, InferenceError> {
        let s = &self.server;
        Ok(Arc::new(
            OpenAiAdapter::connect(s.config(&s.model_id)).await?,
        ))
    }

    async fn missing_model(
        &self,
        model_id: &str,
    ) -> Result<Arc<dyn LanguageModel>, InferenceError> {
        Ok(Arc::new(
            OpenAiAdapter::connect(self.server.config(model_id)).await?,
        ))
    }
}

async fn target() -> MlxLmTarget {
    let server = tokio::task::spawn_blocking(MlxServer::start).await.unwrap();
    MlxLmTarget { server }
}

rigger_conformance::conformance_suite!(mlx_lm_server, target: target, skip: {
    exact_token_budget: "mlx_lm.server has no ignore_eos/min_tokens: it cannot generate past end-of-sequence, so the adapter refuses exact budgets (Unsupported)",
});

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
