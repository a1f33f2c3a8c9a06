//! Agreement between a clustering and reference labels: NMI, AMI, ARI and purity.
//!
//! NMI and AMI use the arithmetic-mean normalisation (scikit-learn's default). AMI subtracts the
//! mutual information expected between random clusterings with the same cluster sizes
//! (Vinh, Epps & Bailey 2010); that correction matters at depths 2 and 3, where thousands of
//! small cells make NMI and purity high even for random codes.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
pub struct Agreement {
    pub nmi: f64,
    pub ami: f64,
    pub ari: f64,
    pub purity: f64,
}

/// Contingency table of two labelings as sparse cell counts plus the two marginals.
struct Table {
    n: usize,
    /// `(row, column, count)` of every non-empty cell.
    cells: Vec<(usize, usize, usize)>,
    rows: Vec<usize>,
    cols: Vec<usize>,
    /// Largest count per predicted cluster (for purity).
    row_max: Vec<usize>,
}

fn table<A: Eq + std::hash::Hash + Copy, B: Eq + std::hash::Hash + Copy>(
    pred: &[A],
    truth: &[B],
) -> Table {
    let mut ri: HashMap<A, usize> = HashMap::new();
    let mut ci: HashMap<B, usize> = HashMap::new();
    let mut joint: HashMap<(usize, usize), usize> = HashMap::new();
    for (&p, &t) in pred.iter().zip(truth) {
        let nr = ri.len();
        let r = *ri.entry(p).or_insert(nr);
        let nc = ci.len();
        let c = *ci.entry(t).or_insert(nc);
        *joint.entry((r, c)).or_insert(0) += 1;
    }
    let mut rows = vec![0; ri.len()];
    let mut cols = vec![0; ci.len()];
    let mut row_max = vec![0; ri.len()];
    let mut cells = Vec::with_capacity(joint.len());
    for (&(r, c), &v) in &joint {
        rows[r] += v;
        cols[c] += v;
        row_max[r] = row_max[r].max(v);
        cells.push((r, c, v));
    }
    Table {
        n: pred.len(),
        cells,
        rows,
        cols,
        row_max,
    }
}

fn entropy(counts: &[usize], n: f64) -> f64 {
    counts
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| c as f64 / n)
        .map(|p| -p * p.ln())
        .sum()
}

fn comb2(x: usize) -> f64 {
    let x = x as f64;
    x * (x - 1.0) / 2.0
}

/// Expected mutual information under the permutation model, with exact log-factorials.
fn expected_mi(rows: &[usize], cols: &[usize], n: usize, lf: &[f64]) -> f64 {
    let nf = n as f64;
    let mut emi = 0.0;
    for &a in rows {
        for &b in cols {
            let lo = (a + b).saturating_sub(n).max(1);
            let hi = a.min(b);
            for nij in lo..=hi {
                let v = nij as f64;
                let term = v / nf * (nf * v / (a as f64 * b as f64)).ln();
                let log_p = lf[a] + lf[b] + lf[n - a] + lf[n - b]
                    - lf[n]
                    - lf[nij]
                    - lf[a - nij]
                    - lf[b - nij]
                    - lf[n - a - b + nij];
                emi += term * log_p.exp();
            }
        }
    }
    emi
}

/// Scores `pred` (clusters or cells) against `truth` (reference labels).
pub fn agreement<A, B>(pred: &[A], truth: &[B]) -> Agreement
where
    A: Eq + std::hash::Hash + Copy,
    B: Eq + std::hash::Hash + Copy,
{
    assert_eq!(pred.len(), truth.len());
    let t = table(pred, truth);
    let n = t.n as f64;
    if t.n == 0 {
        return Agreement {
            nmi: 0.0,
            ami: 0.0,
            ari: 0.0,
            purity: 0.0,
        };
    }
    let hu = entropy(&t.rows, n);
    let hv = entropy(&t.cols, n);
    let mi: f64 = t
        .cells
        .iter()
        .map(|&(r, c, nij)| {
            let v = nij as f64;
            v / n * (n * v / (t.rows[r] as f64 * t.cols[c] as f64)).ln()
        })
        .sum();
    let mean_h = (hu + hv) / 2.0;
    let nmi = if mean_h > 0.0 { mi / mean_h } else { 1.0 };
    let mut lf = vec![0f64; t.n + 1];
    for i in 1..=t.n {
        lf[i] = lf[i - 1] + (i as f64).ln();
    }
    let emi = expected_mi(&t.rows, &t.cols, t.n, &lf);
    let denom = mean_h - emi;
    let ami = if denom.abs() < 1e-15 {
        1.0
    } else {
        (mi - emi) / denom
    };
    let index: f64 = t.cells.iter().map(|&(_, _, c)| comb2(c)).sum();
    let sum_a: f64 = t.rows.iter().map(|&c| comb2(c)).sum();
    let sum_b: f64 = t.cols.iter().map(|&c| comb2(c)).sum();
    let expected = sum_a * sum_b / comb2(t.n).max(1.0);
    let max_index = (sum_a + sum_b) / 2.0;
    let ari = if (max_index - expected).abs() < 1e-15 {
        1.0
    } else {
        (index - expected) / (max_index - expected)
    };
    let purity = t.row_max.iter().sum::<usize>() as f64 / n;
    Agreement {
        nmi,
        ami,
        ari,
        purity,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identical_labelings_score_one() {
        let a = [0, 0, 1, 1, 2, 2, 2];
        let g = agreement(&a, &a);
        for v in [g.nmi, g.ami, g.ari, g.purity] {
            assert!((v - 1.0).abs() < 1e-9, "{g:?}");
        }
    }

    #[test]
    fn matches_scikit_learn_on_a_small_case() {
        // sklearn: adjusted_rand_score = 0.24242424, normalized_mutual_info_score = 0.51580374,
        // adjusted_mutual_info_score = 0.29879245 for these labelings.
        let truth = [0, 0, 0, 1, 1, 1];
        let pred = [0, 0, 1, 1, 2, 2];
        let g = agreement(&pred, &truth);
        assert!((g.ari - 0.242_424_24).abs() < 1e-6, "{g:?}");
        assert!((g.nmi - 0.515_803_74).abs() < 1e-6, "{g:?}");
        assert!((g.ami - 0.298_792_45).abs() < 1e-6, "{g:?}");
        assert!((g.purity - 5.0 / 6.0).abs() < 1e-12);
    }

    #[test]
    fn random_cells_have_high_nmi_but_near_zero_ami() {
        let n = 4000;
        let truth: Vec<u32> = (0..n).map(|i| (i * 7 % 11) as u32).collect();
        // Random fine cells, independent of truth.
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
        let pred: Vec<u64> = (0..n).map(|_| rng.random_range(0..1000)).collect();
        let g = agreement(&pred, &truth);
        assert!(g.nmi > 0.2, "{g:?}");
        assert!(g.ami.abs() < 0.02, "{g:?}");
        assert!(g.ari.abs() < 0.01, "{g:?}");
    }
}
