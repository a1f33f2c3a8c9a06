//! In-process encoder throughput (docs/s) for batches of 1, 8, 32 and 64 texts of 128 tokens:
//! the ceiling the HTTP service is compared against. Texts are real wiki extracts, truncated at
//! 128 tokens (only extracts at least that long are used). The peers: the batch sizes against
//! each other, and Python `onnxruntime` on the same graph (recorded in docs/performance.md).
//! Run with `make bench-encoder`.

mod support;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use hermes::encoder::{Embedder, EncoderConfig, MiniLm};

fn texts(encoder: &MiniLm, n: usize) -> Vec<String> {
    let data = std::fs::read_to_string(support::wiki_jsonl())
        .expect("run `make setup` for the wiki corpus");
    data.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| v["text"].as_str().map(str::to_owned))
        .filter(|t| {
            encoder
                .tokenize(t)
                .map(|tok| tok.truncated)
                .unwrap_or(false)
        })
        .take(n)
        .collect()
}

fn bench(c: &mut Criterion) {
    let mut cfg = EncoderConfig::for_dir(&support::default_bundle_dir());
    cfg.max_tokens = 128;
    let encoder = MiniLm::load(&cfg).expect("encoder (run `make setup`)");
    let texts = texts(&encoder, 64);
    let mut group = c.benchmark_group("encoder_128_tokens");
    group.sample_size(10);
    for batch in [1usize, 8, 32, 64] {
        let refs: Vec<&str> = texts.iter().take(batch).map(String::as_str).collect();
        group.throughput(Throughput::Elements(batch as u64));
        group.bench_with_input(BenchmarkId::from_parameter(batch), &refs, |b, refs| {
            b.iter(|| encoder.embed(refs).expect("embed"))
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches, machine);

/// Every figure with its machine: criterion prints the CPU line after the measurements.
fn machine_line(_: &mut Criterion) {
    println!("CPU: {}", support::cpu_line());
}

criterion_group!(machine, machine_line);
