#![allow(clippy::unwrap_used)] // a panic is how a test reports failure
//! The factory's choices, each from an explicit environment (no test touches the process
//! environment, so tests cannot race).

use std::path::PathBuf;
use std::sync::Arc;

use rigger_domain::ModelRole;
use rigger_ports::ErrorKind;
use rigger_provider_factory::{Provider, ProviderFactory, Vars};

/// A base environment that makes detection deterministic: MLX's Python does not exist.
fn env(pairs: &[(&str, &str)]) -> Vars {
    let mut all: Vec<(String, String)> =
        vec![("PYTHON_PATH".into(), "/nonexistent/python3".into())];
    all.extend(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    Vars::from_map(all)
}

fn chain(f: &ProviderFactory, role: ModelRole) -> Vec<(Provider, String)> {
    f.plan(role)
        .links
        .iter()
        .map(|l| (l.provider, l.model.clone()))
        .collect()
}

fn config_file(name: &str, text: &str) -> PathBuf {
    let path = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(name);
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn new_puts_every_role_on_the_given_provider_and_model() {
    let f = ProviderFactory::new_with_vars(
        "mlx",
        "mlx-community/Phi-3-mini-4k-instruct",
        env(&[
            ("TASK_ORCHESTRATOR_PROVIDER", "ollama"),
            ("TASK_ORCHESTRATOR_ROUTER_MODEL", "ignored"),
        ]),
    )
    .unwrap();
    for role in ModelRole::ALL {
        assert_eq!(
            chain(&f, role),
            [(
                Provider::Mlx,
                "mlx-community/Phi-3-mini-4k-instruct".to_owned()
            )]
        );
        assert_eq!(f.plan(role).provider_source, "set in code");
    }
}

#[test]
fn unknown_providers_list_what_is_compiled_in() {
    let err = ProviderFactory::new_with_vars("llamafile", "", env(&[])).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidRequest);
    assert!(
        err.message()
            .contains("mlx, ollama, candle, openai, anthropic"),
        "{err}"
    );
    let err =
        ProviderFactory::from_vars(env(&[("TASK_ORCHESTRATOR_PROVIDER", "olama")])).unwrap_err();
    assert!(
        err.message()
            .starts_with("TASK_ORCHESTRATOR_PROVIDER: unknown provider"),
        "{err}"
    );
}

#[test]
fn role_defaults_are_real_ids_per_backend() {
    let f = ProviderFactory::from_vars(env(&[("TASK_ORCHESTRATOR_PROVIDER", "ollama")])).unwrap();
    let models: Vec<String> = ModelRole::ALL
        .iter()
        .map(|r| chain(&f, *r)[0].1.clone())
        .collect();
    assert_eq!(models, ["phi3", "orca2", "llama3.1", "mistral"]);

    let f = ProviderFactory::from_vars(env(&[("TASK_ORCHESTRATOR_PROVIDER", "MLX")])).unwrap();
    assert_eq!(
        chain(&f, ModelRole::Router)[0].1,
        "mlx-community/Phi-3-mini-4k-instruct"
    );
    assert_eq!(
        chain(&f, ModelRole::Decomposer)[0].1,
        "mlx-community/orca-2-7b"
    );
    assert!(
        ModelRole::ALL
            .iter()
            .all(|r| chain(&f, *r)[0].1.starts_with("mlx-community/"))
    );
}

#[test]
fn the_backend_model_variable_applies_to_every_role_and_role_overrides_win() {
    let f = ProviderFactory::from_vars(env(&[
        ("TASK_ORCHESTRATOR_PROVIDER", "mlx"),
        ("MLX_MODEL", "me/my-model"),
        (
            "TASK_ORCHESTRATOR_DECOMPOSER_MODEL",
            "mlx-community/orca-2-7b",
        ),
        ("TASK_ORCHESTRATOR_TESTER_PROVIDER", "ollama"),
    ]))
    .unwrap();
    assert_eq!(
        chain(&f, ModelRole::Router),
        [(Provider::Mlx, "me/my-model".to_owned())]
    );
    assert_eq!(
        chain(&f, ModelRole::Decomposer),
        [(Provider::Mlx, "mlx-community/orca-2-7b".to_owned())]
    );
    assert_eq!(
        chain(&f, ModelRole::Tester),
        [(Provider::Ollama, "mistral".to_owned())]
    );
    assert_eq!(
        f.plan(ModelRole::Tester).provider_source,
        "TASK_ORCHESTRATOR_TESTER_PROVIDER"
    );
}

#[test]
fn a_provider_without_a_default_model_says_which_variable_to_set() {
    let err =
        ProviderFactory::from_vars(env(&[("TASK_ORCHESTRATOR_PROVIDER", "openai")])).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidRequest);
    assert!(err.hint().unwrap().contains("OPENAI_MODEL"), "{err}");
    // Candle has built-in hub models, so naming it alone is enough.
    let f = ProviderFactory::from_vars(env(&[("TASK_ORCHESTRATOR_PROVIDER", "candle")])).unwrap();
    assert_eq!(
        chain(&f, ModelRole::Router)[0].1,
        "Qwen/Qwen2.5-0.5B-Instruct-GGUF:qwen2.5-0.5b-instruct-q4_k_m.gguf"
    );
}

