//! Configuration: public fields with defaults, and the one place that reads the MLX backend's
//! environment variables ([`MlxConfig::from_vars`]).

use std::path::PathBuf;
use std::time::Duration;

use rigger_ports::InferenceError;

/// The default model, as the user guide lists it.
pub const DEFAULT_MODEL: &str = "mlx-community/Phi-3-mini-4k-instruct";

/// The model: a hub id or a local folder.
pub const MODEL_VAR: &str = "MLX_MODEL";
/// The Python interpreter that runs the worker.
pub const PYTHON_VAR: &str = "PYTHON_PATH";
/// The Hugging Face hub cache (mlx-lm downloads there) and its home folder, read only to list
/// the models already downloaded, by the precedence every adapter shares
/// ([`rigger_ports::hf_hub_cache`]).
pub use rigger_ports::{HF_HOME_VAR, HF_HUB_CACHE_VAR as HUB_CACHE_VAR};

/// Worker start-up (importing mlx) and handshake, in seconds (default 60).
pub const STARTUP_TIMEOUT_VAR: &str = "RIGGER_MLX_STARTUP_TIMEOUT_SECS";
/// Loading (and, from the hub, downloading) a model, in seconds (default 1800).
pub const LOAD_TIMEOUT_VAR: &str = "RIGGER_MLX_LOAD_TIMEOUT_SECS";
/// From the model being ready to the first token (reading the prompt), in seconds (default 300).
pub const FIRST_TOKEN_TIMEOUT_VAR: &str = "RIGGER_MLX_FIRST_TOKEN_TIMEOUT_SECS";
/// Between two tokens, in seconds (default 60).
pub const IDLE_TIMEOUT_VAR: &str = "RIGGER_MLX_IDLE_TIMEOUT_SECS";

/// How to reach MLX and which model to serve.
#[derive(Debug, Clone, PartialEq)]
pub struct MlxConfig {
    /// A hub id (`mlx-community/...`, downloaded by the worker on first use) or a local folder.
    pub model: String,
    /// The interpreter; `None` finds one (the project's `.venv`, `python3`, `python`).
    pub python: Option<PathBuf>,
    /// Where downloaded hub models are cached (for [`list_models`](crate::list_models)); `None`
    /// lists the configured model only.
    pub hub_cache: Option<PathBuf>,
    /// Worker start-up (importing mlx) and handshake.
    pub startup_timeout: Duration,
    /// Loading (and, from the hub, downloading) a model.
    pub load_timeout: Duration,
    /// From the model being ready to the first token.
    pub first_token_timeout: Duration,
    /// Between two tokens.
    pub idle_timeout: Duration,
    /// Run this adapter's requests on a worker of its own instead of the one shared by every
    /// adapter with the same Python (so that it never queues behind another role's requests).
    pub dedicated_worker: bool,
}

impl MlxConfig {
    pub fn new(model: impl Into<String>) -> Self {
        Self {
            model: model.into(),
            python: None,
            hub_cache: None,
            startup_timeout: Duration::from_secs(60),
            load_timeout: Duration::from_secs(1800),
            first_token_timeout: Duration::from_secs(300),
            idle_timeout: Duration::from_secs(60),
            dedicated_worker: false,
        }
    }

    /// [`from_vars`](Self::from_vars) over the process environment.
    pub fn from_env() -> Result<Self, InferenceError> {
        Self::from_vars(&|name| std::env::var(name).ok())
    }

    /// [`MLX_MODEL`](MODEL_VAR) (default [`DEFAULT_MODEL`]), [`PYTHON_PATH`](PYTHON_VAR) and the
    /// hub cache ([`HF_HUB_CACHE`](HUB_CACHE_VAR), [`HF_HOME`](HF_HOME_VAR), `XDG_CACHE_HOME`, `HOME`), read
    /// through `lookup`, and the four timeouts (`RIGGER_MLX_*_TIMEOUT_SECS`). Blank values count as
    /// unset; a timeout that is not a whole number of seconds is `InvalidRequest` naming it.
    pub fn from_vars(lookup: &dyn Fn(&str) -> Option<String>) -> Result<Self, InferenceError> {
        let var = |name: &str| rigger_ports::setting(lookup, name);
        let mut config = Self::new(var(MODEL_VAR).unwrap_or_else(|| DEFAULT_MODEL.to_owned()));
        config.python = var(PYTHON_VAR).map(PathBuf::from);
        config.hub_cache = rigger_ports::hf_hub_cache(lookup);
        for (name, limit) in [
            (STARTUP_TIMEOUT_VAR, &mut config.startup_timeout),
            (LOAD_TIMEOUT_VAR, &mut config.load_timeout),
            (FIRST_TOKEN_TIMEOUT_VAR, &mut config.first_token_timeout),
            (IDLE_TIMEOUT_VAR, &mut config.idle_timeout),
        ] {
            if let Some(value) = var(name) {
                *limit = value.parse::<u64>().map(Duration::from_secs).map_err(|_| {
                    InferenceError::invalid_request(
                        crate::BACKEND,
                        format!("{name}={value:?} is not a number of seconds"),
                    )
                    .with_hint(format!(
                        "set {name} to a whole number of seconds, or unset it"
                    ))
                })?;
            }
        }
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let pairs: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |name| {
            pairs
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
        }
    }

    #[test]
    fn blank_values_mean_the_defaults() {
        let c = MlxConfig::from_vars(&vars(&[(MODEL_VAR, "  "), (PYTHON_VAR, "")])).unwrap();
        assert_eq!((c.model.as_str(), c.python), (DEFAULT_MODEL, None));
        assert_eq!(c.hub_cache, None);
    }

    #[test]
    fn model_python_and_hub_cache_are_read_here() {
        let c = MlxConfig::from_vars(&vars(&[
            (MODEL_VAR, "mlx-community/x"),
            (PYTHON_VAR, "/opt/py/bin/python"),
            (HF_HOME_VAR, "/data/hf"),
        ]))
        .unwrap();
        assert_eq!(c.model, "mlx-community/x");
        assert_eq!(c.python, Some(PathBuf::from("/opt/py/bin/python")));
        assert_eq!(c.hub_cache, Some(PathBuf::from("/data/hf/hub")));
        let c = MlxConfig::from_vars(&vars(&[(HUB_CACHE_VAR, "/c"), (HF_HOME_VAR, "/h")])).unwrap();
        assert_eq!(c.hub_cache, Some(PathBuf::from("/c")));
    }

    #[test]
    fn timeouts_are_read_in_seconds_and_refused_when_not_numbers() {
        let c = MlxConfig::from_vars(&vars(&[
            (STARTUP_TIMEOUT_VAR, "5"),
            (LOAD_TIMEOUT_VAR, "7"),
            (FIRST_TOKEN_TIMEOUT_VAR, "11"),
            (IDLE_TIMEOUT_VAR, "13"),
        ]))
        .unwrap();
        assert_eq!(
            [
                c.startup_timeout,
                c.load_timeout,
                c.first_token_timeout,
                c.idle_timeout
            ],
            [5, 7, 11, 13].map(Duration::from_secs)
        );
        let err = MlxConfig::from_vars(&vars(&[(IDLE_TIMEOUT_VAR, "1m")])).unwrap_err();
        assert_eq!(err.kind(), rigger_ports::ErrorKind::InvalidRequest);
        assert!(err.to_string().contains(IDLE_TIMEOUT_VAR), "{err}");
    }
}
