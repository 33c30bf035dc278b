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
    ChatMessage, Completion, GenerationRequest, LanguageModel, TimingSource, TokenBudget,
};

use super::machine;
use super::model::{BenchModel, WeightFormat};
use super::report::{Row, Stats};

/// A backend named in `--backends`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Backend {
    Candle,
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

pub const DEFAULT_BACKENDS: &str = "candle,mlx,mlx-raw,mlx-per-call,ollama";

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
                "unknown backend {s:?}; use candle, candle-reference, llama-bench[=PATH], mlx, \
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
    let exact = model.descriptor().capabilities.exact_token_budget;
    let budget = if exact {
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
    fill_from_samples(row, &samples, work);
    if !exact && row.comparable {
        row.notes.push(format!(
            "every run still generated exactly {} tokens, so the work matches",
            work.gen_tokens
        ));
    }
    Ok(())
}

fn fill_from_samples(row: &mut Row, samples: &[Sample], work: &Work<'_>) {
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
    check_counts(row, &counted, work.prompt_tokens, work.gen_tokens);
}

/// The same prompt and the same number of generated tokens on every run, or the row says not.
fn check_counts(row: &mut Row, counted: &[(u32, u32)], prompt_tokens: usize, gen_tokens: u32) {
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

pub async fn candle(
    work: &Work<'_>,
    format: WeightFormat,
    kernels: rigger_candle_adapter::Kernels,
    row: &mut Row,
) -> anyhow::Result<()> {
    use rigger_candle_adapter::{CandleAdapter, CandleConfig};
    let Some(path) = work.model.gguf(format) else {
        bail!("the model has no {format} GGUF file");
    };
    let own_peak = machine::reset_own_peak_rss();
    work.step(&format!("{}: loading {format}", row.framework));
    let adapter = CandleAdapter::connect(CandleConfig {
        threads: Some(work.threads),
        tokenizer: Some(work.model.tokenizer.clone()),
        kernels,
        ..CandleConfig::new(path.display().to_string())
    })
    .await?;
    // connect() loaded the model, so these are known.
    row.notes
        .push(format!("engine: {}", adapter.engine().unwrap_or("unknown")));
    row.load_seconds = adapter.load_duration().map(|d| d.as_secs_f64());
    if adapter.uses_fallback_template() == Some(true) {
        row.comparable = false;
        row.notes
            .push("Candle found no chat template and used its plain fallback".to_owned());
    }
    measure_port(&adapter, work, row).await?;
    row.peak_rss_bytes = machine::peak_rss_bytes(std::process::id());
    if !own_peak {
        row.notes
            .push("peak RSS may include earlier rows (no /proc/self/clear_refs)".to_owned());
    }
    row.notes.push(format!("{} threads", work.threads));
    Ok(())
}

/// Why MLX cannot run here, in the guide's words, or the Python that runs it.
pub fn mlx_python() -> Result<PathBuf, String> {
    let availability = rigger_mlx_adapter::availability();
    match (&availability.python, availability.available) {
        (Some(python), true) => Ok(python.clone()),
        _ => Err(format!(
            "{}: {} — run cargo xtask setup-mlx",
            rigger_mlx_adapter::codes::MLX_NOT_AVAILABLE,
            availability.reason
        )),
    }
}

/// The Python rows run with the same environment as the adapter's worker: OpenBLAS preloaded on
/// Linux when present (mlx's CPU wheel otherwise uses a reference BLAS), so the comparison is
/// between the adapter and mlx-lm, not between two BLAS libraries.
fn mlx_python_command(python: &Path) -> Command {
    let mut command = Command::new(python);
    if let (Some(blas), None) = (
        rigger_mlx_adapter::openblas_preload(),
        std::env::var_os("LD_PRELOAD"),
    ) {
        command.env("LD_PRELOAD", blas);
    }
    command
}

fn hf_folder(work: &Work<'_>) -> anyhow::Result<PathBuf> {
    work.model.hf_folder.clone().context(
        "the model has no HF folder (config.json + safetensors), which is what mlx-lm loads",
    )
}

/// The folder the MLX rows load, and a note when it is not the HF folder itself. On Linux,
/// mlx's CPU backend has no fast half-precision matmul (OpenBLAS has no f16 GEMM): an f16
/// model decodes ~5x slower than the same weights in f32 (measured on the 1.1B shape: 0.6 vs
/// 2.7 tokens/s). So there the weights are converted once to f32 with `mlx_lm convert`, the way
/// a Linux user would run them; the three MLX rows all load the converted folder.
fn mlx_folder(work: &Work<'_>, python: &Path) -> anyhow::Result<(PathBuf, Option<String>)> {
    let folder = hf_folder(work)?;
    if !cfg!(target_os = "linux") {
        return Ok((folder, None));
    }
    let config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(folder.join("config.json"))?)?;
    let dtype = config["torch_dtype"]
        .as_str()
        .unwrap_or("float32")
        .to_owned();
    if !matches!(dtype.as_str(), "float16" | "bfloat16") {
        return Ok((folder, None));
    }
    let name = folder
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("model");
    let converted = folder.with_file_name(format!("{name}-mlx-f32"));
    if !converted.join("config.json").is_file() {
        work.step("MLX: converting the weights to f32 once (mlx_lm convert)");
        if converted.exists() {
            std::fs::remove_dir_all(&converted)?;
        }
        let output = mlx_python_command(python)
            .args(["-m", "mlx_lm", "convert", "--hf-path"])
            .arg(&folder)
            .arg("--mlx-path")
            .arg(&converted)
            .args(["--dtype", "float32"])
            .output()
            .with_context(|| format!("cannot start {}", python.display()))?;
        if !output.status.success() {
            bail!(
                "mlx_lm convert to f32 failed: {}",
                String::from_utf8_lossy(&output.stderr)
                    .lines()
                    .last()
                    .unwrap_or("")
            );
        }
    }
    let blas = match rigger_mlx_adapter::openblas_preload() {
        Some(_) => "OpenBLAS preloaded",
        None => "no OpenBLAS (apt-get install libopenblas0 makes mlx's CPU matmuls much faster)",
    };
    Ok((
        converted,
        Some(format!(
            "{dtype} weights converted to f32 (mlx's Linux CPU f16 path is ~5x slower); {blas}"
        )),
    ))
}

