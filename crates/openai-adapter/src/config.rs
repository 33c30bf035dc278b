//! Configuration: public fields with defaults, read from the environment by the same logic
//! whether the lookup is the process environment or an explicit function (factory tests).

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use rigger_http_support::{ApiKey, RetryPolicy};
use rigger_ports::{Capabilities, InferenceError};

use crate::BACKEND;

/// OpenAI's own endpoint; any compatible server replaces it through [`BASE_URL_VAR`].
pub const DEFAULT_BASE_URL: &str = "https://api.openai.com/v1";
pub const API_KEY_VAR: &str = "OPENAI_API_KEY";
/// The `.../v1` base of any OpenAI-compatible server, with or without a trailing slash.
pub const BASE_URL_VAR: &str = "OPENAI_BASE_URL";
/// The model id to request. There is no default: servers name models differently.
pub const MODEL_VAR: &str = "OPENAI_MODEL";
/// Which server speaks behind the URL ([`ServerKind`] names); decides the capabilities.
pub const SERVER_VAR: &str = "RIGGER_OPENAI_SERVER";
/// The model's context length in tokens, for servers that neither report nor enforce it.
pub const CONTEXT_LENGTH_VAR: &str = "RIGGER_OPENAI_CONTEXT_LENGTH";
/// The most requests this adapter has in flight at once (the rest wait their turn).
pub const MAX_CONCURRENT_VAR: &str = "RIGGER_OPENAI_MAX_CONCURRENT";
/// Seconds without progress (streamed text; keep-alives do not count) before a generation is
/// abandoned as stalled.
pub const IDLE_TIMEOUT_VAR: &str = "RIGGER_OPENAI_IDLE_TIMEOUT_SECS";
/// Seconds from sending a request to its response headers (retries and queueing included).
pub const RESPONSE_TIMEOUT_VAR: &str = "RIGGER_OPENAI_RESPONSE_TIMEOUT_SECS";
/// Seconds a whole generation may take, from sending the request to its last byte.
pub const DEADLINE_VAR: &str = "RIGGER_OPENAI_DEADLINE_SECS";

/// The server behind the URL. Each kind declares only what that server really honours, so a
/// request for anything else is refused instead of silently ignored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ServerKind {
    /// api.openai.com: seed, top_p, stop, `response_format` with `json_schema`; no top_k, and
    /// no way to ignore end-of-sequence.
    OpenAi,
    /// vLLM: everything, including top_k, `ignore_eos` + `min_tokens` for exact budgets, and
    /// guided decoding for `json_schema`. Reports the context length (`max_model_len`).
    Vllm,
    /// llama.cpp's `llama-server`: top_k, `ignore_eos`, `json_schema`, and its own `timings`.
    LlamaServer,
    /// `mlx_lm.server`: seed, top_k, top_p; ignores `response_format` (output is validated
    /// only); matches stop words on token ids, so Rigger matches them on text itself; cannot
    /// ignore end-of-sequence; neither reports nor enforces the context length.
    MlxLm,
    /// Anything else that speaks the protocol: only what the OpenAI API itself defines and
    /// every server honours (top_p, stop). The safe default for an unknown server.
    Generic,
}

impl ServerKind {
    pub const ALL: [ServerKind; 5] = [
        ServerKind::OpenAi,
        ServerKind::Vllm,
        ServerKind::LlamaServer,
        ServerKind::MlxLm,
        ServerKind::Generic,
    ];

    /// The name used in [`SERVER_VAR`].
    pub fn name(self) -> &'static str {
        match self {
            ServerKind::OpenAi => "openai",
            ServerKind::Vllm => "vllm",
            ServerKind::LlamaServer => "llama-server",
            ServerKind::MlxLm => "mlx-lm",
            ServerKind::Generic => "generic",
        }
    }

    /// The kind a base URL implies when none is configured: OpenAI's own host, else generic.
    pub fn for_base_url(base_url: &str) -> Self {
        let host = reqwest::Url::parse(base_url)
            .ok()
            .and_then(|u| u.host_str().map(str::to_owned));
        if host.as_deref() == Some("api.openai.com") {
            ServerKind::OpenAi
        } else {
            ServerKind::Generic
        }
    }

    pub fn capabilities(self) -> Capabilities {
        let base = Capabilities {
            seed: true,
            top_k: false,
            top_p: true,
            // Every kind: the adapter matches stop sequences on the text itself.
            stop_sequences: true,
            exact_token_budget: false,
            native_structured_output: false,
        };
        match self {
            ServerKind::OpenAi => Capabilities {
                native_structured_output: true,
                ..base
            },
            ServerKind::Vllm | ServerKind::LlamaServer => Capabilities::all(),
            ServerKind::MlxLm => Capabilities {
                top_k: true,
                ..base
            },
            // The OpenAI API defines `seed` as best effort; unknown servers often drop it.
            ServerKind::Generic => Capabilities {
                seed: false,
                ..base
            },
        }
    }

    /// Whether the server matches `stop` strings on text, so sending them lets it stop early.
    /// mlx_lm.server matches them on token ids and strips unmatched occurrences from the text
    /// while generating on, so it is not sent them.
    pub(crate) fn server_matches_stop_text(self) -> bool {
        !matches!(self, ServerKind::MlxLm)
    }
}

