//! Deadlines on a streamed generation that a busy-looking server cannot push back.
//!
//! A server can hold a request open forever without producing anything: keep-alive events
//! (SSE `: ping` comments, Anthropic `ping` events, NDJSON lines without text) or a valid stream
//! trickled a few bytes a second. An idle timer restarted by every event never fires on those.
//! [`Watchdog`] keeps two clocks instead: time since the last *progress* (text, or the end of
//! the generation — the adapter says what counts, keep-alives never do) and the request's total
//! deadline, which nothing restarts.

use std::time::{Duration, Instant};

use futures::{Stream, StreamExt};
use rigger_ports::InferenceError;

/// The two limits of one generation and the settings that raise them (named in the errors).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// From sending the request to the end of the generation, whatever the server sends.
    pub total: Duration,
    /// The variable that raises [`total`](Self::total), e.g. `RIGGER_OPENAI_DEADLINE_SECS`.
    pub total_setting: &'static str,
    /// The longest time without progress (keep-alives do not count).
    pub stall: Duration,
    /// The variable that raises [`stall`](Self::stall).
    pub stall_setting: &'static str,
}

/// Watches one generation; see the module docs.
#[derive(Debug, Clone)]
pub struct Watchdog {
    backend: &'static str,
    limits: Limits,
    deadline: Instant,
    last_progress: Instant,
}

impl Watchdog {
    /// Starts both clocks at `started` (when the request was sent).
    pub fn new(backend: &'static str, limits: Limits, started: Instant) -> Self {
        Self {
            backend,
            limits,
            deadline: started + limits.total,
            last_progress: started,
        }
    }

    /// The generation moved on (text arrived, or it finished): the stall clock restarts.
    pub fn progressed(&mut self) {
        self.last_progress = Instant::now();
    }

    /// From now on a stall is `stall` without progress, raised by `setting` (e.g. a longer
    /// limit before the first token, which includes loading the model, then a shorter one).
    pub fn set_stall(&mut self, stall: Duration, setting: &'static str) {
        self.limits.stall = stall;
        self.limits.stall_setting = setting;
    }

    /// The next item of `stream`, or a Timeout error when the stall limit or the total deadline
    /// passes first. `None` is the end of the stream.
    pub async fn next<S>(&self, stream: &mut S) -> Result<Option<S::Item>, InferenceError>
    where
        S: Stream + Unpin,
    {
        let stall_at = self.last_progress + self.limits.stall;
        let until = stall_at.min(self.deadline);
        match tokio::time::timeout_at(until.into(), stream.next()).await {
            Ok(item) => Ok(item),
            Err(_) => Err(self.expired()),
        }
    }

    /// Runs `future` (e.g. waiting for the response headers) within the total deadline and
    /// `limit`, whichever ends first; `limit_setting` names the variable that raises `limit`.
    pub async fn within<F: std::future::Future>(
        &self,
        future: F,
        limit: Duration,
        limit_setting: &'static str,
        what: &str,
    ) -> Result<F::Output, InferenceError> {
        let limit_at = Instant::now() + limit;
        let until = limit_at.min(self.deadline);
        tokio::time::timeout_at(until.into(), future)
            .await
            .map_err(|_| {
                if limit_at <= self.deadline {
                    InferenceError::timeout(
                        self.backend,
                        format!("{what} did not arrive within {limit:?}"),
                    )
                    .with_retryable(false)
                    .with_hint(format!(
                        "raise {limit_setting} if the server needs longer (it includes loading the model and reading the prompt)"
                    ))
                } else {
                    self.total_error()
                }
            })
    }

    /// The error for whichever limit has passed.
    pub fn expired(&self) -> InferenceError {
        if self.last_progress + self.limits.stall < self.deadline {
            InferenceError::timeout(
                self.backend,
                format!(
                    "no progress for {:?}: no text arrived (keep-alives do not count)",
                    self.limits.stall
                ),
            )
            .with_retryable(false)
            .with_hint(format!(
                "raise {} if the server needs longer (before the first token it loads the model and reads the prompt)",
                self.limits.stall_setting
            ))
        } else {
            self.total_error()
        }
    }

    fn total_error(&self) -> InferenceError {
        InferenceError::timeout(
            self.backend,
            format!(
                "the generation did not finish within its total deadline of {:?}",
                self.limits.total
            ),
        )
        .with_retryable(false)
        .with_hint(format!(
            "raise {} for long answers or slow servers",
            self.limits.total_setting
        ))
    }
}

/// A duration setting in whole seconds: `None` when unset or blank, an `InvalidRequest` naming
/// the variable when it is not a number of seconds.
pub fn seconds_setting(
    backend: &'static str,
    lookup: &dyn Fn(&str) -> Option<String>,
    name: &str,
) -> Result<Option<Duration>, InferenceError> {
    let Some(value) = rigger_ports::setting(lookup, name) else {
        return Ok(None);
    };
    value
        .parse::<u64>()
        .map(Duration::from_secs)
        .map(Some)
        .map_err(|_| {
            InferenceError::invalid_request(
                backend,
                format!("{name}={value:?} is not a number of seconds"),
            )
            .with_hint(format!(
                "set {name} to a whole number of seconds, or unset it"
            ))
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rigger_ports::ErrorKind;

    const LIMITS: Limits = Limits {
        total: Duration::from_millis(300),
        total_setting: "TOTAL_VAR",
        stall: Duration::from_millis(100),
        stall_setting: "STALL_VAR",
    };

    #[tokio::test]
    async fn keep_alives_do_not_restart_the_stall_clock() {
        let dog = Watchdog::new("t", LIMITS, Instant::now());
        // A keep-alive every 10 ms, forever; the caller never reports progress.
        let mut pings = Box::pin(futures::stream::unfold((), |()| async {
            tokio::time::sleep(Duration::from_millis(10)).await;
            Some(((), ()))
        }));
        let error = loop {
            match dog.next(&mut pings).await {
                Ok(_) => continue,
                Err(e) => break e,
            }
        };
        assert_eq!(error.kind(), ErrorKind::Timeout);
        assert!(error.to_string().contains("STALL_VAR"), "{error}");
    }

    #[tokio::test]
    async fn progress_forever_still_ends_at_the_total_deadline() {
        let mut dog = Watchdog::new("t", LIMITS, Instant::now());
        let mut tokens = Box::pin(futures::stream::unfold((), |()| async {
            tokio::time::sleep(Duration::from_millis(10)).await;
            Some(((), ()))
        }));
        let error = loop {
            match dog.next(&mut tokens).await {
                Ok(_) => dog.progressed(),
                Err(e) => break e,
            }
        };
        assert_eq!(error.kind(), ErrorKind::Timeout);
        assert!(error.to_string().contains("TOTAL_VAR"), "{error}");
    }
}
