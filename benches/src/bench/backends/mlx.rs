//! The MLX rows: the adapter's worker, raw in-process mlx-lm, and one subprocess per call.

use super::*;

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
        include_str!("../mlx_raw.py"),
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
    check_counts(row, &counted, work.prompt_tokens, Some(work.gen_tokens));
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
        python_json(python, include_str!("../mlx_per_call.py"), &input, |v| {
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
    check_counts(row, &counted, work.prompt_tokens, Some(work.gen_tokens));
    Ok(())
}