#[test]
fn fallback_chains_parse_provider_and_model_with_colons() {
    let f = ProviderFactory::from_vars(env(&[
        ("TASK_ORCHESTRATOR_PROVIDER", "mlx"),
        ("TASK_ORCHESTRATOR_FALLBACK", "ollama:llama3.1:8b, candle"),
        ("CANDLE_MODEL", "/models/tiny.gguf"),
        ("TASK_ORCHESTRATOR_ROUTER_FALLBACK", "ollama"),
    ]))
    .unwrap();
    assert_eq!(
        chain(&f, ModelRole::Decomposer),
        [
            (Provider::Mlx, "mlx-community/orca-2-7b".to_owned()),
            (Provider::Ollama, "llama3.1:8b".to_owned()),
            (Provider::Candle, "/models/tiny.gguf".to_owned()),
        ]
    );
    assert_eq!(
        chain(&f, ModelRole::Router),
        [
            (
                Provider::Mlx,
                "mlx-community/Phi-3-mini-4k-instruct".to_owned()
            ),
            (Provider::Ollama, "phi3".to_owned())
        ]
    );
}

#[test]
fn the_config_file_sets_roles_providers_and_chains_and_the_environment_wins() {
    let path = config_file(
        "roles.toml",
        r#"
provider = "ollama"
fallback = ["candle"]

[roles.router]
provider = "mlx"
model = "mlx-community/Phi-3-mini-4k-instruct"
temperature = 0.0
max_tokens = 64

[roles.decomposer]
model = "orca2:13b"
fallback = []

[providers.candle]
model = "/models/from-config.gguf"

[providers.ollama]
host = "127.0.0.1:9999"
"#,
    );
    let p = path.to_str().unwrap();
    let f = ProviderFactory::from_vars(env(&[("RIGGER_CONFIG", p)])).unwrap();
    assert_eq!(f.config().unwrap().path, path);
    assert_eq!(
        chain(&f, ModelRole::Router),
        [
            (
                Provider::Mlx,
                "mlx-community/Phi-3-mini-4k-instruct".to_owned()
            ),
            (Provider::Candle, "/models/from-config.gguf".to_owned())
        ]
    );
    assert_eq!(f.plan(ModelRole::Router).settings.max_tokens, 64);
    assert_eq!(f.plan(ModelRole::Router).settings.temperature, Some(0.0));
    assert_eq!(
        chain(&f, ModelRole::Decomposer),
        [(Provider::Ollama, "orca2:13b".to_owned())]
    );
    assert_eq!(
        f.vars().get("OLLAMA_HOST").as_deref(),
        Some("127.0.0.1:9999")
    );

    // The environment overrides the file.
    let f = ProviderFactory::from_vars(env(&[
        ("RIGGER_CONFIG", p),
        ("TASK_ORCHESTRATOR_ROUTER_PROVIDER", "ollama"),
        ("CANDLE_MODEL", "/models/from-env.gguf"),
        ("OLLAMA_HOST", "127.0.0.1:1234"),
    ]))
    .unwrap();
    assert_eq!(
        chain(&f, ModelRole::Router)[0],
        (Provider::Ollama, "phi3".to_owned())
    );
    assert_eq!(
        chain(&f, ModelRole::Enhancer)[1],
        (Provider::Candle, "/models/from-env.gguf".to_owned())
    );
    assert_eq!(
        f.vars().get("OLLAMA_HOST").as_deref(),
        Some("127.0.0.1:1234")
    );
}

