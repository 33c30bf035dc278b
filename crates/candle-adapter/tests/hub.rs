#![allow(clippy::unwrap_used)] // a panic is how a test reports failure
//! Hub ids end to end through `hf-hub`, against the local hub fixture (`HF_ENDPOINT`) serving
//! the real SmolLM2 GGUF (98 MB): the download with its progress events, the cache layout
//! hf-hub and every other hub client expect, the cache used offline, a transfer that breaks
//! off, a file that does not match its sha256, and which file of a repo is picked. Each test
//! has its own `HF_HOME`; settings go through `from_vars`, never the process environment.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use bytes::Bytes;
use rigger_candle_adapter::{
    CandleConfig, DownloadEvent, HubSettings, ModelFiles, ProgressSink, pull,
};
use rigger_http_support::fixture::FixtureServer;
use rigger_http_support::fixture::hub::HubFixture;
use rigger_ports::ErrorKind;

const SMOLLM2_SHA256: &str = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53";
const REPO: &str = "rigger-tests/SmolLM2-135M-Instruct-GGUF";
const Q4_K_M: &str = "smollm2-135m-instruct-q4_k_m.gguf";

fn smollm2() -> Bytes {
    static BYTES: OnceLock<Bytes> = OnceLock::new();
    BYTES
        .get_or_init(|| Bytes::from(std::fs::read(rigger_model_gen::smollm2()).unwrap()))
        .clone()
}

/// A hub with SmolLM2 as the repo's Q4_K_M (and two small other quantizations, to be passed over).
async fn hub() -> HubFixture {
    let hub = HubFixture::start().await.unwrap();
    assert_eq!(hub.add_file(REPO, Q4_K_M, smollm2()), SMOLLM2_SHA256);
    hub.add_file(
        REPO,
        "smollm2-135m-instruct-q8_0.gguf",
        &b"not this one"[..],
    );
    hub.add_file(REPO, "smollm2-135m-instruct-f16.gguf", &b"nor this one"[..]);
    hub.add_file(REPO, "README.md", &b"# SmolLM2\n"[..]);
    hub
}

fn settings(home: &Path, endpoint: &str, offline: bool) -> HubSettings {
    let (home, endpoint) = (home.display().to_string(), endpoint.to_owned());
    HubSettings::from_vars(&move |k: &str| match k {
        "HF_HOME" => Some(home.clone()),
        "HF_ENDPOINT" => Some(endpoint.clone()),
        "HF_HUB_OFFLINE" if offline => Some("1".into()),
        _ => None,
    })
}

fn config(model: &str, hub: HubSettings) -> CandleConfig {
    CandleConfig {
        hub,
        ..CandleConfig::new(model)
    }
}

/// A sink that keeps every event.
fn recorder() -> (ProgressSink, Arc<Mutex<Vec<DownloadEvent>>>) {
    let events = Arc::new(Mutex::new(Vec::new()));
    let kept = Arc::clone(&events);
    (
        Arc::new(move |e: &DownloadEvent| kept.lock().unwrap().push(e.clone())),
        events,
    )
}

fn weights(files: &ModelFiles) -> PathBuf {
    match files {
        ModelFiles::Gguf { weights, .. } => weights.clone(),
        other => panic!("expected a GGUF, got {other:?}"),
    }
}

fn sha256(path: &Path) -> String {
    rigger_http_support::fixture::hub::sha256_hex(&std::fs::read(path).unwrap())
}