pub async fn mlx_adapter(work: &Work<'_>, python: &Path, row: &mut Row) -> anyhow::Result<String> {
    use rigger_mlx_adapter::{MlxConfig, MlxSubprocessAdapter};
    let (folder, note) = mlx_folder(work, python)?;
    row.notes.extend(note);
    work.step(&format!("{}: starting the worker", row.framework));
    let adapter = MlxSubprocessAdapter::new(MlxConfig {
        python: Some(python.to_owned()),
        dedicated_worker: true,
        ..MlxConfig::new(folder.display().to_string())
    })?;
    let hello = adapter.worker_info().await?;
    let versions = format!(
        "mlx {}, mlx-lm {}, {}",
        hello.mlx, hello.mlx_lm, hello.device
    );
    // The warm-up request loads the model; its timings carry the worker's load figure.
    measure_port(&adapter, work, row).await?;
    row.peak_rss_bytes = adapter.worker_pid().and_then(machine::peak_rss_bytes);
    if row.peak_rss_bytes.is_none() {
        row.notes
            .push("worker peak RSS unknown (no /proc)".to_owned());
    }
    Ok(versions)
}

fn python_json(
    python: &Path,
    script: &str,
    input: &serde_json::Value,
    mut on_line: impl FnMut(serde_json::Value) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let mut child = mlx_python_command(python)
        .args(["-c", script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot start {}", python.display()))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(input.to_string().as_bytes())?;
    }
    let stdout = child.stdout.take().context("no stdout from python")?;
    for line in BufReader::new(stdout).lines() {
        let line = line?;
        let value: serde_json::Value = serde_json::from_str(&line)
            .with_context(|| format!("python printed a line that is not JSON: {line}"))?;
        on_line(value)?;
    }
    let output = child.wait_with_output()?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let tail: Vec<&str> = stderr.lines().rev().take(3).collect();
        bail!(
            "python exited with {}: {}",
            output.status,
            tail.into_iter().rev().collect::<Vec<_>>().join(" / ")
        );
    }
    Ok(())
}

