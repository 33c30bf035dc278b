//! Models from the Hugging Face hub: settings (`HF_ENDPOINT`, `HF_HOME`, `HF_HUB_CACHE`,
//! `HF_TOKEN`, `HF_HUB_OFFLINE`), which file of a repo to use (the Q4_K_M GGUF by default, as
//! llama.cpp's `-hf` picks it), downloads through `hf-hub` into its cache with progress events,
//! and the sha256 check of what was downloaded.
//!
//! What `hf-hub` guarantees and what is added here: it writes a download to
//! `blobs/<etag>.incomplete` and renames it to `blobs/<etag>` only after the whole body arrived
//! (a dropped connection is an error and leaves no blob), then links
//! `snapshots/<commit>/<file>` to the blob and writes `refs/main`; a retry truncates the
//! `.incomplete` file and starts again (no byte ranges). It does not check the content, so a
//! fresh download of an LFS file (whose etag is its sha256) is hashed here, and a mismatch
//! removes the blob and its link.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use hf_hub::progress::{FileStatus, ProgressEvent, ProgressHandler};
use hf_hub::{HFClient, HFError, HFRepository, RepoTypeModel};
use rigger_ports::{ErrorKind, InferenceError};
use sha2::{Digest, Sha256};

use crate::BACKEND;

/// The hub's base URL (tests point it at a local fixture).
pub const HF_ENDPOINT_VAR: &str = "HF_ENDPOINT";
/// The cache folder's variables, with the precedence rule every adapter shares
/// ([`rigger_ports::hf_hub_cache`]).
pub use rigger_ports::{HF_HOME_VAR, HF_HUB_CACHE_VAR};
/// A token for gated or private repos.
pub const HF_TOKEN_VAR: &str = "HF_TOKEN";
/// `1`: use the cache only, never the network.
pub const HF_HUB_OFFLINE_VAR: &str = "HF_HUB_OFFLINE";

/// The quantization picked from a repo when the model names none (llama.cpp's default).
pub const DEFAULT_QUANT: &str = "Q4_K_M";

/// Attempts per file when a transfer breaks off mid-body (each attempt starts over).
const TRANSFER_ATTEMPTS: usize = 3;

/// How the hub is reached and where its cache is.
#[derive(Clone, PartialEq, Eq)]
pub struct HubSettings {
    /// `HF_ENDPOINT`; `None` is hf-hub's default hub.
    pub endpoint: Option<String>,
    /// The hub cache (`HF_HUB_CACHE`, else `$HF_HOME/hub`, else `~/.cache/huggingface/hub`).
    pub cache_dir: PathBuf,
    /// `HF_TOKEN`; `None` lets hf-hub look for its stored token.
    pub token: Option<String>,
    /// `HF_HUB_OFFLINE=1`: the cache only.
    pub offline: bool,
}

impl std::fmt::Debug for HubSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HubSettings")
            .field("endpoint", &self.endpoint)
            .field("cache_dir", &self.cache_dir)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("offline", &self.offline)
            .finish()
    }
}

impl HubSettings {
    /// [`from_vars`](Self::from_vars) over the process environment.
    pub fn from_env() -> Self {
        Self::from_vars(&|k| std::env::var(k).ok())
    }

    /// The hub variables, read through `get`, with hf-hub's own defaults and precedence for the
    /// cache folder (`HF_HUB_CACHE`, `$HF_HOME/hub`, `$XDG_CACHE_HOME/huggingface/hub`,
    /// `$HOME/.cache/huggingface/hub`).
    pub fn from_vars(get: &dyn Fn(&str) -> Option<String>) -> Self {
        let cache_dir = rigger_ports::hf_hub_cache(get)
            .unwrap_or_else(|| PathBuf::from("/tmp/.cache/huggingface/hub"));
        let get = |name: &str| rigger_ports::setting(get, name);
        Self {
            endpoint: get(HF_ENDPOINT_VAR),
            cache_dir,
            token: get(HF_TOKEN_VAR),
            offline: get(HF_HUB_OFFLINE_VAR).is_some_and(|v| {
                matches!(v.to_ascii_lowercase().as_str(), "1" | "true" | "yes" | "on")
            }),
        }
    }

