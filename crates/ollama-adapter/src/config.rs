//! Configuration: where the server is, which model, how long to wait, and `OLLAMA_HOST` parsed the
//! way Ollama's own client parses it.

use std::time::Duration;

use rigger_http_support::{ApiKey, RetryPolicy};
use rigger_ports::InferenceError;

use crate::BACKEND;

/// Ollama's port when `OLLAMA_HOST` names none and gives no scheme.
pub const DEFAULT_PORT: u16 = 11434;
/// Where Ollama listens by default.
pub const DEFAULT_BASE_URL: &str = "http://127.0.0.1:11434";
/// The model used when `OLLAMA_MODEL` is unset (the one Ollama's API docs use in their examples).
pub const DEFAULT_MODEL: &str = "llama3.2";
/// The server address, in any form Ollama accepts (`host`, `host:port`, `scheme://host:port/path`).
pub const HOST_VAR: &str = "OLLAMA_HOST";
/// The model tag, e.g. `llama3.2` or `qwen2.5:0.5b`.
pub const MODEL_VAR: &str = "OLLAMA_MODEL";
/// A bearer token, for an Ollama behind an authenticating proxy or ollama.com. Optional.
pub const API_KEY_VAR: &str = "OLLAMA_API_KEY";
/// Seconds from sending a generation to its first text (loading the model included).
pub const FIRST_TOKEN_TIMEOUT_VAR: &str = "RIGGER_OLLAMA_FIRST_TOKEN_TIMEOUT_SECS";
/// Seconds without progress once text flows (lines without text do not count).
pub const IDLE_TIMEOUT_VAR: &str = "RIGGER_OLLAMA_IDLE_TIMEOUT_SECS";
/// Seconds a whole generation may take, from sending the request to the final record.
pub const DEADLINE_VAR: &str = "RIGGER_OLLAMA_DEADLINE_SECS";

/// How long Ollama keeps the model loaded after a request (the request's `keep_alive`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeepAlive {
    /// A Go duration string as Ollama takes it, e.g. `"10m"`, `"1h"`, `"-1m"` (forever).
    Duration(String),
    /// Seconds; `0` unloads the model right after the request, negative keeps it forever.
    Seconds(i64),
}

/// Everything the adapter needs. Public fields with [`Default`]; [`OllamaConfig::from_env`] and
/// [`OllamaConfig::from_vars`] fill them from the environment.
#[derive(Debug, Clone, PartialEq)]
pub struct OllamaConfig {
    /// `scheme://host:port[/path]`, without a trailing slash. See [`parse_ollama_host`].
    pub base_url: String,
    /// The model tag as Ollama names it.
    pub model: String,
    /// Sent as `Authorization: Bearer …` when set.
    pub api_key: Option<ApiKey>,
    /// The request's `keep_alive`; `None` leaves Ollama's default (5 minutes).
    pub keep_alive: Option<KeepAlive>,
    /// A fixed `num_ctx` for every request. `None` (the default) sizes it from the prompt and the
    /// budget, rounded up to a power of two so Ollama reloads the model rarely.
    pub num_ctx: Option<u32>,
    /// Establishing the TCP (and TLS) connection.
    pub connect_timeout: Duration,
    /// A whole non-streaming call (`/api/tags`, `/api/show`, …).
    pub request_timeout: Duration,
    /// From sending a generation to its first text; includes loading the model and reading
    /// the prompt. Lines without text do not stop this clock.
    pub first_token_timeout: Duration,
    /// The longest time without progress in a generation (text or the final record; lines
    /// without text do not count), and between two lines of a pull or create.
    pub idle_timeout: Duration,
    /// The whole generation, from sending the request to the final record, whatever Ollama
    /// sends meanwhile.
    pub deadline: Duration,
    /// Retries on connect errors, 429 and 5xx, before anything has been streamed.
    pub retry: RetryPolicy,
}

impl Default for OllamaConfig {
    fn default() -> Self {
        Self {
            base_url: DEFAULT_BASE_URL.to_owned(),
            model: DEFAULT_MODEL.to_owned(),
            api_key: None,
            keep_alive: None,
            num_ctx: None,
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(30),
            // A server that makes no progress is given up within a minute; a cold load of a
            // big model may need more (FIRST_TOKEN_TIMEOUT_VAR).
            first_token_timeout: Duration::from_secs(60),
            idle_timeout: Duration::from_secs(60),
            deadline: Duration::from_secs(600),
            retry: RetryPolicy::default(),
        }
    }
}