fn f(v: &serde_json::Value, key: &str) -> anyhow::Result<f64> {
    v[key]
        .as_f64()
        .with_context(|| format!("the script's {key} is missing: {v}"))
}

fn script_input(work: &Work<'_>, folder: &Path) -> serde_json::Value {
    serde_json::json!({
        "model": folder.display().to_string(),
        "messages": [{"role": "user", "content": work.user}],
        "gen_tokens": work.gen_tokens,
        "runs": work.runs,
    })
}

/// Raw in-process mlx-lm: the same load, prompt and forced token count, timed in Python.
pub fn mlx_raw(work: &Work<'_>, python: &Path, row: &mut Row) -> anyhow::Result<()> {
    let (folder, note) = mlx_folder(work, python)?;
    row.notes.extend(note);
    let (mut ttft, mut prompt, mut decode, mut wall, mut counted) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    work.step(&format!("{}: loading", row.framework));
    python_json(
        python,
        include_str!("mlx_raw.py"),
        &script_input(work, &folder),
        |v| {
            match v["type"].as_str() {
                Some("loaded") => row.load_seconds = Some(f(&v, "load_seconds")?),
                Some("warmup") => work.bar.inc(1),
                Some("run") => {
                    ttft.push(f(&v, "ttft")? * 1e3);
                    prompt.push(f(&v, "prompt_tps")?);
                    decode.push(f(&v, "generation_tps")?);
                    wall.push(f(&v, "wall")?);
                    counted.push((f(&v, "prompt_tokens")? as u32, f(&v, "generated")? as u32));
                    work.bar.inc(1);
                    work.step(&format!(
                        "{}: run {}/{}",
                        row.framework,
                        counted.len(),
                        work.runs
                    ));
                }
                Some("done") => row.peak_rss_bytes = Some(f(&v, "peak_rss_bytes")? as u64),
                _ => bail!("unexpected line from the raw mlx-lm script: {v}"),
            }
            Ok(())
        },
    )?;
    row.ttft_ms = Stats::of(&ttft);
    row.prompt_tokens_per_second = Stats::of(&prompt);
    row.decode_tokens_per_second = Stats::of(&decode);
    row.seconds_per_call = Stats::of(&wall);
    row.timing_source = Some("backend".to_owned());
    check_counts(row, &counted, work.prompt_tokens, work.gen_tokens);
    Ok(())
}

