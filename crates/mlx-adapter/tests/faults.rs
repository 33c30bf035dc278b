//! The MLX worker misbehaving, with a stand-in "Python" this test writes (a shell script that
//! answers `--version` and then plays the worker badly): a worker that prints garbage instead
//! of its handshake, and one that shakes hands and then hangs on loading the model. Each is a
//! typed error within the configured limit, never a hang or a panic. (A worker killed
//! mid-stream is in `supervision.rs`.)

#![allow(clippy::unwrap_used)] // a panic is how a test reports failure

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rigger_mlx_adapter::{MlxConfig, MlxSubprocessAdapter};
use rigger_ports::{ErrorKind, GenerationRequest, LanguageModel};

/// A fake interpreter: `--version` works (so it is found), anything else runs `body`.
fn fake_python(dir: &Path, body: &str) -> PathBuf {
    let path = dir.join("python");
    std::fs::write(
        &path,
        format!(
            "#!/bin/sh\nif [ \"$1\" = \"--version\" ]; then echo 'Python 3.12.0'; exit 0; fi\n\
             if [ \"$1\" = \"-c\" ]; then case \"$2\" in import*) exit 1;; esac; fi\n{body}\n"
        ),
    )
    .unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

fn config(python: PathBuf) -> MlxConfig {
    MlxConfig {
        python: Some(python),
        startup_timeout: Duration::from_secs(2),
        load_timeout: Duration::from_secs(2),
        first_token_timeout: Duration::from_secs(2),
        idle_timeout: Duration::from_secs(2),
        dedicated_worker: true,
        ..MlxConfig::new("mlx-community/some-model")
    }
}

/// The error of a short request to a worker run by `python`, which must come well within the
/// limits' sum (2 s each).
async fn fails_in_time(python: PathBuf) -> rigger_ports::InferenceError {
    let model = MlxSubprocessAdapter::new(config(python)).unwrap();
    let started = Instant::now();
    let err = model
        .generate(GenerationRequest::prompt("hi").with_max_tokens(4))
        .await
        .unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(10), "{err}");
    err
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_printing_garbage_is_a_typed_error_in_time() {
    let dir = tempfile::tempdir().unwrap();
    let python = fake_python(
        dir.path(),
        "printf 'Traceback (most recent call last):\\n\\377\\376 not json\\n'; sleep 30",
    );
    let err = fails_in_time(python).await;
    assert!(
        !matches!(err.kind(), ErrorKind::Internal | ErrorKind::InvalidRequest),
        "{:?}: {err}",
        err.kind()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_hanging_on_load_is_a_timeout_naming_the_setting() {
    let dir = tempfile::tempdir().unwrap();
    let hello = r#"{"type":"hello","protocol":3,"mlx":"0.0","mlx_lm":"0.0","device":"cpu","python":"3.12.0","llguidance":null}"#;
    let python = fake_python(dir.path(), &format!("echo '{hello}'; cat > /dev/null"));
    let err = fails_in_time(python).await;
    assert_eq!(err.kind(), ErrorKind::Timeout, "{err}");
    assert!(
        err.hint()
            .is_some_and(|h| h.contains("RIGGER_MLX_LOAD_TIMEOUT_SECS")),
        "{err}"
    );
}
