//! `gen-model` (run it as `cargo xtask gen-model`): a synthetic model of a real architecture,
//! written by this crate's library.

use std::path::PathBuf;
use std::time::Instant;

use clap::Parser;
use indicatif::{ProgressBar, ProgressStyle};
use rigger_model_gen::{Format, GenError, GenOptions, generate, shape};

/// Generate a synthetic model (seeded random weights of a real architecture).
#[derive(Parser)]
#[command(name = "cargo xtask gen-model", bin_name = "cargo xtask gen-model")]
struct Args {
    /// Architecture shape (tiny, tiny-256, tinyllama-1.1b, llama-3.2-1b, qwen2.5-0.5b,
    /// qwen3-1.7b).
    #[arg(long, default_value = "tiny")]
    shape: String,
    /// Output folder.
    #[arg(long)]
    out: PathBuf,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Comma-separated: safetensors, gguf-f16, gguf-q8_0, gguf-q4_0, gguf-q4_1, gguf-q4_k_m,
    /// gguf-q5_k_m, gguf-q6_k (the K-quant mixes need rows of whole 256-value super-blocks).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "safetensors,gguf-f16,gguf-q8_0,gguf-q4_0"
    )]
    formats: Vec<String>,
    /// dtype of model.safetensors: f16, bf16 or f32.
    #[arg(long, default_value = "f16")]
    dtype: String,
    /// Overwrite the generated files in a non-empty folder.
    #[arg(long)]
    force: bool,
}

fn main() {
    if let Err(e) = run(Args::parse()) {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

fn run(args: Args) -> Result<(), GenError> {
    let shape = shape(&args.shape)?;
    let formats = args
        .formats
        .iter()
        .map(|f| f.parse::<Format>())
        .collect::<Result<Vec<_>, _>>()?;
    let opts = GenOptions {
        seed: args.seed,
        formats,
        safetensors_dtype: GenOptions::parse_dtype(&args.dtype)?,
        force: args.force,
        ..GenOptions::new(shape)
    };
    println!(
        "gen-model: {} ({} parameters, seed {}) -> {}",
        shape.name,
        shape.parameter_count(),
        opts.seed,
        args.out.display()
    );
    let bar = ProgressBar::new(0).with_style(
        ProgressStyle::with_template("{elapsed_precise} [{bar:30}] {pos}/{len} tensors {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let started = Instant::now();
    let manifest = generate(&args.out, &opts, &|event| match event {
        rigger_model_gen::GenEvent::TensorDone { done, total } => {
            bar.set_length(total as u64);
            bar.set_position(done as u64);
            if done == total {
                bar.set_message("writing files");
            }
        }
        rigger_model_gen::GenEvent::FileWritten { .. } => {}
    })?;
    bar.finish_and_clear();
    for f in &manifest.files {
        println!("  {:<12} {:>14} bytes  {}", f.format, f.bytes, f.path);
    }
    println!(
        "gen-model: done in {:.1}s; manifest: {}",
        started.elapsed().as_secs_f64(),
        args.out.join("rigger-model.json").display()
    );
    Ok(())
}
