#![allow(clippy::unwrap_used)] // a panic is how a test reports failure
//! `rigger` with nothing configured: the built-in Candle models come from the hub. The local hub
//! fixture (`HF_ENDPOINT`) serves the real SmolLM2 GGUF under the built-in ids (the exact repos
//! and file names of docs/configuration.md), so the real resolution, download, progress and
//! cache run; each test has its own `HF_HOME`.

mod support;

use std::path::Path;

use rigger_http_support::fixture::FixtureServer;
use rigger_http_support::fixture::hub::HubFixture;
use serde_json::Value;

const SMOLLM2_SHA256: &str = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53";
const ROUTER_REPO: &str = "Qwen/Qwen2.5-0.5B-Instruct-GGUF";
const ROUTER_FILE: &str = "qwen2.5-0.5b-instruct-q4_k_m.gguf";
const MAIN_REPO: &str = "Qwen/Qwen2.5-1.5B-Instruct-GGUF";
const MAIN_FILE: &str = "qwen2.5-1.5b-instruct-q4_k_m.gguf";

/// Runs `rigger` off the async runtime (the fixture serves on it) with exactly `env` (plus
/// PATH and HOME) and nothing else detectable: no Ollama, no MLX.
async fn rigger(args: &[&str], env: &[(&str, &str)]) -> (i32, Value, String) {
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    let mut env: Vec<(String, String)> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    env.push(("OLLAMA_HOST".into(), "127.0.0.1:9".into()));
    env.push(("PYTHON_PATH".into(), "/nonexistent/python".into()));
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        support::rigger(&args, &env)
    })
    .await
    .unwrap()
}

fn cached(home: &Path, repo: &str, file: &str) -> Option<std::path::PathBuf> {
    let dir = home
        .join("hub")
        .join(format!("models--{}", repo.replace('/', "--")));
    let commit = std::fs::read_to_string(dir.join("refs/main")).ok()?;
    let path = dir.join("snapshots").join(commit.trim()).join(file);
    path.is_file().then_some(path)
}

