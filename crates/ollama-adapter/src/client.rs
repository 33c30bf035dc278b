//! The HTTP side: one `reqwest` client per adapter, Ollama's error bodies mapped onto the port's
//! kinds, and the model-management endpoints with typed results.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;
use reqwest::{Method, RequestBuilder, Response, StatusCode};
use rigger_http_support::{
    ErrorResponse, RetryPolicy, kind_for_status, ndjson_lines, send_with_retries,
};
use rigger_ports::{ErrorKind, InferenceError};
use serde::Serialize;
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};

use crate::BACKEND;
use crate::config::{HOST_VAR, OllamaConfig};
use crate::wire;

/// Stable codes for scripts and docs.
pub mod codes {
    /// Nothing answers at the configured address.
    pub const OLLAMA_NOT_AVAILABLE: &str = "OLLAMA_NOT_AVAILABLE";
    /// The server does not have the model.
    pub const OLLAMA_MODEL_NOT_FOUND: &str = "OLLAMA_MODEL_NOT_FOUND";
    /// The server sent `{"error": …}`.
    pub const OLLAMA_ERROR: &str = "OLLAMA_ERROR";
}

/// The longest NDJSON line accepted (a generation line is tens of bytes; this bounds memory).
const MAX_LINE: usize = 1 << 20;

/// A model the server has (`/api/tags`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelSummary {
    pub name: String,
    pub size_bytes: u64,
    pub digest: String,
    /// As the server wrote it (RFC 3339).
    pub modified_at: Option<String>,
    pub details: ModelDetails,
}

/// A model loaded in memory now (`/api/ps`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunningModel {
    pub name: String,
    pub size_bytes: u64,
    /// How much of it sits in GPU memory.
    pub vram_bytes: u64,
    pub digest: String,
    /// When Ollama unloads it unless used again (RFC 3339).
    pub expires_at: Option<String>,
    pub details: ModelDetails,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ModelDetails {
    pub format: String,
    pub family: String,
    pub families: Vec<String>,
    pub parameter_size: String,
    pub quantization_level: String,
}

/// What `/api/show` says about a model.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelInfo {
    pub details: ModelDetails,
    /// `general.architecture`, e.g. `llama`.
    pub architecture: Option<String>,
    /// `<architecture>.context_length`: what the model was trained for.
    pub context_length: Option<u32>,
    /// The chat template (Go template syntax).
    pub template: String,
    /// The Modelfile's default system prompt, if any.
    pub system: String,
    /// The Modelfile's `PARAMETER` lines.
    pub parameters: String,
    /// Every `model_info` key (GGUF metadata).
    pub model_info: BTreeMap<String, serde_json::Value>,
}

/// One step of a pull or a create, for a progress bar: `completed` of `total` bytes where the
/// server (or the upload) says so.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Progress {
    pub status: String,
    pub digest: Option<String>,
    pub total: Option<u64>,
    pub completed: Option<u64>,
}

/// Pull or create progress; it ends after the server's `success`, or with an error.
pub type ProgressStream = BoxStream<'static, Result<Progress, InferenceError>>;

/// A client of one Ollama server. Cheap to clone.
#[derive(Clone)]
pub struct OllamaClient {
    http: reqwest::Client,
    base_url: Arc<str>,
    config: Arc<OllamaConfig>,
}

impl std::fmt::Debug for OllamaClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OllamaClient")
            .field("base_url", &self.base_url)
            .finish()
    }
}

