//! `rigger-bench` (run it as `cargo xtask bench`): one model, every backend, side by side, on
//! this machine.
//!
//! Every backend gets the byte-identical weights in its own format (GGUF for Candle and Ollama,
//! the HF folder for MLX), the same prompt tokens and exactly the same number of generated tokens
//! (the port's `TokenBudget::Exactly`), greedy; a warm-up, then the measured runs. A backend that
//! is missing gets a row with the reason; one that cannot be held to the same work gets a row that
//! says it is not comparable. Output: the spec's table, the full figures, `target/bench/<time>.json`
//! and an SVG chart. See docs/bench.md.
//!
//! A binary of its own, so that the xtask stays light: the inference stack it measures (the
//! adapters, candle, tokenizers) is compiled only when a benchmark runs.

mod backends;
mod machine;
mod model;
mod plan;
mod prompt;
mod report;

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};
use clap::Parser;
use serde::Serialize;
use tokenizers::Tokenizer;

use backends::{Backend, Outcome, Work};
use model::{BenchModel, WeightFormat};
use report::{Row, Stats, Status};

/// One model on every backend, side by side: tokens/s, TTFT, memory, against the ceiling.
#[derive(Parser, Debug)]
#[command(name = "cargo xtask bench", bin_name = "cargo xtask bench")]
pub struct Args {
    /// `synthetic:SHAPE` (generated once, cached under target/rigger-models), a model folder, or
    /// a hub id already in the Hugging Face cache.
    #[arg(long, default_value = "synthetic:tinyllama-1.1b")]
    model: String,
    /// Comma-separated: candle, candle-json (the same with the Decomposer's JSON schema, constrained
    /// decoding), candle-reference (candle's own quantized_llama), llama-bench[=PATH]
    /// (llama.cpp's benchmark on the same GGUF), mlx, mlx-raw, mlx-per-call, ollama, openai=URL,
    /// llama-server=URL, vllm=URL, mlx-lm=URL.
    #[arg(long, value_delimiter = ',', default_value = backends::DEFAULT_BACKENDS)]
    backends: Vec<String>,
    /// GGUF formats for Candle and Ollama (MLX loads the HF folder's f16 safetensors).
    #[arg(long, value_delimiter = ',', default_value = "q4_0,q8_0,f16")]
    formats: Vec<String>,
    /// Prompt length in tokens, chat template included, with the model's own tokenizer.
    #[arg(long, default_value_t = 128)]
    prompt_tokens: usize,
    /// Tokens generated per run, exactly (end-of-sequence is ignored).
    #[arg(long, default_value_t = 128)]
    gen_tokens: u32,
    /// Measured runs per row, after one warm-up run.
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// Compute threads for Candle (default: every core).
    #[arg(long)]
    threads: Option<usize>,
    /// Seed of the synthetic model.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Measure the memory bandwidth again instead of using target/bench/machine.json.
    #[arg(long)]
    remeasure_bandwidth: bool,
    /// Run from an unoptimised build (for trying the command out; figures are then not valid).
    #[arg(long)]
    debug_build: bool,
    /// Time each step of the CPU engine's forward pass on the Candle rows (products, attention,
    /// norms, ...) and print, per row, where a prompt and a decode step spend their time.
    #[arg(long)]
    step_times: bool,
}

/// The JSON record of a run.
#[derive(Serialize)]
struct Record<'a> {
    timestamp: String,
    command: String,
    build: &'static str,
    git_commit: Option<String>,
    machine: &'a machine::MachineId,
    load_average_start: Option<[f64; 3]>,
    load_average_end: Option<[f64; 3]>,
    load_warning: Option<String>,
    bandwidth: &'a machine::Bandwidth,
    model: ModelRecord<'a>,
    prompt_tokens: usize,
    gen_tokens: u32,
    runs: usize,
    warmup_runs: usize,
    candle_threads: usize,
    mlx: Option<String>,
    ceiling_method: &'static str,
    /// The side-by-side ratio lines printed at the end (Candle adapter against llama.cpp and
    /// against candle's own path, per GGUF format).
    ratios: &'a [String],
    rows: &'a [Row],
}

#[derive(Serialize)]
struct ModelRecord<'a> {
    spec: &'a str,
    label: &'a str,
    hf_folder: Option<String>,
    gguf: Vec<(String, String)>,
    prompt_user_chars: usize,
    template_tokens: usize,
}

