//! One decode step (a token through every layer, logits included) of the tiny generated model on
//! the Candle adapter's two CPU paths side by side: its own kernels and candle's
//! `quantized_llama` (the reference), for Q4_0 and Q8_0, on a 2-thread pool like the adapter's
//! `threads: Some(2)`. The session restarts from its 16-token prompt every 256 positions, outside
//! the timed region, so every step attends over 16..272 positions.

use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use rigger_candle_adapter::{Kernels, decode_stepper_for_bench};

const WINDOW: usize = 256;

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
        for (kernels, name) in [
            (Kernels::Auto, "rigger-cpu"),
            (Kernels::Reference, "candle"),
        ] {
            let mut stepper = decode_stepper_for_bench(&file, kernels, prompt.clone())
                .expect("load the tiny model");
            group.bench_function(format!("{name}/{format}"), |b| {
                b.iter_custom(|iters| {
                    pool.install(|| {
                        let mut spent = Duration::ZERO;
                        for _ in 0..iters {
                            let started = Instant::now();
                            let held = stepper.step().expect("a decode step");
                            spent += started.elapsed();
                            if held >= prompt.len() + WINDOW {
                                stepper.restart().expect("restart");
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
