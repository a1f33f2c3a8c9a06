//! The fit-mix job (docs/search.md): a swarm's `ratios.csv` + `swarm.json` and a
//! `metrics.csv` → the mixing law fitted per metric, and the weights it proposes
//! (`fit.json`, `optimal.toml`, `optimal.json`, `fit.svg`).
//!
//! - [`inputs`] reads and checks the files and joins them by run ([`csv`] reads the CSVs);
//! - [`law`] fits `L(w) = c + k · exp(t · w)` per metric (robust loss, ridge gauge), on the
//!   solver in [`linalg`]; [`stats`] judges it (R², held-out Spearman and MAE);
//! - [`propose`] minimises the objective plus KL over the capped (and pinned) simplex;
//! - [`svg`] draws predicted against measured. Here they are put together and the files are
//!   written, each by rename, once everything has been computed.

pub mod csv;
pub mod inputs;
pub mod law;
pub mod linalg;
pub mod propose;
pub mod stats;
mod svg;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use rayon::prelude::*;
use serde::Serialize;
use serde::ser::{SerializeMap, Serializer};

use crate::corpus::codes::{sync_dir, tmp_name};
use crate::jobs::mix::Spec;
use inputs::{Inputs, Run};
use law::Law;

/// What to fit and where.
#[derive(Debug, Clone)]
pub struct FitMixJob {
    /// A `hermes swarm` output directory.
    pub swarm: PathBuf,
    pub metrics: PathBuf,
    pub out: PathBuf,
    /// Weight of KL(w ‖ prior) in the proposal's objective.
    pub kl: f64,
    /// The last K runs (by index) are kept out of the fit.
    pub holdout: usize,
    /// Metric weights (TOML table); `None`: every metric weighs 1.
    pub objective: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum FitMixError {
    /// Bad input: the file (and row, column or key) and what is wrong.
    #[error("{0}")]
    Input(String),
    #[error("{0}")]
    Io(String),
}

/// What the job did.
#[derive(Debug, Clone, PartialEq)]
pub struct FitMixSummary {
    pub metrics: usize,
    /// Runs the law was fitted on.
    pub runs: usize,
    /// The objective the fitted laws predict at the proposal and at the prior.
    pub objective: f64,
    pub prior_objective: f64,
}

/// A JSON object whose keys keep the order given (labels in code order, metrics in the
/// metrics file's order); serde_json's own maps sort their keys.
#[derive(Debug, Clone)]
struct Ordered<V>(Vec<(String, V)>);

impl<V: Serialize> Serialize for Ordered<V> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in &self.0 {
            m.serialize_entry(k, v)?;
        }
        m.end()
    }
}

fn ordered<V: Clone>(keys: &[String], values: &[V]) -> Ordered<V> {
    Ordered(keys.iter().cloned().zip(values.iter().cloned()).collect())
}

#[derive(Debug, Serialize)]
struct Holdout {
    runs: usize,
    /// `null` with fewer than 2 held-out runs or a constant side.
    spearman: Option<f64>,
    mae: f64,
}

#[derive(Debug, Serialize)]
struct MetricFit {
    c: f64,
    k: f64,
    t: Ordered<f64>,
    /// Training R²; `null` when the metric is constant over the fitted runs.
    r2: Option<f64>,
    holdout: Option<Holdout>,
    /// Runs the law was fitted on.
    runs: usize,
    /// Huber's δ, in the metric's units.
    huber_delta: f64,
    /// The constant law (`k = 0`) fitted best.
    constant: bool,
}

#[derive(Debug, Serialize)]
struct RunCounts {
    /// Rows of ratios.csv.
    swarm: usize,
    /// Of those, measured in metrics.csv.
    measured: usize,
    /// Runs of the swarm missing from metrics.csv (failed proxies).
    missing: usize,
    fitted: usize,
    held_out: usize,
}

#[derive(Debug, Serialize)]
struct FitFile {
    law: &'static str,
    swarm: String,
    depth: usize,
    buckets: Vec<String>,
    runs: RunCounts,
    held_out: Vec<String>,
    /// The ridge on t, relative (numerical safety; see docs/search.md).
    ridge: f64,
    /// How t's free shift is fixed.
    gauge: &'static str,
    objective: Ordered<f64>,
    metrics: Ordered<MetricFit>,
}

#[derive(Debug, Serialize)]
struct Point {
    weights: Ordered<f64>,
    predicted: Ordered<f64>,
    objective: f64,
    kl_divergence: f64,
}