    fn client(&self) -> Result<HFClient, InferenceError> {
        let mut builder = HFClient::builder()
            .cache_dir(&self.cache_dir)
            // Fewer attempts than hf-hub's five: an unreachable hub is reported in seconds.
            .retry_max_attempts(2);
        if let Some(endpoint) = &self.endpoint {
            builder = builder.endpoint(endpoint.trim_end_matches('/'));
        }
        if let Some(token) = &self.token {
            builder = builder.token(token);
        }
        builder.build().map_err(|e| {
            InferenceError::new(
                ErrorKind::InvalidRequest,
                BACKEND,
                format!("cannot set up the hub client: {e}"),
            )
            .with_hint("check HF_ENDPOINT (a URL such as http://127.0.0.1:8080)")
        })
    }
}

/// What a download reports, in order for each file: `Cached` (nothing to fetch), or
/// `Started`, `Progress`…, then `Finished` (or `Retrying` and `Started` again).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DownloadEvent {
    /// The file is in the cache already.
    Cached { repo: String, file: String },
    /// A transfer begins (`total` bytes; 0 when the hub did not say).
    Started {
        repo: String,
        file: String,
        total: u64,
    },
    /// Bytes received so far.
    Progress {
        repo: String,
        file: String,
        done: u64,
        total: u64,
    },
    /// A transfer broke off; it starts over (`attempt` of the allowed attempts).
    Retrying {
        repo: String,
        file: String,
        attempt: usize,
        error: String,
    },
    /// The file is complete in the cache (and its sha256 checked where the hub gives one).
    Finished {
        repo: String,
        file: String,
        bytes: u64,
    },
}

/// Receives [`DownloadEvent`]s (called on the downloading task: keep it quick).
pub type ProgressSink = Arc<dyn Fn(&DownloadEvent) + Send + Sync>;

/// A sink that drops every event.
pub fn no_progress() -> ProgressSink {
    Arc::new(|_| {})
}

/// Progress on stderr: an indicatif bar (bytes, rate, ETA) when stderr is a terminal, otherwise
/// a plain line at most every two seconds and at the end, so logs stay readable.
pub fn stderr_progress() -> ProgressSink {
    use std::io::IsTerminal;
    if std::io::stderr().is_terminal() {
        let bar: Mutex<Option<indicatif::ProgressBar>> = Mutex::new(None);
        Arc::new(move |event| {
            let mut bar = bar.lock().unwrap_or_else(PoisonError::into_inner);
            match event {
                DownloadEvent::Started { repo, file, total } => {
                    let style = indicatif::ProgressStyle::with_template(
                        "{msg}\n{wide_bar} {bytes}/{total_bytes} {bytes_per_sec} ETA {eta}",
                    )
                    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar());
                    let b = indicatif::ProgressBar::new(*total).with_style(style);
                    b.set_message(format!("downloading {repo} {file}"));
                    *bar = Some(b);
                }
                DownloadEvent::Progress { done, .. } => {
                    if let Some(b) = bar.as_ref() {
                        b.set_position(*done);
                    }
                }
                DownloadEvent::Retrying { error, .. } => {
                    if let Some(b) = bar.take() {
                        b.abandon_with_message(format!("transfer broke off ({error}); retrying"));
                    }
                }
                DownloadEvent::Finished { .. } => {
                    if let Some(b) = bar.take() {
                        b.finish();
                    }
                }
                DownloadEvent::Cached { .. } => {}
            }
        })
    } else {
        let last: Mutex<Option<(Instant, Instant)>> = Mutex::new(None);
        Arc::new(move |event| {
            let mut last = last.lock().unwrap_or_else(PoisonError::into_inner);
            match event {
                DownloadEvent::Started { repo, file, total } => {
                    *last = Some((Instant::now(), Instant::now()));
                    eprintln!("downloading {repo} {file} ({})", human_bytes(*total));
                }
                DownloadEvent::Progress {
                    repo,
                    file,
                    done,
                    total,
                } => {
                    let Some((started, printed)) = last.as_mut() else {
                        return;
                    };
                    if printed.elapsed() < Duration::from_secs(2) {
                        return;
                    }
                    *printed = Instant::now();
                    eprintln!(
                        "downloading {repo} {file}: {}",
                        progress_text(*done, *total, started.elapsed())
                    );
                }
                DownloadEvent::Retrying {
                    repo,
                    file,
                    attempt,
                    error,
                } => eprintln!(
                    "downloading {repo} {file}: the transfer broke off ({error}); starting over (attempt {attempt} of {TRANSFER_ATTEMPTS})"
                ),
                DownloadEvent::Finished { repo, file, bytes } => {
                    let took = last.take().map(|(s, _)| s.elapsed()).unwrap_or_default();
                    eprintln!(
                        "downloaded {repo} {file}: {} in {:.1} s",
                        human_bytes(*bytes),
                        took.as_secs_f64()
                    );
                }
                DownloadEvent::Cached { .. } => {}
            }
        })
    }
}

fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["B", "KB", "MB", "GB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1000.0 && unit + 1 < UNITS.len() {
        value /= 1000.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

fn progress_text(done: u64, total: u64, elapsed: Duration) -> String {
    let rate = done as f64 / elapsed.as_secs_f64().max(1e-3);
    let mut text = format!("{} / {}", human_bytes(done), human_bytes(total));
    if let Some(percent) = (done * 100).checked_div(total) {
        text.push_str(&format!(" ({percent}%)"));
    }
    text.push_str(&format!(", {}/s", human_bytes(rate as u64)));
    if total > done && rate > 0.0 {
        text.push_str(&format!(", ETA {:.0} s", (total - done) as f64 / rate));
    }
    text
}

/// Forwards hf-hub's per-chunk events for one file as [`DownloadEvent`]s.
struct Forward {
    repo: String,
    file: String,
    sink: ProgressSink,
}

impl ProgressHandler for Forward {
    fn on_progress(&self, event: &ProgressEvent) {
        let ProgressEvent::Download(event) = event else {
            return;
        };
        match event {
            hf_hub::progress::DownloadEvent::Start { total_bytes, .. } => {
                (self.sink)(&DownloadEvent::Started {
                    repo: self.repo.clone(),
                    file: self.file.clone(),
                    total: *total_bytes,
                })
            }
            hf_hub::progress::DownloadEvent::Progress { files } => {
                for f in files.iter().filter(|f| f.status == FileStatus::InProgress) {
                    (self.sink)(&DownloadEvent::Progress {
                        repo: self.repo.clone(),
                        file: self.file.clone(),
                        done: f.bytes_completed,
                        total: f.total_bytes,
                    });
                }
            }
            hf_hub::progress::DownloadEvent::AggregateProgress {
                bytes_completed,
                total_bytes,
                ..
            } => (self.sink)(&DownloadEvent::Progress {
                repo: self.repo.clone(),
                file: self.file.clone(),
                done: *bytes_completed,
                total: *total_bytes,
            }),
            hf_hub::progress::DownloadEvent::Complete => {}
        }
    }
}

/// One hub repo as the resolver sees it.
pub(crate) struct Repo<'a> {
    pub(crate) settings: &'a HubSettings,
    pub(crate) id: String,
    /// The model as the user wrote it, for messages.
    pub(crate) model: &'a str,
    client: HFClient,
    handle: HFRepository<RepoTypeModel>,
    sink: ProgressSink,
}

impl<'a> Repo<'a> {
    pub(crate) fn new(
        settings: &'a HubSettings,
        model: &'a str,
        owner: &str,
        name: &str,
        sink: ProgressSink,
    ) -> Result<Self, InferenceError> {
        let client = settings.client()?;
        let handle = client.model(owner, name);
        Ok(Self {
            settings,
            id: format!("{owner}/{name}"),
            model,
            client,
            handle,
            sink,
        })
    }

    pub(crate) fn cached_files(&self) -> Vec<String> {
        cached_files(self.settings, &self.id)
    }

    /// The repo's file list from the hub (`/api/models/{repo}`, its `siblings`).
    pub(crate) async fn listing(&self) -> Result<Vec<String>, InferenceError> {
        if self.settings.offline {
            return Err(self.not_cached("the model", true, None));
        }
        let info = self
            .handle
            .info()
            .send()
            .await
            .map_err(|e| self.hub_error("the model", e))?;
        let mut files: Vec<String> = info
            .siblings
            .unwrap_or_default()
            .into_iter()
            .map(|s| s.rfilename)
            .collect();
        files.sort();
        Ok(files)
    }

