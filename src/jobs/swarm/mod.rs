//! The swarm job (docs/search.md): labeled codes + a base spec → N mixtures drawn around the
//! prior, in Olmix's files (`priors.json`, `ratios.csv`), each as a spec `hermes mix` builds
//! (`variants/<name>.toml`), and with `--select` every variant's plan and selection.
//!
//! `swarm.json` records the swarm as drawn (base spec, searched buckets, prior, caps, pin):
//! it is what `hermes fit-mix` reads beside `ratios.csv`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::jobs::mix::Spec;

/// What to draw and where.
#[derive(Debug, Clone)]
pub struct SwarmJob {
    pub codes: Vec<PathBuf>,
    /// The base spec (TOML); its `[stage1]` is replaced per variant.
    pub spec: PathBuf,
    pub variants: usize,
    pub out: PathBuf,
    pub seed: u64,
    pub min_strength: f64,
    pub max_strength: f64,
    pub minimum_weight: f64,
    /// `weights = { prefix = total }` at a depth shallower than the spec's.
    pub pin: Option<PathBuf>,
    /// Also write every variant's plan and selection.
    pub select: bool,
    pub progress_interval: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum SwarmError {
    /// Bad input: the file (and key) and what is wrong.
    #[error("{0}")]
    Input(String),
    #[error(transparent)]
    Mix(#[from] crate::jobs::mix::MixError),
    #[error("{0}")]
    Io(String),
}

/// What the job did.
#[derive(Debug, Clone, PartialEq)]
pub struct SwarmSummary {
    pub variants: usize,
    pub buckets: usize,
    pub depth: usize,
    pub rows_read: u64,
    pub seconds: f64,
}

/// `--pin`: each prefix's total weight, at `depth`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Pin {
    pub depth: usize,
    pub weights: BTreeMap<String, f64>,
}

/// `swarm.json`: the swarm as drawn.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SwarmRecord {
    /// The output directory's name: run `i` is `<name>-<i, 4 digits>`.
    pub name: String,
    pub seed: u64,
    pub variants: usize,
    pub min_strength: f64,
    pub max_strength: f64,
    pub minimum_weight: f64,
    /// The base spec as read.
    pub spec: Spec,
    /// The searched buckets: labels at `spec.depth` with candidates, in code order.
    pub buckets: Vec<String>,
    /// `n_b`: each bucket's candidate size, in the spec's `size` unit.
    pub sizes: Vec<f64>,
    /// `p_b = n_b / Σ n`.
    pub prior: Vec<f64>,
    /// `c_b = max_epochs · n_b / budget`: the largest weight each bucket can be given.
    pub caps: Vec<f64>,
    pub pin: Option<Pin>,
    /// Each variant's Dirichlet strength.
    pub strengths: Vec<f64>,
}

/// Run `i`'s name.
pub fn run_name(swarm: &str, i: usize) -> String {
    format!("{swarm}-{i:04}")
}

pub fn run(_job: &SwarmJob) -> Result<SwarmSummary, SwarmError> {
    Err(SwarmError::Input("hermes swarm is not built yet".into()))
}
