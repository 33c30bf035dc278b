//! Factory construction: `ProviderFactory::new_with_vars` (settings, role plans, no network),
//! and the four role adapters from it, per provider.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use rigger_provider_factory::{ProviderFactory, Vars};

fn vars() -> Vars {
    // Only these settings: nothing from the process environment.
    Vars::from_map([
        ("OLLAMA_HOST", "127.0.0.1:11434"),
        ("OPENAI_BASE_URL", "http://127.0.0.1:8080/v1"),
        ("OPENAI_MODEL", "local"),
        ("ANTHROPIC_API_KEY", "sk-bench"),
    ])
}

fn factory(c: &mut Criterion) {
    let mut group = c.benchmark_group("factory");
    for (provider, model) in [
        ("ollama", "llama3.2"),
        ("openai", "local"),
        ("anthropic", ""),
    ] {
        ProviderFactory::new_with_vars(provider, model, vars())
            .and_then(|f| f.orchestrator().map(drop))
            .unwrap_or_else(|e| panic!("{provider}: {e}"));
        group.bench_function(format!("new_with_vars/{provider}"), |b| {
            b.iter(|| {
                ProviderFactory::new_with_vars(black_box(provider), model, vars()).expect("factory")
            })
        });
        group.bench_function(format!("new_with_vars_and_orchestrator/{provider}"), |b| {
            b.iter(|| {
                ProviderFactory::new_with_vars(black_box(provider), model, vars())
                    .and_then(|f| f.orchestrator())
                    .expect("orchestrator")
            })
        });
    }
    group.finish();
}

criterion_group!(benches, factory);
criterion_main!(benches);
