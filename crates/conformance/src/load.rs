//! Many requests at once through one model: every one completes or fails typed, nothing
//! deadlocks, and the process's memory stays bounded. Adapters' `tests/load.rs` run it against
//! their real backend or fixture; the figures are printed for the record.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rigger_ports::{ErrorKind, GenerationRequest, LanguageModel};

use crate::Failure;

/// What a load run did.
#[derive(Debug, Clone)]
pub struct LoadFigures {
    pub requests: usize,
    pub completed: usize,
    /// The kinds of the requests that failed (typed, or the run would have failed).
    pub failed: Vec<ErrorKind>,
    pub elapsed: Duration,
    /// The most the process's resident memory grew during the run, where the OS says
    /// (`/proc/self/status` on Linux).
    pub peak_rss_growth: Option<u64>,
}

impl std::fmt::Display for LoadFigures {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} requests: {} completed, {} failed {:?}, in {:.2?}, peak RSS growth {}",
            self.requests,
            self.completed,
            self.failed.len(),
            self.failed,
            self.elapsed,
            self.peak_rss_growth
                .map_or("unknown".to_owned(), |b| format!(
                    "{:.1} MiB",
                    b as f64 / 1048576.0
                ))
        )
    }
}

/// The process's resident memory in bytes, where `/proc` says.
pub fn resident_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Sends `n` copies of `request` at once and waits for all of them (at most `patience`).
/// Fails on a hang, a panic, or an error of kind `Internal` (a bug of ours, not a typed
/// failure of the backend).
pub async fn concurrent_load(
    model: Arc<dyn LanguageModel>,
    request: GenerationRequest,
    n: usize,
    patience: Duration,
) -> Result<LoadFigures, Failure> {
    let before = resident_bytes();
    let peak = Arc::new(AtomicU64::new(before.unwrap_or(0)));
    let done = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (peak, done) = (Arc::clone(&peak), Arc::clone(&done));
        tokio::spawn(async move {
            while !done.load(Ordering::Relaxed) {
                if let Some(now) = resident_bytes() {
                    peak.fetch_max(now, Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };
    let started = Instant::now();
    let runs = (0..n).map(|_| {
        let (model, request) = (Arc::clone(&model), request.clone());
        tokio::spawn(async move { model.generate(request).await })
    });
    let joined = tokio::time::timeout(patience, futures::future::join_all(runs)).await;
    let elapsed = started.elapsed();
    done.store(true, Ordering::Relaxed);
    let _ = sampler.await;
    let joined = joined.map_err(|_| {
        Failure(format!(
            "{n} concurrent requests did not all finish within {patience:?}"
        ))
    })?;
    let mut figures = LoadFigures {
        requests: n,
        completed: 0,
        failed: Vec::new(),
        elapsed,
        peak_rss_growth: before.map(|b| peak.load(Ordering::Relaxed).saturating_sub(b)),
    };
    for (i, result) in joined.into_iter().enumerate() {
        match result.map_err(|e| Failure(format!("request {i} panicked: {e}")))? {
            Ok(generation) if generation.completion.usage.completion_tokens > 0 => {
                figures.completed += 1;
            }
            Ok(_) => return Err(Failure(format!("request {i} generated nothing"))),
            Err(e) if e.kind() == ErrorKind::Internal => {
                return Err(Failure(format!("request {i} failed untyped: {e}")));
            }
            Err(e) => figures.failed.push(e.kind()),
        }
    }
    Ok(figures)
}
