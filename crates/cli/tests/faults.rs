//! The fault suite, through the CLI as a user meets it: `rigger enhance --json` against a server
//! on 127.0.0.1 that misbehaves in one way per case, for each HTTP backend (OpenAI-compatible,
//! Ollama, Anthropic). Every case must end within its deadline in a typed error: one JSON
//! document on stdout, the exit code documented for its kind (never 3, "bad input": the backend
//! misbehaved, not the user), and the process's memory under 100 MiB.

#![allow(clippy::unwrap_used)] // a panic is how a test reports failure

mod support;

use std::time::{Duration, Instant};

use rigger_http_support::fixture::{FixtureResponse, FixtureServer, RecordedRequest};
use serde_json::{Value, json};

#[derive(Debug, Clone, Copy, PartialEq)]
enum Backend {
    OpenAi,
    Ollama,
    Anthropic,
}

const BACKENDS: [Backend; 3] = [Backend::OpenAi, Backend::Ollama, Backend::Anthropic];
const KEY: &str = "sk-fault-suite-0123456789";
const MIB: usize = 1 << 20;

#[derive(Debug, Clone, Copy, PartialEq)]
enum Fault {
    ResetMidStream,
    NotTheProtocol,
    HugeLine,
    HugeAnswer,
    KeepAlivesForever,
    Trickle,
    StallBeforeHeaders,
    StallAfterFirstByte,
    StalledMetadata,
    ServerErrorStorm,
    RetryAfterAnHour,
    InvalidUtf8,
    EmptyOk,
    HtmlOk,
}

const FAULTS: [Fault; 14] = [
    Fault::ResetMidStream,
    Fault::NotTheProtocol,
    Fault::HugeLine,
    Fault::HugeAnswer,
    Fault::KeepAlivesForever,
    Fault::Trickle,
    Fault::StallBeforeHeaders,
    Fault::StallAfterFirstByte,
    Fault::StalledMetadata,
    Fault::ServerErrorStorm,
    Fault::RetryAfterAnHour,
    Fault::InvalidUtf8,
    Fault::EmptyOk,
    Fault::HtmlOk,
];

