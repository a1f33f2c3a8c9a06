//! The learned semantic transform `z = W (e − μ)`, applied between encoder and quantizer.

use crate::linalg::matmul_nt;

/// A fitted affine map from encoder space (`in_dim`) to code space (`out_dim`).
#[derive(Debug, Clone, PartialEq)]
pub struct Transform {
    pub in_dim: usize,
    pub out_dim: usize,
    /// μ: the corpus mean, `[in_dim]`.
    pub mean: Vec<f32>,
    /// W: `[out_dim, in_dim]` row-major (principal directions, optionally scaled).
    pub matrix: Vec<f32>,
}

impl Transform {
    pub fn new(mean: Vec<f32>, matrix: Vec<f32>, out_dim: usize) -> Self {
        let in_dim = mean.len();
        assert_eq!(
            matrix.len(),
            out_dim * in_dim,
            "matrix is [out_dim, in_dim]"
        );
        Self {
            in_dim,
            out_dim,
            mean,
            matrix,
        }
    }

    /// The identity on `dim` dimensions (no centring): handy for tests and raw-space baselines.
    pub fn identity(dim: usize) -> Self {
        let mut matrix = vec![0f32; dim * dim];
        for i in 0..dim {
            matrix[i * dim + i] = 1.0;
        }
        Self::new(vec![0.0; dim], matrix, dim)
    }

    /// Applies the transform to `n` row-major vectors of `in_dim`; returns `[n, out_dim]`.
    pub fn apply(&self, e: &[f32]) -> Vec<f32> {
        assert_eq!(e.len() % self.in_dim, 0, "input rows are in_dim wide");
        let n = e.len() / self.in_dim;
        let centred: Vec<f32> = e
            .chunks_exact(self.in_dim)
            .flat_map(|row| row.iter().zip(&self.mean).map(|(x, m)| x - m))
            .collect();
        matmul_nt(&centred, n, self.in_dim, &self.matrix, self.out_dim)
    }
}
