//! Streams one generation from a local model and prints the timing line.
//!
//! `cargo run -p rigger-candle-adapter --example generate -- --model DIR_OR_GGUF "prompt"`

use std::io::Write;

use clap::Parser;
use futures::StreamExt;
use rigger_candle_adapter::{CandleAdapter, CandleConfig, Kernels};
use rigger_ports::{GenerationRequest, LanguageModel, StreamEvent};

#[derive(Parser)]
struct Args {
    /// A .gguf file, a safetensors folder, or a hub id.
    #[arg(long)]
    model: String,
    #[arg(long, default_value_t = 64)]
    max_tokens: u32,
    /// 0 = greedy.
    #[arg(long, default_value_t = 0.0)]
    temperature: f32,
    #[arg(long)]
    threads: Option<usize>,
    /// auto (the adapter's CPU kernels where they cover the model) or reference (candle's).
    #[arg(long, default_value = "auto")]
    kernels: Kernels,
    prompt: String,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let config = CandleConfig {
        threads: args.threads,
        kernels: args.kernels,
        ..CandleConfig::new(&args.model)
    };
    let model = CandleAdapter::connect(config).await?;
    eprintln!(
        "loaded {} in {:.2}s, running on {}",
        args.model,
        model.load_duration().unwrap_or_default().as_secs_f64(),
        model.engine().unwrap_or_default()
    );
    let request = GenerationRequest::prompt(args.prompt)
        .with_max_tokens(args.max_tokens)
        .with_temperature(args.temperature);
    let mut events = model.stream(request).await?;
    let mut out = std::io::stdout();
    while let Some(event) = events.next().await {
        match event? {
            StreamEvent::Delta(text) => {
                out.write_all(text.as_bytes())?;
                out.flush()?;
            }
            StreamEvent::Done(done) => {
                println!();
                eprintln!("{:?}: {}", done.finish_reason, done.timings.summary());
            }
        }
    }
    Ok(())
}