impl OllamaConfig {
    /// The defaults with another model.
    pub fn new(model: impl Into<String>) -> Self {
        Self {
            model: model.into(),
            ..Self::default()
        }
    }

    /// The defaults pointed at another server (e.g. a test server's URL).
    pub fn with_base_url(mut self, base_url: impl Into<String>) -> Self {
        self.base_url = base_url.into().trim_end_matches('/').to_owned();
        self
    }

    /// [`OLLAMA_HOST`](HOST_VAR), [`OLLAMA_MODEL`](MODEL_VAR), [`OLLAMA_API_KEY`](API_KEY_VAR).
    pub fn from_env() -> Result<Self, InferenceError> {
        Self::from_vars(&|key| std::env::var(key).ok())
    }

    /// Like [`Self::from_env`], reading variables through `get`, so tests never touch the
    /// process environment.
    pub fn from_vars(get: &dyn Fn(&str) -> Option<String>) -> Result<Self, InferenceError> {
        let get = |name: &str| rigger_ports::setting(get, name);
        let mut config = Self::default();
        if let Some(host) = get(HOST_VAR) {
            config.base_url = parse_ollama_host(&host)?;
        }
        if let Some(model) = get(MODEL_VAR).map(|m| clean(&m).to_owned())
            && !model.is_empty()
        {
            config.model = model;
        }
        config.api_key = get(API_KEY_VAR).and_then(ApiKey::new);
        let seconds = |name: &str| rigger_http_support::seconds_setting(BACKEND, &get, name);
        if let Some(t) = seconds(FIRST_TOKEN_TIMEOUT_VAR)? {
            config.first_token_timeout = t;
        }
        if let Some(t) = seconds(IDLE_TIMEOUT_VAR)? {
            config.idle_timeout = t;
        }
        if let Some(t) = seconds(DEADLINE_VAR)? {
            config.deadline = t;
        }
        Ok(config)
    }
}

/// Ollama's own trimming of environment values: spaces, then quotes.
fn clean(value: &str) -> &str {
    value.trim().trim_matches(|c| c == '"' || c == '\'')
}

/// Turns an `OLLAMA_HOST` value into a base URL the way Ollama's client does (`envconfig.Host`):
///
/// - surrounding spaces and quotes are dropped; empty means `http://127.0.0.1:11434`;
/// - no scheme means `http` with port 11434; `http://` without a port means 80, `https://` 443;
/// - a bare IP or host name gets the default port; `:PORT` alone means 127.0.0.1;
/// - a path after the host is kept (`https://example.com/ollama` → `…:443/ollama`);
/// - an out-of-range or non-numeric port falls back to the default port, with a warning.
///
/// One deliberate difference: `0.0.0.0` and `::` are addresses a *server* binds to; connecting
/// to them is connecting to this machine, so they become `127.0.0.1` and `::1`.
pub fn parse_ollama_host(value: &str) -> Result<String, InferenceError> {
    let value = clean(value);
    let (scheme, hostport, default_port) = match value.split_once("://") {
        None => ("http", value, DEFAULT_PORT.to_string()),
        Some(("http", rest)) => ("http", rest, "80".to_owned()),
        Some(("https", rest)) => ("https", rest, "443".to_owned()),
        Some((other, _)) => {
            return Err(InferenceError::invalid_request(
                BACKEND,
                format!(
                    "{HOST_VAR}={value:?} has the scheme {other:?}; Rigger speaks http and https"
                ),
            )
            .with_hint(format!(
                "set {HOST_VAR} to host:port or http(s)://host:port, e.g. 127.0.0.1:11434"
            )));
        }
    };
    let (hostport, path) = hostport.split_once('/').unwrap_or((hostport, ""));
    let (host, port) = match split_host_port(hostport) {
        Some((host, port)) => (host.to_owned(), port.to_owned()),
        None => {
            let bare = hostport.trim_start_matches('[').trim_end_matches(']');
            let host = if hostport.is_empty() {
                "127.0.0.1".to_owned()
            } else if bare.parse::<std::net::IpAddr>().is_ok() {
                bare.to_owned()
            } else {
                hostport.to_owned()
            };
            (host, default_port.clone())
        }
    };
    let port = match port.parse::<u16>() {
        Ok(port) => port.to_string(),
        Err(_) => {
            tracing::warn!(%port, default = %default_port, "{HOST_VAR}: invalid port, using the default");
            default_port
        }
    };
    let host = match host.as_str() {
        "" | "0.0.0.0" => "127.0.0.1".to_owned(),
        "::" => "::1".to_owned(),
        _ => host,
    };
    let host = if host.contains(':') {
        format!("[{host}]")
    } else {
        host
    };
    let path = path.trim_end_matches('/');
    let url = if path.is_empty() {
        format!("{scheme}://{host}:{port}")
    } else {
        format!("{scheme}://{host}:{port}/{path}")
    };
    reqwest::Url::parse(&url).map_err(|e| {
        InferenceError::invalid_request(
            BACKEND,
            format!("{HOST_VAR}={value:?} does not make a valid URL ({url}): {e}"),
        )
        .with_hint(format!("set {HOST_VAR} to host:port, e.g. 127.0.0.1:11434"))
    })?;
    Ok(url)
}

