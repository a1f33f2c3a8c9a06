//! The fit-mix job (docs/search.md): a swarm's `ratios.csv` + `swarm.json` and a
//! `metrics.csv` → the mixing law fitted per metric, and the weights it proposes
//! (`fit.json`, `optimal.toml`, `optimal.json`, `fit.svg`).

use std::path::PathBuf;

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

pub fn run(_job: &FitMixJob) -> Result<FitMixSummary, FitMixError> {
    Err(FitMixError::Input("hermes fit-mix is not built yet".into()))
}
