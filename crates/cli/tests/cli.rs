#![allow(clippy::unwrap_used)] // a panic is how a test reports failure
//! `rigger` end to end on the project's tiny generated model: through Candle in-process, and
//! through the MLX worker (the venv from `cargo xtask setup-mlx`, which CI makes first). Random
//! weights write nonsense, so these assert structure — the typed MalformedOutput path when the
//! budget is too small for an answer, the exit codes, statuses, links and per-step figures —
//! never content. Candle and the MLX worker decode under the schema's grammar, so with the roles' default budgets
//! even random weights complete a run.

mod support;

use std::path::PathBuf;

use serde_json::Value;
use support::rigger;

fn tiny() -> PathBuf {
    rigger_model_gen::tiny_model().unwrap()
}

/// Short answers keep the tiny model's runs quick; one repair attempt, as by default.
fn config() -> PathBuf {
    let path = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("cli-rigger.toml");
    let mut text = String::new();
    for role in ["router", "decomposer", "enhancer", "tester"] {
        text.push_str(&format!(
            "[roles.{role}]\nmax_tokens = 24\nrepair_attempts = 1\n\n"
        ));
    }
    std::fs::write(&path, text).unwrap();
    path
}

fn assert_malformed_router(code: i32, out: &Value, log: &str, backend: &str) {
    assert_eq!(code, 5, "{log}");
    assert_eq!(out["error"]["kind"], "MalformedOutput", "{log}");
    assert!(
        !out["error"]["raw_output"].as_str().unwrap_or("").is_empty(),
        "{log}"
    );
    assert_eq!(out["failed_step"], "router", "{log}");
    let partial = &out["partial"];
    assert_eq!(partial["task"]["status"], "errored", "{log}");
    let calls = partial["steps"][0]["calls"].as_array().unwrap();
    assert_eq!(partial["steps"][0]["role"], "router", "{log}");
    assert_eq!(calls.len(), 2, "the first answer and one repair: {log}");
    for call in calls {
        assert_eq!(call["backend"], backend, "{log}");
        let generated = call["usage"]["completion_tokens"].as_u64().unwrap();
        assert!(generated > 0 && generated <= 24, "{log}");
        assert!(
            call["usage"]["prompt_tokens"].as_u64().unwrap() > 100,
            "{log}"
        );
        assert_eq!(
            call["timings"]["generated_tokens"].as_u64(),
            Some(generated),
            "{log}"
        );
    }
}

#[test]
fn run_through_candle_fails_typed_with_the_calls_it_made() {
    let model = tiny().join("model-q8_0.gguf");
    let config = config();
    let (code, out, log) = rigger(
        &["run", "Write the release notes for version 2.0", "--json"],
        &[
            ("TASK_ORCHESTRATOR_PROVIDER", "candle"),
            ("CANDLE_MODEL", model.to_str().unwrap()),
            ("RIGGER_CONFIG", config.to_str().unwrap()),
        ],
    );
    assert_malformed_router(code, &out, &log, "candle");
}

/// The roles' default budgets (which fit the longest answer each schema allows).
fn default_budgets_config() -> PathBuf {
    let path = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("cli-rigger-defaults.toml");
    std::fs::write(&path, "").unwrap();
    path
}

#[test]
fn run_through_candle_completes_on_random_weights_under_constrained_decoding() {
    let model = tiny().join("model-q8_0.gguf");
    let config = default_budgets_config();
    for task in [
        "Fix the typo in the README",
        "Plan, build, test and ship the new billing system with invoices, refunds, tax rules, \
         dunning emails, a customer portal and an admin dashboard, migrating every old account",
    ] {
        let (code, out, log) = rigger(
            &["run", task, "--json"],
            &[
                ("TASK_ORCHESTRATOR_PROVIDER", "candle"),
                ("CANDLE_MODEL", model.to_str().unwrap()),
                ("RIGGER_CONFIG", config.to_str().unwrap()),
            ],
        );
        assert_eq!(code, 0, "{log}");
        assert_completed_run(&out, &log, "candle");
    }
}