    /// `file` from the cache, or downloaded into it (with progress, retried when a transfer
    /// breaks off, and checked against its sha256).
    pub(crate) async fn fetch(&self, file: &str) -> Result<PathBuf, InferenceError> {
        if let Some(path) = cached(self.settings, &self.id, file) {
            (self.sink)(&DownloadEvent::Cached {
                repo: self.id.clone(),
                file: file.to_owned(),
            });
            return Ok(path);
        }
        if self.settings.offline {
            return Err(self.not_cached(file, true, None));
        }
        let mut attempt = 1;
        loop {
            let forward = Forward {
                repo: self.id.clone(),
                file: file.to_owned(),
                sink: Arc::clone(&self.sink),
            };
            let result = self
                .handle
                .download_file()
                .filename(file)
                .progress(forward)
                .send()
                .await;
            match result {
                Ok(path) => {
                    let bytes = self.verify(file, &path).await?;
                    (self.sink)(&DownloadEvent::Finished {
                        repo: self.id.clone(),
                        file: file.to_owned(),
                        bytes,
                    });
                    return Ok(path);
                }
                Err(e) if broke_off(&e) && attempt < TRANSFER_ATTEMPTS => {
                    attempt += 1;
                    (self.sink)(&DownloadEvent::Retrying {
                        repo: self.id.clone(),
                        file: file.to_owned(),
                        attempt,
                        error: e.to_string(),
                    });
                }
                Err(e) => return Err(self.hub_error(file, e)),
            }
        }
    }

    /// Checks a fresh download against its etag when the etag is a sha256 (LFS files: model
    /// weights); on a mismatch removes the blob and its snapshot link. Returns the size.
    async fn verify(&self, file: &str, path: &Path) -> Result<u64, InferenceError> {
        let path = path.to_path_buf();
        let blob = std::fs::canonicalize(&path).map_err(|e| io_error(&path, e))?;
        let expected = blob
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let size = std::fs::metadata(&blob)
            .map_err(|e| io_error(&blob, e))?
            .len();
        if !is_sha256(&expected) {
            // A git file (its etag is the git blob id, not a content hash): nothing to check.
            return Ok(size);
        }
        let hashed = blob.clone();
        let actual = tokio::task::spawn_blocking(move || sha256_file(&hashed))
            .await
            .map_err(|e| InferenceError::internal(BACKEND, format!("hashing panicked: {e}")))?
            .map_err(|e| io_error(&blob, e))?;
        if actual == expected {
            return Ok(size);
        }
        let _ = std::fs::remove_file(&path);
        let _ = std::fs::remove_file(&blob);
        Err(InferenceError::new(
            ErrorKind::ModelLoadFailed,
            BACKEND,
            format!(
                "{} {file}: the downloaded content does not match the hub's checksum (sha256 {actual}, expected {expected}); the download was removed from the cache",
                self.id
            ),
        )
        .with_code("HUB_CHECKSUM_MISMATCH")
        .with_hint(format!(
            "download it again (rigger pull {}); if it keeps failing, the hub or a proxy is serving a broken file",
            self.model
        ))
        .with_retryable(true))
    }

    /// Not in the cache, and the hub cannot be asked (offline, or unreachable).
    fn not_cached(&self, what: &str, offline: bool, cause: Option<HFError>) -> InferenceError {
        let why = if offline {
            "HF_HUB_OFFLINE is set".to_owned()
        } else {
            match &cause {
                Some(e) => format!("the hub is unreachable ({e})"),
                None => "the hub is unreachable".to_owned(),
            }
        };
        let mut err = InferenceError::new(
            ErrorKind::NotAvailable,
            BACKEND,
            format!(
                "{}: {what} is not in the hub cache ({}) and {why}",
                self.id,
                self.settings.cache_dir.display()
            ),
        )
        .with_code(if offline { "HUB_OFFLINE" } else { "HUB_UNREACHABLE" })
        .with_hint(format!(
            "download it while online with `rigger pull {}`, or set CANDLE_MODEL=/path/to/file.gguf",
            self.model
        ));
        if let Some(cause) = cause {
            err = err.with_source(cause);
        }
        err
    }

