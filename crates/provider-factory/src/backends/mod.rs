//! The registry of backends. Each backend is one file here holding everything the factory knows
//! about it: its model variable, its role defaults, its `[providers.<name>]` section of
//! `rigger.toml`, how to build its adapter, how to probe it and how to list its models. The
//! generic code (planning, detection, model listing, config loading) loops over [`compiled`].
//!
//! Adding a backend: a variant of [`Provider`], a cargo feature, a file here, and one line in
//! the `registry!` call below.

use std::sync::Arc;

use async_trait::async_trait;
use rigger_domain::ModelRole;
use rigger_ports::{ErrorKind, InferenceError, LanguageModel};

use crate::detect::BackendStatus;
use crate::vars::Vars;
use crate::{BACKEND, Provider};

/// Declares each backend's module behind its cargo feature and lists it in [`REGISTRY`], in
/// auto-detection order. The feature gate is written here once, for every backend.
macro_rules! registry {
    ($($feature:literal => $module:ident :: $backend:ident,)*) => {
        $(
            #[cfg(feature = $feature)]
            mod $module;
        )*

        /// Every backend compiled into this build, in auto-detection order.
        static REGISTRY: &[&dyn Backend] = &[$(
            #[cfg(feature = $feature)]
            &$module::$backend,
        )*];
    };
}

registry! {
    "mlx" => mlx::Mlx,
    "ollama" => ollama::Ollama,
    "candle" => candle::Candle,
    "openai" => openai::OpenAi,
    "anthropic" => anthropic::Anthropic,
}

/// What the factory needs from one backend.
#[async_trait]
pub(crate) trait Backend: Sync {
    fn provider(&self) -> Provider;

    /// The environment variable naming this backend's model (it applies to every role).
    fn model_var(&self) -> &'static str;

    /// The model a role gets when nothing is configured; `None` when the backend has no
    /// sensible default and its model variable must be set.
    fn role_default(&self, role: ModelRole) -> Option<&'static str>;

    /// The keys of `[providers.<name>]` in `rigger.toml`, each standing for a variable.
    fn settings(&self) -> &'static [Setting];

    /// The adapter for `model`, built lazily: no backend is contacted here.
    fn build(&self, model: &str, vars: &Vars) -> Result<Arc<dyn LanguageModel>, InferenceError>;

    /// Whether the backend is usable on this machine, and why (short timeouts).
    async fn probe(&self, vars: &Vars) -> BackendStatus;

    /// The models the backend offers, for `rigger models`.
    async fn list_models(&self, vars: &Vars) -> Result<Vec<String>, InferenceError>;
}

/// One key of a `[providers.<name>]` section and the variable it stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Setting {
    pub key: &'static str,
    pub var: &'static str,
    pub kind: SettingKind,
}

/// The TOML type a setting takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SettingKind {
    /// A string.
    Text,
    /// A whole number from 0 to `u32::MAX`.
    Count,
}

impl Setting {
    pub(crate) const fn text(key: &'static str, var: &'static str) -> Self {
        Self {
            key,
            var,
            kind: SettingKind::Text,
        }
    }

    pub(crate) const fn count(key: &'static str, var: &'static str) -> Self {
        Self {
            key,
            var,
            kind: SettingKind::Count,
        }
    }
}

/// The backends compiled into this build, in auto-detection order.
pub(crate) fn compiled() -> impl Iterator<Item = &'static dyn Backend> {
    REGISTRY.iter().copied()
}

/// `provider`'s backend, when it is compiled in.
pub(crate) fn get(provider: Provider) -> Option<&'static dyn Backend> {
    compiled().find(|b| b.provider() == provider)
}

/// The environment variable naming `provider`'s model (it applies to every role); `None` when
/// the provider is not compiled into this build.
pub fn model_var(provider: Provider) -> Option<&'static str> {
    get(provider).map(|b| b.model_var())
}

/// The model a role gets on `provider` when nothing is configured. MLX and Ollama follow the
/// guide's choices (a fast model routes, a reasoning model decomposes); Candle has no default
/// (it needs a local file or a hub id with a GGUF, named by `CANDLE_MODEL`); OpenAI-compatible
/// servers serve whatever they were started with, so `OPENAI_MODEL` is required too.
pub fn role_default(provider: Provider, role: ModelRole) -> Option<&'static str> {
    get(provider).and_then(|b| b.role_default(role))
}

/// Builds one adapter for one (provider, model) link.
pub(crate) fn build(
    provider: Provider,
    model: &str,
    vars: &Vars,
) -> Result<Arc<dyn LanguageModel>, InferenceError> {
    let backend = get(provider).ok_or_else(|| {
        InferenceError::new(
            ErrorKind::NotAvailable,
            BACKEND,
            format!("the {provider} adapter is not available in this build"),
        )
        .with_hint("pick another provider (rigger doctor lists them)")
    })?;
    backend.build(model, vars)
}

/// The error for a backend that is compiled in but has nothing configured to reach.
pub(crate) fn not_configured(what: &str) -> InferenceError {
    InferenceError::new(ErrorKind::NotAvailable, BACKEND, what)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_registry_lists_each_compiled_provider_once_in_detection_order() {
        let listed: Vec<Provider> = compiled().map(|b| b.provider()).collect();
        let in_order: Vec<Provider> = Provider::ALL
            .into_iter()
            .filter(|p| listed.contains(p))
            .collect();
        assert_eq!(listed, in_order);
        for provider in Provider::ALL {
            assert_eq!(get(provider).is_some(), provider.is_compiled());
        }
    }

    #[test]
    fn every_provider_has_a_backend_file_and_one_registry_line() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/backends");
        let registry = std::fs::read_to_string(dir.join("mod.rs")).unwrap_or_default();
        for provider in Provider::ALL {
            let name = provider.as_str();
            assert!(dir.join(format!("{name}.rs")).is_file(), "no {name}.rs");
            let line = format!("\"{name}\" => {name}::");
            assert_eq!(registry.matches(&line).count(), 1, "{line}");
        }
    }

    #[test]
    fn each_backend_declares_its_model_key_and_no_key_twice() {
        for backend in compiled() {
            let settings = backend.settings();
            let model = settings.iter().find(|s| s.key == "model");
            assert_eq!(model.map(|s| s.var), Some(backend.model_var()));
            for (i, s) in settings.iter().enumerate() {
                assert!(
                    !settings[i + 1..].iter().any(|t| t.key == s.key),
                    "{}",
                    s.key
                );
            }
        }
    }
}
