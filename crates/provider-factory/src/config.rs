//! `rigger.toml`: per-role provider, model, options and fallback chain, plus per-provider
//! settings. Unknown keys are errors (a typo must not be ignored), reported with the file, line
//! and key by the `toml` crate.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use rigger_ports::{ErrorKind, InferenceError};
use serde::Deserialize;
use toml::Spanned;

use crate::Provider;
use crate::backends::{self, SettingKind};

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
    /// The error kinds that move a call to a chain's next link (`TASK_ORCHESTRATOR_FALLS_THROUGH`
    /// wins): `["not_available", "timeout"]`; `[]` stops at the first failure.
    pub falls_through: Option<Vec<String>>,
    /// Seconds a link that fell through is skipped (`TASK_ORCHESTRATOR_FALLBACK_COOLDOWN_SECS`
    /// wins; 0 never skips).
    pub fallback_cooldown_secs: Option<u64>,
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

/// `[providers.<name>]`, by provider name: each key stands for an environment variable, and the
/// environment wins. Each backend's file in `src/backends/` declares its keys. API keys are read
/// from the environment only, never from this file.
pub type ProvidersConfig = BTreeMap<String, ProviderSection>;

/// One `[providers.<name>]` section: key to value, each with its place in the file.
pub type ProviderSection = BTreeMap<String, Spanned<toml::Value>>;

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
        for (name, section) in &file.providers {
            check_section(path, text, name, section)?;
        }
        Ok(file)
    }

    /// The settings that stand for environment variables, as (variable, value) pairs. Sections
    /// of providers not compiled into this build are ignored (the file may serve several builds).
    pub fn as_vars(&self) -> Vec<(&'static str, String)> {
        let mut vars = Vec::new();
        for backend in backends::compiled() {
            let Some(section) = self.providers.get(backend.provider().as_str()) else {
                continue;
            };
            for setting in backend.settings() {
                let value = section.get(setting.key).map(|v| match v.get_ref() {
                    toml::Value::String(s) => s.clone(),
                    other => other.to_string(),
                });
                if let Some(value) = value {
                    vars.push((setting.var, value));
                }
            }
        }
        vars
    }
}

/// Checks `[providers.<name>]` against what the backend declares: a known provider, known keys,
/// values of the right type. Unknown keys are errors here too, with their line.
fn check_section(
    path: &Path,
    text: &str,
    name: &str,
    section: &ProviderSection,
) -> Result<(), InferenceError> {
    let Some(provider) = Provider::ALL.into_iter().find(|p| p.as_str() == name) else {
        let names: Vec<&str> = Provider::ALL.iter().map(|p| p.as_str()).collect();
        return Err(config_error(
            path,
            &format!(
                "unknown provider [providers.{name}]; the providers are {}",
                names.join(", ")
            ),
        ));
    };
    let Some(backend) = backends::get(provider) else {
        return Ok(());
    };
    let settings = backend.settings();
    for (key, value) in section {
        let line = text[..value.span().start.min(text.len())]
            .matches('\n')
            .count()
            + 1;
        let problem = match settings.iter().find(|s| s.key == key) {
            None => {
                let keys: Vec<&str> = settings.iter().map(|s| s.key).collect();
                format!("unknown key `{key}`, expected one of {}", keys.join(", "))
            }
            Some(s) => match (s.kind, value.get_ref()) {
                (SettingKind::Text, toml::Value::String(_)) => continue,
                (SettingKind::Count, toml::Value::Integer(n)) if u32::try_from(*n).is_ok() => {
                    continue;
                }
                (SettingKind::Text, _) => format!("`{key}` must be a string"),
                (SettingKind::Count, _) => format!("`{key}` must be a whole number"),
            },
        };
        return Err(config_error(
            path,
            &format!("line {line}: [providers.{name}] {problem}"),
        ));
    }
    Ok(())
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