/// Every file under `dir`, relative, sorted (links listed as they are, not followed).
fn tree(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if e.file_type().unwrap().is_dir() {
                stack.push(p);
            } else {
                out.push(p.strip_prefix(dir).unwrap().display().to_string());
            }
        }
    }
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn owner_repo_downloads_the_q4_k_m_gguf_with_progress_into_hf_hubs_cache_layout() {
    let hub = hub().await;
    let home = tempfile::tempdir().unwrap();
    let (sink, events) = recorder();
    let files = pull(
        &config(REPO, settings(home.path(), &hub.url(), false)),
        sink,
    )
    .await
    .unwrap();

    // The Q4_K_M file was picked, and it is SmolLM2, byte for byte.
    let path = weights(&files);
    assert!(path.ends_with(Q4_K_M), "{}", path.display());
    assert_eq!(sha256(&path), SMOLLM2_SHA256);
    // The repo has no tokenizer.json (it is in the GGUF's metadata).
    assert!(matches!(
        files,
        ModelFiles::Gguf {
            tokenizer: None,
            ..
        }
    ));

    // hf-hub's layout: blobs by etag, snapshots/<commit>/<file> linking to them, refs/main.
    let repo_dir = home
        .path()
        .join("hub/models--rigger-tests--SmolLM2-135M-Instruct-GGUF");
    let commit = hub.commit(REPO);
    assert_eq!(
        tree(&repo_dir),
        vec![
            format!("blobs/{SMOLLM2_SHA256}"),
            "refs/main".to_owned(),
            format!("snapshots/{commit}/{Q4_K_M}"),
        ]
    );
    assert_eq!(
        std::fs::read_to_string(repo_dir.join("refs/main")).unwrap(),
        commit
    );
    let link = repo_dir.join(format!("snapshots/{commit}/{Q4_K_M}"));
    assert_eq!(path, link);
    assert_eq!(
        std::fs::read_link(&link).unwrap(),
        PathBuf::from(format!("../../blobs/{SMOLLM2_SHA256}"))
    );

    // Progress: started with the size, several byte counts rising to it, then finished.
    let events = events.lock().unwrap().clone();
    let size = smollm2().len() as u64;
    let started = DownloadEvent::Started {
        repo: REPO.into(),
        file: Q4_K_M.into(),
        total: size,
    };
    let finished = DownloadEvent::Finished {
        repo: REPO.into(),
        file: Q4_K_M.into(),
        bytes: size,
    };
    assert_eq!(events.first(), Some(&started), "{events:?}");
    assert_eq!(events.last(), Some(&finished));
    let done: Vec<u64> = events
        .iter()
        .filter_map(|e| match e {
            DownloadEvent::Progress { done, total, .. } => {
                assert_eq!(*total, size);
                Some(*done)
            }
            _ => None,
        })
        .collect();
    assert!(done.len() > 10, "{} progress events", done.len());
    assert!(done.windows(2).all(|w| w[0] <= w[1]));
    assert_eq!(done.last(), Some(&size));
    assert_eq!(hub.transfers(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_run_uses_the_cache_offline_and_online_without_asking_the_hub() {
    let hub = hub().await;
    let home = tempfile::tempdir().unwrap();
    let first = pull(
        &config(REPO, settings(home.path(), &hub.url(), false)),
        rigger_candle_adapter::no_progress(),
    )
    .await
    .unwrap();
    let asked = hub.requests().len();

    for offline in [true, false] {
        let (sink, events) = recorder();
        let again = pull(
            &config(REPO, settings(home.path(), &hub.url(), offline)),
            sink,
        )
        .await
        .unwrap();
        assert_eq!(weights(&again), weights(&first));
        assert_eq!(
            *events.lock().unwrap(),
            vec![DownloadEvent::Cached {
                repo: REPO.into(),
                file: Q4_K_M.into()
            }]
        );
    }
    assert_eq!(
        hub.requests().len(),
        asked,
        "the cache answered, not the hub"
    );

    // Offline with a hub that is gone: still served from the cache.
    let gone = FixtureServer::refused_url().await.unwrap();
    let files = pull(
        &config(REPO, settings(home.path(), &gone, true)),
        rigger_candle_adapter::no_progress(),
    )
    .await
    .unwrap();
    assert_eq!(sha256(&weights(&files)), SMOLLM2_SHA256);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transfer_that_breaks_off_starts_over_and_never_leaves_a_complete_looking_file() {
    let hub = hub().await;
    let home = tempfile::tempdir().unwrap();
    let model = format!("{REPO}:{Q4_K_M}");
    let repo_dir = home
        .path()
        .join("hub/models--rigger-tests--SmolLM2-135M-Instruct-GGUF");

    // Every attempt breaks off after 10 MB: a typed error, and nothing that looks complete.
    hub.drop_transfers(3, 10_000_000);
    let err = pull(
        &config(&model, settings(home.path(), &hub.url(), false)),
        rigger_candle_adapter::no_progress(),
    )
    .await
    .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotAvailable, "{err}");
    assert!(err.to_string().contains(Q4_K_M), "{err}");
    assert!(
        err.hint().is_some_and(|h| h.contains("rigger pull")),
        "{err}"
    );
    assert_eq!(hub.transfers(), 3);
    let left = tree(&repo_dir);
    assert_eq!(
        left,
        vec![format!("blobs/{SMOLLM2_SHA256}.incomplete")],
        "only the partial file, under its .incomplete name"
    );
    let partial = std::fs::metadata(repo_dir.join(format!("blobs/{SMOLLM2_SHA256}.incomplete")))
        .unwrap()
        .len();
    assert!(partial <= 10_000_000, "{partial}");

    // One break: the download starts over by itself and completes, checked.
    hub.drop_transfers(1, 5_000_000);
    let (sink, events) = recorder();
    let files = pull(
        &config(&model, settings(home.path(), &hub.url(), false)),
        sink,
    )
    .await
    .unwrap();
    assert_eq!(sha256(&weights(&files)), SMOLLM2_SHA256);
    assert_eq!(hub.transfers(), 5);
    let events = events.lock().unwrap().clone();
    assert!(
        events
            .iter()
            .any(|e| matches!(e, DownloadEvent::Retrying { attempt: 2, .. })),
        "{:?}",
        events
            .iter()
            .filter(|e| !matches!(e, DownloadEvent::Progress { .. }))
            .collect::<Vec<_>>()
    );
    assert!(
        !tree(&repo_dir).iter().any(|f| f.ends_with(".incomplete")),
        "{:?}",
        tree(&repo_dir)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_that_does_not_match_its_sha256_is_a_typed_error_and_leaves_the_cache() {
    let hub = HubFixture::start().await.unwrap();
    hub.add_corrupt_file(REPO, Q4_K_M, smollm2());
    let home = tempfile::tempdir().unwrap();
    let err = pull(
        &config(REPO, settings(home.path(), &hub.url(), false)),
        rigger_candle_adapter::no_progress(),
    )
    .await
    .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ModelLoadFailed, "{err}");
    assert_eq!(err.code(), Some("HUB_CHECKSUM_MISMATCH"));
    assert!(err.to_string().contains(SMOLLM2_SHA256), "{err}");
    let repo_dir = home
        .path()
        .join("hub/models--rigger-tests--SmolLM2-135M-Instruct-GGUF");
    assert_eq!(
        tree(&repo_dir),
        vec!["refs/main".to_owned()],
        "no blob, no link"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repo_without_q4_k_m_says_what_it_has_and_a_quant_tag_picks_one() {
    let hub = HubFixture::start().await.unwrap();
    let repo = "rigger-tests/no-q4km-GGUF";
    hub.add_file(repo, "m-q8_0.gguf", &b"eight"[..]);
    hub.add_file(repo, "m-f16.gguf", &b"sixteen"[..]);
    let home = tempfile::tempdir().unwrap();
    let err = pull(
        &config(repo, settings(home.path(), &hub.url(), false)),
        rigger_candle_adapter::no_progress(),
    )
    .await
    .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ModelNotFound, "{err}");
    let text = err.to_string();
    assert!(
        text.contains("no Q4_K_M GGUF") && text.contains("m-f16.gguf, m-q8_0.gguf"),
        "{text}"
    );
    assert!(
        err.hint().is_some_and(|h| h.contains("owner/repo:Q8_0")),
        "{err}"
    );

    let files = pull(
        &config(
            &format!("{repo}:Q8_0"),
            settings(home.path(), &hub.url(), false),
        ),
        rigger_candle_adapter::no_progress(),
    )
    .await
    .unwrap();
    assert_eq!(std::fs::read(weights(&files)).unwrap(), b"eight");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn not_cached_and_offline_or_unreachable_is_not_available_naming_the_fixes() {
    let home = tempfile::tempdir().unwrap();
    let gone = FixtureServer::refused_url().await.unwrap();
    for (offline, code) in [(true, "HUB_OFFLINE"), (false, "HUB_UNREACHABLE")] {
        let err = pull(
            &config(REPO, settings(home.path(), &gone, offline)),
            rigger_candle_adapter::no_progress(),
        )
        .await
        .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::NotAvailable, "{err}");
        assert_eq!(err.code(), Some(code), "{err}");
        let hint = err.hint().unwrap_or_default();
        assert!(
            hint.contains(&format!("rigger pull {REPO}"))
                && hint.contains("CANDLE_MODEL=/path/to/file.gguf"),
            "{err}"
        );
    }
    // A repo the hub does not have is a different error: the id is wrong.
    let hub = HubFixture::start().await.unwrap();
    let err = pull(
        &config(
            "rigger-tests/no-such-repo",
            settings(home.path(), &hub.url(), false),
        ),
        rigger_candle_adapter::no_progress(),
    )
    .await
    .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ModelNotFound, "{err}");
}