#[test]
fn a_malformed_config_names_the_file_the_line_and_the_key() {
    let path = config_file(
        "typo.toml",
        "provider = \"mlx\"\n\n[roles.router]\nmodle = \"x\"\n",
    );
    let err =
        ProviderFactory::from_vars(env(&[("RIGGER_CONFIG", path.to_str().unwrap())])).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidRequest);
    let message = err.message();
    assert!(message.contains("typo.toml"), "{message}");
    assert!(message.contains("line 4"), "{message}");
    assert!(message.contains("modle"), "{message}");

    let path = config_file("role.toml", "[roles.planner]\nmodel = \"x\"\n");
    let err =
        ProviderFactory::from_vars(env(&[("RIGGER_CONFIG", path.to_str().unwrap())])).unwrap_err();
    assert!(
        err.message().contains("unknown role [roles.planner]"),
        "{err}"
    );

    let err = ProviderFactory::from_vars(env(&[("RIGGER_CONFIG", "/nonexistent/rigger.toml")]))
        .unwrap_err();
    assert!(err.message().contains("/nonexistent/rigger.toml"), "{err}");
}

/// Which failures fall through, and the cooldown, come from the environment or the file (the
/// environment wins); a name that is not an error kind is refused with the list.
#[test]
fn the_fall_through_set_and_cooldown_are_settings() {
    let path = config_file(
        "falls.toml",
        "falls_through = [\"not_available\", \"unauthorized\"]\nfallback_cooldown_secs = 5\n",
    );
    let p = path.to_str().unwrap();
    assert!(ProviderFactory::from_vars(env(&[("RIGGER_CONFIG", p)])).is_ok());
    let err = ProviderFactory::from_vars(env(&[
        ("RIGGER_CONFIG", p),
        (
            "TASK_ORCHESTRATOR_FALLS_THROUGH",
            "timeout, rate-limited,teapot",
        ),
    ]))
    .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidRequest);
    assert!(
        err.message().contains("\"teapot\" is not an error kind"),
        "{err}"
    );
    assert!(
        err.hint().is_some_and(|h| h.contains("model_not_found")),
        "{err}"
    );
    let path = config_file("falls-bad.toml", "falls_through = [\"oops\"]\n");
    let err =
        ProviderFactory::from_vars(env(&[("RIGGER_CONFIG", path.to_str().unwrap())])).unwrap_err();
    assert!(
        err.message().contains("falls-bad.toml: falls_through"),
        "{err}"
    );
}

/// Every backend's timeouts can be set in `rigger.toml` as well as in the environment (the
/// environment wins); API keys cannot: a key in the file is refused, and not echoed.
#[test]
fn timeouts_come_from_the_file_and_keys_never_do() {
    let path = config_file(
        "timeouts.toml",
        r#"
[providers.mlx]
load_timeout_secs = 120
idle_timeout_secs = 9

[providers.ollama]
first_token_timeout_secs = 600
deadline_secs = 900

[providers.openai]
response_timeout_secs = 30
idle_timeout_secs = 15
deadline_secs = 300

[providers.anthropic]
first_token_timeout_secs = 45
idle_timeout_secs = 20
deadline_secs = 200
"#,
    );
    let p = path.to_str().unwrap();
    let f = ProviderFactory::from_vars(env(&[
        ("RIGGER_CONFIG", p),
        ("RIGGER_OPENAI_DEADLINE_SECS", "77"),
    ]))
    .unwrap();
    for (var, value) in [
        ("RIGGER_MLX_LOAD_TIMEOUT_SECS", "120"),
        ("RIGGER_MLX_IDLE_TIMEOUT_SECS", "9"),
        ("RIGGER_OLLAMA_FIRST_TOKEN_TIMEOUT_SECS", "600"),
        ("RIGGER_OLLAMA_DEADLINE_SECS", "900"),
        ("RIGGER_OPENAI_RESPONSE_TIMEOUT_SECS", "30"),
        ("RIGGER_OPENAI_IDLE_TIMEOUT_SECS", "15"),
        ("RIGGER_OPENAI_DEADLINE_SECS", "77"),
        ("RIGGER_ANTHROPIC_FIRST_TOKEN_TIMEOUT_SECS", "45"),
        ("RIGGER_ANTHROPIC_IDLE_TIMEOUT_SECS", "20"),
        ("RIGGER_ANTHROPIC_DEADLINE_SECS", "200"),
    ] {
        assert_eq!(f.vars().get(var).as_deref(), Some(value), "{var}");
    }

    for provider in ["openai", "anthropic", "ollama"] {
        let path = config_file(
            &format!("key-{provider}.toml"),
            &format!("[providers.{provider}]\napi_key = \"sk-in-a-file\"\n"),
        );
        let err = ProviderFactory::from_vars(env(&[("RIGGER_CONFIG", path.to_str().unwrap())]))
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidRequest, "{provider}");
        assert!(
            err.message().contains("unknown key `api_key`"),
            "{provider}: {err}"
        );
        assert!(!err.to_string().contains("sk-in-a-file"), "{err}");
    }
}