/// Go's `net.SplitHostPort` for the forms that matter here: `host:port` and `[v6]:port`.
/// `None` when there is no port (a bare host, a bare IPv6 address, or nothing).
fn split_host_port(hostport: &str) -> Option<(&str, &str)> {
    if let Some(rest) = hostport.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        let port = after.strip_prefix(':')?;
        return Some((host, port));
    }
    let (host, port) = hostport.rsplit_once(':')?;
    // More than one colon without brackets is a bare IPv6 address, not host:port.
    (!host.contains(':')).then_some((host, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ollama_host_table() {
        // Cases after Ollama's envconfig tests, plus the connect-side mapping of 0.0.0.0.
        let table = [
            ("", "http://127.0.0.1:11434"),
            ("   ", "http://127.0.0.1:11434"),
            ("1.2.3.4", "http://1.2.3.4:11434"),
            (":1234", "http://127.0.0.1:1234"),
            ("1.2.3.4:1234", "http://1.2.3.4:1234"),
            ("example.com", "http://example.com:11434"),
            ("example.com:1234", "http://example.com:1234"),
            ("0.0.0.0", "http://127.0.0.1:11434"),
            ("0.0.0.0:8080", "http://127.0.0.1:8080"),
            ("[::]:11434", "http://[::1]:11434"),
            ("::1", "http://[::1]:11434"),
            ("[::1]", "http://[::1]:11434"),
            ("[::1]:1234", "http://[::1]:1234"),
            ("http://1.2.3.4", "http://1.2.3.4:80"),
            ("http://1.2.3.4:4321", "http://1.2.3.4:4321"),
            ("https://1.2.3.4", "https://1.2.3.4:443"),
            ("https://1.2.3.4:1234", "https://1.2.3.4:1234"),
            (
                "https://example.com/ollama",
                "https://example.com:443/ollama",
            ),
            (
                "https://example.com:1234/ollama/",
                "https://example.com:1234/ollama",
            ),
            ("example.com/ollama", "http://example.com:11434/ollama"),
            ("\"1.2.3.4:1234\"", "http://1.2.3.4:1234"),
            (" '1.2.3.4' ", "http://1.2.3.4:11434"),
            ("1.2.3.4:99999", "http://1.2.3.4:11434"),
            ("1.2.3.4:port", "http://1.2.3.4:11434"),
            ("https://1.2.3.4:99999", "https://1.2.3.4:443"),
            ("localhost:11434", "http://localhost:11434"),
        ];
        for (input, expected) in table {
            assert_eq!(
                parse_ollama_host(input).unwrap(),
                expected,
                "OLLAMA_HOST={input:?}"
            );
        }
    }

    #[test]
    fn unsupported_scheme_is_an_invalid_request_with_a_fix() {
        let err = parse_ollama_host("ftp://1.2.3.4").unwrap_err();
        assert_eq!(err.kind(), rigger_ports::ErrorKind::InvalidRequest);
        assert!(err.hint().unwrap().contains("OLLAMA_HOST"), "{err}");
    }

    #[test]
    fn from_vars_reads_host_model_and_key() {
        let vars = |k: &str| match k {
            "OLLAMA_HOST" => Some("0.0.0.0:9999".to_owned()),
            "OLLAMA_MODEL" => Some(" 'qwen2.5:0.5b' ".to_owned()),
            "OLLAMA_API_KEY" => Some("secret-key".to_owned()),
            _ => None,
        };
        let c = OllamaConfig::from_vars(&vars).unwrap();
        assert_eq!(c.base_url, "http://127.0.0.1:9999");
        assert_eq!(c.model, "qwen2.5:0.5b");
        assert_eq!(c.api_key.unwrap().expose(), "secret-key");

        let none = OllamaConfig::from_vars(&|_| None).unwrap();
        assert_eq!(none, OllamaConfig::default());
        assert_eq!(none.base_url, DEFAULT_BASE_URL);
        assert_eq!(none.model, DEFAULT_MODEL);
    }
}
