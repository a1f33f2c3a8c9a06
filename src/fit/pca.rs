//! Fitting the semantic transform: centring plus a PCA rotation, an optional reduced output
//! dimension and optional (partial) whitening.
//!
//! Everything is accumulated in f64 over fixed-size row chunks combined in a fixed order, and
//! the eigen-decomposition is a plain cyclic Jacobi, so a fit is identical whatever the thread
//! count. Eigenvector signs are fixed (largest-magnitude entry positive) so that two machines
//! agree on the rotation, not just on its span.

use rayon::prelude::*;

use crate::quantize::Transform;

/// Rows per partial sum: fixed, so results do not depend on the number of threads.
const CHUNK: usize = 512;

/// How to fit the transform.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TransformConfig {
    /// Output dimension (the top principal components); `None` keeps all.
    pub out_dim: Option<usize>,
    /// Whitening strength α in [0, 1]: component i is scaled by (λ_i / λ_1)^(−α/2).
    /// 0 is a pure rotation (Euclidean geometry kept), 1 is full whitening.
    pub whiten: f32,
}

/// The fitted transform and the share of variance each kept component explains.
pub struct FittedTransform {
    pub transform: Transform,
    pub explained: Vec<f64>,
}

pub fn fit_transform(e: &[f32], dim: usize, config: &TransformConfig) -> FittedTransform {
    let n = e.len() / dim;
    assert!(n > 1, "need at least two vectors");
    let out_dim = config.out_dim.unwrap_or(dim).clamp(1, dim);

    let sums: Vec<Vec<f64>> = e
        .par_chunks(CHUNK * dim)
        .map(|c| {
            let mut s = vec![0f64; dim];
            for row in c.chunks_exact(dim) {
                for (a, &x) in s.iter_mut().zip(row) {
                    *a += f64::from(x);
                }
            }
            s
        })
        .collect();
    let mut mean = vec![0f64; dim];
    for s in &sums {
        for (m, x) in mean.iter_mut().zip(s) {
            *m += x;
        }
    }
    mean.iter_mut().for_each(|m| *m /= n as f64);

    // Upper triangle of the scatter matrix, per chunk, then summed in chunk order.
    let partial: Vec<Vec<f64>> = e
        .par_chunks(CHUNK * dim)
        .map(|c| {
            let mut cov = vec![0f64; dim * dim];
            let mut centred = vec![0f64; dim];
            for row in c.chunks_exact(dim) {
                for ((y, &x), m) in centred.iter_mut().zip(row).zip(&mean) {
                    *y = f64::from(x) - m;
                }
                for i in 0..dim {
                    let yi = centred[i];
                    let out = &mut cov[i * dim + i..(i + 1) * dim];
                    for (o, yj) in out.iter_mut().zip(&centred[i..]) {
                        *o += yi * yj;
                    }
                }
            }
            cov
        })
        .collect();
    let mut cov = vec![0f64; dim * dim];
    for p in &partial {
        for (c, x) in cov.iter_mut().zip(p) {
            *c += x;
        }
    }
    for i in 0..dim {
        for j in i..dim {
            let v = cov[i * dim + j] / (n - 1) as f64;
            cov[i * dim + j] = v;
            cov[j * dim + i] = v;
        }
    }

    let (values, vectors) = symmetric_eigen(cov, dim);
    let total: f64 = values
        .iter()
        .map(|v| v.max(0.0))
        .sum::<f64>()
        .max(f64::MIN_POSITIVE);
    let top = values[0].max(f64::MIN_POSITIVE);
    let mut matrix = Vec::with_capacity(out_dim * dim);
    for i in 0..out_dim {
        let scale = (values[i].max(top * 1e-12) / top).powf(-f64::from(config.whiten) / 2.0);
        matrix.extend(vectors[i].iter().map(|v| (v * scale) as f32));
    }
    FittedTransform {
        transform: Transform::new(mean.iter().map(|&m| m as f32).collect(), matrix, out_dim),
        explained: values[..out_dim]
            .iter()
            .map(|v| v.max(0.0) / total)
            .collect(),
    }
}

/// Eigen-decomposition of a symmetric matrix by cyclic Jacobi rotations. Returns eigenvalues in
/// descending order and the matching unit eigenvectors (sign-normalised).
pub fn symmetric_eigen(mut a: Vec<f64>, n: usize) -> (Vec<f64>, Vec<Vec<f64>>) {
    let mut v = vec![0f64; n * n];
    for i in 0..n {
        v[i * n + i] = 1.0;
    }
    for _sweep in 0..100 {
        let off: f64 = (0..n)
            .flat_map(|i| (i + 1..n).map(move |j| (i, j)))
            .map(|(i, j)| a[i * n + j].powi(2))
            .sum();
        let diag: f64 = (0..n).map(|i| a[i * n + i].powi(2)).sum();
        if off <= diag * 1e-30 || off == 0.0 {
            break;
        }
        for p in 0..n {
            for q in p + 1..n {
                let apq = a[p * n + q];
                if apq == 0.0 {
                    continue;
                }
                let theta = (a[q * n + q] - a[p * n + p]) / (2.0 * apq);
                let t = theta.signum() / (theta.abs() + (theta * theta + 1.0).sqrt());
                let t = if theta == 0.0 { 1.0 } else { t };
                let c = 1.0 / (t * t + 1.0).sqrt();
                let s = t * c;
                for k in 0..n {
                    let akp = a[k * n + p];
                    let akq = a[k * n + q];
                    a[k * n + p] = c * akp - s * akq;
                    a[k * n + q] = s * akp + c * akq;
                }
                for k in 0..n {
                    let apk = a[p * n + k];
                    let aqk = a[q * n + k];
                    a[p * n + k] = c * apk - s * aqk;
                    a[q * n + k] = s * apk + c * aqk;
                }
                for k in 0..n {
                    let vkp = v[k * n + p];
                    let vkq = v[k * n + q];
                    v[k * n + p] = c * vkp - s * vkq;
                    v[k * n + q] = s * vkp + c * vkq;
                }
            }
        }
    }
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&i, &j| a[j * n + j].total_cmp(&a[i * n + i]).then(i.cmp(&j)));
    let values = order.iter().map(|&i| a[i * n + i]).collect();
    let vectors = order
        .iter()
        .map(|&i| {
            let mut col: Vec<f64> = (0..n).map(|k| v[k * n + i]).collect();
            let big = col
                .iter()
                .copied()
                .fold(0f64, |m, x| if x.abs() > m.abs() { x } else { m });
            if big < 0.0 {
                col.iter_mut().for_each(|x| *x = -*x);
            }
            col
        })
        .collect();
    (values, vectors)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jacobi_recovers_a_known_spectrum() {
        // A = Q diag(5, 2, 1) Qᵀ with a fixed rotation Q.
        let (c, s) = (0.6f64, 0.8f64);
        let q = [[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]];
        let d = [5.0, 2.0, 1.0];
        let mut a = vec![0f64; 9];
        for i in 0..3 {
            for j in 0..3 {
                a[i * 3 + j] = (0..3).map(|k| q[i][k] * d[k] * q[j][k]).sum();
            }
        }
        let (values, vectors) = symmetric_eigen(a, 3);
        for (got, want) in values.iter().zip(d) {
            assert!((got - want).abs() < 1e-9, "{values:?}");
        }
        // First eigenvector is ±(0.6, 0.8, 0), sign-normalised to the positive one.
        assert!(
            (vectors[0][0] - 0.6).abs() < 1e-9 && (vectors[0][1] - 0.8).abs() < 1e-9,
            "{:?}",
            vectors[0]
        );
    }
}
