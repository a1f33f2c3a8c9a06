//! Label-free statistics of a set of codes: codebook utilization and perplexity per level,
//! cells used and relative reconstruction error per depth.

use serde::{Deserialize, Serialize};

use super::{Code, ResidualQuantizer};

/// What the codes of a corpus look like at one depth (level `depth` for the per-level fields).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LevelStats {
    pub depth: usize,
    /// Codebook size of this level.
    pub k: usize,
    /// Share of this level's codewords used at least once.
    pub utilization: f64,
    /// exp(entropy) of this level's codeword distribution (k when perfectly balanced).
    pub perplexity: f64,
    /// Distinct codes (cells) at this depth.
    pub cells_used: usize,
    /// Σ‖z − ẑ_depth‖² / Σ‖z‖².
    pub relative_error: f64,
}

pub fn level_stats(z: &[f32], codes: &[Code], quantizer: &ResidualQuantizer) -> Vec<LevelStats> {
    let d = quantizer.dim();
    let levels = quantizer.levels();
    let total: f64 = z
        .iter()
        .map(|&x| f64::from(x) * f64::from(x))
        .sum::<f64>()
        .max(f64::MIN_POSITIVE);
    let mut residual: Vec<f64> = z.iter().map(|&x| f64::from(x)).collect();
    let mut out = Vec::with_capacity(levels.len());
    for (l, &k) in levels.iter().enumerate() {
        let mut counts = vec![0usize; k];
        let book = quantizer.codebook(l);
        for (row, code) in residual.chunks_exact_mut(d).zip(codes) {
            let c = code.0[l] as usize;
            counts[c] += 1;
            row.iter_mut()
                .zip(&book[c * d..(c + 1) * d])
                .for_each(|(r, &v)| *r -= f64::from(v));
        }
        let err: f64 = residual.iter().map(|r| r * r).sum();
        let n = codes.len().max(1) as f64;
        let entropy: f64 = counts
            .iter()
            .filter(|&&c| c > 0)
            .map(|&c| c as f64 / n)
            .map(|p| -p * p.ln())
            .sum();
        let mut cells: Vec<&[u32]> = codes.iter().map(|c| &c.0[..=l]).collect();
        cells.sort_unstable();
        cells.dedup();
        out.push(LevelStats {
            depth: l + 1,
            k,
            utilization: counts.iter().filter(|&&c| c > 0).count() as f64 / k as f64,
            perplexity: entropy.exp(),
            cells_used: cells.len(),
            relative_error: err / total,
        });
    }
    out
}
