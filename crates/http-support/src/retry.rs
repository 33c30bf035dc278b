use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use reqwest::header::{HeaderMap, RETRY_AFTER};

/// When to try a request again: only before any of the response body has been used, on errors
/// marked retryable (connect failures, 429, 5xx), with exponential backoff and jitter, and
/// never sooner than the server's `Retry-After` asks.
///
/// Jitter: each wait is drawn between half the computed backoff and all of it ("equal
/// jitter"), so clients that failed together (a restarted server, a shared rate limit) do not
/// all come back at the same instant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Retries after the first attempt (0 = never retry).
    pub max_retries: u32,
    /// The longest wait before the first retry (the jittered wait is half to all of it); it
    /// doubles on each further retry.
    pub initial_backoff: Duration,
    /// No computed backoff waits longer than this.
    pub max_backoff: Duration,
    /// A `Retry-After` longer than this is not waited for: the error is returned instead, with
    /// the server's figure in it, so a caller is never parked for minutes without knowing.
    pub max_retry_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_retries: 2,
            initial_backoff: Duration::from_millis(250),
            max_backoff: Duration::from_secs(4),
            max_retry_after: Duration::from_secs(30),
        }
    }
}

impl RetryPolicy {
    /// A policy that never retries.
    pub fn none() -> Self {
        Self {
            max_retries: 0,
            ..Self::default()
        }
    }

    /// How long to wait before retry number `retry` (0-based), with random jitter, or `None`
    /// when the server asked for a longer wait than [`max_retry_after`](Self::max_retry_after).
    pub fn delay(&self, retry: u32, retry_after: Option<Duration>) -> Option<Duration> {
        self.delay_with(retry, retry_after, random_unit())
    }

    /// [`delay`](Self::delay) with the jitter drawn by the caller: `unit` in `[0, 1]` picks the
    /// wait between half the backoff (0) and all of it (1). For tests and seeded callers.
    pub fn delay_with(
        &self,
        retry: u32,
        retry_after: Option<Duration>,
        unit: f64,
    ) -> Option<Duration> {
        let ceiling = self
            .initial_backoff
            .saturating_mul(2u32.saturating_pow(retry))
            .min(self.max_backoff);
        let unit = if unit.is_finite() {
            unit.clamp(0.0, 1.0)
        } else {
            1.0
        };
        let backoff = ceiling / 2 + (ceiling / 2).mul_f64(unit);
        match retry_after {
            Some(asked) if asked > self.max_retry_after => None,
            Some(asked) => Some(asked.max(backoff)),
            None => Some(backoff),
        }
    }
}

/// A uniform draw from `[0, 1)`. The standard library's per-process random hash keys, mixed
/// with a counter, are plenty for spreading retries (no cryptographic need, no extra crate).
fn random_unit() -> f64 {
    static DRAWS: AtomicU64 = AtomicU64::new(0);
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u64(DRAWS.fetch_add(1, Ordering::Relaxed));
    // The top 53 bits: exactly representable in an f64.
    (hasher.finish() >> 11) as f64 / (1u64 << 53) as f64
}

/// Parses `Retry-After` in either of its forms: delta-seconds or an HTTP date.
pub fn parse_retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    if let Ok(seconds) = value.parse::<f64>() {
        return (seconds.is_finite() && seconds >= 0.0).then(|| Duration::from_secs_f64(seconds));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(
        at.duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    #[test]
    fn backoff_doubles_and_is_capped() {
        let p = RetryPolicy::default();
        assert_eq!(p.delay_with(0, None, 1.0), Some(Duration::from_millis(250)));
        assert_eq!(p.delay_with(1, None, 1.0), Some(Duration::from_millis(500)));
        assert_eq!(p.delay_with(10, None, 1.0), Some(Duration::from_secs(4)));
    }

    #[test]
    fn jitter_spreads_the_wait_between_half_and_all_of_the_backoff() {
        let p = RetryPolicy::default();
        assert_eq!(p.delay_with(1, None, 0.0), Some(Duration::from_millis(250)));
        assert_eq!(p.delay_with(1, None, 0.5), Some(Duration::from_millis(375)));
        assert_eq!(p.delay_with(10, None, 0.0), Some(Duration::from_secs(2)));
        // A seeded sequence of draws gives distinct waits, all inside the band.
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        let mut seeded = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 11) as f64 / (1u64 << 53) as f64
        };
        let waits: Vec<Duration> = (0..8)
            .filter_map(|_| p.delay_with(2, None, seeded()))
            .collect();
        assert!(
            waits
                .iter()
                .all(|w| (Duration::from_millis(500)..=Duration::from_secs(1)).contains(w))
        );
        let distinct: std::collections::HashSet<_> = waits.iter().collect();
        assert!(distinct.len() > 4, "{waits:?}");
    }

    #[test]
    fn the_default_draw_is_random() {
        let p = RetryPolicy::default();
        let waits: std::collections::HashSet<Duration> =
            (0..16).filter_map(|_| p.delay(3, None)).collect();
        assert!(waits.len() > 1, "16 draws, one wait: no jitter");
        assert!(
            waits
                .iter()
                .all(|w| *w >= Duration::from_secs(1) && *w <= Duration::from_secs(2))
        );
    }

    #[test]
    fn retry_after_wins_when_longer_and_refuses_when_too_long() {
        let p = RetryPolicy::default();
        assert_eq!(
            p.delay_with(0, Some(Duration::from_secs(3)), 1.0),
            Some(Duration::from_secs(3))
        );
        assert_eq!(
            p.delay_with(3, Some(Duration::from_millis(1)), 1.0),
            Some(Duration::from_secs(2))
        );
        assert_eq!(p.delay(0, Some(Duration::from_secs(31))), None);
    }

    #[test]
    fn retry_after_reads_seconds_and_dates() {
        let mut h = HeaderMap::new();
        h.insert(RETRY_AFTER, HeaderValue::from_static("7"));
        assert_eq!(parse_retry_after(&h), Some(Duration::from_secs(7)));
        h.insert(RETRY_AFTER, HeaderValue::from_static("0.5"));
        assert_eq!(parse_retry_after(&h), Some(Duration::from_millis(500)));
        h.insert(
            RETRY_AFTER,
            HeaderValue::from_static("Wed, 21 Oct 2015 07:28:00 GMT"),
        );
        assert_eq!(
            parse_retry_after(&h),
            Some(Duration::ZERO),
            "a past date means now"
        );
        let soon = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(100));
        h.insert(RETRY_AFTER, HeaderValue::from_str(&soon).unwrap());
        let d = parse_retry_after(&h).unwrap();
        assert!(
            d > Duration::from_secs(90) && d <= Duration::from_secs(100),
            "{d:?}"
        );
        h.insert(RETRY_AFTER, HeaderValue::from_static("soon"));
        assert_eq!(parse_retry_after(&h), None);
    }
}