/// A completed run on random weights: the content is nonsense, the structure is what the
/// grammar and the domain rules guarantee (route, statuses, links, every call on `backend`
/// and ended by the grammar).
fn assert_completed_run(out: &Value, log: &str, backend: &str) {
    let routing = &out["routing"];
    let complexity = routing["complexity"].as_i64().unwrap();
    assert!((1..=10).contains(&complexity), "{log}");
    assert!(
        !routing["reason"].as_str().unwrap().trim().is_empty(),
        "{log}"
    );
    let task_id = out["task"]["id"].as_str().unwrap();
    let roles: Vec<&str> = out["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["role"].as_str().unwrap())
        .collect();
    for step in out["steps"].as_array().unwrap() {
        for call in step["calls"].as_array().unwrap() {
            assert_eq!(call["backend"], backend, "{log}");
            assert_eq!(
                call["finish_reason"], "EndOfSequence",
                "the grammar ended it: {log}"
            );
        }
    }
    match routing["route"].as_str().unwrap() {
        "enhance" => {
            assert_eq!(roles, ["router", "enhancer", "tester"], "{log}");
            assert_eq!(out["task"]["status"], "pending_comprehension_test", "{log}");
            assert!(
                !out["enhancement"]["description"]
                    .as_str()
                    .unwrap()
                    .trim()
                    .is_empty(),
                "{log}"
            );
            let test = &out["comprehension_test"];
            let options: Vec<&str> = test["options"]
                .as_array()
                .unwrap()
                .iter()
                .map(|o| o.as_str().unwrap())
                .collect();
            assert_eq!(options.len(), 4, "{log}");
            assert!(options.contains(&test["answer"].as_str().unwrap()), "{log}");
            assert_eq!(out["subtasks"].as_array().unwrap().len(), 0, "{log}");
        }
        "decompose" => {
            assert_eq!(roles, ["router", "decomposer"], "{log}");
            assert_eq!(out["task"]["status"], "decomposed", "{log}");
            let subtasks = out["subtasks"].as_array().unwrap();
            assert!((3..=5).contains(&subtasks.len()), "{log}");
            let ids: Vec<&Value> = subtasks.iter().map(|s| &s["id"]).collect();
            assert_eq!(
                out["task"]["subtask_ids"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .collect::<Vec<_>>(),
                ids,
                "the parent lists its subtasks: {log}"
            );
            for s in subtasks {
                assert_eq!(s["parent_id"], task_id, "{log}");
                assert!(!s["title"].as_str().unwrap().trim().is_empty(), "{log}");
            }
        }
        other => panic!("unknown route {other}: {log}"),
    }
}

#[test]
fn run_through_mlx_completes_on_random_weights_under_constrained_decoding() {
    let python = rigger_model_gen::mlx_python();
    let model = tiny();
    let config = default_budgets_config();
    let (code, out, log) = rigger(
        &["run", "Write the release notes for version 2.0", "--json"],
        &[
            ("TASK_ORCHESTRATOR_PROVIDER", "mlx"),
            ("MLX_MODEL", model.to_str().unwrap()),
            ("PYTHON_PATH", python.to_str().unwrap()),
            ("RIGGER_CONFIG", config.to_str().unwrap()),
        ],
    );
    assert_eq!(code, 0, "{log}");
    assert_completed_run(&out, &log, "mlx");
}

#[test]
fn run_through_mlx_fails_typed_with_the_calls_it_made() {
    let python = rigger_model_gen::mlx_python();
    let model = tiny();
    let config = config();
    let (code, out, log) = rigger(
        &["run", "Write the release notes for version 2.0", "--json"],
        &[
            ("TASK_ORCHESTRATOR_PROVIDER", "mlx"),
            ("MLX_MODEL", model.to_str().unwrap()),
            ("PYTHON_PATH", python.to_str().unwrap()),
            ("RIGGER_CONFIG", config.to_str().unwrap()),
        ],
    );
    assert_malformed_router(code, &out, &log, "mlx");
}

#[test]
fn the_heuristic_router_fallback_is_used_only_when_asked_and_says_so() {
    let model = tiny().join("model-q8_0.gguf");
    let config = config();
    let (code, out, log) = rigger(
        &["run", "Fix the typo in the README", "--json"],
        &[
            ("TASK_ORCHESTRATOR_PROVIDER", "candle"),
            ("CANDLE_MODEL", model.to_str().unwrap()),
            ("RIGGER_CONFIG", config.to_str().unwrap()),
            ("TASK_ORCHESTRATOR_ROUTER_ON_FAILURE", "heuristic"),
        ],
    );
    assert_eq!(code, 5, "{log}");
    let reason = out["partial"]["routing"]["reason"].as_str().unwrap();
    assert!(reason.starts_with("heuristic fallback"), "{log}");
    assert_eq!(
        out["failed_step"], "enhancer",
        "a short task is enhanced: {log}"
    );
}

#[test]
fn doctor_reports_candle_and_mlx_usable_here() {
    let python = rigger_model_gen::mlx_python();
    let model = tiny().join("model-q8_0.gguf");
    let (code, out, log) = rigger(
        &["doctor", "--json"],
        &[
            ("CANDLE_MODEL", model.to_str().unwrap()),
            ("PYTHON_PATH", python.to_str().unwrap()),
            ("OLLAMA_HOST", "127.0.0.1:9"),
        ],
    );
    assert_eq!(code, 0, "{log}");
    let backends = out["backends"].as_array().unwrap();
    let usable =
        |name: &str| backends.iter().find(|b| b["provider"] == name).unwrap()["usable"] == true;
    assert!(usable("candle") && usable("mlx"), "{log}");
    assert!(!usable("ollama"), "{log}");
    // Off Apple Silicon MLX is usable but not auto-selected: Candle is.
    if !cfg!(all(target_os = "macos", target_arch = "aarch64")) {
        assert_eq!(out["auto_selected"], "candle", "{log}");
    }
    assert_eq!(out["roles"].as_array().unwrap().len(), 4, "{log}");

    let (code, _, text) = rigger(
        &["doctor"],
        &[
            ("CANDLE_MODEL", model.to_str().unwrap()),
            ("PYTHON_PATH", python.to_str().unwrap()),
        ],
    );
    assert_eq!(code, 0, "{text}");
    let candle_line = text.lines().find(|l| l.contains("candle")).unwrap_or("");
    assert!(
        cfg!(target_os = "macos") || candle_line.contains("(auto-selected)"),
        "{text}"
    );
}

#[test]
fn exit_codes_tell_scripts_what_went_wrong() {
    let (code, _, log) = rigger(&["run", "x", "--provider", "llamafile"], &[]);
    assert_eq!(code, 3, "{log}");
    assert!(
        log.contains("mlx, ollama, candle, openai, anthropic"),
        "{log}"
    );

    // Nothing usable: offline, with the built-in models not cached (an empty HF_HOME).
    let empty_home = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("cli-empty-hf-home");
    let empty_home = empty_home.to_str().unwrap();
    let (code, out, log) = rigger(
        &["enhance", "x", "--json"],
        &[
            ("PYTHON_PATH", "/nonexistent/python"),
            ("OLLAMA_HOST", "127.0.0.1:9"),
            ("HF_HOME", empty_home),
            ("HF_HUB_OFFLINE", "1"),
        ],
    );
    assert_eq!(code, 4, "nothing usable: {log}");
    assert_eq!(out["error"]["kind"], "NotAvailable", "{log}");

    // Nothing usable: doctor says so with code 4, and its --json output stays one document.
    let (code, out, log) = rigger(
        &["doctor", "--json"],
        &[
            ("PYTHON_PATH", "/nonexistent/python"),
            ("OLLAMA_HOST", "127.0.0.1:9"),
            ("HF_HOME", empty_home),
            ("HF_HUB_OFFLINE", "1"),
        ],
    );
    assert_eq!(code, 4, "{log}");
    assert!(
        out["backends"]
            .as_array()
            .is_some_and(|b| b.iter().all(|b| b["usable"] == false)),
        "{log}"
    );

    let (code, _, log) = rigger(&["frobnicate"], &[]);
    assert_eq!(code, 2, "{log}");
}
