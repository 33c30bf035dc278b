//! Running the same work on each backend: warm-up, then the measured runs, into one [`Row`].

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::str::FromStr;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures::StreamExt;
use indicatif::ProgressBar;
use rigger_ports::{
    ChatMessage, Completion, GenerationRequest, LanguageModel, ResponseFormat, TimingSource,
    TokenBudget,
};

use super::machine;
use super::model::{BenchModel, WeightFormat};
use super::report::{Row, Stats};

mod candle;
mod llama_bench;
mod mlx;
mod ollama;
mod openai;

pub use candle::{ConstrainedRun, candle};
pub use llama_bench::llama_bench;
pub use mlx::{mlx_adapter, mlx_per_call, mlx_python, mlx_raw};
pub use ollama::{ollama, ollama_reachable};
pub use openai::openai;

/// A backend named in `--backends`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Backend {
    Candle,
    /// The Candle adapter with the Decomposer's JSON schema as the response format: constrained
    /// decoding beside the unconstrained `candle` row.
    CandleJson,
    /// The Candle adapter on candle's own `quantized_llama` (its reference path).
    CandleReference,
    /// llama.cpp's `llama-bench` on the same GGUF files.
    LlamaBench {
        binary: PathBuf,
    },
    Mlx,
    MlxRaw,
    MlxPerCall,
    Ollama,
    /// An OpenAI-compatible server: the kind (`openai`, `llama-server`, `vllm`, `mlx-lm`) and URL.
    OpenAi {
        kind: String,
        url: String,
    },
}

pub const DEFAULT_BACKENDS: &str = "candle,candle-json,mlx,mlx-raw,mlx-per-call,ollama";

impl FromStr for Backend {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> anyhow::Result<Self> {
        let s = s.trim();
        if let Some((kind, url)) = s.split_once('=') {
            let kind = kind.trim().to_ascii_lowercase();
            if kind == "llama-bench" {
                return Ok(Backend::LlamaBench {
                    binary: PathBuf::from(url.trim()),
                });
            }
            if !["openai", "llama-server", "vllm", "mlx-lm"].contains(&kind.as_str()) {
                bail!(
                    "unknown server kind {kind:?} in {s:?}; use openai=URL, llama-server=URL, vllm=URL or mlx-lm=URL"
                );
            }
            if url.trim().is_empty() {
                bail!("{s:?} has no URL; e.g. llama-server=http://127.0.0.1:8080/v1");
            }
            return Ok(Backend::OpenAi {
                kind,
                url: url.trim().to_owned(),
            });
        }
        match s.to_ascii_lowercase().as_str() {
            "candle" => Ok(Backend::Candle),
            "candle-json" => Ok(Backend::CandleJson),
            "candle-reference" => Ok(Backend::CandleReference),
            "llama-bench" => Ok(Backend::LlamaBench {
                binary: default_llama_bench(),
            }),
            "mlx" => Ok(Backend::Mlx),
            "mlx-raw" => Ok(Backend::MlxRaw),
            "mlx-per-call" => Ok(Backend::MlxPerCall),
            "ollama" => Ok(Backend::Ollama),
            "openai" => bail!("openai needs the server's URL: openai=http://127.0.0.1:8080/v1"),
            _ => bail!(
                "unknown backend {s:?}; use candle, candle-json, candle-reference, llama-bench[=PATH], mlx, \
                 mlx-raw, mlx-per-call, ollama, openai=URL, llama-server=URL, vllm=URL or mlx-lm=URL"
            ),
        }
    }
}

/// Where `../shared/tools/build-llama-server.sh` puts llama.cpp's tools by default.
pub fn default_llama_bench() -> PathBuf {
    std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_default()
        .join(".cache/rigger-peers/llama.cpp/bin/llama-bench")
}

/// The work every backend does, and where to report progress.
pub struct Work<'a> {
    pub model: &'a BenchModel,
    pub user: &'a str,
    pub prompt_tokens: usize,
    pub gen_tokens: u32,
    pub runs: usize,
    pub threads: usize,
    /// Record the CPU engine's step timings on the Candle rows (`--step-times`).
    pub step_times: bool,
    pub bar: &'a ProgressBar,
}

impl Work<'_> {
    fn messages(&self) -> Vec<ChatMessage> {
        vec![ChatMessage::user(self.user)]
    }

    fn step(&self, what: &str) {
        self.bar.set_message(what.to_owned());
    }
}

/// The figures of one request.
struct Sample {
    completion: Completion,
    wall: Duration,
}