#[derive(Debug, Serialize)]
struct OptimalFile {
    weights: Ordered<f64>,
    predicted: Ordered<f64>,
    objective: f64,
    /// `--kl`, and `objective + kl · KL(w ‖ p)`, what was minimised.
    kl: f64,
    kl_divergence: f64,
    penalised: f64,
    objective_weights: Ordered<f64>,
    /// The prior `p`; with a pin, `p` rescaled within each pinned prefix to its total (the
    /// centre of the swarm, and the mixture the law can speak for).
    prior: Point,
    prior_pinned: bool,
}

pub fn run(job: &FitMixJob) -> Result<FitMixSummary, FitMixError> {
    if !(job.kl.is_finite() && job.kl >= 0.0) {
        return Err(FitMixError::Input(format!(
            "--kl {}: must be a finite number >= 0",
            job.kl
        )));
    }
    let inp = inputs::load(
        &job.swarm,
        &job.metrics,
        job.objective.as_deref(),
        job.holdout,
    )?;
    let n = inp.runs.len();
    let (train, held) = inp.runs.split_at(n - job.holdout);
    let fits = fit_all(&inp, train);
    let laws: Vec<Law> = fits.iter().map(|f| f.law.clone()).collect();

    let r = &inp.record;
    let problem = propose::Problem {
        laws: &laws,
        o: &inp.objective,
        prior: &r.prior,
        caps: &r.caps,
        groups: &inp.groups,
        kl: job.kl,
    };
    let proposal = problem.solve().map_err(|e| {
        FitMixError::Input(format!("{}: {e}", job.swarm.join("swarm.json").display()))
    })?;
    let prior = centre(&inp);

    let fit_file = fit_file(&inp, &fits, train, held);
    let point = |w: &[f64]| Point {
        weights: ordered(&r.buckets, w),
        predicted: ordered(
            &inp.metrics,
            &laws.iter().map(|l| l.predict(w)).collect::<Vec<_>>(),
        ),
        objective: propose::objective(&laws, &inp.objective, w),
        kl_divergence: propose::kl(w, &r.prior),
    };
    let at = point(&proposal.w);
    let at_prior = point(&prior);
    let summary = FitMixSummary {
        metrics: inp.metrics.len(),
        runs: train.len(),
        objective: at.objective,
        prior_objective: at_prior.objective,
    };
    let optimal = OptimalFile {
        weights: at.weights,
        predicted: at.predicted,
        objective: at.objective,
        kl: job.kl,
        kl_divergence: at.kl_divergence,
        penalised: proposal.value,
        objective_weights: ordered(&inp.metrics, &inp.objective),
        prior: at_prior,
        prior_pinned: r.pin.is_some(),
    };
    let weights: BTreeMap<String, f64> = r
        .buckets
        .iter()
        .cloned()
        .zip(proposal.w.iter().copied())
        .collect();
    let spec = r.spec.with_weights(weights);
    let toml = spec.to_toml();
    if Spec::parse(&toml).as_ref() != Ok(&spec) {
        return Err(FitMixError::Io(
            "optimal.toml does not read back as the spec it was written from".into(),
        ));
    }
    let panels = panels(&inp, &fits, train, held);

    // Everything computed: write, each file by rename.
    let out = &job.out;
    let io = |p: &Path, e: &dyn std::fmt::Display| FitMixError::Io(format!("{}: {e}", p.display()));
    std::fs::create_dir_all(out).map_err(|e| io(out, &e))?;
    write(&out.join("fit.json"), &json(&fit_file))?;
    write(&out.join("optimal.json"), &json(&optimal))?;
    write(&out.join("optimal.toml"), toml.as_bytes())?;
    let svg_path = out.join("fit.svg");
    let tmp = tmp_name(&svg_path);
    svg::plot(&panels, &tmp).map_err(FitMixError::Io)?;
    std::fs::rename(&tmp, &svg_path).map_err(|e| io(&svg_path, &e))?;
    sync_dir(&svg_path).map_err(|e| io(&svg_path, &e))?;
    Ok(summary)
}

/// Pretty JSON with a final newline.
fn json<T: Serialize>(v: &T) -> Vec<u8> {
    let mut out = serde_json::to_vec_pretty(v).expect("plain structs serialise");
    out.push(b'\n');
    out
}