impl Backend {
    fn name(self) -> &'static str {
        match self {
            Backend::OpenAi => "openai",
            Backend::Ollama => "ollama",
            Backend::Anthropic => "anthropic",
        }
    }

    /// The environment that points `rigger` at `url`, with short limits: 2 s to the first
    /// token and between tokens, 6 s in all.
    fn env(self, url: &str) -> Vec<(String, String)> {
        let mut env = vec![
            (
                "TASK_ORCHESTRATOR_PROVIDER".to_owned(),
                self.name().to_owned(),
            ),
            ("HF_HUB_OFFLINE".to_owned(), "1".to_owned()),
        ];
        let mut set = |k: &str, v: &str| env.push((k.to_owned(), v.to_owned()));
        match self {
            Backend::OpenAi => {
                set("OPENAI_BASE_URL", &format!("{url}/v1"));
                set("OPENAI_MODEL", "fault-model");
                set("OPENAI_API_KEY", KEY);
                set("RIGGER_OPENAI_SERVER", "vllm");
                set("RIGGER_OPENAI_CONTEXT_LENGTH", "4096");
                set("RIGGER_OPENAI_RESPONSE_TIMEOUT_SECS", "2");
                set("RIGGER_OPENAI_IDLE_TIMEOUT_SECS", "2");
                set("RIGGER_OPENAI_DEADLINE_SECS", "6");
            }
            Backend::Ollama => {
                set("OLLAMA_HOST", url);
                set("OLLAMA_MODEL", "fault-model");
                set("RIGGER_OLLAMA_FIRST_TOKEN_TIMEOUT_SECS", "2");
                set("RIGGER_OLLAMA_IDLE_TIMEOUT_SECS", "2");
                set("RIGGER_OLLAMA_DEADLINE_SECS", "6");
            }
            Backend::Anthropic => {
                set("ANTHROPIC_BASE_URL", url);
                set("ANTHROPIC_MODEL", "claude-fault-1");
                set("ANTHROPIC_API_KEY", KEY);
                set("RIGGER_ANTHROPIC_FIRST_TOKEN_TIMEOUT_SECS", "2");
                set("RIGGER_ANTHROPIC_IDLE_TIMEOUT_SECS", "2");
                set("RIGGER_ANTHROPIC_DEADLINE_SECS", "6");
            }
        }
        env
    }

    fn is_generation(self, r: &RecordedRequest) -> bool {
        let path = r.path.split('?').next().unwrap_or("");
        r.method == "POST"
            && matches!(
                (self, path),
                (Backend::OpenAi, "/v1/chat/completions")
                    | (Backend::Ollama, "/api/chat")
                    | (Backend::Anthropic, "/v1/messages")
            )
    }

    /// What the backend asks before generating, answered well.
    fn metadata(self, r: &RecordedRequest) -> FixtureResponse {
        match (self, r.path.as_str()) {
            (Backend::Ollama, "/api/show") => FixtureResponse::ok().json(&json!({
                "details": {"format": "gguf", "family": "llama"},
                "model_info": {"general.architecture": "llama", "llama.context_length": 4096},
                "capabilities": ["completion"]
            })),
            (Backend::Ollama, "/api/version") => {
                FixtureResponse::ok().json(&json!({"version": "0.12.0"}))
            }
            (Backend::Anthropic, p) if p.starts_with("/v1/models/") => {
                FixtureResponse::ok().json(&json!({
                    "type": "model", "id": "claude-fault-1", "display_name": "Fault",
                    "created_at": "2025-01-01T00:00:00Z",
                    "max_input_tokens": 200000, "max_tokens": 8192
                }))
            }
            _ => FixtureResponse::status(404).json(&json!({"error": "not found"})),
        }
    }

    fn content_type(self) -> &'static str {
        match self {
            Backend::Ollama => "application/x-ndjson",
            _ => "text/event-stream",
        }
    }

    /// The stream's opening and one piece of text, as the backend frames them.
    fn text(self, text: &str, first: bool) -> String {
        match self {
            Backend::OpenAi => format!(
                "data: {}\n\n",
                json!({"object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {"content": text}, "finish_reason": null}]})
            ),
            Backend::Ollama => format!(
                "{}\n",
                json!({"model": "fault-model", "message": {"role": "assistant", "content": text}, "done": false})
            ),
            Backend::Anthropic => {
                let mut out = String::new();
                if first {
                    out.push_str(&anthropic_event(&json!({"type": "message_start", "message": {"id": "msg_1", "type": "message", "role": "assistant", "model": "claude-fault-1", "content": [], "stop_reason": null, "usage": {"input_tokens": 10, "output_tokens": 1}}})));
                    out.push_str(&anthropic_event(&json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}})));
                }
                out.push_str(&anthropic_event(&json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": text}})));
                out
            }
        }
    }

    /// What the backend sends to keep a connection open without progress.
    fn keep_alive(self) -> &'static str {
        match self {
            Backend::OpenAi => ": keep-alive\n\n",
            Backend::Ollama => "\n",
            Backend::Anthropic => "event: ping\ndata: {\"type\": \"ping\"}\n\n",
        }
    }

    fn error_body(self, status: u16) -> FixtureResponse {
        let body = match self {
            Backend::OpenAi => json!({"error": {"message": "busy", "type": "server_error"}}),
            Backend::Ollama => json!({"error": "busy"}),
            Backend::Anthropic => {
                json!({"type": "error", "error": {"type": "overloaded_error", "message": "busy"}})
            }
        };
        FixtureResponse::status(status).json(&body)
    }
}

fn anthropic_event(data: &Value) -> String {
    format!(
        "event: {}\ndata: {data}\n\n",
        data["type"].as_str().unwrap_or("x")
    )
}

