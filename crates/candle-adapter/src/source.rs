//! Where a model's files are: a local path, or a Hugging Face hub id resolved through `hf-hub`
//! and its cache (`HF_HOME` / `HF_HUB_CACHE`; `HF_HUB_OFFLINE=1` means cache only; see
//! [`crate::hub`]).

use std::path::{Path, PathBuf};

use rigger_ports::{ErrorKind, InferenceError};

use crate::BACKEND;
use crate::hub::{self, DEFAULT_QUANT, HubSettings, ProgressSink, Repo};

/// The files one model needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelFiles {
    Gguf {
        weights: PathBuf,
        /// A `tokenizer.json` (configured, or beside the model): used only where the GGUF has
        /// no tokenizer in its metadata, or when configured explicitly.
        tokenizer: Option<PathBuf>,
        /// `tokenizer_config.json` beside the model, when there is one (chat template, tokens).
        tokenizer_config: Option<PathBuf>,
    },
    Safetensors {
        weights: Vec<PathBuf>,
        config: PathBuf,
        tokenizer: PathBuf,
        tokenizer_config: Option<PathBuf>,
    },
}

impl ModelFiles {
    /// The file that identifies the loaded weights (for the shared-model cache).
    pub fn key(&self) -> &Path {
        match self {
            ModelFiles::Gguf { weights, .. } => weights,
            ModelFiles::Safetensors { config, .. } => config,
        }
    }

    /// The `tokenizer.json` found or configured, if any.
    pub fn tokenizer(&self) -> Option<&Path> {
        match self {
            ModelFiles::Gguf { tokenizer, .. } => tokenizer.as_deref(),
            ModelFiles::Safetensors { tokenizer, .. } => Some(tokenizer),
        }
    }
}

fn not_found(model: &str, why: impl Into<String>, fix: impl Into<String>) -> InferenceError {
    InferenceError::new(
        ErrorKind::ModelNotFound,
        BACKEND,
        format!("model {model:?} not found: {}", why.into()),
    )
    .with_hint(fix)
}

/// Where a model comes from. The one rule for "local path or hub id": the adapter resolves
/// models by it and the factory's doctor reports by it, so the two cannot disagree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelSource {
    /// An existing file or folder.
    Local(PathBuf),
    /// A hub repo (`owner/repo`, `owner/repo:file.gguf`, `owner/repo:Q8_0`), resolved through
    /// the hub cache.
    Hub {
        owner: String,
        repo: String,
        file: HubFile,
    },
}

/// Which file of a hub repo.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HubFile {
    /// `owner/repo`: the repo's Q4_K_M GGUF, or its safetensors when it has no GGUF.
    Auto,
    /// `owner/repo:file.gguf`.
    Named(String),
    /// `owner/repo:Q8_0`: the GGUF of that quantization (llama.cpp's `-hf repo:quant`).
    Quant(String),
}

impl ModelSource {
    /// An existing path is local. Anything else must be a hub id; a value that looks like a
    /// path (absolute, starting with `.` or `~`, or naming a `.gguf`/`.safetensors` file
    /// without a `:`) but does not exist is a missing file, not a hub id. Errors are
    /// `ModelNotFound` with what to set instead. Touches the filesystem (one `stat`), never
    /// the network.
    pub fn parse(model: &str) -> Result<Self, InferenceError> {
        let path = Path::new(model);
        if path.exists() {
            return Ok(ModelSource::Local(path.to_path_buf()));
        }
        if looks_like_a_path(model) {
            return Err(not_found(
                model,
                "no such file or folder",
                "set CANDLE_MODEL to an existing .gguf file or model folder, or to a hub id (owner/repo or owner/repo:file.gguf)",
            ));
        }
        match parse_hub_id(model) {
            Some((owner, repo, file)) => Ok(ModelSource::Hub {
                owner: owner.to_owned(),
                repo: repo.to_owned(),
                file: match file {
                    None => HubFile::Auto,
                    Some(f) if f.to_ascii_lowercase().ends_with(".gguf") => {
                        HubFile::Named(f.to_owned())
                    }
                    Some(q) => HubFile::Quant(q.to_owned()),
                },
            }),
            None => Err(not_found(
                model,
                "no such file or folder, and not a hub id (owner/repo, owner/repo:file.gguf or owner/repo:Q4_K_M)",
                "set CANDLE_MODEL to a .gguf file, a folder with config.json + safetensors, or a hub id",
            )),
        }
    }
}

fn looks_like_a_path(model: &str) -> bool {
    let lower = model.to_ascii_lowercase();
    Path::new(model).is_absolute()
        || model.starts_with('.')
        || model.starts_with('~')
        || (!model.contains(':') && (lower.ends_with(".gguf") || lower.ends_with(".safetensors")))
}