#[test]
fn a_providers_section_is_checked_against_its_backend_with_the_line() {
    let path = config_file(
        "section.toml",
        "[providers.candle]\nmodel = \"/m.gguf\"\nthreads = 4\nkernels = \"avx2\"\n\n[providers.ollama]\nhots = \"x\"\n",
    );
    let err =
        ProviderFactory::from_vars(env(&[("RIGGER_CONFIG", path.to_str().unwrap())])).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidRequest);
    let message = err.message();
    assert!(message.contains("section.toml"), "{message}");
    assert!(message.contains("line 7"), "{message}");
    assert!(
        message.contains("[providers.ollama] unknown key `hots`"),
        "{message}"
    );

    let path = config_file("threads.toml", "[providers.candle]\nthreads = \"4\"\n");
    let err =
        ProviderFactory::from_vars(env(&[("RIGGER_CONFIG", path.to_str().unwrap())])).unwrap_err();
    assert!(err.message().contains("line 2"), "{err}");
    assert!(
        err.message().contains("`threads` must be a whole number"),
        "{err}"
    );

    let path = config_file("provider.toml", "[providers.llamafile]\nmodel = \"x\"\n");
    let err =
        ProviderFactory::from_vars(env(&[("RIGGER_CONFIG", path.to_str().unwrap())])).unwrap_err();
    assert!(
        err.message()
            .contains("unknown provider [providers.llamafile]"),
        "{err}"
    );

    let path = config_file(
        "candle.toml",
        "provider = \"candle\"\n[providers.candle]\nmodel = \"/m.gguf\"\nthreads = 4\nkernels = \"avx2\"\n",
    );
    let f = ProviderFactory::from_vars(env(&[("RIGGER_CONFIG", path.to_str().unwrap())])).unwrap();
    assert_eq!(f.vars().get("CANDLE_THREADS").as_deref(), Some("4"));
    assert_eq!(f.vars().get("CANDLE_KERNELS").as_deref(), Some("avx2"));
    assert_eq!(chain(&f, ModelRole::Router)[0].1, "/m.gguf");
}

#[test]
fn auto_detection_picks_a_configured_candle_model_here_and_reports_every_backend() {
    let tiny = rigger_model_gen::tiny_model()
        .unwrap()
        .join("model-q8_0.gguf");
    let f = ProviderFactory::from_vars(env(&[
        ("CANDLE_MODEL", tiny.to_str().unwrap()),
        ("OLLAMA_HOST", "127.0.0.1:9"),
    ]))
    .unwrap();
    let plan = f.plan(ModelRole::Router);
    assert_eq!(plan.links[0].provider, Provider::Candle);
    assert!(
        plan.provider_source.starts_with("auto-detected"),
        "{}",
        plan.provider_source
    );
    let report = f.detection().unwrap();
    let names: Vec<Provider> = report.backends.iter().map(|b| b.provider).collect();
    assert_eq!(names, Provider::ALL);
    let mlx = report.status(Provider::Mlx).unwrap();
    assert!(!mlx.usable && mlx.fix.is_some(), "{mlx:?}");
}

/// `rigger doctor` and the Candle adapter judge `CANDLE_MODEL` by the same rule: a bare name is
/// neither an existing path nor a hub id, so it is not reported usable and then refused.
#[tokio::test(flavor = "multi_thread")]
async fn the_doctor_and_the_candle_adapter_agree_on_what_candle_model_names() {
    let bare = env(&[
        ("CANDLE_MODEL", "tinyllama"),
        ("OLLAMA_HOST", "127.0.0.1:9"),
    ]);
    let report = rigger_provider_factory::detect(&bare).await;
    let candle = report.status(Provider::Candle).unwrap();
    assert!(!candle.usable, "{candle:?}");
    assert!(candle.detail.contains("owner/repo"), "{candle:?}");
    let factory = ProviderFactory::new_with_vars("candle", "", bare).unwrap();
    let err = factory.model_chain_for_role(ModelRole::Router).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ModelNotFound, "{err}");

    // A hub id is usable for both (fetched on first use, so nothing is downloaded here).
    let hub = env(&[
        (
            "CANDLE_MODEL",
            "TheBloke/TinyLlama-1.1B-Chat-v1.0-GGUF:tinyllama.Q4_0.gguf",
        ),
        ("OLLAMA_HOST", "127.0.0.1:9"),
    ]);
    let report = rigger_provider_factory::detect(&hub).await;
    assert!(report.status(Provider::Candle).unwrap().usable, "{report}");
    let factory = ProviderFactory::new_with_vars("candle", "", hub).unwrap();
    factory.model_chain_for_role(ModelRole::Router).unwrap();

    // A missing file is a missing file for both, not a hub id.
    let missing = env(&[
        ("CANDLE_MODEL", "models/tiny.gguf"),
        ("OLLAMA_HOST", "127.0.0.1:9"),
    ]);
    let report = rigger_provider_factory::detect(&missing).await;
    assert!(!report.status(Provider::Candle).unwrap().usable, "{report}");
    let factory = ProviderFactory::new_with_vars("candle", "", missing).unwrap();
    assert!(factory.model_chain_for_role(ModelRole::Router).is_err());
}

