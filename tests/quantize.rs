//! The residual quantizer on synthetic data: prefix property, agreement with a brute-force
//! reference, batch independence and refusal of non-finite input.

use hermes::kmeans::{KMeansConfig, kmeans};
use hermes::quantize::{Code, QuantizeError, ResidualQuantizer};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const DIM: usize = 32;

/// Clustered random vectors: 40 centres plus noise.
fn clustered(n: usize, seed: u64) -> Vec<f32> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let centres: Vec<f32> = (0..40 * DIM).map(|_| rng.random_range(-1.0..1.0)).collect();
    (0..n)
        .flat_map(|_| {
            let c = rng.random_range(0..40);
            let centre = centres[c * DIM..(c + 1) * DIM].to_vec();
            centre
                .into_iter()
                .map(|x| x + rng.random_range(-0.3f32..0.3))
                .collect::<Vec<_>>()
        })
        .collect()
}

/// A 64/64/32 quantizer fitted level by level on residuals, as `hermes fit` does.
fn quantizer() -> ResidualQuantizer {
    let mut residual = clustered(6000, 1);
    let mut books = Vec::new();
    for (l, k) in [64usize, 64, 32].into_iter().enumerate() {
        let run = kmeans(
            &residual,
            DIM,
            &KMeansConfig {
                k,
                max_iter: 30,
                seed: l as u64,
                min_cluster: 1,
            },
        );
        for (row, &c) in residual.chunks_exact_mut(DIM).zip(&run.assign) {
            row.iter_mut()
                .zip(&run.centroids[c as usize * DIM..])
                .for_each(|(r, c)| *r -= c);
        }
        books.push(run.centroids);
    }
    ResidualQuantizer::new(DIM, books)
}

#[test]
fn depth_d_code_is_the_prefix_of_the_full_code() {
    let q = quantizer();
    let z = clustered(10_000, 2);
    let full = q.encode(&z, 3).unwrap();
    for depth in 1..=2 {
        let short = q.encode(&z, depth).unwrap();
        for (i, (s, f)) in short.iter().zip(&full).enumerate() {
            assert_eq!(s, &f.truncate(depth), "vector {i} at depth {depth}");
        }
    }
    // The codes are not degenerate: every level uses many codewords.
    for l in 0..3 {
        let mut used: Vec<u32> = full.iter().map(|c| c.0[l]).collect();
        used.sort_unstable();
        used.dedup();
        assert!(
            used.len() > 20,
            "level {l} uses only {} codewords",
            used.len()
        );
    }
}

#[test]
fn greedy_codes_equal_brute_force_nearest_centroid() {
    let q = quantizer();
    let z = clustered(3000, 3);
    let codes = q.encode(&z, 3).unwrap();
    let mut mismatches = 0;
    for (row, code) in z.chunks_exact(DIM).zip(&codes) {
        let mut r: Vec<f64> = row.iter().map(|&x| f64::from(x)).collect();
        let mut reference = Vec::new();
        for l in 0..3 {
            let book = q.codebook(l);
            let (best, _) = book
                .chunks_exact(DIM)
                .map(|c| {
                    r.iter()
                        .zip(c)
                        .map(|(a, &b)| (a - f64::from(b)).powi(2))
                        .sum::<f64>()
                })
                .enumerate()
                .fold(
                    (0, f64::INFINITY),
                    |acc, (i, d)| if d < acc.1 { (i, d) } else { acc },
                );
            reference.push(best as u32);
            r.iter_mut()
                .zip(&book[best * DIM..(best + 1) * DIM])
                .for_each(|(a, &b)| *a -= f64::from(b));
        }
        mismatches += usize::from(code.0 != reference);
    }
    assert_eq!(
        mismatches, 0,
        "greedy codes differ from the brute-force reference"
    );
}

#[test]
fn a_code_does_not_depend_on_its_batch() {
    let q = quantizer();
    let z = clustered(2000, 4);
    let all = q.encode(&z, 3).unwrap();
    let one_by_one: Vec<Code> = z
        .chunks_exact(DIM)
        .flat_map(|row| q.encode(row, 3).unwrap())
        .collect();
    let in_64s: Vec<Code> = z
        .chunks(64 * DIM)
        .flat_map(|b| q.encode(b, 3).unwrap())
        .collect();
    assert_eq!(all, one_by_one);
    assert_eq!(all, in_64s);
}

#[test]
fn reconstruction_error_falls_with_depth() {
    let q = quantizer();
    let z = clustered(2000, 5);
    let codes = q.encode(&z, 3).unwrap();
    let err = |depth: usize| -> f64 {
        z.chunks_exact(DIM)
            .zip(&codes)
            .map(|(row, c)| {
                let zhat = q.decode(&c.truncate(depth));
                row.iter()
                    .zip(&zhat)
                    .map(|(a, b)| f64::from(a - b).powi(2))
                    .sum::<f64>()
            })
            .sum()
    };
    let (e1, e2, e3) = (err(1), err(2), err(3));
    assert!(e1 > e2 && e2 > e3, "{e1} {e2} {e3}");
}

#[test]
fn non_finite_and_misshapen_input_is_refused() {
    let q = quantizer();
    let mut z = clustered(10, 6);
    z[3 * DIM + 5] = f32::NAN;
    assert_eq!(q.encode(&z, 3), Err(QuantizeError::NonFinite { row: 3 }));
    z[3 * DIM + 5] = f32::INFINITY;
    assert_eq!(q.encode(&z, 3), Err(QuantizeError::NonFinite { row: 3 }));
    z[3 * DIM + 5] = 0.0;
    assert!(matches!(
        q.encode(&z[..DIM + 3], 3),
        Err(QuantizeError::Dimension { .. })
    ));
    assert_eq!(
        q.encode(&z, 0),
        Err(QuantizeError::Depth {
            depth: 0,
            levels: 3
        })
    );
    assert_eq!(
        q.encode(&z, 4),
        Err(QuantizeError::Depth {
            depth: 4,
            levels: 3
        })
    );
}
