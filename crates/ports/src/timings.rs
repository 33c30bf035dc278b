//! The one timing record every backend fills.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Who measured the timings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TimingSource {
    /// The engine's own figures (Candle's clocks, mlx-lm's, Ollama's nanoseconds, llama.cpp's
    /// `timings` block).
    Backend,
    /// Measured by the adapter around the transport: prompt time is the time to first token, and
    /// decode time is the rest, so network and queueing are included.
    Client,
}

/// Where the time of one request went. Tokens per second are derived from these figures, never
/// estimated.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Timings {
    /// Time spent loading the model for this request; `None` when it was already resident.
    pub load: Option<Duration>,
    /// From the request to the first generated token; `None` when nothing was generated.
    pub time_to_first_token: Option<Duration>,
    /// Tokens of the prompt the backend processed.
    pub prompt_tokens: u32,
    /// Time spent processing the prompt.
    pub prompt_duration: Duration,
    /// Tokens generated.
    pub generated_tokens: u32,
    /// Time spent generating them.
    pub generation_duration: Duration,
    pub source: TimingSource,
    /// What masking the sampler with a grammar cost, for a constrained (structured-output)
    /// generation on a backend that masks it itself; `None` otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grammar: Option<GrammarTimings>,
}

/// The grammar's share of a constrained generation: its time per sampled token (checking the
/// sampled token, and computing the full mask where the check rejects it).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct GrammarTimings {
    /// Sampled tokens the grammar checked (tokens it forced are not sampled, so not counted).
    pub steps: u32,
    pub p50: Duration,
    pub p99: Duration,
}

impl GrammarTimings {
    /// The median and 99th percentile of `per_step`; `None` when nothing was sampled.
    pub fn of(per_step: &[Duration]) -> Option<Self> {
        let mut sorted = per_step.to_vec();
        sorted.sort_unstable();
        let at = |q: f64| sorted[((sorted.len() - 1) as f64 * q).round() as usize];
        (!sorted.is_empty()).then(|| Self {
            steps: sorted.len() as u32,
            p50: at(0.5),
            p99: at(0.99),
        })
    }
}

impl Timings {
    pub fn prompt_tokens_per_second(&self) -> Option<f64> {
        per_second(self.prompt_tokens, self.prompt_duration)
    }

    pub fn decode_tokens_per_second(&self) -> Option<f64> {
        per_second(self.generated_tokens, self.generation_duration)
    }

    /// A one-line human summary, e.g. for CLI output and examples.
    pub fn summary(&self) -> String {
        let rate = |r: Option<f64>| r.map_or_else(|| "n/a".to_owned(), |r| format!("{r:.1} t/s"));
        let ms = |d: Duration| format!("{:.1} ms", d.as_secs_f64() * 1e3);
        format!(
            "prompt {} tok in {} ({}), generated {} tok in {} ({}), ttft {}, load {} [{}]",
            self.prompt_tokens,
            ms(self.prompt_duration),
            rate(self.prompt_tokens_per_second()),
            self.generated_tokens,
            ms(self.generation_duration),
            rate(self.decode_tokens_per_second()),
            self.time_to_first_token
                .map_or_else(|| "n/a".to_owned(), ms),
            self.load.map_or_else(|| "resident".to_owned(), ms),
            match self.source {
                TimingSource::Backend => "backend clocks",
                TimingSource::Client => "client clocks",
            }
        )
    }
}

fn per_second(tokens: u32, duration: Duration) -> Option<f64> {
    let secs = duration.as_secs_f64();
    (tokens > 0 && secs > 0.0).then(|| f64::from(tokens) / secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_are_derived_and_absent_without_time_or_tokens() {
        let t = Timings {
            load: None,
            time_to_first_token: Some(Duration::from_millis(50)),
            prompt_tokens: 100,
            prompt_duration: Duration::from_millis(500),
            generated_tokens: 30,
            generation_duration: Duration::from_secs(3),
            source: TimingSource::Backend,
            grammar: None,
        };
        assert_eq!(t.prompt_tokens_per_second(), Some(200.0));
        assert_eq!(t.decode_tokens_per_second(), Some(10.0));
        let none = Timings {
            generated_tokens: 0,
            prompt_duration: Duration::ZERO,
            ..t.clone()
        };
        assert_eq!(none.decode_tokens_per_second(), None);
        assert_eq!(none.prompt_tokens_per_second(), None);
        assert!(t.summary().contains("10.0 t/s"));
    }

    #[test]
    fn grammar_percentiles_pick_from_the_sorted_steps() {
        assert_eq!(GrammarTimings::of(&[]), None);
        let steps: Vec<Duration> = (1..=100).rev().map(Duration::from_micros).collect();
        let g = GrammarTimings::of(&steps).expect("steps");
        assert_eq!(g.steps, 100);
        assert_eq!(g.p50, Duration::from_micros(51));
        assert_eq!(g.p99, Duration::from_micros(99));
    }
}