impl fmt::Display for ServerKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for ServerKind {
    type Err = InferenceError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let wanted = s.trim().to_ascii_lowercase().replace('_', "-");
        let alias = match wanted.as_str() {
            "llamacpp" | "llama.cpp" | "llama-cpp" => "llama-server",
            "mlx" | "mlx-lm-server" | "mlxlm" => "mlx-lm",
            other => other,
        };
        ServerKind::ALL
            .into_iter()
            .find(|k| k.name() == alias)
            .ok_or_else(|| {
                let names: Vec<&str> = ServerKind::ALL.iter().map(|k| k.name()).collect();
                InferenceError::invalid_request(BACKEND, format!("unknown server kind {s:?}"))
                    .with_hint(format!("set {SERVER_VAR} to one of {}", names.join(", ")))
            })
    }
}

/// How to reach an OpenAI-compatible server and what to ask it for.
#[derive(Debug, Clone)]
pub struct OpenAiConfig {
    /// The `.../v1` base; a trailing slash is fine.
    pub base_url: String,
    /// Sent as `Authorization: Bearer …` when set; redacted from `Debug`.
    pub api_key: Option<ApiKey>,
    /// The model id to request; required.
    pub model: Option<String>,
    /// `None`: [`ServerKind::for_base_url`].
    pub server: Option<ServerKind>,
    /// The context length, when the server does not report it (only vLLM does).
    pub context_length: Option<u32>,
    pub connect_timeout: Duration,
    /// From sending the request to the response headers, all retries included. Some servers
    /// (mlx_lm.server) answer only once the request leaves their queue, so queueing counts.
    pub response_timeout: Duration,
    /// The longest time without progress (text, or the end of the answer) before the generation
    /// fails as stalled; keep-alive events and empty chunks do not count as progress. Prompt
    /// processing happens inside the first gap, so keep it above your longest prefill.
    pub idle_timeout: Duration,
    /// The whole generation, from sending the request to the last byte, whatever the server
    /// sends meanwhile (a trickle of tokens cannot hold a request forever).
    pub deadline: Duration,
    /// Retries before the first token (connect errors, 429, 5xx, honouring `Retry-After`).
    pub retry: RetryPolicy,
    /// Requests in flight at once from this adapter; `None` is unlimited.
    pub max_concurrent_requests: Option<usize>,
}

impl Default for OpenAiConfig {
    fn default() -> Self {
        Self {
            base_url: DEFAULT_BASE_URL.to_owned(),
            api_key: None,
            model: None,
            server: None,
            context_length: None,
            connect_timeout: Duration::from_secs(10),
            // A server that sends nothing (no headers, no text) is given up within a minute.
            response_timeout: Duration::from_secs(60),
            idle_timeout: Duration::from_secs(60),
            deadline: Duration::from_secs(600),
            retry: RetryPolicy::default(),
            max_concurrent_requests: None,
        }
    }
}

impl OpenAiConfig {
    /// A config for `model` at `base_url`, everything else default.
    pub fn new(base_url: impl Into<String>, model: impl Into<String>) -> Self {
        Self {
            base_url: base_url.into(),
            model: Some(model.into()),
            ..Self::default()
        }
    }

    /// From `OPENAI_API_KEY`, `OPENAI_BASE_URL`, `OPENAI_MODEL` and the `RIGGER_OPENAI_*`
    /// variables of the process environment.
    pub fn from_env() -> Result<Self, InferenceError> {
        Self::from_vars(&|name| std::env::var(name).ok())
    }

    /// As [`from_env`](Self::from_env), reading variables through `lookup`. Unset and blank
    /// variables mean the default; malformed ones are an `InvalidRequest` naming the variable.
    pub fn from_vars(lookup: &dyn Fn(&str) -> Option<String>) -> Result<Self, InferenceError> {
        let var = |name: &str| rigger_ports::setting(lookup, name);
        let mut config = Self::default();
        if let Some(url) = var(BASE_URL_VAR) {
            config.base_url = url;
        }
        config.api_key = lookup(API_KEY_VAR).and_then(ApiKey::new);
        config.model = var(MODEL_VAR);
        config.server = var(SERVER_VAR).map(|s| s.parse()).transpose()?;
        config.context_length = parse_var(&var, CONTEXT_LENGTH_VAR, "a number of tokens")?;
        config.max_concurrent_requests =
            parse_var(&var, MAX_CONCURRENT_VAR, "a number of requests")?;
        for (name, field) in [
            (IDLE_TIMEOUT_VAR, &mut config.idle_timeout),
            (RESPONSE_TIMEOUT_VAR, &mut config.response_timeout),
            (DEADLINE_VAR, &mut config.deadline),
        ] {
            if let Some(secs) = parse_var::<u64>(&var, name, "a number of seconds")? {
                *field = Duration::from_secs(secs);
            }
        }
        Ok(config)
    }