async fn one_request(
    model: &dyn LanguageModel,
    request: GenerationRequest,
) -> anyhow::Result<Sample> {
    let started = Instant::now();
    let mut stream = model.stream(request).await?;
    let mut done = None;
    while let Some(event) = stream.next().await {
        match event? {
            rigger_ports::StreamEvent::Delta(_) => {}
            rigger_ports::StreamEvent::Done(c) => done = Some(c),
        }
    }
    let wall = started.elapsed();
    let completion = done.context("the stream ended without its final record")?;
    Ok(Sample { completion, wall })
}

/// Warm-up plus the measured runs through the port, filling the row's figures and checks.
pub async fn measure_port(
    model: &dyn LanguageModel,
    work: &Work<'_>,
    row: &mut Row,
) -> anyhow::Result<()> {
    measure_port_with(model, work, row, None).await
}

/// [`measure_port`], or with a JSON response format: the grammar decides where generation ends
/// (a budget of `constrained.budget` tokens is room, not a target), so the row reports decode
/// speed over the tokens the grammar let through and what the grammar cost per sampled token.
pub async fn measure_port_with(
    model: &dyn LanguageModel,
    work: &Work<'_>,
    row: &mut Row,
    constrained: Option<&candle::ConstrainedRun>,
) -> anyhow::Result<()> {
    let exact = model.descriptor().capabilities.exact_token_budget && constrained.is_none();
    let budget = if let Some(c) = constrained {
        TokenBudget::UpTo(c.budget)
    } else if exact {
        TokenBudget::Exactly(work.gen_tokens)
    } else {
        row.notes.push(format!(
            "no exact token budget on this backend: asked for up to {} tokens",
            work.gen_tokens
        ));
        TokenBudget::UpTo(work.gen_tokens)
    };
    let request = GenerationRequest {
        budget,
        temperature: Some(0.0),
        response_format: constrained.map_or(ResponseFormat::Text, |c| c.format.clone()),
        ..GenerationRequest::new(work.messages())
    };
    work.step(&format!("{}: warm-up", row.framework));
    let warmup = one_request(model, request.clone()).await?;
    work.bar.inc(1);
    if row.load_seconds.is_none() {
        row.load_seconds = warmup.completion.timings.load.map(|d| d.as_secs_f64());
    }
    let mut samples = Vec::with_capacity(work.runs);
    for i in 0..work.runs {
        work.step(&format!("{}: run {}/{}", row.framework, i + 1, work.runs));
        samples.push(one_request(model, request.clone()).await?);
        work.bar.inc(1);
    }
    fill_from_samples(row, &samples, work, constrained.is_some());
    if constrained.is_some() {
        fill_grammar(row, &samples);
    } else if !exact && row.comparable {
        row.notes.push(format!(
            "every run still generated exactly {} tokens, so the work matches",
            work.gen_tokens
        ));
    }
    Ok(())
}

/// The grammar's cost per sampled token (median of the runs' p50 and p99), and how many tokens
/// it forced (fed without sampling).
fn fill_grammar(row: &mut Row, samples: &[Sample]) {
    let grammar: Vec<_> = samples
        .iter()
        .filter_map(|s| s.completion.timings.grammar)
        .collect();
    if grammar.len() < samples.len() {
        row.comparable = false;
        row.notes.push(format!(
            "the backend reported the grammar's cost for {} of {} runs",
            grammar.len(),
            samples.len()
        ));
    }
    let ms = |d: std::time::Duration| d.as_secs_f64() * 1e3;
    row.grammar_p50_ms = Stats::of(&grammar.iter().map(|g| ms(g.p50)).collect::<Vec<_>>());
    row.grammar_p99_ms = Stats::of(&grammar.iter().map(|g| ms(g.p99)).collect::<Vec<_>>());
    if let (Some(s), Some(g)) = (samples.first(), grammar.first()) {
        let generated = s.completion.usage.completion_tokens;
        row.notes.push(format!(
            "JSON schema: {generated} tokens to the grammar's end, {} sampled and checked, {} forced",
            g.steps,
            generated.saturating_sub(g.steps)
        ));
    }
}