/// Resolves `model` (see [`ModelSource::parse`]) to local files, downloading hub files into the
/// cache (progress goes to `progress`).
pub async fn resolve(
    model: &str,
    tokenizer: Option<&Path>,
    settings: &HubSettings,
    progress: ProgressSink,
) -> Result<ModelFiles, InferenceError> {
    match ModelSource::parse(model)? {
        ModelSource::Local(path) => resolve_local(model, &path, tokenizer),
        ModelSource::Hub { owner, repo, file } => {
            let repo = Repo::new(settings, model, &owner, &repo, progress)?;
            resolve_hub(&repo, &file, tokenizer).await
        }
    }
}

/// The cached weights of a hub `model` (no network): `Ok(Some(path))` when the file it names
/// (or would pick) is in the cache, `Ok(None)` when not, `Err` when `model` is not a hub id.
pub fn cached_weights(
    model: &str,
    settings: &HubSettings,
) -> Result<Option<PathBuf>, InferenceError> {
    let ModelSource::Hub { owner, repo, file } = ModelSource::parse(model)? else {
        return Err(InferenceError::invalid_request(
            BACKEND,
            format!("{model:?} is a local path, not a hub id"),
        ));
    };
    let id = format!("{owner}/{repo}");
    let files = hub::cached_files(settings, &id);
    Ok(match choose(model, &files, &file) {
        Ok(Choice::Gguf(name)) => hub::cached(settings, &id, &name),
        Ok(Choice::Safetensors) => hub::cached(settings, &id, "config.json"),
        Err(_) => None,
    })
}

/// What to load from a hub repo's files.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Choice {
    Gguf(String),
    Safetensors,
}

impl Choice {
    /// Whether the cache has what this choice loads (`files`: the cached snapshot).
    fn cached_in(&self, files: &[String]) -> bool {
        let has = |name: &str| files.iter().any(|f| f == name);
        match self {
            Choice::Gguf(name) => has(name),
            Choice::Safetensors => {
                has("config.json")
                    && (has("model.safetensors") || has("model.safetensors.index.json"))
            }
        }
    }
}

/// Picks the file(s) of a repo listing: a named GGUF, the GGUF of a quantization (Q4_K_M by
/// default), or safetensors when the repo has no GGUF.
fn choose(model: &str, files: &[String], file: &HubFile) -> Result<Choice, InferenceError> {
    let has_gguf = files
        .iter()
        .any(|f| f.to_ascii_lowercase().ends_with(".gguf"));
    match file {
        HubFile::Named(name) => Ok(Choice::Gguf(name.clone())),
        HubFile::Quant(quant) => hub::pick_gguf(model, files, quant).map(Choice::Gguf),
        HubFile::Auto if has_gguf => hub::pick_gguf(model, files, DEFAULT_QUANT).map(Choice::Gguf),
        HubFile::Auto
            if files.iter().any(|f| f == "config.json")
                && files.iter().any(|f| f.ends_with(".safetensors")) =>
        {
            Ok(Choice::Safetensors)
        }
        HubFile::Auto => {
            let shown: Vec<&str> = files.iter().take(20).map(String::as_str).collect();
            Err(not_found(
                model,
                format!(
                    "the repo has neither GGUF files nor config.json + safetensors (it has: {})",
                    if shown.is_empty() {
                        "nothing".to_owned()
                    } else {
                        shown.join(", ")
                    }
                ),
                "name a repo with GGUF files (owner/repo or owner/repo:file.gguf)",
            ))
        }
    }
}

fn parse_hub_id(model: &str) -> Option<(&str, &str, Option<&str>)> {
    let (repo_id, file) = match model.split_once(':') {
        Some((r, f)) if !f.is_empty() => (r, Some(f)),
        Some(_) => return None,
        None => (model, None),
    };
    if let Some(f) = file {
        // A file name, or a quantization tag (`Q4_K_M`, `q8_0`).
        let is_gguf = f.to_ascii_lowercase().ends_with(".gguf");
        let is_quant = f.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !is_gguf && !is_quant {
            return None;
        }
    }
    let (owner, repo) = repo_id.split_once('/')?;
    let valid = |s: &str| {
        !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    };
    (valid(owner) && valid(repo)).then_some((owner, repo, file))
}

fn existing(path: PathBuf) -> Option<PathBuf> {
    path.is_file().then_some(path)
}