    fn hub_error(&self, what: &str, e: HFError) -> InferenceError {
        let endpoint = self.client.endpoint().to_owned();
        match &e {
            HFError::LocalEntryNotFound { .. } => self.not_cached(what, true, Some(e)),
            HFError::Request { source, .. } if source.is_connect() || source.is_timeout() => {
                self.not_cached(what, false, Some(e))
            }
            HFError::Http { context } if context.status.is_server_error() => {
                self.not_cached(what, false, Some(e))
            }
            HFError::RepoNotFound { .. } | HFError::RevisionNotFound { .. } => {
                InferenceError::new(
                    ErrorKind::ModelNotFound,
                    BACKEND,
                    format!("{}: the hub ({endpoint}) has no repo {}", self.model, self.id),
                )
                .with_hint("check the id (owner/repo, or owner/repo:file.gguf); private and gated repos need HF_TOKEN")
                .with_source(e)
            }
            HFError::EntryNotFound { .. } => InferenceError::new(
                ErrorKind::ModelNotFound,
                BACKEND,
                format!("{}: {} has no file {what}", self.model, self.id),
            )
            .with_hint("check the file name against the repo's files, or name only owner/repo to pick its Q4_K_M GGUF")
            .with_source(e),
            HFError::AuthRequired { .. } | HFError::Forbidden { .. } => InferenceError::new(
                ErrorKind::Unauthorized,
                BACKEND,
                format!("{}: the hub refused access to {} ({e})", self.model, self.id),
            )
            .with_hint("the repo is gated or private: accept its terms on the hub and set HF_TOKEN"),
            HFError::RateLimited { retry_after, .. } => {
                let mut err = InferenceError::new(
                    ErrorKind::RateLimited,
                    BACKEND,
                    format!("the hub is rate limiting downloads of {} ({e})", self.id),
                );
                if let Some(after) = retry_after {
                    err = err.with_retry_after(*after);
                }
                err.with_hint("wait and try again, or set HF_TOKEN (logged-in limits are higher)")
            }
            HFError::Io(_) | HFError::CacheLockTimeout { .. } => InferenceError::new(
                ErrorKind::Io,
                BACKEND,
                format!(
                    "{} {what}: cannot write the hub cache {} ({e})",
                    self.id,
                    self.settings.cache_dir.display()
                ),
            )
            .with_hint("check the free space and permissions of HF_HOME (or HF_HUB_CACHE)"),
            _ => InferenceError::new(
                ErrorKind::NotAvailable,
                BACKEND,
                format!("{} {what}: the download failed ({e})", self.id),
            )
            .with_hint(format!(
                "try again (rigger pull {}), or set CANDLE_MODEL=/path/to/file.gguf",
                self.model
            ))
            .with_source(e),
        }
    }
}

/// The repo's folder in the cache (`models--owner--name`).
fn cache_folder(settings: &HubSettings, id: &str) -> PathBuf {
    settings
        .cache_dir
        .join(format!("models--{}", id.replace('/', "--")))
}

/// The files of `id`'s cached `main` snapshot (relative paths), empty when none is cached.
/// Reads the cache only (no client, no network).
pub(crate) fn cached_files(settings: &HubSettings, id: &str) -> Vec<String> {
    let folder = cache_folder(settings, id);
    let Ok(commit) = std::fs::read_to_string(folder.join("refs").join("main")) else {
        return Vec::new();
    };
    let root = folder.join("snapshots").join(commit.trim());
    let mut files = Vec::new();
    let mut stack = vec![root.clone()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.is_file() {
                // `is_file` follows the link: a dangling pointer is not a cached file.
                if let Ok(rel) = path.strip_prefix(&root) {
                    files.push(rel.to_string_lossy().replace('\\', "/"));
                }
            }
        }
    }
    files.sort();
    files
}

/// The cached path of `file` in `id`'s `main` snapshot, if it is there.
pub(crate) fn cached(settings: &HubSettings, id: &str, file: &str) -> Option<PathBuf> {
    let folder = cache_folder(settings, id);
    let commit = std::fs::read_to_string(folder.join("refs").join("main")).ok()?;
    let path = folder.join("snapshots").join(commit.trim()).join(file);
    path.is_file().then_some(path)
}

