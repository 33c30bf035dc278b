use std::time::{Duration, Instant};

use reqwest::header::HeaderMap;
use reqwest::{RequestBuilder, Response, StatusCode, Url};
use rigger_ports::{ErrorKind, InferenceError};

use crate::retry::{RetryPolicy, parse_retry_after};

/// A non-success HTTP response, read in full (up to [`MAX_ERROR_BODY`](crate::MAX_ERROR_BODY)),
/// handed to the adapter to turn into an error in its backend's own terms.
#[derive(Debug, Clone)]
pub struct ErrorResponse {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
    /// The server's `Retry-After`, parsed.
    pub retry_after: Option<Duration>,
}

/// The port's kind for an HTTP status, before an adapter refines it from the body (for example a
/// 400 that says the context is too long, or a 404 that is not about the model).
pub fn kind_for_status(status: StatusCode) -> ErrorKind {
    match status.as_u16() {
        401 | 403 => ErrorKind::Unauthorized,
        404 => ErrorKind::ModelNotFound,
        408 | 504 => ErrorKind::Timeout,
        413 => ErrorKind::ContextLengthExceeded,
        429 => ErrorKind::RateLimited,
        // 503 "unavailable" and 529 "overloaded" say: the service is up but cannot serve now.
        503 | 529 => ErrorKind::RateLimited,
        500..=599 => ErrorKind::BackendCrashed,
        400..=499 => ErrorKind::InvalidRequest,
        _ => ErrorKind::Protocol,
    }
}

/// Maps a reqwest failure (no response, or a body that broke off) onto the port's error, with the
/// deepest cause in the message (reqwest's own text is only "error sending request").
pub fn transport_error(backend: &str, err: &reqwest::Error) -> InferenceError {
    let url = err.url().map(|u| {
        let mut u = u.clone();
        u.set_query(None);
        u.to_string()
    });
    let at = url
        .as_deref()
        .map(|u| format!(" ({u})"))
        .unwrap_or_default();
    let cause = root_cause(err);
    if err.is_connect() {
        InferenceError::new(
            ErrorKind::NotAvailable,
            backend,
            format!("cannot connect{at}: {cause}"),
        )
        .with_retryable(true)
    } else if err.is_timeout() {
        InferenceError::timeout(backend, format!("timed out{at}: {cause}"))
    } else if err.is_decode() {
        InferenceError::protocol(backend, format!("undecodable response{at}: {cause}"))
    } else if err.is_builder() {
        InferenceError::invalid_request(backend, format!("cannot build the request{at}: {cause}"))
    } else {
        InferenceError::new(
            ErrorKind::Io,
            backend,
            format!("connection failed{at}: {cause}"),
        )
    }
}