impl OllamaClient {
    /// Builds the client; no network. An unusable base URL is an InvalidRequest.
    pub fn new(config: &OllamaConfig) -> Result<Self, InferenceError> {
        let base_url = config.base_url.trim_end_matches('/').to_owned();
        let parsed = reqwest::Url::parse(&base_url).map_err(|e| {
            InferenceError::invalid_request(
                BACKEND,
                format!("base URL {base_url:?} is not a URL: {e}"),
            )
            .with_hint(format!("set {HOST_VAR} to host:port, e.g. 127.0.0.1:11434"))
        })?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(InferenceError::invalid_request(
                BACKEND,
                format!("base URL {base_url:?} is not http or https"),
            )
            .with_hint(format!("set {HOST_VAR} to host:port, e.g. 127.0.0.1:11434")));
        }
        if config.model.trim().is_empty() {
            return Err(
                InferenceError::invalid_request(BACKEND, "the model name is empty").with_hint(
                    "set OLLAMA_MODEL to a model tag, e.g. llama3.2 (`ollama list` shows them)",
                ),
            );
        }
        let http = reqwest::Client::builder()
            .connect_timeout(config.connect_timeout)
            .build()
            .map_err(|e| {
                InferenceError::new(
                    ErrorKind::Internal,
                    BACKEND,
                    format!("cannot build the HTTP client: {e}"),
                )
            })?;
        Ok(Self {
            http,
            base_url: base_url.into(),
            config: Arc::new(config.clone()),
        })
    }

    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    pub(crate) fn config(&self) -> &OllamaConfig {
        &self.config
    }

    pub(crate) fn request(&self, method: Method, path: &str) -> RequestBuilder {
        let builder = self
            .http
            .request(method, format!("{}{path}", self.base_url));
        match &self.config.api_key {
            Some(key) => builder.bearer_auth(key.expose()),
            None => builder,
        }
    }

    /// Sends with the configured retries; an error status becomes an [`InferenceError`] in
    /// Ollama's terms (`model` names the model the call is about, for not-found errors).
    pub(crate) async fn send(
        &self,
        policy: &RetryPolicy,
        model: Option<&str>,
        build: impl Fn() -> RequestBuilder,
    ) -> Result<Response, InferenceError> {
        send_with_retries(BACKEND, policy, build, |response| {
            error_from_response(response, model)
        })
        .await
        .map_err(|e| self.explain_unavailable(e))
    }

    /// Adds where and how to start Ollama to a connection failure.
    pub(crate) fn explain_unavailable(&self, error: InferenceError) -> InferenceError {
        if error.kind() != ErrorKind::NotAvailable {
            return error;
        }
        let message = format!(
            "no Ollama server answers at {}: {}",
            self.base_url,
            error.message()
        );
        InferenceError::new(ErrorKind::NotAvailable, BACKEND, message)
            .with_code(codes::OLLAMA_NOT_AVAILABLE)
            .with_retryable(error.is_retryable())
            .with_hint(format!(
                "start it with `ollama serve` (or the Ollama app), or set {HOST_VAR} to where it listens"
            ))
            .with_source(error)
    }

    async fn get_json<T: DeserializeOwned>(
        &self,
        path: &str,
        policy: &RetryPolicy,
        timeout: Duration,
    ) -> Result<T, InferenceError> {
        let response = self
            .send(policy, None, || {
                self.request(Method::GET, path).timeout(timeout)
            })
            .await?;
        read_json(response, path).await
    }

    async fn post_json<T: DeserializeOwned>(
        &self,
        path: &str,
        body: &impl Serialize,
        model: Option<&str>,
    ) -> Result<T, InferenceError> {
        let timeout = self.config.request_timeout;
        let response = self
            .send(&self.config.retry, model, || {
                self.request(Method::POST, path).json(body).timeout(timeout)
            })
            .await?;
        read_json(response, path).await
    }

    /// `GET /api/version`: the server's version.
    pub async fn version(&self) -> Result<String, InferenceError> {
        let v: wire::VersionResponse = self
            .get_json(
                "/api/version",
                &self.config.retry,
                self.config.request_timeout,
            )
            .await?;
        Ok(v.version)
    }

    /// `GET /api/version` once, without retries, within `timeout`: the availability probe.
    pub async fn probe_version(&self, timeout: Duration) -> Result<String, InferenceError> {
        let once = RetryPolicy::none();
        let call = self.get_json::<wire::VersionResponse>("/api/version", &once, timeout);
        match tokio::time::timeout(timeout, call).await {
            Ok(v) => v.map(|v| v.version),
            Err(_) => Err(InferenceError::new(
                ErrorKind::NotAvailable,
                BACKEND,
                format!("no answer from {} within {timeout:?}", self.base_url),
            )
            .with_code(codes::OLLAMA_NOT_AVAILABLE)
            .with_hint(format!(
                "start it with `ollama serve`, or set {HOST_VAR} to where it listens"
            ))),
        }
    }

    /// `GET /api/tags`: the models the server has.
    pub async fn list_models(&self) -> Result<Vec<ModelSummary>, InferenceError> {
        let tags: wire::TagsResponse = self
            .get_json("/api/tags", &self.config.retry, self.config.request_timeout)
            .await?;
        Ok(tags
            .models
            .into_iter()
            .map(|m| ModelSummary {
                name: m.name,
                size_bytes: m.size,
                digest: m.digest,
                modified_at: m.modified_at,
                details: m.details.map(details).unwrap_or_default(),
            })
            .collect())
    }

    /// `GET /api/ps`: the models loaded in memory now.
    pub async fn running_models(&self) -> Result<Vec<RunningModel>, InferenceError> {
        let ps: wire::PsResponse = self
            .get_json("/api/ps", &self.config.retry, self.config.request_timeout)
            .await?;
        Ok(ps
            .models
            .into_iter()
            .map(|m| RunningModel {
                name: m.name,
                size_bytes: m.size,
                vram_bytes: m.size_vram,
                digest: m.digest,
                expires_at: m.expires_at,
                details: m.details.map(details).unwrap_or_default(),
            })
            .collect())
    }

    /// `POST /api/show`: details, template and GGUF metadata, including the context length.
    pub async fn show(&self, model: &str) -> Result<ModelInfo, InferenceError> {
        let show: wire::ShowResponse = self
            .post_json("/api/show", &wire::ModelRef { model }, Some(model))
            .await?;
        let architecture = show
            .model_info
            .get("general.architecture")
            .and_then(|v| v.as_str())
            .map(str::to_owned);
        let context_length = architecture
            .as_ref()
            .and_then(|arch| show.model_info.get(&format!("{arch}.context_length")))
            .and_then(serde_json::Value::as_u64)
            .map(|n| u32::try_from(n).unwrap_or(u32::MAX));
        Ok(ModelInfo {
            details: show.details.map(details).unwrap_or_default(),
            architecture,
            context_length,
            template: show.template,
            system: show.system,
            parameters: show.parameters,
            model_info: show.model_info,
        })
    }

    /// `POST /api/pull`, streamed: progress until `success`. Dropping the stream stops reading
    /// (Ollama keeps a cancelled pull's partial download and resumes it next time).
    pub async fn pull(&self, model: &str) -> Result<ProgressStream, InferenceError> {
        let body = wire::PullRequest {
            model,
            stream: true,
        };
        let response = self
            .send(&self.config.retry, Some(model), || {
                self.request(Method::POST, "/api/pull").json(&body)
            })
            .await?;
        Ok(self.progress_lines(response, model))
    }

    /// Makes `name` from a local GGUF file, as `ollama create` does: hashes the file, uploads it
    /// to `/api/blobs/sha256:…` unless the server has it, then `POST /api/create` with
    /// `files: {<file name>: <digest>}`. Progress covers hashing, the upload (bytes sent) and the
    /// server's own steps; the stream ends after the server's `success`.
    pub fn create_from_gguf(&self, name: &str, gguf: &Path) -> ProgressStream {
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Progress, InferenceError>>(64);
        let client = self.clone();
        let name = name.to_owned();
        let gguf = gguf.to_owned();
        let task = tokio::spawn(async move {
            let result = client.run_create(&name, &gguf, &tx).await;
            if let Err(e) = result {
                let _ = tx.send(Err(e)).await;
            }
        });
        let guard = AbortOnDrop(task);
        futures::stream::unfold((rx, guard), |(mut rx, guard)| async move {
            rx.recv().await.map(|item| (item, (rx, guard)))
        })
        .boxed()
    }

    async fn run_create(
        &self,
        name: &str,
        gguf: &Path,
        tx: &tokio::sync::mpsc::Sender<Result<Progress, InferenceError>>,
    ) -> Result<(), InferenceError> {
        let file_name = gguf
            .file_name()
            .and_then(|n| n.to_str())
            .filter(|n| !n.is_empty())
            .ok_or_else(|| {
                InferenceError::invalid_request(
                    BACKEND,
                    format!("{} does not name a file", gguf.display()),
                )
            })?
            .to_owned();
        let status = |s: String| Progress {
            status: s,
            digest: None,
            total: None,
            completed: None,
        };
        let _ = tx.send(Ok(status(format!("hashing {file_name}")))).await;
        let path = gguf.to_owned();
        let (size, digest) = tokio::task::spawn_blocking(move || sha256_file(&path))
            .await
            .map_err(|e| {
                InferenceError::new(
                    ErrorKind::Internal,
                    BACKEND,
                    format!("hashing panicked: {e}"),
                )
            })?
            .map_err(|e| {
                InferenceError::new(
                    ErrorKind::Io,
                    BACKEND,
                    format!("cannot read {}: {e}", gguf.display()),
                )
                .with_hint("check the path to the GGUF file")
            })?;
        let blob = format!("/api/blobs/{digest}");
        // HEAD answers 200 when the server has the blob and 404 when it does not (api.md,
        // "Check if a Blob Exists"); only other statuses are errors.
        let exists = send_with_retries(
            BACKEND,
            &self.config.retry,
            || {
                self.request(Method::HEAD, &blob)
                    .timeout(self.config.request_timeout)
            },
            |r| {
                if r.status == StatusCode::NOT_FOUND {
                    InferenceError::new(ErrorKind::ModelNotFound, BACKEND, "blob not on the server")
                } else {
                    error_from_response(r, None)
                }
            },
        )
        .await
        .map_err(|e| self.explain_unavailable(e));
        match exists {
            Ok(_) => {
                let found = Progress {
                    digest: Some(digest.clone()),
                    ..status("using existing blob".into())
                };
                let _ = tx.send(Ok(found)).await;
            }
            Err(e) if e.kind() == ErrorKind::ModelNotFound => {
                self.upload_blob(gguf, &blob, &digest, size, tx).await?;
            }
            Err(e) => return Err(e),
        }
        let body = wire::CreateRequest {
            model: name,
            files: BTreeMap::from([(file_name.as_str(), digest.clone())]),
            stream: true,
        };
        let response = self
            .send(&self.config.retry, None, || {
                self.request(Method::POST, "/api/create").json(&body)
            })
            .await?;
        let mut progress = self.progress_lines(response, name);
        while let Some(item) = progress.next().await {
            let failed = item.is_err();
            if tx.send(item).await.is_err() || failed {
                break;
            }
        }
        Ok(())
    }

    async fn upload_blob(
        &self,
        gguf: &Path,
        blob: &str,
        digest: &str,
        size: u64,
        tx: &tokio::sync::mpsc::Sender<Result<Progress, InferenceError>>,
    ) -> Result<(), InferenceError> {
        let (chunks_tx, chunks_rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(4);
        let path = gguf.to_owned();
        // Blocking reads on their own thread; the channel paces them to the upload.
        let reader = tokio::task::spawn_blocking(move || {
            use std::io::Read;
            let mut file = match std::fs::File::open(&path) {
                Ok(f) => f,
                Err(e) => {
                    let _ = chunks_tx.blocking_send(Err(e));
                    return;
                }
            };
            let mut buf = vec![0u8; 1 << 20];
            loop {
                match file.read(&mut buf) {
                    Ok(0) => return,
                    Ok(n) => {
                        if chunks_tx
                            .blocking_send(Ok(Bytes::copy_from_slice(&buf[..n])))
                            .is_err()
                        {
                            return;
                        }
                    }
                    Err(e) => {
                        let _ = chunks_tx.blocking_send(Err(e));
                        return;
                    }
                }
            }
        });
        let sent = Arc::new(AtomicU64::new(0));
        let counter = Arc::clone(&sent);
        let progress = tx.clone();
        let digest_owned = digest.to_owned();
        let body_stream = futures::stream::unfold(chunks_rx, |mut rx| async move {
            rx.recv().await.map(|chunk| (chunk, rx))
        })
        .then(move |chunk| {
            let counter = Arc::clone(&counter);
            let progress = progress.clone();
            let digest = digest_owned.clone();
            async move {
                if let Ok(bytes) = &chunk {
                    let done = counter.fetch_add(bytes.len() as u64, Ordering::Relaxed)
                        + bytes.len() as u64;
                    let _ = progress
                        .send(Ok(Progress {
                            status: "uploading".into(),
                            digest: Some(digest),
                            total: Some(size),
                            completed: Some(done),
                        }))
                        .await;
                }
                chunk
            }
        });
        // A streamed body cannot be replayed, so the upload is one attempt.
        let response = self
            .request(Method::POST, blob)
            .header(reqwest::header::CONTENT_LENGTH, size)
            .body(reqwest::Body::wrap_stream(body_stream))
            .send()
            .await;
        reader.abort();
        let response = match response {
            Ok(r) if r.status().is_success() => r,
            Ok(r) => {
                let status = r.status();
                let text = r.text().await.unwrap_or_default();
                return Err(error_from_response(
                    ErrorResponse {
                        status,
                        headers: Default::default(),
                        body: text,
                        retry_after: None,
                    },
                    None,
                ));
            }
            Err(e) => {
                return Err(
                    self.explain_unavailable(rigger_http_support::transport_error(BACKEND, &e))
                );
            }
        };
        drop(response);
        let uploaded = sent.load(Ordering::Relaxed);
        if uploaded != size {
            return Err(InferenceError::new(
                ErrorKind::Io,
                BACKEND,
                format!("uploaded {uploaded} of {size} bytes of {}", gguf.display()),
            ));
        }
        Ok(())
    }

    /// A progress body (pull or create) as typed events: an `{"error": …}` line is an error, and
    /// a stream that ends without `success` is one too.
    fn progress_lines(&self, response: Response, model: &str) -> ProgressStream {
        let idle = self.config.idle_timeout;
        let model = model.to_owned();
        let lines = ndjson_lines(BACKEND, response, MAX_LINE);
        futures::stream::unfold((lines, false), move |(mut lines, finished)| {
            let model = model.clone();
            async move {
                if finished {
                    return None;
                }
                let line = match tokio::time::timeout(idle, lines.next()).await {
                    Err(_) => {
                        return Some((Err(idle_timeout_error(idle, "progress")), (lines, true)));
                    }
                    Ok(None) => {
                        let e = InferenceError::new(
                            ErrorKind::Io,
                            BACKEND,
                            "the progress stream ended before the server said \"success\"",
                        );
                        return Some((Err(e), (lines, true)));
                    }
                    Ok(Some(Err(e))) => return Some((Err(e), (lines, true))),
                    Ok(Some(Ok(line))) => line,
                };
                let parsed: wire::ProgressLine = match serde_json::from_str(&line) {
                    Ok(p) => p,
                    Err(e) => return Some((Err(unparseable(&line, &e)), (lines, true))),
                };
                if let Some(message) = parsed.error {
                    return Some((
                        Err(error_from_message(&message, StatusCode::OK, Some(&model))),
                        (lines, true),
                    ));
                }
                let status = parsed.status.unwrap_or_default();
                let done = status == "success";
                let progress = Progress {
                    status,
                    digest: parsed.digest,
                    total: parsed.total,
                    completed: parsed.completed,
                };
                Some((Ok(progress), (lines, done)))
            }
        })
        .boxed()
    }
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn sha256_file(path: &Path) -> std::io::Result<(u64, String)> {
    use std::io::Read;
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut size = 0u64;
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        size += n as u64;
    }
    let hex: String = hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    Ok((size, format!("sha256:{hex}")))
}

