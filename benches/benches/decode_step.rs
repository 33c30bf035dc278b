//! One decode step (a token through every layer, logits included) of the tiny generated model on
//! the two CPU paths the Candle adapter chooses between, side by side: the CPU engine
//! (`rigger-cpu-engine`) and candle's `quantized_llama` (the reference), for Q4_0 and Q8_0, on a
//! 2-thread pool like the adapter's `threads: Some(2)`. The session restarts from its 16-token
//! prompt every 256 positions, outside the timed region, so every step attends over 16..272
//! positions.

use std::path::Path;
use std::time::{Duration, Instant};

use candle_core::quantized::gguf_file;
use candle_core::{Device, Tensor};
use candle_transformers::models::quantized_llama::ModelWeights;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use rigger_cpu_engine::{DecodeStepper, Isa};

const WINDOW: usize = 256;

/// A model stepped one token at a time from a fixed prompt.
trait Step {
    /// One token after the prompt; returns the positions held.
    fn step(&mut self) -> usize;
    /// Back to the prompt alone.
    fn restart(&mut self);
}

impl Step for DecodeStepper {
    fn step(&mut self) -> usize {
        DecodeStepper::step(self).expect("a decode step")
    }

    fn restart(&mut self) {
        DecodeStepper::restart(self).expect("restart");
    }
}

/// candle's `quantized_llama`, which keeps its KV cache inside the model (position 0 resets it).
struct Candle {
    model: ModelWeights,
    prompt: Vec<u32>,
    held: usize,
}

impl Candle {
    fn open(path: &Path, prompt: Vec<u32>) -> Self {
        let mut file = std::fs::File::open(path).expect("open the GGUF");
        let content = gguf_file::Content::read(&mut file).expect("a GGUF file");
        let model = ModelWeights::from_gguf(content, &mut file, &Device::Cpu).expect("load");
        Self {
            model,
            prompt,
            held: 0,
        }
    }

    fn forward(&mut self, tokens: &[u32]) {
        let input = Tensor::new(tokens, &Device::Cpu).and_then(|t| t.unsqueeze(0));
        let logits = input.and_then(|input| self.model.forward(&input, self.held));
        logits.expect("candle's forward");
        self.held += tokens.len();
    }
}

impl Step for Candle {
    fn step(&mut self) -> usize {
        if self.held == 0 {
            self.restart();
        }
        let token = self.prompt[self.held % self.prompt.len()];
        self.forward(&[token]);
        self.held
    }

    fn restart(&mut self) {
        self.held = 0;
        let prompt = self.prompt.clone();
        self.forward(&prompt);
    }
}

fn decode_step(c: &mut Criterion) {
    let dir = rigger_model_gen::tiny_model().expect("generate the tiny model");
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(2)
        .build()
        .expect("a 2-thread pool");
    let prompt: Vec<u32> = (1..=16).map(|i| i * 7).collect();
    let mut group = c.benchmark_group("decode_step_tiny");
    group.throughput(Throughput::Elements(1));
    for format in ["q4_0", "q8_0"] {
        let file = dir.join(format!("model-{format}.gguf"));
        let engine = DecodeStepper::open(&file, Isa::detect(), prompt.clone())
            .expect("load the tiny model on the CPU engine");
        let steppers: [(&str, Box<dyn Step + Send>); 2] = [
            ("rigger-cpu", Box::new(engine)),
            ("candle", Box::new(Candle::open(&file, prompt.clone()))),
        ];
        for (name, mut stepper) in steppers {
            group.bench_function(format!("{name}/{format}"), |b| {
                b.iter_custom(|iters| {
                    pool.install(|| {
                        let mut spent = Duration::ZERO;
                        for _ in 0..iters {
                            let started = Instant::now();
                            let held = stepper.step();
                            spent += started.elapsed();
                            if held >= prompt.len() + WINDOW {
                                stepper.restart();
                            }
                        }
                        spent
                    })
                })
            });
        }
    }
    group.finish();
}

criterion_group!(benches, decode_step);
criterion_main!(benches);
