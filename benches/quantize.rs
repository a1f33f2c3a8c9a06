//! Quantizer throughput (vectors/s, one thread) for batches of 1 and 1,024 with 64/64/32
//! codebooks, at d = 384 (the FAISS reference setting) and d = 128 (the default bundle's
//! transform output), plus the transform itself (384 → 128). The peer: the FAISS 1.15 reference
//! at d = 384 (recorded in docs/performance.md). Run with `make bench-quantize`.

mod support;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use hermes::quantize::{ResidualQuantizer, Transform};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn random(n: usize, seed: u64) -> Vec<f32> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..n).map(|_| rng.random_range(-1.0f32..1.0)).collect()
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("quantize_64_64_32");
    for dim in [384usize, 128] {
        let books = vec![
            random(64 * dim, 1),
            random(64 * dim, 2),
            random(32 * dim, 3),
        ];
        let q = ResidualQuantizer::new(dim, books);
        let z = random(1024 * dim, 4);
        for batch in [1usize, 1024] {
            group.throughput(Throughput::Elements(batch as u64));
            group.bench_with_input(
                BenchmarkId::new(format!("d{dim}"), batch),
                &batch,
                |b, &batch| b.iter(|| q.encode(&z[..batch * dim], 3).expect("finite")),
            );
        }
    }
    let t = Transform::new(random(384, 5), random(128 * 384, 6), 128);
    let e = random(1024 * 384, 7);
    group.throughput(Throughput::Elements(1024));
    group.bench_function("transform_384_to_128/1024", |b| b.iter(|| t.apply(&e)));
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches, machine);

/// Every figure with its machine: criterion prints the CPU line after the measurements.
fn machine_line(_: &mut Criterion) {
    println!("CPU: {}", support::cpu_line());
}

criterion_group!(machine, machine_line);