pub(crate) fn resolve_local(
    model: &str,
    path: &Path,
    tokenizer: Option<&Path>,
) -> Result<ModelFiles, InferenceError> {
    let dir = if path.is_dir() {
        path
    } else {
        path.parent().unwrap_or(Path::new("."))
    };
    let tokenizer = match tokenizer {
        Some(t) if t.is_file() => Some(t.to_path_buf()),
        Some(t) => {
            return Err(not_found(
                model,
                format!("the tokenizer {} does not exist", t.display()),
                "point CANDLE_TOKENIZER at a tokenizer.json",
            ));
        }
        // A GGUF usually carries its tokenizer; whether it does is known once it is read.
        None => existing(dir.join("tokenizer.json")),
    };
    let needs_tokenizer = |tokenizer: Option<PathBuf>| {
        tokenizer.ok_or_else(|| {
            InferenceError::invalid_request(
                BACKEND,
                format!("{model:?} has no tokenizer.json in {}", dir.display()),
            )
            .with_hint("put the model's tokenizer.json beside it, or set CANDLE_TOKENIZER")
        })
    };
    let tokenizer_config = existing(dir.join("tokenizer_config.json"));
    let is_ext = |p: &Path, ext: &str| p.extension().is_some_and(|e| e.eq_ignore_ascii_case(ext));
    if path.is_file() {
        if is_ext(path, "gguf") {
            return Ok(ModelFiles::Gguf {
                weights: path.to_path_buf(),
                tokenizer,
                tokenizer_config,
            });
        }
        if is_ext(path, "safetensors") {
            let config = existing(dir.join("config.json")).ok_or_else(|| {
                not_found(
                    model,
                    "no config.json beside the safetensors",
                    "use the model's whole folder",
                )
            })?;
            return Ok(ModelFiles::Safetensors {
                weights: vec![path.to_path_buf()],
                config,
                tokenizer: needs_tokenizer(tokenizer)?,
                tokenizer_config,
            });
        }
        return Err(InferenceError::invalid_request(
            BACKEND,
            format!("{model:?} is neither a .gguf nor a .safetensors file"),
        ));
    }
    // A folder: safetensors (with config.json) wins; else exactly one GGUF file.
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| {
            InferenceError::new(
                ErrorKind::Io,
                BACKEND,
                format!("cannot read {}: {e}", dir.display()),
            )
        })?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    entries.sort();
    let safetensors: Vec<PathBuf> = entries
        .iter()
        .filter(|p| is_ext(p, "safetensors"))
        .cloned()
        .collect();
    if let (Some(config), false) = (existing(dir.join("config.json")), safetensors.is_empty()) {
        return Ok(ModelFiles::Safetensors {
            weights: safetensors,
            config,
            tokenizer: needs_tokenizer(tokenizer)?,
            tokenizer_config,
        });
    }
    let ggufs: Vec<&PathBuf> = entries.iter().filter(|p| is_ext(p, "gguf")).collect();
    match ggufs.as_slice() {
        [one] => Ok(ModelFiles::Gguf {
            weights: (*one).clone(),
            tokenizer,
            tokenizer_config,
        }),
        [] => Err(not_found(
            model,
            "the folder has neither config.json + *.safetensors nor a .gguf file",
            "point CANDLE_MODEL at a model folder or file",
        )),
        many => Err(InferenceError::invalid_request(
            BACKEND,
            format!(
                "{model:?} holds several GGUF files ({}); name one of them",
                many.iter()
                    .filter_map(|p| p.file_name())
                    .map(|n| n.to_string_lossy())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        )),
    }
}

