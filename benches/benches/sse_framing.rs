//! SSE framing (`rigger_http_support`'s parser, what the OpenAI and Anthropic adapters read
//! through): one event whose single line grows to 1, 4 and 16 MiB, delivered in 16 KiB chunks
//! as a network delivers it. A linear parser shows the same bytes per second at every size; a
//! parser that rescans its buffer per chunk slows down in proportion to the line.

use std::hint::black_box;

use bytes::Bytes;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use rigger_http_support::frame_sse_for_bench;

fn one_long_event(bytes: usize) -> Vec<Bytes> {
    let mut body = b"data: ".to_vec();
    body.resize(bytes, b'a');
    body.extend_from_slice(b"\n\n");
    body.chunks(16 * 1024).map(Bytes::copy_from_slice).collect()
}

fn framing(c: &mut Criterion) {
    let mut group = c.benchmark_group("sse_framing");
    group.sample_size(10);
    for mib in [1usize, 4, 16] {
        let chunks = one_long_event(mib << 20);
        group.throughput(Throughput::Bytes((mib << 20) as u64));
        group.bench_with_input(
            BenchmarkId::new("one line", format!("{mib} MiB")),
            &chunks,
            |b, chunks| b.iter(|| frame_sse_for_bench(black_box(chunks), usize::MAX)),
        );
    }
    group.finish();
}

criterion_group!(benches, framing);
criterion_main!(benches);