/// A transfer that started and broke off (the body ended early), as opposed to a refusal.
fn broke_off(e: &HFError) -> bool {
    match e {
        HFError::Request { source, .. } => {
            source.is_body() || source.is_decode() || (source.is_request() && !source.is_connect())
        }
        _ => false,
    }
}

fn is_sha256(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

fn sha256_file(path: &Path) -> std::io::Result<String> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

fn io_error(path: &Path, e: std::io::Error) -> InferenceError {
    InferenceError::new(
        ErrorKind::Io,
        BACKEND,
        format!("cannot read {}: {e}", path.display()),
    )
}

/// The GGUF file of `files` for `quant` (case-insensitive, as a whole name part: `-Q4_K_M.gguf`,
/// `.q4_k_m.gguf`). Prefers a single file; a model split into parts
/// (`…-00001-of-00003.gguf`) is refused, since Candle reads one file. No match is an error
/// listing the GGUF files the repo has.
pub(crate) fn pick_gguf(
    model: &str,
    files: &[String],
    quant: &str,
) -> Result<String, InferenceError> {
    let ggufs: Vec<&String> = files
        .iter()
        .filter(|f| f.to_ascii_lowercase().ends_with(".gguf"))
        .collect();
    let wanted = quant.to_ascii_lowercase();
    let matches: Vec<&String> = ggufs
        .iter()
        .copied()
        .filter(|f| {
            let lower = f.to_ascii_lowercase();
            let stem = lower.trim_end_matches(".gguf");
            ends_with_part(strip_split_suffix(stem).unwrap_or(stem), &wanted)
        })
        .collect();
    if let Some(single) = matches.iter().find(|f| {
        let lower = f.to_ascii_lowercase();
        strip_split_suffix(lower.trim_end_matches(".gguf")).is_none()
    }) {
        return Ok((*single).clone());
    }
    if !matches.is_empty() {
        let parts: Vec<&str> = matches.iter().map(|s| s.as_str()).collect();
        return Err(InferenceError::unsupported(
            BACKEND,
            format!(
                "{model}: the {quant} GGUF is split into {} files ({}); Candle loads one file",
                parts.len(),
                parts.join(", ")
            ),
        )
        .with_hint(
            "merge the parts with llama.cpp's `llama-gguf-split --merge` and set CANDLE_MODEL to the merged file, or name another quantization (owner/repo:Q8_0)",
        ));
    }
    let listed: Vec<&str> = ggufs.iter().map(|s| s.as_str()).collect();
    let has = if listed.is_empty() {
        "no GGUF files at all".to_owned()
    } else {
        format!("these GGUF files: {}", listed.join(", "))
    };
    Err(InferenceError::new(
        ErrorKind::ModelNotFound,
        BACKEND,
        format!("{model}: the repo has no {quant} GGUF file; it has {has}"),
    )
    .with_hint("name one of them (owner/repo:file.gguf) or its quantization (owner/repo:Q8_0)"))
}

/// `stem` (lower case, no `.gguf`) ends with `part` as a whole name part (after `-`, `.` or
/// `/`; not `_`, which quantization names contain).
fn ends_with_part(stem: &str, part: &str) -> bool {
    stem.strip_suffix(part)
        .is_some_and(|before| before.is_empty() || before.ends_with(['-', '.', '/']))
}

/// `name-00001-of-00003` → `name`; `None` when the name is not a split part.
fn strip_split_suffix(stem: &str) -> Option<&str> {
    let (head, total) = stem.rsplit_once("-of-")?;
    let (name, index) = head.rsplit_once('-')?;
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    (digits(index) && digits(total)).then_some(name)
}

/// One cached hub repo, for `rigger models`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CachedRepo {
    /// `owner/name`.
    pub repo: String,
    /// Files of its cached revisions (relative paths) with their sizes in bytes.
    pub files: Vec<(String, u64)>,
}

