//! k-means (used by `fit` for each codebook level and by `eval` for the flat baseline): k-means++ seeding, Lloyd iterations until the assignments
//! settle (or a cap), and re-seeding of empty or starving clusters from the worst-fitted points.
//!
//! Deterministic for a seed: randomness comes only from a seeded ChaCha stream, assignments are
//! per point, and centroid sums are accumulated in f64 over fixed-size chunks combined in a
//! fixed order, so the thread count never changes a result.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

use crate::linalg::{argmin, matmul_nt, row_sq_norms, sq_dist_f64};

/// Rows per parallel task (fixed: see the module doc).
const CHUNK: usize = 1024;

/// Per-level record of a k-means run, kept in a bundle's manifest.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq)]
pub struct KMeansStats {
    pub iterations: usize,
    pub converged: bool,
    pub reseeded: usize,
}

#[derive(Debug, Clone, Copy)]
pub struct KMeansConfig {
    pub k: usize,
    /// Lloyd iterations at most; stops earlier when no assignment changes.
    pub max_iter: usize,
    pub seed: u64,
    /// A cluster with fewer points than this is "starving" and gets re-seeded (0 or 1: only empty ones).
    pub min_cluster: usize,
}

#[derive(Debug, Clone)]
pub struct KMeans {
    /// `[k, d]` row-major.
    pub centroids: Vec<f32>,
    /// Cluster of each point after the last iteration.
    pub assign: Vec<u32>,
    pub iterations: usize,
    /// True when the last iteration changed no assignment.
    pub converged: bool,
    /// Clusters re-seeded over the run.
    pub reseeded: usize,
    /// Sum of squared distances to the assigned centroid.
    pub inertia: f64,
}

/// Nearest centroid and its squared distance for every point.
fn assign(x: &[f32], d: usize, centroids: &[f32], k: usize) -> Vec<(u32, f32)> {
    let cnorm = row_sq_norms(centroids, d);
    x.par_chunks(CHUNK * d)
        .flat_map_iter(|chunk| {
            let rows = chunk.len() / d;
            let dots = matmul_nt(chunk, rows, d, centroids, k);
            let xnorm = row_sq_norms(chunk, d);
            let mut scores = vec![0f32; k];
            let mut out = Vec::with_capacity(rows);
            for (r, row) in dots.chunks_exact(k).enumerate() {
                for ((s, dot), cn) in scores.iter_mut().zip(row).zip(&cnorm) {
                    *s = cn - 2.0 * dot;
                }
                let best = argmin(&scores);
                out.push((best as u32, (xnorm[r] + scores[best]).max(0.0)));
            }
            out
        })
        .collect()
}

/// k-means++ seeding: the first centre uniformly, each next one with probability ∝ D².
fn seed_plus_plus(x: &[f32], d: usize, k: usize, rng: &mut ChaCha8Rng) -> Vec<f32> {
    let n = x.len() / d;
    let first = rng.random_range(0..n);
    let mut centroids = x[first * d..(first + 1) * d].to_vec();
    let mut best: Vec<f64> = x
        .par_chunks(d)
        .map(|p| sq_dist_f64(p, &centroids[..d]))
        .collect();
    for _ in 1..k {
        let total: f64 = best.iter().sum();
        let pick = if total > 0.0 {
            let target = rng.random::<f64>() * total;
            let mut acc = 0.0;
            best.iter()
                .position(|&w| {
                    acc += w;
                    acc > target
                })
                .unwrap_or(n - 1)
        } else {
            rng.random_range(0..n)
        };
        let c = x[pick * d..(pick + 1) * d].to_vec();
        best.par_iter_mut()
            .zip(x.par_chunks(d))
            .for_each(|(b, p)| *b = b.min(sq_dist_f64(p, &c)));
        centroids.extend_from_slice(&c);
    }
    centroids
}

/// Per-cluster sums (f64) and counts, over fixed chunks combined in order.
fn centroid_sums(x: &[f32], d: usize, k: usize, labels: &[(u32, f32)]) -> (Vec<f64>, Vec<usize>) {
    let partial: Vec<(Vec<f64>, Vec<usize>)> = x
        .par_chunks(CHUNK * d)
        .zip(labels.par_chunks(CHUNK))
        .map(|(chunk, lab)| {
            let mut sums = vec![0f64; k * d];
            let mut counts = vec![0usize; k];
            for (row, &(c, _)) in chunk.chunks_exact(d).zip(lab) {
                let c = c as usize;
                counts[c] += 1;
                for (s, &v) in sums[c * d..(c + 1) * d].iter_mut().zip(row) {
                    *s += f64::from(v);
                }
            }
            (sums, counts)
        })
        .collect();
    let mut sums = vec![0f64; k * d];
    let mut counts = vec![0usize; k];
    for (s, c) in partial {
        sums.iter_mut().zip(s).for_each(|(a, b)| *a += b);
        counts.iter_mut().zip(c).for_each(|(a, b)| *a += b);
    }
    (sums, counts)
}