fn details(d: wire::Details) -> ModelDetails {
    ModelDetails {
        format: d.format,
        family: d.family,
        families: d.families.unwrap_or_default(),
        parameter_size: d.parameter_size,
        quantization_level: d.quantization_level,
    }
}

async fn read_json<T: DeserializeOwned>(
    response: Response,
    path: &str,
) -> Result<T, InferenceError> {
    let bytes = response
        .bytes()
        .await
        .map_err(|e| rigger_http_support::transport_error(BACKEND, &e))?;
    serde_json::from_slice(&bytes).map_err(|e| {
        let preview: String = String::from_utf8_lossy(&bytes).chars().take(200).collect();
        InferenceError::protocol(
            BACKEND,
            format!("{path} answered with unexpected JSON ({e}): {preview}"),
        )
        .with_hint("check that OLLAMA_HOST points at an Ollama server")
    })
}

pub(crate) fn unparseable(line: &str, e: &serde_json::Error) -> InferenceError {
    let preview: String = line.chars().take(200).collect();
    InferenceError::protocol(
        BACKEND,
        format!("a streamed line is not Ollama's JSON ({e}): {preview}"),
    )
}

pub(crate) fn idle_timeout_error(idle: Duration, what: &str) -> InferenceError {
    InferenceError::new(
        ErrorKind::Timeout,
        BACKEND,
        format!("no {what} from Ollama for {idle:?}"),
    )
    .with_hint("raise OllamaConfig::idle_timeout, or check the server's load")
}

