//! Fit time for 100,000 × 384 random-but-clustered vectors with the default settings
//! (PCA to 128, levels 64/64/32, at most 100 Lloyd iterations per level). One fit takes tens
//! of seconds, too long for criterion's sampling, so this times three runs and prints the
//! median. No peer runs alongside: the median is read against the last recorded figure in
//! docs/performance.md. Run with `make bench-fit`.

mod support;

use std::time::Instant;

use hermes::fit::pca::TransformConfig;
use hermes::fit::{FitConfig, fit};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn main() {
    let (n, dim, centres) = (100_000usize, 384usize, 500usize);
    let mut rng = ChaCha8Rng::seed_from_u64(42);
    let means: Vec<f32> = (0..centres * dim)
        .map(|_| rng.random_range(-1.0f32..1.0))
        .collect();
    let data: Vec<f32> = (0..n)
        .flat_map(|_| {
            let c = rng.random_range(0..centres);
            (0..dim)
                .map(|j| means[c * dim + j] + rng.random_range(-0.5f32..0.5))
                .collect::<Vec<_>>()
        })
        .collect();
    let config = FitConfig {
        levels: vec![64, 64, 32],
        seed: 0,
        max_iter: 100,
        transform: TransformConfig {
            out_dim: Some(128),
            whiten: 0.0,
        },
    };
    let runs = support::runs();
    let mut secs = Vec::new();
    for run in 0..runs {
        let t = Instant::now();
        let fitted = fit(&data, dim, &config).expect("fit");
        secs.push(t.elapsed().as_secs_f64());
        let iters: Vec<usize> = fitted.kmeans.iter().map(|k| k.iterations).collect();
        println!(
            "fit run {run}: {:.2}s (Lloyd iterations per level {iters:?}, threads {})",
            secs[run],
            rayon::current_num_threads()
        );
    }
    println!(
        "fit 100000x384 -> 128, levels 64/64/32: median {:.2}s over {runs} runs ({})",
        support::median(secs),
        support::cpu_line()
    );
}
