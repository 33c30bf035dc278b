//! `rigger.toml`: per-role provider, model, options and fallback chain, plus per-provider
//! settings. Unknown keys are errors (a typo must not be ignored), reported with the file, line
//! and key by the `toml` crate.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use rigger_ports::{ErrorKind, InferenceError};
use serde::Deserialize;

/// The whole file.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    /// The provider for roles that name none (like `TASK_ORCHESTRATOR_PROVIDER`).
    pub provider: Option<String>,
    /// A fallback chain for every role that has none of its own: `["ollama", "candle:/m.gguf"]`.
    #[serde(default)]
    pub fallback: Vec<String>,
    /// `"heuristic"`: when the Router's model fails, route by the complexity heuristic.
    pub router_on_failure: Option<String>,
    #[serde(default)]
    pub roles: BTreeMap<String, RoleConfig>,
    #[serde(default)]
    pub providers: ProvidersConfig,
}

/// `[roles.<router|decomposer|enhancer|tester>]`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoleConfig {
    pub provider: Option<String>,
    pub model: Option<String>,
    /// Links tried after the first, each `"provider"` or `"provider:model"`.
    pub fallback: Option<Vec<String>>,
    pub temperature: Option<f32>,
    pub max_tokens: Option<u32>,
    pub repair_attempts: Option<u32>,
}

/// `[providers.*]`: each key stands for the environment variable named beside it; the
/// environment wins. API keys are read from the environment only, never from this file.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProvidersConfig {
    pub mlx: Option<MlxSection>,
    pub ollama: Option<OllamaSection>,
    pub candle: Option<CandleSection>,
    pub openai: Option<OpenAiSection>,
    pub anthropic: Option<AnthropicSection>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MlxSection {
    /// `MLX_MODEL`
    pub model: Option<String>,
    /// `PYTHON_PATH`
    pub python: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OllamaSection {
    /// `OLLAMA_HOST`
    pub host: Option<String>,
    /// `OLLAMA_MODEL`
    pub model: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CandleSection {
    /// `CANDLE_MODEL`
    pub model: Option<String>,
    /// `CANDLE_TOKENIZER`
    pub tokenizer: Option<String>,
    /// `CANDLE_DEVICE`
    pub device: Option<String>,
    /// `CANDLE_THREADS`
    pub threads: Option<u32>,
    /// `CANDLE_KERNELS` (`auto` or `reference`)
    pub kernels: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpenAiSection {
    /// `OPENAI_BASE_URL`
    pub base_url: Option<String>,
    /// `OPENAI_MODEL`
    pub model: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnthropicSection {
    /// `ANTHROPIC_BASE_URL`
    pub base_url: Option<String>,
    /// `ANTHROPIC_MODEL`
    pub model: Option<String>,
}

/// A parsed config file and where it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadedConfig {
    pub path: PathBuf,
    pub file: ConfigFile,
}

impl ConfigFile {
    /// Parses `text`; `path` only names the file in errors.
    pub fn parse(path: &Path, text: &str) -> Result<Self, InferenceError> {
        let file: ConfigFile =
            toml::from_str(text).map_err(|e| config_error(path, &e.to_string()))?;
        for role in file.roles.keys() {
            if role.parse::<rigger_domain::ModelRole>().is_err() {
                return Err(config_error(
                    path,
                    &format!(
                        "unknown role [roles.{role}]; the roles are router, decomposer, enhancer, tester"
                    ),
                ));
            }
        }
        Ok(file)
    }

    /// The settings that stand for environment variables, as (variable, value) pairs.
    pub fn as_vars(&self) -> Vec<(&'static str, String)> {
        let p = &self.providers;
        let mut vars = Vec::new();
        let mut put = |name: &'static str, value: Option<String>| {
            if let Some(v) = value {
                vars.push((name, v));
            }
        };
        if let Some(s) = &p.mlx {
            put("MLX_MODEL", s.model.clone());
            put("PYTHON_PATH", s.python.clone());
        }
        if let Some(s) = &p.ollama {
            put("OLLAMA_HOST", s.host.clone());
            put("OLLAMA_MODEL", s.model.clone());
        }
        if let Some(s) = &p.candle {
            put("CANDLE_MODEL", s.model.clone());
            put("CANDLE_TOKENIZER", s.tokenizer.clone());
            put("CANDLE_DEVICE", s.device.clone());
            put("CANDLE_THREADS", s.threads.map(|t| t.to_string()));
            put("CANDLE_KERNELS", s.kernels.clone());
        }
        if let Some(s) = &p.openai {
            put("OPENAI_BASE_URL", s.base_url.clone());
            put("OPENAI_MODEL", s.model.clone());
        }
        if let Some(s) = &p.anthropic {
            put("ANTHROPIC_BASE_URL", s.base_url.clone());
            put("ANTHROPIC_MODEL", s.model.clone());
        }
        vars
    }
}

/// Reads the config file: `RIGGER_CONFIG` (must exist) or `rigger.toml` in the working directory
/// (optional).
pub fn load(explicit: Option<&str>) -> Result<Option<LoadedConfig>, InferenceError> {
    let (path, required) = match explicit.map(str::trim).filter(|p| !p.is_empty()) {
        Some(p) => (PathBuf::from(p), true),
        None => (PathBuf::from("rigger.toml"), false),
    };
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !required => return Ok(None),
        Err(e) => {
            return Err(config_error(&path, &format!("cannot read it: {e}"))
                .with_hint("fix RIGGER_CONFIG, or unset it to use ./rigger.toml"));
        }
    };
    Ok(Some(LoadedConfig {
        file: ConfigFile::parse(&path, &text)?,
        path,
    }))
}

pub(crate) fn config_error(path: &Path, problem: &str) -> InferenceError {
    InferenceError::new(
        ErrorKind::InvalidRequest,
        crate::BACKEND,
        format!("config file {}: {}", path.display(), problem.trim_end()),
    )
    .with_hint("fix the file (see docs/configuration.md), or point RIGGER_CONFIG elsewhere")
}
