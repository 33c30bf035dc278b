use std::fmt;
use std::str::FromStr;

use rigger_ports::{ErrorKind, InferenceError};
use serde::Serialize;

/// A backend the factory can build adapters for (compiled in or not; `src/backends/` holds
/// what the factory knows about each).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Provider {
    Mlx,
    Ollama,
    Candle,
    #[serde(rename = "openai")]
    OpenAi,
    Anthropic,
}

impl Provider {
    /// Every provider, in auto-detection order.
    pub const ALL: [Provider; 5] = [
        Provider::Mlx,
        Provider::Ollama,
        Provider::Candle,
        Provider::OpenAi,
        Provider::Anthropic,
    ];

    /// The name used in `TASK_ORCHESTRATOR_PROVIDER`, `rigger.toml` and the CLI.
    pub fn as_str(self) -> &'static str {
        match self {
            Provider::Mlx => "mlx",
            Provider::Ollama => "ollama",
            Provider::Candle => "candle",
            Provider::OpenAi => "openai",
            Provider::Anthropic => "anthropic",
        }
    }

    /// Whether this build has the provider's adapter (its cargo feature).
    pub fn is_compiled(self) -> bool {
        crate::backends::get(self).is_some()
    }

    /// The providers compiled into this build.
    pub fn compiled() -> Vec<Provider> {
        crate::backends::compiled().map(|b| b.provider()).collect()
    }
}

impl fmt::Display for Provider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

impl FromStr for Provider {
    type Err = InferenceError;

    /// Case-insensitive; an unknown name, or one not compiled in, is an error listing the
    /// providers this build has.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let name = s.trim().to_ascii_lowercase();
        let compiled = Provider::compiled()
            .iter()
            .map(|p| p.as_str())
            .collect::<Vec<_>>()
            .join(", ");
        let found = Provider::ALL.into_iter().find(|p| p.as_str() == name);
        match found {
            Some(p) if p.is_compiled() => Ok(p),
            Some(p) => Err(InferenceError::new(
                ErrorKind::NotAvailable,
                crate::BACKEND,
                format!("provider {p} is not compiled into this build (compiled in: {compiled})"),
            )
            .with_hint(format!(
                "rebuild with the `{p}` cargo feature of rigger-provider-factory"
            ))),
            None => Err(InferenceError::invalid_request(
                crate::BACKEND,
                format!("unknown provider {s:?}; this build has: {compiled}"),
            )
            .with_hint(
                "set TASK_ORCHESTRATOR_PROVIDER to one of those, or unset it to auto-detect",
            )),
        }
    }
}
