//! Model management on an Ollama server: list, loaded, show, pull, and create from a local GGUF
//! file, with typed results and progress streams.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;
use reqwest::{Method, Response, StatusCode};
use rigger_http_support::{ErrorResponse, ndjson_lines, send_with_retries};
use rigger_ports::{ErrorKind, InferenceError};
use sha2::{Digest, Sha256};

use crate::client::OllamaClient;
use crate::errors::{error_from_message, error_from_response, idle_timeout_error, unparseable};
use crate::{BACKEND, wire};

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

impl OllamaClient {
    /// `GET /api/tags`: the models the server has.
    pub async fn list_models(&self) -> Result<Vec<ModelSummary>, InferenceError> {
        let tags: wire::TagsResponse = self
            .get_json(
                "/api/tags",
                &self.config().retry,
                self.config().request_timeout,
            )
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
            .get_json(
                "/api/ps",
                &self.config().retry,
                self.config().request_timeout,
            )
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
            .send(&self.config().retry, Some(model), || {
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
            .map_err(|e| InferenceError::internal(BACKEND, format!("hashing panicked: {e}")))?
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
            &self.config().retry,
            || {
                self.request(Method::HEAD, &blob)
                    .timeout(self.config().request_timeout)
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
            .send(&self.config().retry, None, || {
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
        let idle = self.config().idle_timeout;
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