pub(crate) fn root_cause(err: &(dyn std::error::Error + 'static)) -> String {
    let mut deepest: &dyn std::error::Error = err;
    while let Some(next) = deepest.source() {
        deepest = next;
    }
    deepest.to_string()
}

/// Sends a request, retrying under `policy` while nothing of a response has been used: on
/// connect failures, and on error responses that `on_error` marks retryable (by default the kinds
/// RateLimited, Timeout, BackendCrashed), honouring `Retry-After`. `build` makes a fresh request
/// per attempt. Success statuses return the response untouched (its body not yet read), so the
/// caller streams it; an error status is read and handed to `on_error`.
///
/// Once the caller reads the body, this function is out of the picture: nothing retries after
/// the first token.
pub async fn send_with_retries(
    backend: &str,
    policy: &RetryPolicy,
    build: impl Fn() -> RequestBuilder,
    on_error: impl Fn(ErrorResponse) -> InferenceError,
) -> Result<Response, InferenceError> {
    let mut retry = 0;
    loop {
        let (client, request) = build().build_split();
        let sent = match request {
            Ok(request) => {
                log_request(backend, &request, retry + 1);
                let started = Instant::now();
                let sent = client.execute(request).await;
                if let Ok(response) = &sent {
                    tracing::debug!(
                        backend,
                        status = response.status().as_u16(),
                        elapsed_ms = started.elapsed().as_millis() as u64,
                        "http response headers"
                    );
                }
                sent
            }
            Err(err) => Err(err),
        };
        let error = match sent {
            Ok(response) if response.status().is_success() => return Ok(response),
            Ok(response) => on_error(read_error(backend, response).await),
            Err(err) => transport_error(backend, &err),
        };
        let delay = (error.is_retryable() && retry < policy.max_retries)
            .then(|| policy.delay(retry, error.retry_after()))
            .flatten();
        let Some(delay) = delay else {
            return Err(if retry > 0 {
                let attempts = retry + 1;
                let message = format!("{} (after {attempts} attempts)", error.message());
                error.with_message(message)
            } else {
                error
            });
        };
        tracing::warn!(backend, retry = retry + 1, ?delay, error = %error, "retrying request");
        tokio::time::sleep(delay).await;
        retry += 1;
    }
}

/// The most of a request body the trace log shows.
const MAX_LOGGED_BODY: usize = 4096;

/// One attempt, for `RUST_LOG=rigger_http_support=debug`: method and URL (secrets taken out) at
/// debug, the body at trace. Headers are never logged: that is where the keys travel.
fn log_request(backend: &str, request: &reqwest::Request, attempt: u32) {
    tracing::debug!(
        backend,
        method = %request.method(),
        url = %redacted_url(request.url()),
        attempt,
        "http request"
    );
    if tracing::enabled!(tracing::Level::TRACE)
        && let Some(body) = request.body().and_then(|b| b.as_bytes())
    {
        let text = String::from_utf8_lossy(body);
        let mut cut = text.len().min(MAX_LOGGED_BODY);
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        tracing::trace!(backend, bytes = body.len(), body = %&text[..cut], "http request body");
    }
}

/// `url` fit for a log: no user or password, and the value of any query parameter whose name
/// suggests a secret (`key`, `token`, `secret`, `password`, `auth`, `sig`) replaced.
pub fn redacted_url(url: &Url) -> String {
    let mut url = url.clone();
    // Both fail only for URLs that cannot have credentials, which then have none.
    let _ = url.set_username("");
    let _ = url.set_password(None);
    if url.query().is_some() {
        let pairs: Vec<(String, String)> = url
            .query_pairs()
            .map(|(name, value)| {
                let lower = name.to_ascii_lowercase();
                let secret = ["key", "token", "secret", "password", "auth", "sig"]
                    .iter()
                    .any(|s| lower.contains(s));
                let value = if secret { "<redacted>".into() } else { value };
                (name.into_owned(), value.into_owned())
            })
            .collect();
        url.query_pairs_mut().clear().extend_pairs(pairs);
    }
    url.to_string()
}

async fn read_error(backend: &str, response: Response) -> ErrorResponse {
    let status = response.status();
    let headers = response.headers().clone();
    let retry_after = parse_retry_after(&headers);
    let mut body = match response.bytes().await {
        Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
        Err(err) => format!("<error body unreadable: {}>", root_cause(&err)),
    };
    tracing::trace!(backend, status = status.as_u16(), body = %body, "http error body");
    if body.len() > crate::MAX_ERROR_BODY {
        let mut cut = crate::MAX_ERROR_BODY;
        while !body.is_char_boundary(cut) {
            cut -= 1;
        }
        body.truncate(cut);
        body.push('…');
    }
    ErrorResponse {
        status,
        headers,
        body,
        retry_after,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_lose_credentials_and_secret_query_values() {
        let url = Url::parse("https://user:pw@api.example.test/v1/chat?api_key=sk-1&model=m&sig=x")
            .unwrap();
        let shown = redacted_url(&url);
        assert_eq!(
            shown,
            "https://api.example.test/v1/chat?api_key=%3Credacted%3E&model=m&sig=%3Credacted%3E"
        );
    }

    #[test]
    fn statuses_map_to_kinds() {
        let k = |s: u16| kind_for_status(StatusCode::from_u16(s).unwrap());
        assert_eq!(k(400), ErrorKind::InvalidRequest);
        assert_eq!(k(401), ErrorKind::Unauthorized);
        assert_eq!(k(404), ErrorKind::ModelNotFound);
        assert_eq!(k(429), ErrorKind::RateLimited);
        assert_eq!(k(500), ErrorKind::BackendCrashed);
        assert_eq!(k(529), ErrorKind::RateLimited);
        assert_eq!(k(504), ErrorKind::Timeout);
    }
}