fn write(path: &Path, body: &[u8]) -> Result<(), FitMixError> {
    let io = |p: &Path, e: std::io::Error| FitMixError::Io(format!("{}: {e}", p.display()));
    let tmp = tmp_name(path);
    std::fs::write(&tmp, body).map_err(|e| io(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| io(path, e))
}

fn fit_all(inp: &Inputs, train: &[Run]) -> Vec<law::Fit> {
    let w: Vec<Vec<f64>> = train.iter().map(|r| r.w.clone()).collect();
    let gauge: Vec<Vec<usize>> = inp.groups.iter().map(|g| g.members.clone()).collect();
    // Metrics are fitted independently: one per thread.
    (0..inp.metrics.len())
        .into_par_iter()
        .map(|m| {
            let y: Vec<f64> = train.iter().map(|r| r.y[m]).collect();
            law::fit(&w, &y, &gauge)
        })
        .collect()
}

/// The prior, and with a pin the prior rescaled within each pinned prefix to its total.
fn centre(inp: &Inputs) -> Vec<f64> {
    let p = &inp.record.prior;
    if inp.record.pin.is_none() {
        return p.clone();
    }
    let mut w = vec![0.0; p.len()];
    for g in &inp.groups {
        let mass: f64 = g.members.iter().map(|&i| p[i]).sum();
        for &i in &g.members {
            w[i] = if mass > 0.0 {
                g.total * p[i] / mass
            } else {
                g.total / g.members.len() as f64
            };
        }
    }
    w
}

fn fit_file(inp: &Inputs, fits: &[law::Fit], train: &[Run], held: &[Run]) -> FitFile {
    let r = &inp.record;
    let metrics = inp
        .metrics
        .iter()
        .zip(fits)
        .enumerate()
        .map(|(m, (name, f))| {
            let y: Vec<f64> = train.iter().map(|r| r.y[m]).collect();
            let pred: Vec<f64> = train.iter().map(|r| f.law.predict(&r.w)).collect();
            let holdout = (!held.is_empty()).then(|| {
                let y: Vec<f64> = held.iter().map(|r| r.y[m]).collect();
                let pred: Vec<f64> = held.iter().map(|r| f.law.predict(&r.w)).collect();
                Holdout {
                    runs: held.len(),
                    spearman: stats::spearman(&pred, &y),
                    mae: stats::mae(&pred, &y),
                }
            });
            let fit = MetricFit {
                c: f.law.c,
                k: f.law.k,
                t: ordered(&r.buckets, &f.law.t),
                r2: stats::r2(&y, &pred),
                holdout,
                runs: train.len(),
                huber_delta: f.delta,
                constant: f.constant,
            };
            (name.clone(), fit)
        })
        .collect();
    FitFile {
        law: "c + k * exp(sum_b t_b * w_b)",
        swarm: r.name.clone(),
        depth: r.spec.depth,
        buckets: r.buckets.clone(),
        runs: RunCounts {
            swarm: inp.swarm_runs,
            measured: inp.runs.len(),
            missing: inp.swarm_runs - inp.runs.len(),
            fitted: train.len(),
            held_out: held.len(),
        },
        held_out: held.iter().map(|r| r.name.clone()).collect(),
        ridge: law::RIDGE,
        gauge: if r.pin.is_some() {
            "t sums to 0 over each pinned prefix's buckets"
        } else {
            "t sums to 0 over the buckets"
        },
        objective: ordered(&inp.metrics, &inp.objective),
        metrics: Ordered(metrics),
    }
}

fn panels(inp: &Inputs, fits: &[law::Fit], train: &[Run], held: &[Run]) -> Vec<svg::Panel> {
    inp.metrics
        .iter()
        .zip(fits)
        .enumerate()
        .map(|(m, (name, f))| {
            let point = |r: &Run, h: bool| (r.y[m], f.law.predict(&r.w), h);
            let points: Vec<(f64, f64, bool)> = train
                .iter()
                .map(|r| point(r, false))
                .chain(held.iter().map(|r| point(r, true)))
                .collect();
            let (y, p): (Vec<f64>, Vec<f64>) =
                train.iter().map(|r| (r.y[m], f.law.predict(&r.w))).unzip();
            let mut title = format!("{name}: R² {}", num(stats::r2(&y, &p)));
            if !held.is_empty() {
                let (y, p): (Vec<f64>, Vec<f64>) =
                    held.iter().map(|r| (r.y[m], f.law.predict(&r.w))).unzip();
                title += &format!(
                    ", held out ({}): Spearman {}, MAE {:.3e}",
                    held.len(),
                    num(stats::spearman(&p, &y)),
                    stats::mae(&p, &y)
                );
            }
            svg::Panel { title, points }
        })
        .collect()
}

fn num(x: Option<f64>) -> String {
    x.map_or("n/a".into(), |x| format!("{x:.3}"))
}