const CEILING_METHOD: &str = "measured read bandwidth / bytes of weights read per decoded token \
    (every tensor of the file, less the token-embedding table of which a token reads one row, \
    unless it doubles as the output projection); KV-cache reads are left out, so the true \
    ceiling is slightly lower";

fn main() {
    if let Err(e) = run(Args::parse()) {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

fn run(args: Args) -> anyhow::Result<()> {
    if cfg!(debug_assertions) && !args.debug_build {
        return rerun_release();
    }
    let started_load = machine::load_average();
    let cores = machine::cores();
    let load_warning = machine::load_warning(started_load, cores);
    if let Some(w) = &load_warning {
        println!("WARNING: {w}");
    }
    if args.runs == 0 || args.gen_tokens == 0 {
        bail!("--runs and --gen-tokens must be at least 1");
    }
    let backends = args
        .backends
        .iter()
        .filter(|b| !b.trim().is_empty())
        .map(|b| b.parse::<Backend>())
        .collect::<anyhow::Result<Vec<_>>>()?;
    let formats = args
        .formats
        .iter()
        .map(|f| f.parse::<WeightFormat>())
        .collect::<anyhow::Result<Vec<_>>>()?;
    let threads = args.threads.unwrap_or(cores);
    if threads == 0 {
        bail!("--threads must be at least 1");
    }

    let target = target_dir();
    let bench_dir = target.join("bench");
    let machine_file = bench_dir.join("machine.json");
    if args.remeasure_bandwidth || !machine_file.exists() {
        println!(
            "bench: measuring this machine's memory bandwidth (once; cached in {})",
            machine_file.display()
        );
    }
    let (bandwidth, cached) = machine::bandwidth(&machine_file, args.remeasure_bandwidth)?;
    println!(
        "bench: {}; memory bandwidth {:.1} GB/s ({}{})",
        bandwidth.machine.describe(),
        bandwidth.gb_per_second(),
        bandwidth.method,
        if cached { ", cached" } else { "" }
    );

    let model = model::resolve(&args.model, args.seed, &target.join("rigger-models"))?;
    let tokenizer = Tokenizer::from_file(&model.tokenizer)
        .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", model.tokenizer.display()))?;
    let template = prompt::template_from_tokenizer_config(&model.tokenizer_config)?;
    let bench_prompt = prompt::exact_prompt(&tokenizer, &template, args.prompt_tokens)?;
    if let Some(ctx) = model.context_length
        && args.prompt_tokens + args.gen_tokens as usize > ctx as usize
    {
        bail!(
            "--prompt-tokens {} plus --gen-tokens {} exceed the model's context of {ctx} tokens",
            args.prompt_tokens,
            args.gen_tokens
        );
    }
    println!(
        "bench: {}: prompt {} tokens (template {}), {} generated tokens exactly, greedy, 1 warm-up + {} runs, Candle threads {threads}",
        model.label, bench_prompt.tokens, bench_prompt.template_tokens, args.gen_tokens, args.runs
    );

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let plan = runtime.block_on(plan::rows(&backends, &formats, &model));
    let steps = plan.iter().filter(|p| p.reason.is_none()).count() as u64 * (1 + args.runs as u64);
    let bar = report::bar(
        steps,
        "{elapsed_precise} [{bar:30}] {pos}/{len} requests  {msg}",
    );
    let work = Work {
        model: &model,
        user: &bench_prompt.user,
        prompt_tokens: bench_prompt.tokens,
        gen_tokens: args.gen_tokens,
        runs: args.runs,
        threads,
        step_times: args.step_times,
        bar: &bar,
    };
    let mut rows = Vec::new();
    let mut mlx_versions = None;
    for planned in plan {
        let mut row = planned.row;
        if let Some(reason) = planned.reason {
            rows.push(row.unavailable(reason));
            continue;
        }
        let result: Result<(), Outcome> = match &planned.backend {
            Backend::Candle | Backend::CandleJson | Backend::CandleReference => {
                let format = planned.format.context("a Candle row has a format")?;
                let kernels = if planned.backend == Backend::CandleReference {
                    rigger_candle_adapter::Kernels::Reference
                } else {
                    candle_kernels()?
                };
                let constrained = (planned.backend == Backend::CandleJson)
                    .then(backends::ConstrainedRun::decomposer);
                runtime
                    .block_on(backends::candle(
                        &work,
                        format,
                        kernels,
                        constrained.as_ref(),
                        &mut row,
                    ))
                    .map_err(failed)
            }
            Backend::LlamaBench { binary } => {
                let format = planned.format.context("a llama-bench row has a format")?;
                backends::llama_bench(&work, binary, format, &mut row).map_err(failed)
            }
            Backend::Mlx => planned.python.as_deref().map_or(Ok(()), |python| {
                runtime
                    .block_on(backends::mlx_adapter(&work, python, &mut row))
                    .map(|v| mlx_versions = Some(v))
                    .map_err(failed)
            }),
            Backend::MlxRaw => planned.python.as_deref().map_or(Ok(()), |python| {
                backends::mlx_raw(&work, python, &mut row).map_err(failed)
            }),
            Backend::MlxPerCall => planned.python.as_deref().map_or(Ok(()), |python| {
                backends::mlx_per_call(&work, python, &mut row).map_err(failed)
            }),
            Backend::Ollama => match (&planned.ollama, planned.format) {
                (Some(config), Some(format)) => runtime
                    .block_on(backends::ollama(&work, config, format, &mut row))
                    .map_err(failed),
                _ => Err(Outcome::Failed("no Ollama configuration".into())),
            },
            Backend::OpenAi { kind, url } => {
                runtime.block_on(backends::openai(&work, kind, url, &mut row))
            }
        };
        row = match result {
            Ok(()) => row,
            Err(Outcome::Unavailable(reason)) => row.unavailable(reason),
            Err(Outcome::Failed(error)) => row.failed(error),
        };
        ceiling(&mut row, &model, bandwidth.bytes_per_second);
        if bar.is_hidden() {
            println!("  {}", one_line(&row));
        } else {
            bar.println(format!("  {}", one_line(&row)));
        }
        rows.push(row);
    }
    bar.finish_and_clear();
    compare_per_call(&mut rows);
    let ratio_lines = ratios(&rows);
    for line in &ratio_lines {
        println!("{line}");
    }

    let label = model.label.clone();
    println!("\n{}", report::spec_table(&rows, &label));
    println!("{}", report::full_table(&rows));
    for row in &rows {
        if let Some(steps) = &row.step_times {
            let format = row.format.as_deref().unwrap_or("");
            println!(
                "Steps, {} {format} (ms per forward):\n{steps}",
                row.framework
            );
        }
    }
    println!(
        "Ceiling: {:.1} GB/s measured ({}); {CEILING_METHOD}.",
        bandwidth.gb_per_second(),
        bandwidth.method
    );
    // Recorded, not judged: by the end the bench's own threads are part of the load average.
    let end_load = machine::load_average();
    if let Some(w) = load_warning.as_ref() {
        println!("WARNING: {w}");
    }

    let timestamp = chrono::Utc::now().format("%Y%m%dT%H%M%SZ").to_string();
    std::fs::create_dir_all(&bench_dir)
        .with_context(|| format!("cannot create {}", bench_dir.display()))?;
    let record = Record {
        timestamp: timestamp.clone(),
        // As `cargo xtask bench` was asked for it (the record's format before the bench had its
        // own binary).
        command: std::iter::once("bench".to_owned())
            .chain(std::env::args().skip(1))
            .collect::<Vec<_>>()
            .join(" "),
        build: if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        },
        git_commit: git_commit(),
        machine: &bandwidth.machine,
        load_average_start: started_load,
        load_average_end: end_load,
        load_warning,
        bandwidth: &bandwidth,
        model: ModelRecord {
            spec: &args.model,
            label: &label,
            hf_folder: model.hf_folder.as_ref().map(|p| p.display().to_string()),
            gguf: model
                .ggufs
                .iter()
                .map(|(f, p)| (f.to_string(), p.display().to_string()))
                .collect(),
            prompt_user_chars: bench_prompt.user.len(),
            template_tokens: bench_prompt.template_tokens,
        },
        prompt_tokens: bench_prompt.tokens,
        gen_tokens: args.gen_tokens,
        runs: args.runs,
        warmup_runs: 1,
        candle_threads: threads,
        mlx: mlx_versions,
        ceiling_method: CEILING_METHOD,
        ratios: &ratio_lines,
        rows: &rows,
    };
    let json_path = bench_dir.join(format!("{timestamp}.json"));
    std::fs::write(&json_path, serde_json::to_string_pretty(&record)?)
        .with_context(|| format!("cannot write {}", json_path.display()))?;
    let svg_path = bench_dir.join(format!("{timestamp}.svg"));
    let subtitle = format!(
        "{label}: prompt {} tokens, {} generated; {} — {}",
        bench_prompt.tokens,
        args.gen_tokens,
        bandwidth.machine.describe(),
        timestamp
    );
    std::fs::write(
        &svg_path,
        report::svg_chart(&rows, "Rigger backends: tokens per second", &subtitle),
    )
    .with_context(|| format!("cannot write {}", svg_path.display()))?;
    println!(
        "bench: wrote {} and {}",
        json_path.display(),
        svg_path.display()
    );
    Ok(())
}

fn failed(e: anyhow::Error) -> Outcome {
    Outcome::Failed(format!("{e:#}"))
}

/// The bandwidth ceiling of the weights the row read.
fn ceiling(row: &mut Row, model: &BenchModel, bandwidth: f64) {
    if row.status != Status::Measured {
        return;
    }
    let bytes = match row.backend.as_str() {
        "candle" | "candle-json" | "candle-reference" | "llama-bench" | "ollama" => row
            .format
            .as_deref()
            .and_then(|f| f.parse::<WeightFormat>().ok())
            .and_then(|f| model.gguf(f))
            .and_then(|p| model::gguf_bytes(p).ok()),
        "mlx" | "mlx-raw" => model
            .hf_folder
            .as_ref()
            .map(|d| d.join("model.safetensors"))
            .and_then(|p| model::safetensors_bytes(&p).ok()),
        _ => None,
    };
    if let Some(bytes) = bytes {
        row.bytes_read_per_token = Some(bytes.read_per_token);
        row.ceiling_tokens_per_second =
            model::ceiling_tokens_per_second(bandwidth, bytes.read_per_token);
    }
}

/// Side-by-side ratios per GGUF format: the CPU engine's kernels against llama.cpp and against
/// candle's own path (what the kernels bought), decode and prompt tokens per second (medians).
fn ratios(rows: &[Row]) -> Vec<String> {
    let find = |backend: &str, format: &str| {
        rows.iter().find(|r| {
            r.backend == backend
                && r.format.as_deref() == Some(format)
                && r.status == Status::Measured
        })
    };
    let ratio = |a: Option<&Stats>, b: Option<&Stats>| match (a, b) {
        (Some(a), Some(b)) if b.median > 0.0 => format!("{:.2}x", a.median / b.median),
        _ => "-".to_owned(),
    };
    let mut lines = Vec::new();
    for format in rows.iter().filter_map(|r| r.format.as_deref()) {
        let Some(ours) = find("candle", format) else {
            continue;
        };
        for (peer, label) in [
            ("llama-bench", "llama.cpp"),
            ("candle-reference", "candle's quantized_llama"),
        ] {
            if let Some(other) = find(peer, format) {
                let line = format!(
                    "ratio {format}: Candle adapter / {label}: decode {}, prompt {}",
                    ratio(
                        ours.decode_tokens_per_second.as_ref(),
                        other.decode_tokens_per_second.as_ref()
                    ),
                    ratio(
                        ours.prompt_tokens_per_second.as_ref(),
                        other.prompt_tokens_per_second.as_ref()
                    ),
                );
                if !lines.contains(&line) {
                    lines.push(line);
                }
            }
        }
        if let Some(json) = find("candle-json", format) {
            let line = format!(
                "ratio {format}: Candle adapter constrained (Decomposer schema) / unconstrained: decode {}; grammar per sampled token p50 {}, p99 {}",
                ratio(
                    json.decode_tokens_per_second.as_ref(),
                    ours.decode_tokens_per_second.as_ref()
                ),
                ms(json.grammar_p50_ms.as_ref()),
                ms(json.grammar_p99_ms.as_ref()),
            );
            if !lines.contains(&line) {
                lines.push(line);
            }
        }
    }
    lines
}

fn ms(stats: Option<&Stats>) -> String {
    stats.map_or_else(|| "-".to_owned(), |s| format!("{:.3} ms", s.median))
}

/// What the persistent worker saves: the per-call method's seconds per call against a request
/// through the adapter.
fn compare_per_call(rows: &mut [Row]) {
    let adapter = rows
        .iter()
        .find(|r| r.backend == "mlx" && r.status == Status::Measured)
        .and_then(|r| r.seconds_per_call.as_ref().map(|s| s.median));
    if let (Some(adapter), Some(per_call)) = (
        adapter,
        rows.iter_mut()
            .find(|r| r.backend == "mlx-per-call" && r.status == Status::Measured),
    ) && let Some(call) = per_call.seconds_per_call.as_ref().map(|s| s.median)
    {
        per_call.notes.push(format!(
            "{call:.2} s per call vs {adapter:.2} s per request through the adapter's persistent worker ({:.1}x)",
            call / adapter
        ));
    }
}

fn one_line(row: &Row) -> String {
    let what = match &row.format {
        Some(f) => format!("{} {f}", row.framework),
        None => row.framework.clone(),
    };
    match &row.status {
        Status::Measured => format!(
            "{what}: {}",
            row.headline_tokens_per_second()
                .map_or_else(|| "no figure".to_owned(), |r| format!("{r:.1} t/s"))
        ),
        Status::Unavailable(reason) => format!("{what}: unavailable: {reason}"),
        Status::Failed(error) => format!("{what}: failed: {error}"),
    }
}

/// The kernels of the `candle` row: `CANDLE_KERNELS` where set (e.g. `avx2`, to see what an
/// AVX2-only processor gets), the adapter's default otherwise.
fn candle_kernels() -> anyhow::Result<rigger_candle_adapter::Kernels> {
    rigger_candle_adapter::Kernels::from_vars(&|name| std::env::var(name).ok())
        .map_err(|e| anyhow::anyhow!("{e}"))
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"))
}

fn git_commit() -> Option<String> {
    let out = Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .current_dir(workspace_root())
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// The workspace root: this package's folder is one level below it.
fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// Timings of unoptimised Rust (tokenizer, sampler, the adapters' own code) would be wrong, so a
/// debug build (`cargo run -p rigger-benches --bin rigger-bench`; `cargo xtask bench` builds
/// release already) hands over to an optimised one with the same arguments.
fn rerun_release() -> anyhow::Result<()> {
    println!(
        "bench: building and running rigger-bench with --release (a debug build's timings are not \
         valid; --debug-build skips this)"
    );
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(cargo)
        .args([
            "run",
            "--release",
            "--quiet",
            "--package",
            "rigger-benches",
            "--bin",
            "rigger-bench",
            "--",
        ])
        .args(std::env::args_os().skip(1))
        .current_dir(workspace_root())
        .status()
        .context("cannot run cargo")?;
    if !status.success() {
        bail!("the release build of rigger-bench failed ({status})");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(backend: &str, format: &str, prompt: f64, decode: f64) -> Row {
        let mut row = Row::new(backend, backend, Some(format.to_owned()));
        row.prompt_tokens_per_second = Stats::of(&[prompt]);
        row.decode_tokens_per_second = Stats::of(&[decode]);
        row
    }

    #[test]
    fn ratios_compare_the_adapter_with_each_peer_per_format() {
        let rows = [
            row("candle", "q4_0", 70.0, 40.0),
            row("llama-bench", "q4_0", 140.0, 50.0),
            row("candle-reference", "q4_0", 14.0, 10.0),
            row("candle", "q8_0", 70.0, 25.0),
            row("llama-bench", "q8_0", 100.0, 25.0).failed("no"),
            {
                let mut json = row("candle-json", "q8_0", 70.0, 24.0);
                json.grammar_p50_ms = Stats::of(&[0.012]);
                json.grammar_p99_ms = Stats::of(&[0.4]);
                json
            },
        ];
        assert_eq!(
            ratios(&rows),
            [
                "ratio q4_0: Candle adapter / llama.cpp: decode 0.80x, prompt 0.50x",
                "ratio q4_0: Candle adapter / candle's quantized_llama: decode 4.00x, prompt 5.00x",
                "ratio q8_0: Candle adapter constrained (Decomposer schema) / unconstrained: decode 0.96x; grammar per sampled token p50 0.012 ms, p99 0.400 ms",
            ]
        );
    }
}