/// Runs k-means on `x` (`[n, d]`). Needs `n >= k`.
pub fn kmeans(x: &[f32], d: usize, config: &KMeansConfig) -> KMeans {
    let n = x.len() / d;
    let k = config.k;
    assert!(
        k >= 1 && n >= k,
        "k-means needs at least k points (n = {n}, k = {k})"
    );
    let mut rng = ChaCha8Rng::seed_from_u64(config.seed);
    let mut centroids = seed_plus_plus(x, d, k, &mut rng);
    let mut labels = assign(x, d, &centroids, k);
    let mut iterations = 0;
    let mut converged = false;
    let mut reseeded = 0;
    // Re-seeding stops a few iterations before the cap so the last ones can settle.
    let reseed_until = config.max_iter.saturating_sub(5).max(1);
    while iterations < config.max_iter {
        iterations += 1;
        let (sums, counts) = centroid_sums(x, d, k, &labels);
        for c in 0..k {
            if counts[c] > 0 {
                for j in 0..d {
                    centroids[c * d + j] = (sums[c * d + j] / counts[c] as f64) as f32;
                }
            }
        }
        let mut changed_by_reseed = false;
        if iterations <= reseed_until {
            let starving: Vec<usize> = (0..k)
                .filter(|&c| counts[c] < config.min_cluster.max(1))
                .collect();
            if !starving.is_empty() {
                // Worst-fitted points first; ties broken by index for determinism.
                let mut worst: Vec<usize> = (0..n).collect();
                worst.sort_by(|&a, &b| labels[b].1.total_cmp(&labels[a].1).then(a.cmp(&b)));
                for (c, &p) in starving.iter().zip(&worst) {
                    centroids[c * d..(c + 1) * d].copy_from_slice(&x[p * d..(p + 1) * d]);
                    reseeded += 1;
                    changed_by_reseed = true;
                }
            }
        }
        let next = assign(x, d, &centroids, k);
        let changed = next.iter().zip(&labels).filter(|(a, b)| a.0 != b.0).count();
        labels = next;
        if changed == 0 && !changed_by_reseed {
            converged = true;
            break;
        }
    }
    let inertia = labels.iter().map(|&(_, dist)| f64::from(dist)).sum();
    KMeans {
        centroids,
        assign: labels.iter().map(|&(c, _)| c).collect(),
        iterations,
        converged,
        reseeded,
        inertia,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blobs(n_per: usize, centres: &[[f32; 2]], seed: u64) -> Vec<f32> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut x = Vec::new();
        for _ in 0..n_per {
            for c in centres {
                x.push(c[0] + rng.random_range(-0.1..0.1));
                x.push(c[1] + rng.random_range(-0.1..0.1));
            }
        }
        x
    }

    #[test]
    fn finds_well_separated_blobs_and_is_deterministic() {
        let centres = [[0.0, 0.0], [5.0, 5.0], [-5.0, 5.0], [5.0, -5.0]];
        let x = blobs(200, &centres, 1);
        let cfg = KMeansConfig {
            k: 4,
            max_iter: 50,
            seed: 7,
            min_cluster: 1,
        };
        let a = kmeans(&x, 2, &cfg);
        assert!(a.converged);
        for c in centres {
            let near = a
                .centroids
                .chunks_exact(2)
                .any(|m| (m[0] - c[0]).abs() < 0.05 && (m[1] - c[1]).abs() < 0.05);
            assert!(near, "no centroid near {c:?}: {:?}", a.centroids);
        }
        let b = kmeans(&x, 2, &cfg);
        assert_eq!(a.centroids, b.centroids);
        assert_eq!(a.assign, b.assign);
    }

    #[test]
    fn duplicate_points_do_not_leave_clusters_empty() {
        // 90% of the points are one value: naive seeding leaves clusters empty.
        let mut x = vec![1.0f32; 2 * 900];
        x.extend(blobs(
            25,
            &[[3.0, 3.0], [-3.0, 0.0], [0.0, -3.0], [2.0, -2.0]],
            2,
        ));
        let cfg = KMeansConfig {
            k: 8,
            max_iter: 30,
            seed: 3,
            min_cluster: 1,
        };
        let r = kmeans(&x, 2, &cfg);
        let mut used = vec![false; 8];
        r.assign.iter().for_each(|&c| used[c as usize] = true);
        assert!(used.iter().filter(|&&u| u).count() >= 5, "used {used:?}");
    }
}
