//! Greedy residual vector quantization: codebooks per level, encoding, decoding.
//!
//! Level `l` picks `c_l = argmin_k ‖r_{l−1} − C_l[k]‖²` with `r_0 = z` and
//! `r_l = r_{l−1} − C_l[c_l]`. Greedy (not beam) search is what makes the depth-`d` code the
//! first `d` entries of the full code.
//!
//! Encoding never forms the residuals. Expanding the distance,
//! `‖r_{l−1} − C_l[k]‖² = ‖r_{l−1}‖² − 2 z·C_l[k] + 2 Σ_{j<l} C_j[c_j]·C_l[k] + ‖C_l[k]‖²`,
//! and `‖r_{l−1}‖²` is the same for every `k`, so one matrix product `z · [C_1; C_2; C_3]ᵀ`
//! plus precomputed centroid norms and codebook cross inner products (look-up tables) decide
//! every level. This is FAISS's `use_beam_LUT` idea for greedy search.
//!
//! Also what the rest of hermes shares about codes: their format ([`Code`], [`label`]), the
//! packed prefix buckets are counted by ([`pack`], [`MAX_DEPTH`]) and the documented row key
//! ([`key_hash`]).

mod code;
mod key;
mod space;
pub mod stats;
mod transform;

pub use code::{Code, MAX_DEPTH, check_levels, label, pack};
pub use key::key_hash;
pub use space::CodeSpace;
pub use transform::Transform;

use crate::linalg::{argmin, matmul_nt, matmul_nt_into, row_sq_norms};

/// Rows encoded per matrix product: bounds scratch memory; does not change any result.
const CHUNK: usize = 256;

/// Input the quantizer refuses to code.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum QuantizeError {
    #[error("vector {row} has {got} values, expected {want}")]
    Dimension { row: usize, got: usize, want: usize },
    #[error("vector {row} contains NaN or infinity")]
    NonFinite { row: usize },
    #[error("depth {depth} is outside 1..={levels}")]
    Depth { depth: usize, levels: usize },
}

/// Codebooks of every level plus the look-up tables greedy encoding uses.
#[derive(Debug, Clone)]
pub struct ResidualQuantizer {
    dim: usize,
    /// Codebook size per level, coarse first (e.g. `[64, 64, 32]`).
    levels: Vec<usize>,
    /// All codebooks stacked: level `l` occupies rows `offsets[l]..offsets[l] + levels[l]`.
    stacked: Vec<f32>,
    offsets: Vec<usize>,
    /// `‖C[k]‖²` for every stacked row.
    norms: Vec<f32>,
    /// `cross[l][j]` (for `j < l`): `[K_j, K_l]` inner products `C_j[a]·C_l[b]`.
    cross: Vec<Vec<Vec<f32>>>,
}

impl ResidualQuantizer {
    /// Builds a quantizer from per-level codebooks, each `[K_l, dim]` row-major.
    pub fn new(dim: usize, codebooks: Vec<Vec<f32>>) -> Self {
        assert!(
            dim > 0 && !codebooks.is_empty(),
            "at least one level of positive dimension"
        );
        let levels: Vec<usize> = codebooks
            .iter()
            .map(|c| {
                assert!(
                    !c.is_empty() && c.len() % dim == 0,
                    "codebook rows are dim wide"
                );
                c.len() / dim
            })
            .collect();
        let mut offsets = Vec::with_capacity(levels.len());
        let mut total = 0;
        for &k in &levels {
            offsets.push(total);
            total += k;
        }
        let stacked: Vec<f32> = codebooks.concat();
        let norms = row_sq_norms(&stacked, dim);
        let cross = (0..levels.len())
            .map(|l| {
                (0..l)
                    .map(|j| matmul_nt(&codebooks[j], levels[j], dim, &codebooks[l], levels[l]))
                    .collect()
            })
            .collect();
        Self {
            dim,
            levels,
            stacked,
            offsets,
            norms,
            cross,
        }
    }

    pub fn dim(&self) -> usize {
        self.dim
    }

    pub fn levels(&self) -> &[usize] {
        &self.levels
    }

    /// Codebook of level `l` (0-based), `[K_l, dim]`.
    pub fn codebook(&self, l: usize) -> &[f32] {
        let start = self.offsets[l] * self.dim;
        &self.stacked[start..start + self.levels[l] * self.dim]
    }