async fn resolve_hub(
    repo: &Repo<'_>,
    file: &HubFile,
    tokenizer: Option<&Path>,
) -> Result<ModelFiles, InferenceError> {
    let model = repo.model;
    // The cache first: a model pulled once loads without the network.
    let cached = repo.cached_files();
    let (files, choice) = match choose(model, &cached, file) {
        Ok(choice) if choice.cached_in(&cached) => (cached, choice),
        _ => {
            let listing = repo.listing().await?;
            let choice = choose(model, &listing, file)?;
            (listing, choice)
        }
    };
    let listed = |name: &str| files.iter().any(|f| f == name);
    let optional = |name: &'static str| async move {
        match listed(name) {
            true => repo.fetch(name).await.map(Some),
            false => Ok(None),
        }
    };
    match choice {
        Choice::Gguf(name) => {
            let weights = repo.fetch(&name).await?;
            let tokenizer = match tokenizer {
                Some(t) => Some(t.to_path_buf()),
                None => optional("tokenizer.json").await?,
            };
            Ok(ModelFiles::Gguf {
                weights,
                tokenizer,
                tokenizer_config: optional("tokenizer_config.json").await?,
            })
        }
        Choice::Safetensors => {
            let config = repo.fetch("config.json").await?;
            let tokenizer_path = match tokenizer {
                Some(t) => t.to_path_buf(),
                None => repo.fetch("tokenizer.json").await?,
            };
            let tokenizer_config = optional("tokenizer_config.json").await?;
            let weights = if listed("model.safetensors") {
                vec![repo.fetch("model.safetensors").await?]
            } else {
                let index_path = repo.fetch("model.safetensors.index.json").await?;
                let index: serde_json::Value = std::fs::read(&index_path)
                    .ok()
                    .and_then(|b| serde_json::from_slice(&b).ok())
                    .ok_or_else(|| {
                        InferenceError::new(
                            ErrorKind::ModelLoadFailed,
                            BACKEND,
                            "model.safetensors.index.json is not valid JSON",
                        )
                    })?;
                let mut shards: Vec<String> = index["weight_map"]
                    .as_object()
                    .map(|m| {
                        m.values()
                            .filter_map(|v| v.as_str().map(String::from))
                            .collect()
                    })
                    .unwrap_or_default();
                shards.sort();
                shards.dedup();
                let mut paths = Vec::new();
                for shard in shards {
                    paths.push(repo.fetch(&shard).await?);
                }
                paths
            };
            Ok(ModelFiles::Safetensors {
                weights,
                config,
                tokenizer: tokenizer_path,
                tokenizer_config,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hub_ids_are_recognised() {
        assert_eq!(
            parse_hub_id("TheBloke/Llama-2-7B-GGUF:llama-2-7b.Q4_0.gguf"),
            Some(("TheBloke", "Llama-2-7B-GGUF", Some("llama-2-7b.Q4_0.gguf")))
        );
        assert_eq!(
            parse_hub_id("mlx-community/phi"),
            Some(("mlx-community", "phi", None))
        );
        assert_eq!(parse_hub_id("just-a-name"), None);
        assert_eq!(parse_hub_id("a/b:"), None);
        assert_eq!(parse_hub_id("a b/c"), None);
    }

    #[test]
    fn a_bare_name_is_neither_a_path_nor_a_hub_id() {
        // `CANDLE_MODEL=tinyllama`: the doctor used to call it usable, the adapter refused it.
        let err = ModelSource::parse("tinyllama").unwrap_err();
        assert_eq!(err.kind(), ErrorKind::ModelNotFound);
        assert!(err.to_string().contains("owner/repo"), "{err}");
        assert!(
            err.hint().is_some_and(|h| h.contains("CANDLE_MODEL")),
            "{err}"
        );
    }

    #[test]
    fn sources_are_local_paths_or_hub_ids() {
        let here = env!("CARGO_MANIFEST_DIR");
        assert_eq!(
            ModelSource::parse(here).unwrap(),
            ModelSource::Local(PathBuf::from(here))
        );
        assert_eq!(
            ModelSource::parse("TheBloke/Llama-2-7B-GGUF:llama-2-7b.Q4_0.gguf").unwrap(),
            ModelSource::Hub {
                owner: "TheBloke".into(),
                repo: "Llama-2-7B-GGUF".into(),
                file: HubFile::Named("llama-2-7b.Q4_0.gguf".into())
            }
        );
        assert_eq!(
            ModelSource::parse("Qwen/Qwen2.5-0.5B-Instruct-GGUF:q8_0").unwrap(),
            ModelSource::Hub {
                owner: "Qwen".into(),
                repo: "Qwen2.5-0.5B-Instruct-GGUF".into(),
                file: HubFile::Quant("q8_0".into())
            }
        );
        assert!(ModelSource::parse("a/b:not a file").is_err());
        for missing in ["models/tiny.gguf", "./tiny", "/no/such/folder"] {
            let err = ModelSource::parse(missing).unwrap_err();
            assert!(err.to_string().contains("no such file or folder"), "{err}");
        }
    }

    #[tokio::test]
    async fn a_hub_id_that_is_not_cached_fails_fast_and_clearly_offline() {
        let dir = std::env::temp_dir().join(format!("rigger-hub-offline-{}", std::process::id()));
        let settings = HubSettings::from_vars(&|k: &str| match k {
            "HF_HOME" => Some(dir.display().to_string()),
            "HF_HUB_OFFLINE" => Some("1".into()),
            _ => None,
        });
        let err = resolve(
            "rigger-tests/not-a-real-model",
            None,
            &settings,
            hub::no_progress(),
        )
        .await
        .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::NotAvailable);
        assert_eq!(err.code(), Some("HUB_OFFLINE"));
        let text = err.to_string();
        assert!(
            text.contains("rigger-tests/not-a-real-model")
                && text.contains("rigger pull")
                && text.contains("CANDLE_MODEL=/path/to/file.gguf"),
            "{text}"
        );
    }

    #[tokio::test]
    async fn a_missing_path_is_model_not_found_with_the_fix() {
        let settings = HubSettings::from_vars(&|_| None);
        let err = resolve(
            "/nonexistent/model.gguf",
            None,
            &settings,
            hub::no_progress(),
        )
        .await
        .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::ModelNotFound);
        assert!(err.hint().is_some_and(|h| h.contains("CANDLE_MODEL")));
    }
}