/// The spec's per-call-subprocess method: one fresh `python -c` per call, load included.
pub fn mlx_per_call(work: &Work<'_>, python: &Path, row: &mut Row) -> anyhow::Result<()> {
    let (folder, note) = mlx_folder(work, python)?;
    row.notes.extend(note);
    let input = script_input(work, &folder);
    let (mut wall, mut prompt, mut decode, mut effective, mut load, mut counted) = (
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
    );
    let mut peak = 0u64;
    // One call first, like every other row's warm-up: the files are then in the page cache.
    for i in 0..=work.runs {
        work.step(&if i == 0 {
            format!("{}: warm-up call", row.framework)
        } else {
            format!("{}: call {i}/{}", row.framework, work.runs)
        });
        let started = Instant::now();
        let mut result = None;
        python_json(python, include_str!("mlx_per_call.py"), &input, |v| {
            result = Some(v);
            Ok(())
        })?;
        let secs = started.elapsed().as_secs_f64();
        let v = result.context("the per-call script printed nothing")?;
        work.bar.inc(1);
        if i == 0 {
            continue;
        }
        wall.push(secs);
        effective.push(f64::from(work.gen_tokens) / secs);
        prompt.push(f(&v, "prompt_tps")?);
        decode.push(f(&v, "generation_tps")?);
        load.push(f(&v, "import_seconds")? + f(&v, "load_seconds")?);
        counted.push((f(&v, "prompt_tokens")? as u32, f(&v, "generated")? as u32));
        peak = peak.max(f(&v, "peak_rss_bytes")? as u64);
    }
    row.seconds_per_call = Stats::of(&wall);
    row.effective_tokens_per_second = Stats::of(&effective);
    row.prompt_tokens_per_second = Stats::of(&prompt);
    row.decode_tokens_per_second = Stats::of(&decode);
    row.load_seconds = Stats::of(&load).map(|s| s.median);
    row.peak_rss_bytes = Some(peak);
    row.timing_source = Some("client (wall time per call)".to_owned());
    row.notes.push(
        "Tokens/Sec = generated tokens / wall time of a whole call (Python start, import, load, generate)"
            .to_owned(),
    );
    check_counts(row, &counted, work.prompt_tokens, work.gen_tokens);
    Ok(())
}

/// The Ollama server, or why it is not usable.
pub async fn ollama_reachable() -> Result<rigger_ollama_adapter::OllamaConfig, String> {
    let config = rigger_ollama_adapter::OllamaConfig::from_env().map_err(|e| e.to_string())?;
    match rigger_ollama_adapter::probe(&config, Duration::from_secs(2)).await {
        Ok(_) => Ok(config),
        // Nothing listening is the usual case: say only what to do.
        Err(e) if e.kind() == rigger_ports::ErrorKind::NotAvailable => Err(format!(
            "not reachable at {} — start it with ollama serve",
            config.base_url
        )),
        Err(e) => Err(format!(
            "not usable at {} — {}",
            config.base_url,
            e.message()
        )),
    }
}

/// Imports the format's GGUF into Ollama (`/api/create`), then measures it.
pub async fn ollama(
    work: &Work<'_>,
    base: &rigger_ollama_adapter::OllamaConfig,
    format: WeightFormat,
    row: &mut Row,
) -> anyhow::Result<()> {
    use rigger_ollama_adapter::{KeepAlive, OllamaAdapter, OllamaClient, OllamaConfig};
    let Some(path) = work.model.gguf(format) else {
        bail!("the model has no {format} GGUF file");
    };
    let slug: String = work
        .model
        .label
        .split_whitespace()
        .next()
        .unwrap_or("model")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    let name = format!("rigger-bench-{slug}-{format}");
    let config = OllamaConfig {
        model: name.clone(),
        keep_alive: Some(KeepAlive::Duration("10m".into())),
        ..base.clone()
    };
    work.step(&format!(
        "{}: importing {format} into Ollama",
        row.framework
    ));
    let client = OllamaClient::new(&config)?;
    let mut progress = client.create_from_gguf(&name, path);
    while let Some(step) = progress.next().await {
        let step = step?;
        work.step(&format!("{}: {}", row.framework, step.status));
    }
    let adapter = OllamaAdapter::connect(config).await?;
    measure_port(&adapter, work, row).await?;
    row.notes.push(format!(
        "imported as {name}; peak RSS not measured: the model lives in Ollama's runner process"
    ));
    Ok(())
}