fn fill_from_samples(row: &mut Row, samples: &[Sample], work: &Work<'_>, constrained: bool) {
    let timings = samples.iter().map(|s| &s.completion.timings);
    row.ttft_ms = Stats::of(
        &timings
            .clone()
            .filter_map(|t| t.time_to_first_token.map(|d| d.as_secs_f64() * 1e3))
            .collect::<Vec<_>>(),
    );
    row.prompt_tokens_per_second = Stats::of(
        &timings
            .clone()
            .filter_map(|t| t.prompt_tokens_per_second())
            .collect::<Vec<_>>(),
    );
    row.decode_tokens_per_second = Stats::of(
        &timings
            .clone()
            .filter_map(|t| t.decode_tokens_per_second())
            .collect::<Vec<_>>(),
    );
    row.seconds_per_call = Stats::of(
        &samples
            .iter()
            .map(|s| s.wall.as_secs_f64())
            .collect::<Vec<_>>(),
    );
    row.timing_source = samples.first().map(|s| {
        match s.completion.timings.source {
            TimingSource::Backend => "backend",
            TimingSource::Client => "client",
        }
        .to_owned()
    });
    let counted: Vec<(u32, u32)> = samples
        .iter()
        .map(|s| {
            (
                s.completion.usage.prompt_tokens,
                s.completion.usage.completion_tokens,
            )
        })
        .collect();
    if constrained {
        // The grammar, not the budget, ends these runs: only the prompt must match.
        check_counts(row, &counted, work.prompt_tokens, None);
    } else {
        check_counts(row, &counted, work.prompt_tokens, Some(work.gen_tokens));
    }
}

/// The same prompt and the same number of generated tokens on every run, or the row says not.
fn check_counts(
    row: &mut Row,
    counted: &[(u32, u32)],
    prompt_tokens: usize,
    gen_tokens: Option<u32>,
) {
    let wrong_prompt: Vec<u32> = counted
        .iter()
        .map(|(p, _)| *p)
        .filter(|p| *p as usize != prompt_tokens)
        .collect();
    if let Some(p) = wrong_prompt.first() {
        row.comparable = false;
        row.notes.push(format!(
            "the backend counted {p} prompt tokens, not {prompt_tokens}"
        ));
    }
    let Some(gen_tokens) = gen_tokens else {
        return;
    };
    let wrong_gen: Vec<u32> = counted
        .iter()
        .map(|(_, g)| *g)
        .filter(|g| *g != gen_tokens)
        .collect();
    if let Some(g) = wrong_gen.first() {
        row.comparable = false;
        row.notes.push(format!(
            "generated {g} tokens, not {gen_tokens}, in {} of {} runs",
            wrong_gen.len(),
            counted.len()
        ));
    }
}

/// Why a row has no figures.
pub enum Outcome {
    Unavailable(String),
    Failed(String),
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // a panic is how a test reports failure

    use super::*;

    #[test]
    fn backends_parse_with_urls_and_unknown_ones_list_the_known() {
        assert_eq!("candle".parse::<Backend>().unwrap(), Backend::Candle);
        assert_eq!(
            "llama-server=http://127.0.0.1:8080/v1"
                .parse::<Backend>()
                .unwrap(),
            Backend::OpenAi {
                kind: "llama-server".into(),
                url: "http://127.0.0.1:8080/v1".into()
            }
        );
        let err = "tpu".parse::<Backend>().unwrap_err().to_string();
        assert!(
            err.contains("mlx-per-call") && err.contains("openai=URL"),
            "{err}"
        );
        assert!("openai".parse::<Backend>().is_err());
        assert!("foo=http://x".parse::<Backend>().is_err());
        assert_eq!(
            "candle-json".parse::<Backend>().unwrap(),
            Backend::CandleJson
        );
        for name in DEFAULT_BACKENDS.split(',') {
            name.parse::<Backend>().unwrap();
        }
        assert_eq!(
            "candle-reference".parse::<Backend>().unwrap(),
            Backend::CandleReference
        );
        assert_eq!(
            "llama-bench=/opt/llama-bench".parse::<Backend>().unwrap(),
            Backend::LlamaBench {
                binary: "/opt/llama-bench".into()
            }
        );
        assert_eq!(
            "llama-bench".parse::<Backend>().unwrap(),
            Backend::LlamaBench {
                binary: default_llama_bench()
            }
        );
    }

    #[test]
    fn counts_that_differ_make_the_row_not_comparable_and_say_how() {
        let mut row = Row::new("x", "x", None);
        check_counts(&mut row, &[(32, 16), (32, 16)], 32, Some(16));
        assert!(row.comparable && row.notes.is_empty());
        check_counts(&mut row, &[(32, 90), (32, 91)], 32, None);
        assert!(row.comparable && row.notes.is_empty());
        check_counts(&mut row, &[(33, 16), (32, 12)], 32, Some(16));
        assert!(!row.comparable);
        assert_eq!(
            row.notes,
            [
                "the backend counted 33 prompt tokens, not 32",
                "generated 12 tokens, not 16, in 1 of 2 runs"
            ]
        );
    }
}