/// The models in the hub cache (hf-hub's `scan_cache`), without touching the network.
pub async fn cached_repos(settings: &HubSettings) -> Result<Vec<CachedRepo>, InferenceError> {
    let client = settings.client()?;
    let info = client.scan_cache().send().await.map_err(|e| {
        InferenceError::new(
            ErrorKind::Io,
            BACKEND,
            format!(
                "cannot read the hub cache {}: {e}",
                settings.cache_dir.display()
            ),
        )
    })?;
    let mut repos: Vec<CachedRepo> = info
        .repos
        .into_iter()
        .filter(|r| r.repo_type == "model")
        .map(|r| {
            let mut files: Vec<(String, u64)> = r
                .revisions
                .iter()
                .flat_map(|rev| rev.files.iter())
                .map(|f| (f.file_name.clone(), f.size_on_disk))
                .collect();
            files.sort();
            files.dedup();
            CachedRepo {
                repo: r.repo_id,
                files,
            }
        })
        .collect();
    repos.sort_by(|a, b| a.repo.cmp(&b.repo));
    Ok(repos)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn the_q4_k_m_file_is_picked_by_its_name_part() {
        let files = names(&[
            "README.md",
            "qwen2.5-1.5b-instruct-q4_0.gguf",
            "qwen2.5-1.5b-instruct-q4_k_m.gguf",
            "qwen2.5-1.5b-instruct-q8_0.gguf",
        ]);
        assert_eq!(
            pick_gguf("m", &files, DEFAULT_QUANT).unwrap(),
            "qwen2.5-1.5b-instruct-q4_k_m.gguf"
        );
        assert_eq!(
            pick_gguf("m", &files, "Q8_0").unwrap(),
            "qwen2.5-1.5b-instruct-q8_0.gguf"
        );
        // `Q4_K` must not match `Q4_K_M`, nor `K_M` a longer name.
        assert!(pick_gguf("m", &files, "Q4_K").is_err());
        assert!(pick_gguf("m", &files, "K_M").is_err());
        let upper = names(&["Llama-3.2-1B-Instruct.Q4_K_M.gguf"]);
        assert_eq!(
            pick_gguf("m", &upper, "q4_k_m").unwrap(),
            "Llama-3.2-1B-Instruct.Q4_K_M.gguf"
        );
    }

    #[test]
    fn split_files_are_refused_unless_a_single_file_exists() {
        let split = names(&[
            "m-q4_k_m-00001-of-00002.gguf",
            "m-q4_k_m-00002-of-00002.gguf",
            "m-q8_0.gguf",
        ]);
        let err = pick_gguf("o/r", &split, DEFAULT_QUANT).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Unsupported);
        assert!(err.to_string().contains("split into 2 files"), "{err}");
        assert!(
            err.hint().is_some_and(|h| h.contains("gguf-split")),
            "{err}"
        );
        let both = names(&["m-q4_k_m-00001-of-00002.gguf", "m-q4_k_m.gguf"]);
        assert_eq!(
            pick_gguf("o/r", &both, DEFAULT_QUANT).unwrap(),
            "m-q4_k_m.gguf"
        );
    }

    #[test]
    fn no_match_lists_what_the_repo_has() {
        let err = pick_gguf(
            "o/r",
            &names(&["a-q8_0.gguf", "a-f16.gguf", "x.txt"]),
            DEFAULT_QUANT,
        )
        .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::ModelNotFound);
        let text = err.to_string();
        assert!(
            text.contains("a-q8_0.gguf, a-f16.gguf") && !text.contains("x.txt"),
            "{text}"
        );
    }

    #[test]
    fn settings_follow_hf_hub_precedence() {
        let vars = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                pairs
                    .iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| v.to_string())
            }
        };
        let s = HubSettings::from_vars(&vars(&[("HOME", "/h")]));
        assert_eq!(s.cache_dir, PathBuf::from("/h/.cache/huggingface/hub"));
        assert!(!s.offline && s.endpoint.is_none() && s.token.is_none());
        let s = HubSettings::from_vars(&vars(&[
            ("HOME", "/h"),
            ("HF_HOME", "/hf"),
            ("HF_HUB_OFFLINE", "1"),
            ("HF_TOKEN", "hf_secret"),
        ]));
        assert_eq!(s.cache_dir, PathBuf::from("/hf/hub"));
        assert!(s.offline);
        assert!(!format!("{s:?}").contains("hf_secret"));
        let s = HubSettings::from_vars(&vars(&[("HF_HOME", "/hf"), ("HF_HUB_CACHE", "/c")]));
        assert_eq!(s.cache_dir, PathBuf::from("/c"));
    }
}
