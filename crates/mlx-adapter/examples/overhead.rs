//! What the persistent worker costs and saves, measured side by side in one run on one model:
//!
//! 1. decode tokens/s through the adapter vs raw in-process `mlx_lm.stream_generate`;
//! 2. warm time-to-first-token through the adapter vs raw;
//! 3. 10 sequential short requests through the adapter vs the per-call-subprocess method (a fresh
//!    `python -c` that loads the model for every call, as the earlier reference implementation did).
//!
//! Both sides time the same thing with the client's clock: first token to last token for decode,
//! request to first token for TTFT. Run on a quiet machine (check `uptime`).
//!
//! `cargo run --release -p rigger-mlx-adapter --example overhead -- [--model DIR] [--tokens 128] [--runs 5]`

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use futures::StreamExt;
use rigger_mlx_adapter::{MlxConfig, MlxSubprocessAdapter};
use rigger_ports::{GenerationRequest, LanguageModel, StreamEvent};

const RAW: &str = r#"
import json, sys, time, statistics
import mlx_lm
from mlx_lm.sample_utils import make_sampler
model_id, n, runs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
model, tok = mlx_lm.load(model_id)
prompt = tok.apply_chat_template([{"role": "user", "content": "Tell me a story about a lighthouse keeper."}], add_generation_prompt=True)
eos = list(getattr(tok, "eos_token_ids", None) or [tok.eos_token_id])
def no_eos(tokens, logits):
    logits[:, eos] = -float("inf")
    return logits
def once(max_tokens):
    start = time.perf_counter(); first = last = None; count = 0
    for r in mlx_lm.stream_generate(model, tok, prompt, max_tokens=max_tokens, sampler=make_sampler(0.0), logits_processors=[no_eos]):
        now = time.perf_counter(); count += 1
        if first is None: first = now
        last = now
    return first - start, (count - 1) / (last - first)
once(8)
ttft, rate = zip(*[once(n) for _ in range(runs)])
print(json.dumps({"ttft": statistics.median(ttft), "decode": statistics.median(rate)}))
"#;

const PER_CALL: &str = r#"
import sys, mlx_lm
model, tok = mlx_lm.load(sys.argv[1])
print(mlx_lm.generate(model, tok, prompt=sys.argv[2], max_tokens=8))
"#;

fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let model = match arg("--model") {
        Some(m) => m,
        None => rigger_model_gen::tiny_model()?.display().to_string(),
    };
    let tokens: u32 = arg("--tokens").map_or(Ok(128), |t| t.parse())?;
    let runs: usize = arg("--runs").map_or(Ok(5), |r| r.parse())?;
    let python = PathBuf::from(arg("--python").unwrap_or_else(|| ".venv/bin/python".into()));
    println!(
        "model {model}, {tokens} tokens, {runs} runs, python {}",
        python.display()
    );

    // Raw in-process mlx-lm.
    let out = Command::new(&python)
        .args(["-c", RAW, &model, &tokens.to_string(), &runs.to_string()])
        .output()?;
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned().into());
    }
    let raw: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    let (raw_ttft, raw_decode) = (
        raw["ttft"].as_f64().unwrap_or(f64::NAN),
        raw["decode"].as_f64().unwrap_or(f64::NAN),
    );

    // Through the adapter (worker started and model loaded before timing).
    let adapter = MlxSubprocessAdapter::connect(MlxConfig {
        python: Some(python.clone()),
        ..MlxConfig::new(&model)
    })
    .await?;
    let request = GenerationRequest::prompt("Tell me a story about a lighthouse keeper.")
        .with_temperature(0.0);
    adapter
        .generate(request.clone().with_exact_tokens(8))
        .await?;
    let (mut ttfts, mut rates, mut worker_rates) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..runs {
        let start = Instant::now();
        let mut events = adapter
            .stream(request.clone().with_exact_tokens(tokens))
            .await?;
        let (mut first, mut last, mut tokens) = (None, start, 0u32);
        while let Some(event) = events.next().await {
            match event? {
                StreamEvent::Delta(_) => {
                    let now = Instant::now();
                    first.get_or_insert(now);
                    last = now;
                }
                StreamEvent::Done(done) => {
                    // A delta can carry several tokens (the worker coalesces fast ones).
                    tokens = done.usage.completion_tokens;
                    worker_rates.extend(done.timings.decode_tokens_per_second());
                }
            }
        }
        let first = first.ok_or("no tokens")?;
        ttfts.push((first - start).as_secs_f64());
        rates.push(f64::from(tokens.saturating_sub(1)) / (last - first).as_secs_f64());
    }
    let (ttft, decode) = (median(ttfts), median(rates));
    // mlx-lm's own generation rate inside the worker: what the worker loop costs, apart from
    // the pipe and the Rust side.
    let worker_decode = if worker_rates.is_empty() {
        f64::NAN
    } else {
        median(worker_rates)
    };

    // 10 short requests: adapter vs a fresh Python per call.
    let short = GenerationRequest::prompt("Hello")
        .with_max_tokens(8)
        .with_temperature(0.0);
    let start = Instant::now();
    for _ in 0..10 {
        adapter.generate(short.clone()).await?;
    }
    let persistent = start.elapsed();
    let start = Instant::now();
    for _ in 0..10 {
        let status = Command::new(&python)
            .args(["-c", PER_CALL, &model, "Hello"])
            .output()?
            .status;
        if !status.success() {
            return Err("the per-call method failed".into());
        }
    }
    let per_call = start.elapsed();

    let ms = |s: f64| s * 1e3;
    println!(
        "decode t/s      raw {raw_decode:8.1}  adapter {decode:8.1}  ratio {:.3} (target >= 0.97)",
        decode / raw_decode
    );
    println!(
        "                (mlx-lm's own clock inside the worker: {worker_decode:8.1} t/s, ratio {:.3})",
        worker_decode / raw_decode
    );
    println!(
        "warm TTFT ms    raw {:8.2}  adapter {:8.2}  overhead {:+.2} ms (target <= 5)",
        ms(raw_ttft),
        ms(ttft),
        ms(ttft - raw_ttft)
    );
    println!(
        "10 short calls  per-call {:8.0} ms  adapter {:8.0} ms  speed-up {:.1}x (target >= 10)",
        ms(per_call.as_secs_f64()),
        ms(persistent.as_secs_f64()),
        per_call.as_secs_f64()
            / persistent
                .as_secs_f64()
                .max(Duration::from_micros(1).as_secs_f64())
    );
    Ok(())
}