    /// Checks that `z` holds whole, finite vectors of this quantizer's dimension.
    pub fn validate(&self, z: &[f32]) -> Result<usize, QuantizeError> {
        if !z.len().is_multiple_of(self.dim) {
            let row = z.len() / self.dim;
            return Err(QuantizeError::Dimension {
                row,
                got: z.len() % self.dim,
                want: self.dim,
            });
        }
        if let Some(pos) = z.iter().position(|x| !x.is_finite()) {
            return Err(QuantizeError::NonFinite {
                row: pos / self.dim,
            });
        }
        Ok(z.len() / self.dim)
    }

    /// Greedy codes of `n` row-major vectors, to `depth` levels. Each vector's code depends on
    /// that vector alone. NaN or infinity anywhere is refused, never coded.
    pub fn encode(&self, z: &[f32], depth: usize) -> Result<Vec<Code>, QuantizeError> {
        if depth == 0 || depth > self.levels.len() {
            return Err(QuantizeError::Depth {
                depth,
                levels: self.levels.len(),
            });
        }
        let n = self.validate(z)?;
        let width = self.offsets[depth - 1] + self.levels[depth - 1];
        let books = &self.stacked[..width * self.dim];
        let mut dots = vec![0f32; CHUNK.min(n.max(1)) * width];
        let mut scores = vec![0f32; *self.levels.iter().max().unwrap_or(&1)];
        let mut codes = Vec::with_capacity(n);
        for chunk in z.chunks(CHUNK * self.dim) {
            let rows = chunk.len() / self.dim;
            let dots = &mut dots[..rows * width];
            matmul_nt_into(chunk, rows, self.dim, books, width, dots);
            for row in dots.chunks_exact(width) {
                codes.push(self.encode_row(row, depth, &mut scores));
            }
        }
        Ok(codes)
    }

    /// Greedy search for one vector given its inner products with every stacked codeword.
    fn encode_row(&self, dots: &[f32], depth: usize, scores: &mut [f32]) -> Code {
        let mut code = Vec::with_capacity(depth);
        for l in 0..depth {
            let scores = self.level_scores(dots, &code, l, scores);
            code.push(argmin(scores) as u32);
        }
        Code(code)
    }

    /// Distances (up to the common `‖r‖²`) from the residual after `code` to every codeword of
    /// level `l`: `‖C_l[k]‖² − 2 (z·C_l[k] − Σ_{j<l} C_j[c_j]·C_l[k])`.
    fn level_scores<'s>(
        &self,
        dots: &[f32],
        code: &[u32],
        l: usize,
        scores: &'s mut [f32],
    ) -> &'s mut [f32] {
        let k = self.levels[l];
        let base = self.offsets[l];
        let scores = &mut scores[..k];
        scores.copy_from_slice(&dots[base..base + k]);
        for (j, &c) in code.iter().enumerate() {
            let lut = &self.cross[l][j][c as usize * k..(c as usize + 1) * k];
            for (s, x) in scores.iter_mut().zip(lut) {
                *s -= x;
            }
        }
        for (s, norm) in scores.iter_mut().zip(&self.norms[base..base + k]) {
            *s = norm - 2.0 * *s;
        }
        scores
    }

    /// For each vector, the smallest gap over all levels between the chosen codeword's distance
    /// and the runner-up's. A large margin means the code survives small numeric differences
    /// (another CPU's kernels), which is what start-up probes need.
    pub fn margins(&self, z: &[f32]) -> Result<Vec<f32>, QuantizeError> {
        let n = self.validate(z)?;
        let depth = self.levels.len();
        let width = self.offsets[depth - 1] + self.levels[depth - 1];
        let dots = matmul_nt(z, n, self.dim, &self.stacked, width);
        let mut scores = vec![0f32; *self.levels.iter().max().unwrap_or(&1)];
        Ok(dots
            .chunks_exact(width)
            .map(|row| {
                let mut code = Vec::with_capacity(depth);
                let mut margin = f32::INFINITY;
                for l in 0..depth {
                    let s = self.level_scores(row, &code, l, &mut scores);
                    let best = argmin(s);
                    let runner_up = s
                        .iter()
                        .enumerate()
                        .filter(|&(i, _)| i != best)
                        .map(|(_, &v)| v)
                        .fold(f32::INFINITY, f32::min);
                    margin = margin.min(runner_up - s[best]);
                    code.push(best as u32);
                }
                margin
            })
            .collect())
    }

    /// The reconstruction `ẑ = Σ_l C_l[c_l]` of a (possibly truncated) code.
    pub fn decode(&self, code: &Code) -> Vec<f32> {
        let mut out = vec![0f32; self.dim];
        for (l, &c) in code.0.iter().enumerate() {
            let row = &self.codebook(l)[c as usize * self.dim..(c as usize + 1) * self.dim];
            for (o, x) in out.iter_mut().zip(row) {
                *o += x;
            }
        }
        out
    }
}