/// The fixture's answer to a generation request under `fault`.
fn generation(backend: Backend, fault: Fault) -> FixtureResponse {
    let stream = || FixtureResponse::ok().header("content-type", backend.content_type());
    let forever = Duration::from_secs(3600);
    match fault {
        Fault::ResetMidStream => stream().chunk(backend.text("{\"desc", true)).abort(),
        Fault::NotTheProtocol => stream().chunk("\u{1b}[31mSegmentation fault (core dumped)\n"),
        Fault::HugeLine => stream().shared(bytes::Bytes::from(vec![b'x'; 20 * MIB])),
        Fault::HugeAnswer => {
            let mut body = backend.text("{\"description\": \"", true);
            let piece = backend.text(&"all work and no play ".repeat(50), false);
            while body.len() < 20 * MIB {
                body.push_str(&piece);
            }
            stream().shared(bytes::Bytes::from(body))
        }
        Fault::KeepAlivesForever => {
            stream().forever(backend.keep_alive(), Duration::from_millis(200))
        }
        Fault::Trickle => {
            let mut response = stream().chunk(backend.text("{", true));
            for _ in 0..40 {
                response = response
                    .pause(Duration::from_millis(500))
                    .chunk(backend.text("a", false));
            }
            response
        }
        Fault::StallBeforeHeaders => stream()
            .headers_after(forever)
            .chunk(backend.text("{", true)),
        Fault::StallAfterFirstByte => stream().chunk(backend.text("{", true)).pause(forever),
        // Not reached when the metadata request stalls first.
        Fault::StalledMetadata => stream().chunk(backend.text("{", true)).hang(),
        Fault::ServerErrorStorm => backend.error_body(503),
        Fault::RetryAfterAnHour => backend.error_body(429).header("retry-after", "3600"),
        Fault::InvalidUtf8 => stream().chunk(vec![0xff, 0xfe, 0xfd, b'\n', 0xc3, 0x28, b'\n']),
        Fault::EmptyOk => FixtureResponse::ok(),
        Fault::HtmlOk => FixtureResponse::ok()
            .header("content-type", "text/html")
            .chunk("<html><body><h1>Welcome to nginx!</h1></body></html>"),
    }
}

/// The most any case may take: the 6 s deadline, retries' back-off, start-up.
const CASE_LIMIT: Duration = Duration::from_secs(45);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_fault_ends_typed_in_time_through_the_cli() {
    let mut problems = Vec::new();
    for backend in BACKENDS {
        for fault in FAULTS {
            let server = FixtureServer::start(move |r| {
                if backend.is_generation(r) {
                    generation(backend, fault)
                } else if fault == Fault::StalledMetadata && r.method == "GET" {
                    backend.metadata(r).headers_after(Duration::from_secs(3600))
                } else {
                    backend.metadata(r)
                }
            })
            .await
            .unwrap();
            let mut env = backend.env(&server.url());
            if fault == Fault::StalledMetadata {
                // Without a configured context length the OpenAI adapter asks `/v1/models`.
                env.retain(|(k, _)| k != "RIGGER_OPENAI_CONTEXT_LENGTH");
            }
            let started = Instant::now();
            let (code, json, output, peak) = tokio::task::spawn_blocking(move || {
                let env: Vec<(&str, &str)> =
                    env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
                support::rigger_with_peak_memory(&["enhance", "fix the login page", "--json"], &env)
            })
            .await
            .unwrap();
            let took = started.elapsed();
            let case = format!("{} {fault:?}", backend.name());
            let kind = json["error"]["kind"].as_str().unwrap_or("").to_owned();
            eprintln!(
                "{case}: exit {code}, {kind}, {took:.1?}, peak RSS {} MiB",
                peak.map_or(0, |p| p >> 20)
            );
            if json.is_null() || json.get("error").is_none() {
                problems.push(format!(
                    "{case}: stdout is not one JSON error document\n{output}"
                ));
            }
            if !matches!(code, 4 | 6) {
                problems.push(format!("{case}: exit code {code} ({kind})\n{output}"));
            }
            if took > CASE_LIMIT {
                problems.push(format!("{case}: took {took:?}"));
            }
            if fault == Fault::RetryAfterAnHour {
                let message = json["error"]["message"].as_str().unwrap_or("");
                if json["error"]["retry_after_secs"] != 3600 || took > Duration::from_secs(20) {
                    problems.push(format!(
                        "{case}: the hour's wait is to be returned, not waited ({message}, {took:?})"
                    ));
                }
            }
            if let Some(peak) = peak.filter(|p| *p > 100 * MIB as u64) {
                problems.push(format!(
                    "{case}: rigger's memory peaked at {} MiB",
                    peak >> 20
                ));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n\n"));
}