fn sha256(path: &Path) -> String {
    rigger_http_support::fixture::hub::sha256_hex(&std::fs::read(path).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_with_nothing_configured_downloads_the_built_in_model_with_progress_then_completes() {
    let hub = HubFixture::start().await.unwrap();
    let smollm2 = std::fs::read(rigger_model_gen::smollm2()).unwrap();
    hub.add_file(ROUTER_REPO, ROUTER_FILE, smollm2.clone());
    hub.add_file(MAIN_REPO, MAIN_FILE, smollm2);
    let home = tempfile::tempdir().unwrap();
    let home_str = home.path().to_str().unwrap().to_owned();
    let url = hub.url();
    let env = [
        ("HF_ENDPOINT", url.as_str()),
        ("HF_HOME", home_str.as_str()),
    ];

    // The doctor names the built-in models, not cached yet, and says Candle is what runs.
    let (code, _, log) = rigger(&["doctor"], &env).await;
    assert_eq!(code, 0, "{log}");
    assert!(
        log.contains(&format!("candle:{ROUTER_REPO}:{ROUTER_FILE}"))
            && log.contains("built-in default (no backend detected)")
            && log.contains(&format!("{ROUTER_REPO}:{ROUTER_FILE}: not cached")),
        "{log}"
    );

    // The run reaches the download (progress lines on stderr, which is not a terminal here).
    let (code, out, log) = rigger(&["run", "Plan the v2 launch", "--json"], &env).await;
    assert!(
        log.contains(&format!("downloading {ROUTER_REPO} {ROUTER_FILE}"))
            && log.contains(&format!("downloaded {ROUTER_REPO} {ROUTER_FILE}: 98.")),
        "{log}"
    );
    let path = cached(home.path(), ROUTER_REPO, ROUTER_FILE).expect("the Router's model is cached");
    assert_eq!(sha256(&path), SMOLLM2_SHA256);
    // SmolLM2 (a real 135M model, served under the built-in ids) then runs the pipeline under
    // constrained decoding: every answer has the schema's shape. What the grammar cannot carry
    // is checked by the domain rules — distinct subtask titles — and SmolLM2 greedy repeats one
    // title for "Plan the v2 launch" even after the repair. So the run either completes, or
    // fails typed at the decomposer on exactly that rule, never on malformed JSON.
    let steps = if code == 0 {
        let route = out["routing"]["route"].as_str().unwrap_or_default();
        assert!(matches!(route, "enhance" | "decompose"), "{log}");
        out["steps"].clone()
    } else {
        assert_eq!(code, 5, "{log}");
        assert_eq!(out["error"]["kind"], "MalformedOutput", "{log}");
        assert!(
            out["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("must be distinct")),
            "only the domain rule the grammar cannot carry may fail: {log}"
        );
        serde_json::from_str::<Value>(out["error"]["raw_output"].as_str().unwrap())
            .expect("the rejected answer is still JSON of the schema's shape");
        out["partial"]["steps"].clone()
    };
    for step in steps.as_array().unwrap() {
        for call in step["calls"].as_array().unwrap() {
            assert_eq!(call["backend"], "candle", "{log}");
            assert_eq!(call["finish_reason"], "EndOfSequence", "{log}");
        }
    }

    // `rigger pull` fetches what the run did not need; the Router's model is already there.
    let (code, _, log) = rigger(&["pull", "--all"], &env).await;
    assert_eq!(code, 0, "{log}");
    assert!(
        !log.contains(&format!("downloading {ROUTER_REPO}")),
        "{log}"
    );
    let main = cached(home.path(), MAIN_REPO, MAIN_FILE).expect("pulled");
    assert_eq!(sha256(&main), SMOLLM2_SHA256);

    // The doctor and `rigger models` see the cache.
    let (code, _, log) = rigger(&["doctor"], &env).await;
    assert_eq!(code, 0, "{log}");
    assert!(
        log.contains(&format!("{MAIN_REPO}:{MAIN_FILE}: cached at")),
        "{log}"
    );
    let (code, out, log) = rigger(&["models", "--json"], &env).await;
    assert_eq!(code, 0, "{log}");
    let repos: Vec<&str> = out["hub_cache"]["repos"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["repo"].as_str().unwrap())
        .collect();
    assert_eq!(repos, [ROUTER_REPO, MAIN_REPO], "{log}");

    // Offline, the cache serves: pulling again asks no one and downloads nothing.
    let asked = hub.requests().len();
    let mut offline = env.to_vec();
    offline.push(("HF_HUB_OFFLINE", "1"));
    let (code, _, log) = rigger(&["pull", "--all"], &offline).await;
    assert_eq!(code, 0, "{log}");
    assert!(!log.contains("downloading"), "{log}");
    assert_eq!(hub.requests().len(), asked);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_configured_and_no_hub_exits_4_naming_rigger_pull_and_candle_model() {
    let home = tempfile::tempdir().unwrap();
    let home_str = home.path().to_str().unwrap().to_owned();
    let gone = FixtureServer::refused_url().await.unwrap();

    // The hub is unreachable: the run fails at the Router's download.
    let env = [
        ("HF_ENDPOINT", gone.as_str()),
        ("HF_HOME", home_str.as_str()),
    ];
    let (code, out, log) = rigger(&["run", "Plan the v2 launch", "--json"], &env).await;
    assert_eq!(code, 4, "{log}");
    assert_eq!(out["error"]["kind"], "NotAvailable", "{log}");
    assert_eq!(out["error"]["code"], "HUB_UNREACHABLE", "{log}");
    let hint = out["error"]["hint"].as_str().unwrap_or_default();
    assert!(
        hint.contains(&format!("rigger pull {ROUTER_REPO}:{ROUTER_FILE}"))
            && hint.contains("CANDLE_MODEL=/path/to/file.gguf"),
        "{log}"
    );

    // Offline and not cached: nothing is usable, said before anything runs.
    let offline = [("HF_HOME", home_str.as_str()), ("HF_HUB_OFFLINE", "1")];
    let (code, out, log) = rigger(&["run", "Plan the v2 launch", "--json"], &offline).await;
    assert_eq!(code, 4, "{log}");
    assert_eq!(out["error"]["kind"], "NotAvailable", "{log}");
    assert!(log.contains("rigger pull --all"), "{log}");
    let (code, _, log) = rigger(&["pull", "--all"], &offline).await;
    assert_eq!(code, 4, "{log}");
    assert!(log.contains("HF_HUB_OFFLINE is set"), "{log}");
}