#[test]
fn nothing_usable_is_not_available_with_the_report() {
    // Offline with the built-in models not cached: not even the last resort is usable.
    let err = ProviderFactory::from_vars(env(&[
        ("OLLAMA_HOST", "127.0.0.1:9"),
        ("HF_HOME", "/nonexistent/hf-home"),
        ("HF_HUB_OFFLINE", "1"),
    ]))
    .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotAvailable);
    assert!(err.message().contains("no backend is usable"), "{err}");
    assert!(err.message().contains("CANDLE_MODEL is not set"), "{err}");
    assert!(err.message().contains("HF_HUB_OFFLINE"), "{err}");
    assert!(
        err.hint().is_some_and(|h| h.contains("rigger pull --all")),
        "{err}"
    );
}

#[test]
fn nothing_detected_runs_candle_on_the_built_in_hub_models_as_the_last_resort() {
    let f = ProviderFactory::from_vars(env(&[
        ("OLLAMA_HOST", "127.0.0.1:9"),
        ("PYTHON_PATH", "/nonexistent/python"),
        ("HF_HOME", "/nonexistent/hf-home"),
    ]))
    .unwrap();
    for role in ModelRole::ALL {
        let plan = f.plan(role);
        assert_eq!(plan.links[0].provider, Provider::Candle, "{plan:?}");
        assert_eq!(
            plan.provider_source, "built-in default (no backend detected)",
            "{plan:?}"
        );
        let expected = match role {
            ModelRole::Router => {
                "Qwen/Qwen2.5-0.5B-Instruct-GGUF:qwen2.5-0.5b-instruct-q4_k_m.gguf"
            }
            _ => "Qwen/Qwen2.5-1.5B-Instruct-GGUF:qwen2.5-1.5b-instruct-q4_k_m.gguf",
        };
        assert_eq!(plan.links[0].model, expected);
    }
    let report = f.detection().unwrap();
    let candle = report.status(Provider::Candle).unwrap();
    assert!(
        candle.usable && candle.last_resort && !candle.auto_selectable,
        "{candle:?}"
    );
    assert!(candle.detail.contains("(not cached)"), "{candle:?}");
    assert!(
        report
            .to_string()
            .contains("selected: nothing else is usable"),
        "{report}"
    );
    // Building the adapters touches no network (the download happens on the first request).
    f.orchestrator().unwrap();
}

#[test]
fn roles_on_the_same_model_share_one_adapter_and_adapters_are_trait_objects() {
    let f = ProviderFactory::new_with_vars(
        "mlx",
        "mlx-community/Phi-3-mini-4k-instruct",
        env(&[("PYTHON_PATH", "python3")]),
    )
    .unwrap();
    let a = f.model_chain_for_role(ModelRole::Router).unwrap();
    let b = f.model_chain_for_role(ModelRole::Tester).unwrap();
    assert!(Arc::ptr_eq(&a.links()[0], &b.links()[0]));
    let _router: Arc<dyn rigger_ports::TaskRouterPort> = f.create_router_adapter().unwrap();
    let _enhancer: Arc<dyn rigger_ports::TaskEnhancementPort> = f
        .create_enhancement_adapter_for_role(ModelRole::Router)
        .unwrap();
    let _decomposer: Arc<dyn rigger_ports::TaskDecompositionPort> =
        f.create_task_decomposition_adapter().unwrap();
    let _tester: Arc<dyn rigger_ports::ComprehensionTestPort> =
        f.create_comprehension_test_adapter().unwrap();
    f.orchestrator().unwrap();
}
