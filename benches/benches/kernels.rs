//! The CPU engine's matrix kernels alone, per weight format and instruction set: one 1024 × 2048
//! matrix (small enough to stay in the last-level cache, so this times the arithmetic and the
//! unpacking, not the memory) times 1 token (a decode step's product), 16 and 128 tokens (a prompt's),
//! on a 1-thread pool. Compare instruction sets and kernel changes here (`--save-baseline` /
//! `--baseline`); whole-model speed against llama.cpp is `cargo xtask bench`'s.

use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{Device, Tensor};
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use rigger_cpu_engine::{GgufRows, Isa, QActs, QMatrix, WeightFormat, matmul};

const ROWS: usize = 1024;
const COLS: usize = 2048;

/// Seeded values in [-1, 1): a linear congruential sequence, so every run multiplies the same.
fn values(n: usize, seed: u64) -> Vec<f32> {
    let mut state = seed | 1;
    (0..n)
        .map(|_| {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            ((state >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

fn matrix(dtype: GgmlDType, format: WeightFormat) -> QMatrix {
    let t = Tensor::from_vec(values(ROWS * COLS, 7), (ROWS, COLS), &Device::Cpu).expect("a tensor");
    let bytes = QTensor::quantize(&t, dtype)
        .and_then(|q| q.data().map(|d| d.to_vec()))
        .expect("quantize");
    QMatrix::pack(GgufRows::new(format, ROWS, COLS, bytes).expect("whole blocks"))
}

fn kernels(c: &mut Criterion) {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .expect("a 1-thread pool");
    let formats = [
        (GgmlDType::Q4_0, WeightFormat::Q4_0),
        (GgmlDType::Q8_0, WeightFormat::Q8_0),
        (GgmlDType::Q4K, WeightFormat::Q4_K),
        (GgmlDType::Q5K, WeightFormat::Q5_K),
        (GgmlDType::Q6K, WeightFormat::Q6_K),
        (GgmlDType::F16, WeightFormat::F16),
    ];
    let isas: Vec<Isa> = [Isa::Avx2, Isa::Avx512Vnni, Isa::Amx]
        .into_iter()
        .filter(|isa| isa.is_supported())
        .collect();
    let mut group = c.benchmark_group("kernels_1024x2048");
    for (dtype, format) in formats {
        let w = matrix(dtype, format);
        for tokens in [1, 16, 128] {
            let x = values(tokens * COLS, 11);
            let mut out = vec![0f32; tokens * ROWS];
            group.throughput(Throughput::Elements((tokens * ROWS * COLS) as u64));
            for &isa in &isas {
                let name = format!("{format:?}/{}/{tokens}", isa.name());
                group.bench_function(name, |b| {
                    b.iter(|| {
                        // Quantized anew each time, as the model does per matrix input.
                        let acts = QActs::quantize(&x, COLS);
                        pool.install(|| matmul(isa, &w, &acts, &mut out));
                    })
                });
            }
        }
    }
    group.finish();

    // The activations' quantization alone (it is inside every product above): a prompt's
    // 128 tokens per form.
    let mut group = c.benchmark_group("quantize_128x2048");
    let x = values(128 * COLS, 11);
    group.throughput(Throughput::Elements(x.len() as u64));
    for (form, format) in [("q8_0", WeightFormat::Q8_0), ("q8_k", WeightFormat::Q4_K)] {
        for &isa in [Isa::Portable]
            .iter()
            .chain(isas.iter().filter(|i| **i != Isa::Amx))
        {
            group.bench_function(format!("{form}/{}", isa.name()), |b| {
                // The input copied outside the timing: the model hands its rows over as they are.
                b.iter_batched(
                    || QActs::quantize(&x, COLS),
                    |acts| pool.install(|| acts.prepare(isa, format)),
                    BatchSize::LargeInput,
                )
            });
        }
    }
    group.finish();
}

criterion_group!(benches, kernels);
criterion_main!(benches);
