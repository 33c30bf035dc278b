//! The MLX adapter's supervision against real mlx-lm (on the CPU here) with the tiny generated
//! model: a killed worker, timeouts, the handshake, a Python without mlx-lm, what `PYTHON_PATH`
//! means. The shared
//! conformance suite is in `conformance.rs`.
//!
//! Needs the MLX venv: `cargo xtask setup-mlx` (CI runs it first), or `RIGGER_MLX_PYTHON`.
//! Without it these tests fail with that instruction; they never skip silently.
#![allow(clippy::unwrap_used)] // a panic is how a test reports failure

mod support;

use std::path::PathBuf;
use std::time::Duration;

use futures::StreamExt;
use rigger_mlx_adapter::{MlxConfig, MlxSubprocessAdapter};
use rigger_ports::{ErrorKind, GenerationRequest, LanguageModel, StreamEvent};
use support::{config, tiny};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_worker_fails_the_request_in_flight_and_the_next_request_restarts_it() {
    // A worker of its own: killing the shared one would fail the other tests' requests.
    let model = MlxSubprocessAdapter::connect(MlxConfig {
        dedicated_worker: true,
        ..config(&tiny())
    })
    .await
    .unwrap();
    let pid = model.worker_pid().expect("a running worker");
    let mut events = model
        .stream(
            GenerationRequest::prompt("Tell me a long story")
                .with_exact_tokens(400)
                .with_temperature(0.0),
        )
        .await
        .unwrap();
    assert!(matches!(
        events.next().await,
        Some(Ok(StreamEvent::Delta(_)))
    ));
    let killed = std::process::Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let mut outcome = None;
    while let Some(event) = events.next().await {
        if let Err(e) = event {
            outcome = Some(e);
            break;
        }
    }
    let err = outcome.expect("the stream must end with an error, not quietly");
    assert_eq!(err.kind(), ErrorKind::BackendCrashed, "{err}");
    assert!(err.to_string().contains("died"), "{err}");

    let again = model
        .generate(
            GenerationRequest::prompt("Hello")
                .with_max_tokens(4)
                .with_temperature(0.0),
        )
        .await
        .unwrap();
    assert_eq!(again.completion.usage.completion_tokens, 4);
    assert_ne!(
        model.worker_pid(),
        Some(pid),
        "a fresh worker serves the next request"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_slower_than_the_first_token_timeout_is_a_timeout_error() {
    let model = MlxSubprocessAdapter::connect(MlxConfig {
        first_token_timeout: Duration::from_nanos(1),
        ..config(&tiny())
    })
    .await
    .unwrap();
    let err = model
        .generate(GenerationRequest::prompt("Hello").with_max_tokens(8))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Timeout, "{err}");
    // The timed-out request was cancelled; the worker serves the next one.
    let ok = MlxSubprocessAdapter::connect(config(&tiny()))
        .await
        .unwrap();
    let g = ok
        .generate(GenerationRequest::prompt("Hello").with_max_tokens(3))
        .await
        .unwrap();
    assert_eq!(g.completion.usage.completion_tokens, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_handshake_reports_versions_and_a_missing_python_is_a_clear_error() {
    let model = MlxSubprocessAdapter::connect(config(&tiny()))
        .await
        .unwrap();
    let hello = model.worker_info().await.unwrap();
    assert!(
        !hello.mlx.is_empty() && !hello.mlx_lm.is_empty(),
        "{hello:?}"
    );
    assert!(
        hello.device.contains("cpu") || hello.device.contains("gpu"),
        "{hello:?}"
    );

    let err = MlxSubprocessAdapter::new(MlxConfig {
        python: Some("/nonexistent/python3".into()),
        ..MlxConfig::new("m")
    })
    .err()
    .expect("no such python");
    assert_eq!(err.kind(), ErrorKind::NotAvailable);
    assert!(
        err.to_string().contains("Failed to execute Python"),
        "{err}"
    );
    assert!(err.hint().is_some_and(|h| h.contains("setup-mlx")));
}

/// A Python this test controls that cannot import mlx-lm whatever is installed: the venv's own
/// interpreter with site-packages switched off (`-S`) and the environment ignored (`-I`), behind a
/// two-line wrapper (a user who followed the guide's `pip3 install mlx-lm` still gets a Python
/// without it here).
fn python_without_site_packages(dir: &std::path::Path) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let wrapper = dir.join("python-no-site");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\nexec '{}' -I -S \"$@\"\n",
            rigger_model_gen::mlx_python().display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
    wrapper
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_python_without_mlx_is_mlx_not_available_with_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    let plain = python_without_site_packages(dir.path());
    let has_mlx = std::process::Command::new(&plain)
        .args(["-c", "import mlx_lm"])
        .status()
        .is_ok_and(|s| s.success());
    assert!(!has_mlx, "{} still imports mlx-lm", plain.display());
    let model = MlxSubprocessAdapter::new(MlxConfig {
        python: Some(plain),
        ..MlxConfig::new(tiny())
    })
    .unwrap();
    let err = model
        .generate(GenerationRequest::prompt("hi"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotAvailable, "{err}");
    assert_eq!(err.code(), Some("MLX_NOT_AVAILABLE"));
    assert!(err.hint().is_some_and(|h| h.contains("setup-mlx")));
}

/// Set (to `yes` or `no`) in the child process [`python_path_means_one_thing_everywhere`] starts.
const AVAILABILITY_CHILD: &str = "RIGGER_MLX_AVAILABILITY_CHILD";

/// `PYTHON_PATH` is strict everywhere: an interpreter that is not there means MLX is not
/// available to `is_available()` (which reads the process environment once, so it runs in a
/// child process of this test binary), to `check_availability` and to `new()`, with no quiet
/// fallback to another Python; one that has mlx-lm means available.
#[test]
fn python_path_means_one_thing_everywhere() {
    if let Ok(expected) = std::env::var(AVAILABILITY_CHILD) {
        assert_eq!(
            MlxSubprocessAdapter::is_available(),
            expected == "yes",
            "{:?}",
            rigger_mlx_adapter::availability()
        );
        return;
    }
    let nowhere = PathBuf::from("/nonexistent/python3");
    let checked = rigger_mlx_adapter::check_availability(Some(&nowhere));
    assert!(!checked.available, "{checked:?}");
    assert!(
        checked.reason.contains("/nonexistent/python3"),
        "{checked:?}"
    );
    let venv = rigger_model_gen::mlx_python();
    assert!(rigger_mlx_adapter::check_availability(Some(&venv)).available);
    for (python, expected) in [(nowhere.clone(), "no"), (venv, "yes")] {
        let status = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "python_path_means_one_thing_everywhere"])
            .env("PYTHON_PATH", &python)
            .env(AVAILABILITY_CHILD, expected)
            .status()
            .unwrap();
        assert!(
            status.success(),
            "is_available() with PYTHON_PATH={} should be {expected}",
            python.display()
        );
    }
    let err = MlxSubprocessAdapter::new(MlxConfig {
        python: Some(nowhere),
        ..MlxConfig::new("m")
    })
    .err()
    .expect("no such python");
    assert_eq!(err.kind(), ErrorKind::NotAvailable);
}
