//! The machine: what it is, how busy it is, its memory bandwidth (measured once and cached), and
//! the peak memory of a process.

use std::path::Path;
use std::time::Instant;

use anyhow::Context;
use serde::{Deserialize, Serialize};

/// What identifies a machine for the cached bandwidth figure.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MachineId {
    pub cpu: String,
    pub cores: usize,
    pub memory_bytes: Option<u64>,
    pub os: String,
    pub arch: String,
}

impl MachineId {
    pub fn detect() -> Self {
        let cpu = std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|info| {
                info.lines()
                    .find(|l| l.starts_with("model name") || l.starts_with("Model"))
                    .and_then(|l| l.split_once(':'))
                    .map(|(_, v)| v.trim().to_owned())
            })
            .unwrap_or_else(|| "unknown CPU".to_owned());
        Self {
            cpu,
            cores: cores(),
            memory_bytes: meminfo_kib("MemTotal").map(|k| k * 1024),
            os: std::env::consts::OS.to_owned(),
            arch: std::env::consts::ARCH.to_owned(),
        }
    }

    pub fn describe(&self) -> String {
        let memory = self.memory_bytes.map_or_else(
            || "memory unknown".to_owned(),
            |b| format!("{:.1} GiB RAM", gib(b)),
        );
        format!(
            "{}, {} cores, {memory}, {} {}",
            self.cpu, self.cores, self.os, self.arch
        )
    }
}

pub fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

pub fn gib(bytes: u64) -> f64 {
    bytes as f64 / f64::from(1u32 << 30)
}

fn meminfo_kib(key: &str) -> Option<u64> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    status_kib(&info, key)
}

/// A `Key:   123 kB` field of /proc/meminfo or /proc/PID/status, in KiB.
fn status_kib(text: &str, key: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

/// The 1-, 5- and 15-minute load averages.
pub fn load_average() -> Option<[f64; 3]> {
    let text = std::fs::read_to_string("/proc/loadavg").ok()?;
    let mut it = text.split_whitespace().map(|v| v.parse::<f64>().ok());
    Some([it.next()??, it.next()??, it.next()??])
}

/// A warning when the 1-minute load says other work is running (more than half the cores busy).
pub fn load_warning(load: Option<[f64; 3]>, cores: usize) -> Option<String> {
    let one = load?[0];
    (one > 0.5 * cores as f64).then(|| {
        format!(
            "the 1-minute load average is {one:.2} on {cores} cores: other work is running, so \
             these figures understate this machine; rerun on a quiet machine before quoting them"
        )
    })
}

/// Peak resident memory (VmHWM) of a process, from /proc. `None` where there is no /proc.
pub fn peak_rss_bytes(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status_kib(&status, "VmHWM").map(|k| k * 1024)
}

/// Resets this process's peak RSS to its current RSS (Linux: `5` to /proc/self/clear_refs), so
/// that an in-process row's peak is its own model's and not an earlier row's.
pub fn reset_own_peak_rss() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

/// The measured read bandwidth, cached per machine in `target/bench/machine.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Bandwidth {
    pub machine: MachineId,
    /// Bytes per second: the best of several multi-threaded passes over the buffer.
    pub bytes_per_second: f64,
    pub buffer_bytes: u64,
    pub threads: usize,
    pub passes: usize,
    pub method: String,
    pub measured_at: String,
}

impl Bandwidth {
    pub fn gb_per_second(&self) -> f64 {
        self.bytes_per_second / 1e9
    }
}

/// The cached figure when it was measured on this machine; else measures and caches it.
pub fn bandwidth(cache: &Path, remeasure: bool) -> anyhow::Result<(Bandwidth, bool)> {
    let machine = MachineId::detect();
    if !remeasure
        && let Ok(text) = std::fs::read_to_string(cache)
        && let Ok(cached) = serde_json::from_str::<Bandwidth>(&text)
        && cached.machine == machine
    {
        return Ok((cached, true));
    }
    let measured = measure_bandwidth(machine, 1 << 30, 5);
    if let Some(dir) = cache.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    std::fs::write(cache, serde_json::to_string_pretty(&measured)?)
        .with_context(|| format!("cannot write {}", cache.display()))?;
    Ok((measured, false))
}

/// Reads a buffer far larger than any cache on every core at once, `passes` times, and keeps the
/// fastest pass. The buffer is filled with non-zero bytes, so every page is real memory (a zeroed
/// allocation could map one shared zero page and read from cache), and scanned with memchr for a
/// byte it does not contain: SIMD reads at full speed even in an unoptimised build.
pub fn measure_bandwidth(machine: MachineId, buffer_bytes: usize, passes: usize) -> Bandwidth {
    let buffer = vec![1u8; buffer_bytes];
    let threads = machine.cores.max(1);
    let chunk = buffer_bytes.div_ceil(threads);
    let mut best = f64::MAX;
    for _ in 0..passes {
        let started = Instant::now();
        let found = std::thread::scope(|s| {
            let handles: Vec<_> = buffer
                .chunks(chunk)
                .map(|part| s.spawn(move || memchr::memchr(0, part).is_some()))
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap_or(true))
                .fold(false, |a, b| a | b)
        });
        let secs = started.elapsed().as_secs_f64();
        if !found {
            best = best.min(secs);
        }
    }
    Bandwidth {
        machine,
        bytes_per_second: buffer_bytes as f64 / best,
        buffer_bytes: buffer_bytes as u64,
        threads,
        passes,
        method: format!(
            "best of {passes} passes reading a {} MiB buffer on {threads} threads (memchr)",
            buffer_bytes >> 20
        ),
        measured_at: chrono::Utc::now().to_rfc3339(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // a panic is how a test reports failure

    use super::*;

    #[test]
    fn status_fields_parse_in_kib() {
        let status = "Name:\tpython\nVmPeak:\t  900 kB\nVmHWM:\t   2048 kB\nVmRSS:\t 1024 kB\n";
        assert_eq!(status_kib(status, "VmHWM"), Some(2048));
        assert_eq!(status_kib(status, "VmSwap"), None);
    }

    #[test]
    fn load_warning_only_above_half_the_cores() {
        assert!(load_warning(Some([0.9, 0.0, 0.0]), 2).is_none());
        let warning = load_warning(Some([1.2, 0.0, 0.0]), 2).unwrap();
        assert!(warning.contains("1.20 on 2 cores"), "{warning}");
        assert!(load_warning(None, 2).is_none());
    }

    #[test]
    fn bandwidth_measurement_gives_a_finite_positive_figure() {
        let b = measure_bandwidth(MachineId::detect(), 8 << 20, 2);
        assert!(b.bytes_per_second.is_finite() && b.bytes_per_second > 0.0);
        assert!(b.method.contains("8 MiB"), "{}", b.method);
    }
}
