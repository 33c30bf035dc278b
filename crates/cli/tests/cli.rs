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
        assert_completed_run(&out, &log, |_| "candle");
    }
}

/// A completed run on random weights: the content is nonsense, the structure is what the
/// grammar and the domain rules guarantee (route, statuses, links, every call on its role's
/// backend and ended by the grammar).
fn assert_completed_run(out: &Value, log: &str, backend: impl Fn(&str) -> &'static str) {
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
        let role = step["role"].as_str().unwrap();
        for call in step["calls"].as_array().unwrap() {
            assert_eq!(call["backend"], backend(role), "{role}: {log}");
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
    assert_completed_run(&out, &log, |_| "mlx");
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
        out["partial"]["routing"]["route"], "enhance",
        "a short task is enhanced: {log}"
    );
    // The enhance branch then fails on the tiny budget, at the Enhancer or (when a sampled
    // repair happened to fit) at the Tester.
    let failed = out["failed_step"].as_str().unwrap();
    assert!(["enhancer", "tester"].contains(&failed), "{log}");
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

/// The seed's heterogeneous run: the Router on Candle in-process, the Decomposer and Enhancer on
/// the MLX worker, the Tester through the OpenAI adapter on a real `mlx_lm.server`; every step's
/// calls name their own backend. Candle and MLX constrain their answers to the schema, so on
/// random weights they complete. mlx_lm.server ignores `response_format` (the adapter declares
/// no native structured output for it), so a Tester answer there is free text checked against
/// the schema and repaired once: on random weights that ends typed as MalformedOutput on the
/// Tester, with the Router's and Enhancer's results kept. The test asserts exactly that where
/// the route reaches the Tester, and the completed run where it does not.
#[test]
fn a_run_spans_candle_mlx_and_an_openai_server_each_step_on_its_own_backend() {
    let server = rigger_model_gen::MlxServer::start();
    let python = rigger_model_gen::mlx_python();
    let model = tiny();
    let gguf = model.join("model-q8_0.gguf");
    // A greedy Router routes each task the same way every time: the first is decomposed, the
    // second enhanced (on this model; chosen by trying), so both branches run.
    let config = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("cli-rigger-greedy-router.toml");
    std::fs::write(&config, "[roles.router]\ntemperature = 0.0\n").unwrap();
    let context = server.window.to_string();
    let backend = |role: &str| match role {
        "router" => "candle",
        "decomposer" | "enhancer" => "mlx",
        "tester" => "openai",
        other => panic!("unknown role {other}"),
    };
    let mut routes = Vec::new();
    for task in ["Fix the typo in the README", "Refactor the parser"] {
        let (code, out, log) = rigger(
            &["run", task, "--json"],
            &[
                ("TASK_ORCHESTRATOR_ROUTER_PROVIDER", "candle"),
                ("CANDLE_MODEL", gguf.to_str().unwrap()),
                ("TASK_ORCHESTRATOR_DECOMPOSER_PROVIDER", "mlx"),
                ("TASK_ORCHESTRATOR_ENHANCER_PROVIDER", "mlx"),
                ("MLX_MODEL", model.to_str().unwrap()),
                ("PYTHON_PATH", python.to_str().unwrap()),
                ("TASK_ORCHESTRATOR_TESTER_PROVIDER", "openai"),
                ("OPENAI_BASE_URL", &server.base_url),
                ("OPENAI_MODEL", &server.model_id),
                ("RIGGER_OPENAI_SERVER", "mlx-lm"),
                ("RIGGER_OPENAI_CONTEXT_LENGTH", &context),
                ("RIGGER_CONFIG", config.to_str().unwrap()),
            ],
        );
        if code == 0 {
            assert_completed_run(&out, &log, backend);
            routes.push(out["routing"]["route"].as_str().unwrap().to_owned());
            continue;
        }
        // Only the Tester, on the server that does not constrain, may fail, and only typed.
        assert_eq!(code, 5, "{log}");
        assert_eq!(out["failed_step"], "tester", "{log}");
        assert_eq!(out["error"]["kind"], "MalformedOutput", "{log}");
        let partial = &out["partial"];
        assert_eq!(partial["routing"]["route"], "enhance", "{log}");
        let steps = partial["steps"].as_array().unwrap();
        let roles: Vec<&str> = steps.iter().map(|s| s["role"].as_str().unwrap()).collect();
        assert_eq!(roles, ["router", "enhancer", "tester"], "{log}");
        for step in steps {
            let role = step["role"].as_str().unwrap();
            let calls = step["calls"].as_array().unwrap();
            for call in calls {
                assert_eq!(call["backend"], backend(role), "{role}: {log}");
                assert!(
                    call["timings"]["generated_tokens"].as_u64().unwrap() > 0,
                    "{log}"
                );
            }
            if role == "tester" {
                assert_eq!(calls.len(), 2, "the answer and one repair: {log}");
            } else {
                assert_eq!(calls[0]["finish_reason"], "EndOfSequence", "{log}");
            }
        }
        assert!(
            !partial["enhancement"]["description"]
                .as_str()
                .unwrap()
                .trim()
                .is_empty(),
            "the Enhancer's result is kept: {log}"
        );
        routes.push("enhance (Tester malformed)".to_owned());
    }
    eprintln!("routes taken: {routes:?}");
    assert_eq!(routes[0], "decompose", "{routes:?}");
    assert!(
        routes[1].starts_with("enhance"),
        "the Tester was reached: {routes:?}"
    );
}
