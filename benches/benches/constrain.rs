//! Constrained decoding's costs in the Candle adapter (llguidance over a 32k-token byte-level
//! BPE vocabulary, the size of Llama 2's): building the token trie and parser factory (once per
//! model), compiling the Decomposer's schema (once per schema: later requests hit the cache and
//! clone), and one sampling step two ways — the full mask, or checking one sampled token (the
//! recipe the worker uses; it computes the mask only when the token is rejected).

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use rigger_candle_adapter::GrammarCompiler;
use rigger_pipeline::LlmDecomposer;
use rigger_ports::ResponseFormat;

const VOCAB: usize = 32_000;
const EOS: u32 = 2;

fn decomposer() -> ResponseFormat {
    ResponseFormat::JsonSchema {
        name: "decomposition".into(),
        schema: LlmDecomposer::schema(),
    }
}

fn bench(c: &mut Criterion) {
    let tokenizer = rigger_model_gen::synthetic_tokenizer(VOCAB).expect("tokenizer");
    let mut group = c.benchmark_group("constrain");
    group.sample_size(10);
    group.bench_function("token_trie_and_factory_32k", |b| {
        b.iter(|| {
            let compiler = GrammarCompiler::new(black_box(tokenizer.clone()), vec![EOS]);
            compiler.warm().expect("trie")
        })
    });
    let compiler = GrammarCompiler::new(tokenizer.clone(), vec![EOS]);
    compiler.warm().expect("factory");
    let mut n = 0u64;
    group.bench_function("compile_decomposer_schema_uncached", |b| {
        b.iter(|| {
            // A schema text not seen before (an annotation differs), so the cache misses.
            n += 1;
            let mut schema = LlmDecomposer::schema();
            schema["description"] = n.into();
            let format = ResponseFormat::JsonSchema {
                name: "decomposition".into(),
                schema,
            };
            compiler.compile(&format).expect("compiles")
        })
    });
    compiler.compile(&decomposer()).expect("compiles");
    group.sample_size(50);
    group.bench_function("compile_decomposer_schema_cached", |b| {
        b.iter(|| {
            compiler
                .compile(black_box(&decomposer()))
                .expect("compiles")
        })
    });
    // Inside a string (the costliest place: almost every token is allowed).
    let prefix = tokenizer
        .encode(r#"{"plan":"the keeper"#, false)
        .expect("encodes")
        .get_ids()
        .to_vec();
    let next = tokenizer.encode(" lit", false).expect("encodes").get_ids()[0];
    let start = {
        let mut g = compiler
            .compile(&decomposer())
            .expect("compiles")
            .expect("a grammar");
        for &t in &prefix {
            g.consume(t).expect("the prefix fits the schema");
        }
        g
    };
    group.bench_function("full_mask_in_string", |b| {
        b.iter_batched(
            || start.clone(),
            |mut g| g.count_allowed().expect("mask"),
            criterion::BatchSize::SmallInput,
        )
    });
    group.bench_function("check_one_token_in_string", |b| {
        b.iter_batched(
            || start.clone(),
            |mut g| g.allows(black_box(next)),
            criterion::BatchSize::SmallInput,
        )
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