/// An OpenAI-compatible server: the model is what `OPENAI_MODEL` names, else the one it serves.
pub async fn openai(work: &Work<'_>, kind: &str, url: &str, row: &mut Row) -> Result<(), Outcome> {
    use rigger_openai_adapter::{OpenAiAdapter, OpenAiConfig, ServerKind};
    let mut config = OpenAiConfig::from_env().map_err(|e| Outcome::Failed(e.to_string()))?;
    config.base_url = url.to_owned();
    config.server = match kind {
        "openai" => None,
        other => Some(
            other
                .parse::<ServerKind>()
                .map_err(|e| Outcome::Failed(e.to_string()))?,
        ),
    };
    let probe_config = OpenAiConfig {
        model: None,
        ..config.clone()
    };
    let models = match rigger_openai_adapter::list_models(&OpenAiConfig {
        retry: rigger_http_support::RetryPolicy::none(),
        ..probe_config
    })
    .await
    {
        Ok(models) => models,
        Err(e) => {
            return Err(Outcome::Unavailable(format!(
                "not reachable at {url} ({}) — start the server, e.g. llama-server -m <model>.gguf --port 8080",
                e.message()
            )));
        }
    };
    if config.model.is_none() {
        match models.as_slice() {
            [only] => config.model = Some(only.clone()),
            _ => {
                return Err(Outcome::Failed(format!(
                    "the server lists {} models; set OPENAI_MODEL to one of: {}",
                    models.len(),
                    models.join(", ")
                )));
            }
        }
    }
    row.notes.push(format!(
        "{} server, model {}; weights are whatever the server loaded (serve it this model's files)",
        config.server_kind(),
        config.model.as_deref().unwrap_or_default()
    ));
    let adapter = OpenAiAdapter::connect(config)
        .await
        .map_err(|e| Outcome::Failed(e.to_string()))?;
    measure_port(&adapter, work, row)
        .await
        .map_err(|e| Outcome::Failed(format!("{e:#}")))?;
    row.notes
        .push("peak RSS not measured: the model lives in the server's process".to_owned());
    Ok(())
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
    fn llama_bench_json_reads_both_tests_and_falls_back_to_the_average() {
        // The shape `llama-bench -o json` prints (fields we do not read left out).
        let json = r#"[
          {"build_commit": "0c1e570", "n_prompt": 128, "n_gen": 0, "avg_ts": 130.0,
           "samples_ts": [128.0, 132.0]},
          {"build_commit": "0c1e570", "n_prompt": 0, "n_gen": 128, "avg_ts": 45.0}
        ]"#;
        let tests: Vec<LlamaBenchTest> = serde_json::from_str(json).unwrap();
        assert_eq!((tests[0].n_prompt, tests[0].n_gen), (128, 0));
        assert_eq!(tests[0].samples_ts, [128.0, 132.0]);
        assert!(tests[1].samples_ts.is_empty());
        assert_eq!(tests[1].avg_ts, 45.0);
        assert_eq!(tests[0].build_commit, "0c1e570");
    }

    #[test]
    fn llama_bench_prompt_comes_from_an_empty_context_and_generation_after_the_prompt() {
        let json = r#"[
          {"n_prompt": 128, "n_gen": 0, "n_depth": 0, "avg_ts": 130.0},
          {"n_prompt": 128, "n_gen": 0, "n_depth": 128, "avg_ts": 120.0},
          {"n_prompt": 0, "n_gen": 128, "n_depth": 0, "avg_ts": 50.0},
          {"n_prompt": 0, "n_gen": 128, "n_depth": 128, "avg_ts": 48.0}
        ]"#;
        let tests: Vec<LlamaBenchTest> = serde_json::from_str(json).unwrap();
        let (prompt, decode) = pick_llama_bench_tests(&tests, 128);
        assert_eq!(prompt.map(|s| s.median), Some(130.0));
        assert_eq!(decode.map(|s| s.median), Some(48.0));
        // A build without depth support reports depth 0 only: no generation test at 128.
        let (_, decode) = pick_llama_bench_tests(&tests[..3], 128);
        assert!(decode.is_none());
    }

    #[test]
    fn counts_that_differ_make_the_row_not_comparable_and_say_how() {
        let mut row = Row::new("x", "x", None);
        check_counts(&mut row, &[(32, 16), (32, 16)], 32, 16);
        assert!(row.comparable && row.notes.is_empty());
        check_counts(&mut row, &[(33, 16), (32, 12)], 32, 16);
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

/// The prompt test from an empty context and the generation test after `depth` tokens, as
/// tokens/s statistics (the per-run samples, or the average where a build prints none).
fn pick_llama_bench_tests(tests: &[LlamaBenchTest], depth: u64) -> (Option<Stats>, Option<Stats>) {
    let stats = |t: &LlamaBenchTest| {
        Stats::of(if t.samples_ts.is_empty() {
            std::slice::from_ref(&t.avg_ts)
        } else {
            &t.samples_ts
        })
    };
    let find = |wanted: fn(&LlamaBenchTest, u64) -> bool| {
        tests.iter().find(|t| wanted(t, depth)).and_then(stats)
    };
    (
        find(|t, _| t.n_prompt > 0 && t.n_gen == 0 && t.n_depth == 0),
        find(|t, depth| t.n_prompt == 0 && t.n_gen > 0 && t.n_depth == depth),
    )
}

/// One entry of `llama-bench -o json`: a prompt-processing (`n_gen` 0) or a generation
/// (`n_prompt` 0) test, after `n_depth` tokens already in the context.
#[derive(serde::Deserialize)]
struct LlamaBenchTest {
    n_prompt: u64,
    n_gen: u64,
    #[serde(default)]
    n_depth: u64,
    #[serde(default)]
    samples_ts: Vec<f64>,
    avg_ts: f64,
    #[serde(default)]
    build_commit: String,
}

/// llama.cpp's own benchmark on the same GGUF file, prompt and generation lengths and threads:
/// its figures are its own clocks over random tokens (`pp` and `tg` tests), so TTFT is not
/// measured. Generation runs after a prompt's worth of context (`-d`), at the positions the
/// other rows generate at, not from an empty cache.
pub fn llama_bench(
    work: &Work<'_>,
    binary: &Path,
    format: WeightFormat,
    row: &mut Row,
) -> anyhow::Result<()> {
    let Some(path) = work.model.gguf(format) else {
        bail!("the model has no {format} GGUF file");
    };
    work.step(&format!("{}: {format}", row.framework));
    let output = Command::new(binary)
        .arg("-m")
        .arg(path)
        .args(["-p", &work.prompt_tokens.to_string()])
        .args(["-n", &work.gen_tokens.to_string()])
        .args(["-d", &format!("0,{}", work.prompt_tokens)])
        .args(["-t", &work.threads.to_string()])
        .args(["-r", &work.runs.to_string()])
        .args(["-o", "json"])
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("cannot run {}", binary.display()))?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let tail: Vec<&str> = stderr.lines().rev().take(5).collect();
        bail!(
            "{} failed ({}): {}",
            binary.display(),
            output.status,
            tail.into_iter().rev().collect::<Vec<_>>().join(" | ")
        );
    }
    let tests: Vec<LlamaBenchTest> = serde_json::from_slice(&output.stdout)
        .with_context(|| format!("{} printed no JSON test list", binary.display()))?;
    let (prompt, decode) = pick_llama_bench_tests(&tests, work.prompt_tokens as u64);
    let (Some(prompt), Some(decode)) = (prompt, decode) else {
        bail!(
            "llama-bench reported no pp test from an empty context and no tg test after {} \
             tokens (a build without -d/--n-depth? rebuild it with ../shared/tools/build-llama-server.sh)",
            work.prompt_tokens
        );
    };
    (row.prompt_tokens_per_second, row.decode_tokens_per_second) = (Some(prompt), Some(decode));
    row.timing_source = Some("backend".to_owned());
    let commit = tests.first().map_or("", |t| t.build_commit.as_str());
    row.notes.push(format!(
        "llama-bench pp{} + tg{} after {} tokens, random tokens, {} threads, {} runs, build {commit}",
        work.prompt_tokens, work.gen_tokens, work.prompt_tokens, work.threads, work.runs
    ));
    work.bar.inc(1 + work.runs as u64);
    Ok(())
}