/// An HTTP error response in Ollama's terms. Ollama answers errors as `{"error": "…"}`.
pub(crate) fn error_from_response(response: ErrorResponse, model: Option<&str>) -> InferenceError {
    let message = serde_json::from_str::<wire::ErrorBody>(&response.body)
        .map(|b| b.error)
        .unwrap_or_else(|_| response.body.trim().to_owned());
    let mut error = error_from_message(&message, response.status, model);
    if let Some(after) = response.retry_after {
        error = error.with_retry_after(after);
    }
    error
}

/// Classifies one of Ollama's error messages; `status` is 200 for an error line inside a stream.
pub(crate) fn error_from_message(
    message: &str,
    status: StatusCode,
    model: Option<&str>,
) -> InferenceError {
    let lower = message.to_ascii_lowercase();
    let about_model =
        lower.contains("model") && (lower.contains("not found") || lower.contains("pull"));
    let kind = if about_model {
        ErrorKind::ModelNotFound
    } else if status == StatusCode::NOT_FOUND {
        // A 404 that is not about a model: the server lacks the endpoint ("404 page not found").
        ErrorKind::Unsupported
    } else if lower.contains("context")
        && (lower.contains("exceed") || lower.contains("too long") || lower.contains("length"))
    {
        ErrorKind::ContextLengthExceeded
    } else if lower.contains("memory")
        || lower.contains("unable to load")
        || lower.contains("failed to load")
    {
        ErrorKind::ModelLoadFailed
    } else if status == StatusCode::OK {
        // A failure after the stream began: the runner died or gave up.
        ErrorKind::BackendCrashed
    } else {
        kind_for_status(status)
    };
    let shown = if message.is_empty() {
        status.to_string()
    } else {
        message.to_owned()
    };
    let base = InferenceError::new(kind, BACKEND, format!("Ollama: {shown}"))
        .with_code(codes::OLLAMA_ERROR);
    match kind {
        ErrorKind::ModelNotFound => {
            let model = model.unwrap_or("<model>");
            InferenceError::new(kind, BACKEND, format!("model '{model}' not found: {shown}"))
                .with_code(codes::OLLAMA_MODEL_NOT_FOUND)
                .with_hint(format!(
                    "run `ollama pull {model}` (or `ollama list` to see the models the server has)"
                ))
        }
        ErrorKind::ContextLengthExceeded => base
            .with_retryable(false)
            .with_hint("shorten the prompt or lower max_tokens"),
        ErrorKind::ModelLoadFailed => {
            base.with_hint("check the server log; the model may need more memory than is free")
        }
        ErrorKind::BackendCrashed => base.with_hint(
            "see the Ollama server log (`journalctl -u ollama`, or ~/.ollama/logs/server.log)",
        ),
        ErrorKind::Unauthorized => {
            base.with_hint("set OLLAMA_API_KEY to a valid key for this server")
        }
        ErrorKind::RateLimited => {
            base.with_hint("the server is busy; retry later or lower the concurrency")
        }
        ErrorKind::InvalidRequest => {
            base.with_hint("the server refused the request; check the options sent")
        }
        ErrorKind::Unsupported => base.with_hint(
            "this Ollama lacks the endpoint; upgrade Ollama (https://ollama.com/download)",
        ),
        _ => base,
    }
}