    pub fn server_kind(&self) -> ServerKind {
        self.server
            .unwrap_or_else(|| ServerKind::for_base_url(&self.base_url))
    }

    /// The base URL parsed, without a trailing slash, or an `InvalidRequest` that says how to
    /// fix it.
    pub(crate) fn parsed_base_url(&self) -> Result<String, InferenceError> {
        let trimmed = self.base_url.trim().trim_end_matches('/');
        let bad = |why: String| {
            InferenceError::invalid_request(
                BACKEND,
                format!("the base URL {:?} is not usable: {why}", self.base_url),
            )
            .with_hint(format!(
                "set {BASE_URL_VAR} to the server's /v1 base, e.g. http://127.0.0.1:8080/v1"
            ))
        };
        let url = reqwest::Url::parse(trimmed).map_err(|e| bad(e.to_string()))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(bad(format!(
                "the scheme is {:?}, not http(s)",
                url.scheme()
            )));
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(bad("it has a query or fragment".to_owned()));
        }
        Ok(trimmed.to_owned())
    }
}

fn parse_var<T: FromStr>(
    var: &dyn Fn(&str) -> Option<String>,
    name: &str,
    what: &str,
) -> Result<Option<T>, InferenceError> {
    var(name)
        .map(|v| {
            v.parse::<T>().map_err(|_| {
                InferenceError::invalid_request(BACKEND, format!("{name}={v:?} is not {what}"))
                    .with_hint(format!("set {name} to {what}, or unset it"))
            })
        })
        .transpose()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let pairs: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |name| {
            pairs
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
        }
    }

    #[test]
    fn defaults_without_variables() {
        let c = OpenAiConfig::from_vars(&vars(&[])).unwrap();
        assert_eq!(c.base_url, DEFAULT_BASE_URL);
        assert!(c.model.is_none() && c.api_key.is_none());
        assert_eq!(c.server_kind(), ServerKind::OpenAi);
    }

    #[test]
    fn reads_every_variable() {
        let c = OpenAiConfig::from_vars(&vars(&[
            (BASE_URL_VAR, "http://10.0.0.5:8000/v1/"),
            (API_KEY_VAR, "sk-test"),
            (MODEL_VAR, " llama-3 "),
            (SERVER_VAR, "vLLM"),
            (CONTEXT_LENGTH_VAR, "8192"),
            (MAX_CONCURRENT_VAR, "16"),
            (IDLE_TIMEOUT_VAR, "30"),
            (RESPONSE_TIMEOUT_VAR, "20"),
            (DEADLINE_VAR, "900"),
        ]))
        .unwrap();
        assert_eq!(c.parsed_base_url().unwrap(), "http://10.0.0.5:8000/v1");
        assert_eq!(c.api_key.as_ref().map(ApiKey::expose), Some("sk-test"));
        assert_eq!(c.model.as_deref(), Some("llama-3"));
        assert_eq!(c.server_kind(), ServerKind::Vllm);
        assert_eq!(c.context_length, Some(8192));
        assert_eq!(c.max_concurrent_requests, Some(16));
        assert_eq!(c.idle_timeout, Duration::from_secs(30));
        assert_eq!(c.response_timeout, Duration::from_secs(20));
        assert_eq!(c.deadline, Duration::from_secs(900));
    }

    #[test]
    fn malformed_variables_name_themselves() {
        for (name, value) in [
            (SERVER_VAR, "triton"),
            (CONTEXT_LENGTH_VAR, "lots"),
            (IDLE_TIMEOUT_VAR, "-1"),
            (DEADLINE_VAR, "soon"),
        ] {
            let err = OpenAiConfig::from_vars(&vars(&[(name, value)])).unwrap_err();
            assert_eq!(err.kind(), rigger_ports::ErrorKind::InvalidRequest);
            assert!(err.to_string().contains(name), "{err}");
        }
    }

    #[test]
    fn unknown_hosts_are_generic_and_kinds_parse_by_alias() {
        assert_eq!(
            ServerKind::for_base_url("http://127.0.0.1:8080/v1"),
            ServerKind::Generic
        );
        assert_eq!(
            "llama.cpp".parse::<ServerKind>().unwrap(),
            ServerKind::LlamaServer
        );
        assert_eq!("mlx_lm".parse::<ServerKind>().unwrap(), ServerKind::MlxLm);
        for kind in ServerKind::ALL {
            assert_eq!(kind.name().parse::<ServerKind>().unwrap(), kind);
        }
    }

    #[test]
    fn bad_base_urls_are_invalid_requests_with_a_hint() {
        for url in ["localhost:8080", "ftp://x/v1", "http://x/v1?a=b", ""] {
            let c = OpenAiConfig {
                base_url: url.into(),
                ..OpenAiConfig::default()
            };
            let err = c.parsed_base_url().unwrap_err();
            assert!(
                err.hint().is_some_and(|h| h.contains(BASE_URL_VAR)),
                "{url}: {err}"
            );
        }
    }
}
