//! Fitting a bundle's learned parts: the transform, then each codebook level by k-means on
//! the residuals of the level before.

pub mod pca;
pub mod static_fit;

use serde::{Deserialize, Serialize};

use crate::kmeans::{KMeansConfig, KMeansStats, kmeans};
use crate::quantize::stats::{LevelStats, level_stats};
use crate::quantize::{ResidualQuantizer, Transform};
use pca::{TransformConfig, fit_transform};

/// How to fit (the `hermes fit` flags).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FitConfig {
    /// Codebook size per level, coarse first.
    pub levels: Vec<usize>,
    pub seed: u64,
    /// Lloyd iterations per level at most.
    pub max_iter: usize,
    pub transform: TransformConfig,
}

/// A fitted transform + quantizer and what the fit measured on its own corpus.
pub struct Fitted {
    pub transform: Transform,
    pub quantizer: ResidualQuantizer,
    /// Share of the embedding variance the kept components explain.
    pub explained_variance: f64,
    pub kmeans: Vec<KMeansStats>,
    /// Utilization, perplexity and relative error of the greedy codes at each depth.
    pub stats: Vec<LevelStats>,
}

#[derive(Debug, thiserror::Error)]
pub enum FitError {
    #[error(
        "{n} documents cannot fit a codebook of {k}: need at least as many documents as the largest level"
    )]
    TooFew { n: usize, k: usize },
    #[error("{0}")]
    Levels(String),
    #[error("embedding {row} contains NaN or infinity")]
    NonFinite { row: usize },
    #[error("transform output dimension {0} is outside 1..={1}")]
    OutDim(usize, usize),
    /// Coding the fitting sample with the new codebooks failed (a shape bug, not the data).
    #[error("coding the fitting sample: {0}")]
    Quantize(#[from] crate::quantize::QuantizeError),
}

/// Fits the transform and every level on `e` (`[n, dim]` encoder embeddings).
pub fn fit(e: &[f32], dim: usize, config: &FitConfig) -> Result<Fitted, FitError> {
    let n = e.len() / dim;
    crate::quantize::check_levels(&config.levels).map_err(FitError::Levels)?;
    let kmax = *config.levels.iter().max().unwrap_or(&0);
    if n < kmax || n < 2 {
        return Err(FitError::TooFew { n, k: kmax });
    }
    if let Some(pos) = e.iter().position(|x| !x.is_finite()) {
        return Err(FitError::NonFinite { row: pos / dim });
    }
    if let Some(out) = config.transform.out_dim
        && (out == 0 || out > dim)
    {
        return Err(FitError::OutDim(out, dim));
    }
    let fitted = fit_transform(e, dim, &config.transform);
    let transform = fitted.transform;
    let z = transform.apply(e);
    let d = transform.out_dim;

    let mut residual = z.clone();
    let mut books = Vec::with_capacity(config.levels.len());
    let mut runs = Vec::with_capacity(config.levels.len());
    for (l, &k) in config.levels.iter().enumerate() {
        let cfg = KMeansConfig {
            k,
            max_iter: config.max_iter,
            seed: config.seed.wrapping_add(l as u64),
            min_cluster: (n / (k * 50)).max(1),
        };
        let run = kmeans(&residual, d, &cfg);
        for (row, &c) in residual.chunks_exact_mut(d).zip(&run.assign) {
            let centroid = &run.centroids[c as usize * d..(c as usize + 1) * d];
            row.iter_mut().zip(centroid).for_each(|(r, c)| *r -= c);
        }
        runs.push(KMeansStats {
            iterations: run.iterations,
            converged: run.converged,
            reseeded: run.reseeded,
        });
        books.push(run.centroids);
    }
    let quantizer = ResidualQuantizer::new(d, books);
    let codes = quantizer.encode(&z, config.levels.len())?;
    let stats = level_stats(&z, &codes, &quantizer);
    Ok(Fitted {
        transform,
        quantizer,
        explained_variance: fitted.explained.iter().sum(),
        kmeans: runs,
        stats,
    })
}
