//! llama.cpp's `llama-bench` as the peer row.

use super::*;

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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // a panic is how a test reports failure

    use super::*;

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
}
