//! `hermes eval`'s report: code statistics and label agreement at every depth, next to a flat
//! k-means baseline (K = the first level's size) on the same embeddings.

use serde::{Deserialize, Serialize};

use super::metrics::{Agreement, agreement};
use crate::kmeans::{KMeansConfig, kmeans};
use crate::quantize::stats::{LevelStats, level_stats};
use crate::quantize::{Code, ResidualQuantizer};

/// Labels that count for fitting but not for label metrics.
pub fn is_scored_label(label: &str) -> bool {
    let l = label.trim();
    !l.is_empty() && l != "Uncategorized"
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DepthReport {
    #[serde(flatten)]
    pub stats: LevelStats,
    /// Agreement of the depth-`d` cells with the labels (AMI and ARI are the meaningful ones past depth 1).
    pub labels: Agreement,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BaselineReport {
    pub k: usize,
    pub iterations: usize,
    /// k-means inertia over Σ‖e − μ‖² (the codes' relative error is the same ratio in z space).
    pub relative_error: f64,
    pub labels: Agreement,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EvalReport {
    pub bundle: String,
    pub fingerprint: String,
    pub n_docs: usize,
    /// Documents with a scored label (not empty, not "Uncategorized").
    pub n_labeled: usize,
    pub n_labels: usize,
    pub depths: Vec<DepthReport>,
    pub flat_kmeans: BaselineReport,
    /// L1 AMI divided by the flat k-means AMI.
    pub l1_ami_ratio: f64,
}

/// Inputs: encoder embeddings `e`, their transformed `z`, full codes and the labels per doc.
pub struct EvalInput<'a> {
    pub bundle: String,
    pub fingerprint: String,
    pub e: &'a [f32],
    pub e_dim: usize,
    pub z: &'a [f32],
    pub codes: &'a [Code],
    pub labels: &'a [Option<String>],
    pub quantizer: &'a ResidualQuantizer,
    pub seed: u64,
}

pub fn evaluate(input: &EvalInput<'_>) -> EvalReport {
    let levels = input.quantizer.levels();
    let stats = level_stats(input.z, input.codes, input.quantizer);
    let scored: Vec<usize> = (0..input.codes.len())
        .filter(|&i| input.labels[i].as_deref().is_some_and(is_scored_label))
        .collect();
    let truth: Vec<&str> = scored
        .iter()
        .map(|&i| input.labels[i].as_deref().unwrap_or_default())
        .collect();
    let mut distinct = truth.clone();
    distinct.sort_unstable();
    distinct.dedup();
    let depths = stats
        .into_iter()
        .map(|s| {
            let cells: Vec<u64> = scored
                .iter()
                .map(|&i| input.codes[i].truncate(s.depth).cell(levels))
                .collect();
            DepthReport {
                labels: agreement(&cells, &truth),
                stats: s,
            }
        })
        .collect::<Vec<_>>();

    let k = levels[0];
    let flat = kmeans(
        input.e,
        input.e_dim,
        &KMeansConfig {
            k,
            max_iter: 100,
            seed: input.seed,
            min_cluster: 1,
        },
    );
    let total = centred_sq_norm(input.e, input.e_dim);
    let flat_pred: Vec<u32> = scored.iter().map(|&i| flat.assign[i]).collect();
    let flat_labels = agreement(&flat_pred, &truth);
    let l1 = depths.first().map(|d| d.labels.ami).unwrap_or(0.0);
    EvalReport {
        bundle: input.bundle.clone(),
        fingerprint: input.fingerprint.clone(),
        n_docs: input.codes.len(),
        n_labeled: scored.len(),
        n_labels: distinct.len(),
        depths,
        flat_kmeans: BaselineReport {
            k,
            iterations: flat.iterations,
            relative_error: flat.inertia / total,
            labels: flat_labels,
        },
        l1_ami_ratio: if flat_labels.ami.abs() > 0.0 {
            l1 / flat_labels.ami
        } else {
            0.0
        },
    }
}

impl EvalReport {
    pub fn markdown(&self) -> String {
        let mut s = format!(
            "bundle {} (fingerprint {}): {} documents, {} with one of {} scored labels\n\n",
            self.bundle, self.fingerprint, self.n_docs, self.n_labeled, self.n_labels
        );
        s.push_str("| codes | k | utilization | perplexity | cells used | relative error | NMI | AMI | ARI | purity |\n");
        s.push_str("|---|---|---|---|---|---|---|---|---|---|\n");
        for d in &self.depths {
            let a = &d.labels;
            s.push_str(&format!(
                "| depth {} | {} | {:.1}% | {:.1} | {} | {:.4} | {:.3} | {:.3} | {:.3} | {:.3} |\n",
                d.stats.depth,
                d.stats.k,
                d.stats.utilization * 100.0,
                d.stats.perplexity,
                d.stats.cells_used,
                d.stats.relative_error,
                a.nmi,
                a.ami,
                a.ari,
                a.purity
            ));
        }
        let b = &self.flat_kmeans;
        s.push_str(&format!(
            "| flat k-means | {} | | | {} | {:.4} | {:.3} | {:.3} | {:.3} | {:.3} |\n\n",
            b.k, b.k, b.relative_error, b.labels.nmi, b.labels.ami, b.labels.ari, b.labels.purity
        ));
        s.push_str(&format!(
            "L1 AMI / flat k-means AMI = {:.3}. Past depth 1 only AMI and ARI are comparable: NMI and purity rise with the number of cells even for random cells.\n",
            self.l1_ami_ratio
        ));
        s
    }
}

/// Σ‖e − μ‖²: the total variance the relative errors are measured against.
fn centred_sq_norm(e: &[f32], dim: usize) -> f64 {
    let n = (e.len() / dim).max(1) as f64;
    let mut mean = vec![0f64; dim];
    for row in e.chunks_exact(dim) {
        mean.iter_mut()
            .zip(row)
            .for_each(|(m, &x)| *m += f64::from(x) / n);
    }
    let total: f64 = e
        .chunks_exact(dim)
        .map(|row| {
            row.iter()
                .zip(&mean)
                .map(|(&x, m)| (f64::from(x) - m).powi(2))
                .sum::<f64>()
        })
        .sum();
    total.max(f64::MIN_POSITIVE)
}
