//! The swarm job (docs/search.md): labeled codes + a base spec → N mixtures drawn around the
//! prior, in Olmix's files (`priors.json`, `ratios.csv`), each as a spec `hermes mix` builds
//! (`variants/<name>.toml`), and with `--select` every variant's plan and selection.
//!
//! `swarm.json` records the swarm as drawn (base spec, searched buckets, prior, caps, pin):
//! it is what `hermes fit-mix` reads beside `ratios.csv`.

pub mod draw;
mod select;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::progress::{Counter, Reporter};
use crate::corpus::codes::{code_levels, sync_dir, tmp_name};
use crate::jobs::mix::{Loaded, Spec, load, plan};
use draw::{Block, Draw};

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

/// Slack of a pinned table's sum (it is then scaled to sum to 1 exactly).
const PIN_EPS: f64 = 1e-6;
/// Slack of the caps' sums: that of `hermes mix`, so a swarm it accepts is never short there.
use crate::jobs::mix::quota::EPS;

pub fn run(job: &SwarmJob) -> Result<SwarmSummary, SwarmError> {
    let started = Instant::now();
    check_job(job)?;
    let Loaded {
        spec,
        files,
        marker,
    } = load(&job.spec, &job.codes)?;
    let spec_err = |m: String| SwarmError::Input(format!("{}: {m}", job.spec.display()));
    if spec.budget <= 0.0 {
        return Err(spec_err(
            "a swarm needs budget > 0 (caps are shares of it)".into(),
        ));
    }
    let counter = Arc::new(Counter::default());
    let reporter = Reporter::start(
        "swarm",
        "rows",
        files.len(),
        counter.clone(),
        job.progress_interval,
    );
    // The codes are counted once (pass 1, thin pools, the quality phase): for the prior and
    // caps here, and for every variant's plan with --select.
    // The scratch records of the plan's passes go under --out (removed with the count).
    let passes = plan::Passes {
        threads: crate::jobs::mix::default_threads(),
        scratch: job.out.clone(),
    };
    let counted = plan::count(&spec, &files, &passes, &counter);
    reporter.finish();
    let counted = counted.map_err(SwarmError::Input)?;
    // The searched buckets: those whose candidates have a size above 0.
    let (buckets, sizes): (Vec<String>, Vec<f64>) = counted
        .bucket_sizes()
        .into_iter()
        .filter(|(_, n)| *n > 0.0)
        .unzip();
    if buckets.is_empty() {
        return Err(SwarmError::Input(format!(
            "no bucket at depth {} has candidates: nothing to search",
            spec.depth
        )));
    }
    let total: f64 = sizes.iter().sum();
    let prior: Vec<f64> = sizes.iter().map(|n| n / total).collect();
    let epochs = f64::from(spec.max_epochs);
    let caps: Vec<f64> = sizes.iter().map(|n| epochs * n / spec.budget).collect();
    let held: f64 = caps.iter().sum();
    if held < 1.0 - EPS {
        return Err(SwarmError::Input(format!(
            "the caps cannot hold a whole mixture: max_epochs · candidates = {} {} < budget {} (short by {}); lower the budget or raise max_epochs",
            held * spec.budget,
            spec.size,
            spec.budget,
            (1.0 - held) * spec.budget
        )));
    }
    let pin = match &job.pin {
        Some(p) => Some(read_pin(p, &spec, &buckets)?),
        None => None,
    };
    let blocks = blocks(pin.as_ref(), &buckets, &caps, job.pin.as_deref())?;
    let draw = Draw {
        seed: job.seed,
        min_strength: job.min_strength,
        max_strength: job.max_strength,
        minimum_weight: job.minimum_weight,
        prior: &prior,
        caps: &caps,
        blocks: &blocks,
    };
    let (strengths, weights): (Vec<f64>, Vec<Vec<f64>>) =
        (0..job.variants).map(|i| draw.variant(i)).unzip();
    let name = job
        .out
        .canonicalize()
        .ok()
        .or_else(|| std::path::absolute(&job.out).ok())
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .filter(|n| !n.is_empty() && !n.contains([',', '"', '\n', '\r']))
        .ok_or_else(|| {
            SwarmError::Input(format!(
                "--out {}: needs a directory name without commas, quotes or line breaks (it names the runs in ratios.csv)",
                job.out.display()
            ))
        })?;
    let record = SwarmRecord {
        name,
        seed: job.seed,
        variants: job.variants,
        min_strength: job.min_strength,
        max_strength: job.max_strength,
        minimum_weight: job.minimum_weight,
        spec,
        buckets,
        sizes,
        prior,
        caps,
        pin,
        strengths,
    };
    let levels = code_levels(&files[0].path).map_err(SwarmError::Input)?;
    let variants = write(&job.out, &record, &weights, levels)?;
    if job.select {
        let reporter = Reporter::start(
            "swarm --select",
            "rows",
            files.len(),
            counter.clone(),
            job.progress_interval,
        );
        let done = select::select_all(
            &job.out.join("variants"),
            &record.spec,
            &counted,
            &variants,
            &files,
            &marker,
            &counter,
        );
        reporter.finish();
        done?;
    }
    Ok(SwarmSummary {
        variants: job.variants,
        buckets: record.buckets.len(),
        depth: record.spec.depth,
        rows_read: counter.get(),
        seconds: started.elapsed().as_secs_f64(),
    })
}

fn check_job(job: &SwarmJob) -> Result<(), SwarmError> {
    let bad = |m: String| Err(SwarmError::Input(m));
    if job.variants == 0 || job.variants > 10_000 {
        return bad(format!("--variants {} must be in 1..=10000", job.variants));
    }
    let (lo, hi) = (job.min_strength, job.max_strength);
    if !(lo.is_finite() && hi.is_finite() && lo > 0.0 && lo <= hi) {
        return bad(format!(
            "--min-strength {lo} and --max-strength {hi} must be finite with 0 < min <= max"
        ));
    }
    if !(0.0..1.0).contains(&job.minimum_weight) {
        return bad(format!(
            "--minimum-weight {} must be in [0, 1)",
            job.minimum_weight
        ));
    }
    Ok(())
}

/// The parent prefix of `label` at `depth` levels.
pub fn parent(label: &str, depth: usize) -> String {
    label.split('.').take(depth).collect::<Vec<_>>().join(".")
}

/// `--pin FILE`: `weights = { prefix = total }`, every prefix at one depth shallower than the
/// spec's, covering every prefix that has searched buckets, summing to 1.
fn read_pin(path: &Path, spec: &Spec, buckets: &[String]) -> Result<Pin, SwarmError> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct PinFile {
        weights: BTreeMap<String, f64>,
    }
    let err = |m: String| SwarmError::Input(format!("{}: {m}", path.display()));
    let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
    let file: PinFile =
        toml::from_str(&text).map_err(|e| err(e.to_string().trim().replace('\n', " ")))?;
    let Some(first) = file.weights.keys().next() else {
        return Err(err("weights is empty".into()));
    };
    let depth = first.split('.').count();
    if depth >= spec.depth {
        return Err(err(format!(
            "weights are at depth {depth}: a pin must be shallower than the spec's depth {}",
            spec.depth
        )));
    }
    for (label, &w) in &file.weights {
        let parts: Vec<&str> = label.split('.').collect();
        if parts.len() != depth || parts.iter().any(|p| p.parse::<u16>().is_err()) {
            return Err(err(format!(
                "weights.\"{label}\": every label must be a code prefix of depth {depth}, like \"{first}\""
            )));
        }
        if !w.is_finite() || w < 0.0 {
            return Err(err(format!(
                "weights.\"{label}\" = {w}: weights must be finite and >= 0"
            )));
        }
        if w > 0.0 && !buckets.iter().any(|b| parent(b, depth) == *label) {
            return Err(err(format!(
                "weights.\"{label}\" = {w}: no bucket under it has candidates"
            )));
        }
    }
    for b in buckets {
        let p = parent(b, depth);
        if !file.weights.contains_key(&p) {
            return Err(err(format!(
                "weights does not cover \"{p}\" (it has candidates, e.g. in bucket {b}): a pin gives every non-empty prefix at its depth a weight"
            )));
        }
    }
    let sum: f64 = file.weights.values().sum();
    if (sum - 1.0).abs() > PIN_EPS {
        return Err(err(format!("weights sum to {sum}, not 1")));
    }
    // Scaled to sum to 1 exactly: every variant keeps these totals, and `hermes mix` allows
    // explicit weights 1e-9 from 1 only.
    Ok(Pin {
        depth,
        weights: file
            .weights
            .into_iter()
            .map(|(k, w)| (k, w / sum))
            .collect(),
    })
}

/// The blocks whose totals every variant keeps: one of every bucket, or one per pinned
/// prefix; refused when a block's caps cannot hold its total.
fn blocks(
    pin: Option<&Pin>,
    buckets: &[String],
    caps: &[f64],
    path: Option<&Path>,
) -> Result<Vec<Block>, SwarmError> {
    let Some(pin) = pin else {
        return Ok(vec![Block {
            total: 1.0,
            members: (0..buckets.len()).collect(),
        }]);
    };
    let mut blocks: Vec<(String, Block)> = Vec::new();
    for (i, b) in buckets.iter().enumerate() {
        let p = parent(b, pin.depth);
        match blocks.last_mut() {
            Some((q, block)) if *q == p => block.members.push(i),
            _ => blocks.push((
                p.clone(),
                Block {
                    total: pin.weights[&p],
                    members: vec![i],
                },
            )),
        }
    }
    for (p, b) in &blocks {
        let held: f64 = b.members.iter().map(|&m| caps[m]).sum();
        if held < b.total * (1.0 - EPS) {
            return Err(SwarmError::Input(format!(
                "{}: weights.\"{p}\" = {}, but the caps of its buckets hold only {held} of the budget",
                path.map_or_else(String::new, |p| p.display().to_string()),
                b.total
            )));
        }
    }
    Ok(blocks.into_iter().map(|(_, b)| b).collect())
}

/// A float as JSON and CSV write it (shortest text that reads back the same).
fn num(x: f64) -> String {
    serde_json::to_string(&x).expect("finite")
}

/// Writes `priors.json`, `ratios.csv`, `swarm.json` and `variants/<name>.toml`, each by
/// rename; returns every variant's name and its spec as `hermes mix` reads it back.
fn write(
    out: &Path,
    record: &SwarmRecord,
    weights: &[Vec<f64>],
    levels: usize,
) -> Result<Vec<(String, Spec)>, SwarmError> {
    let variants = out.join("variants");
    // A swarm owns its variants/: what an earlier draw left there must not pass for this one.
    match std::fs::remove_dir_all(&variants) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(SwarmError::Io(format!("{}: {e}", variants.display()))),
    }
    std::fs::create_dir_all(&variants)
        .map_err(|e| SwarmError::Io(format!("{}: {e}", variants.display())))?;
    let map = |values: &[f64]| {
        let fields: Vec<String> = record
            .buckets
            .iter()
            .zip(values)
            .map(|(l, v)| {
                format!(
                    "    {}: {}",
                    serde_json::to_string(l).expect("str"),
                    num(*v)
                )
            })
            .collect();
        format!("{{\n{}\n  }}", fields.join(",\n"))
    };
    let priors = format!(
        "{{\n  \"depth\": {},\n  \"size\": {},\n  \"relative_sizes\": {},\n  \"token_counts\": {}\n}}\n",
        record.spec.depth,
        serde_json::to_string(&record.spec.size).expect("str"),
        map(&record.prior),
        map(&record.sizes)
    );
    put(&out.join("priors.json"), priors.as_bytes())?;
    let mut csv = format!("run,name,index,{}\n", record.buckets.join(","));
    let mut specs = Vec::with_capacity(weights.len());
    for (i, w) in weights.iter().enumerate() {
        let name = run_name(&record.name, i);
        let values: Vec<String> = w.iter().map(|x| num(*x)).collect();
        csv.push_str(&format!("{name},{name},{i},{}\n", values.join(",")));
        let spec = record.spec.with_weights(
            record
                .buckets
                .iter()
                .cloned()
                .zip(w.iter().copied())
                .collect(),
        );
        let path = variants.join(format!("{name}.toml"));
        let text = spec.to_toml();
        put(&path, text.as_bytes())?;
        // As `hermes mix` will read it, with its checks (weights sum to 1 within 1e-9).
        let read = Spec::parse(&text)
            .and_then(|s| s.check(levels).map(|()| s))
            .map_err(|e| SwarmError::Io(format!("{}: {e}", path.display())))?;
        specs.push((name, read));
    }
    put(&out.join("ratios.csv"), csv.as_bytes())?;
    let body = serde_json::to_vec_pretty(record).expect("a record serialises");
    put(&out.join("swarm.json"), &body)?;
    Ok(specs)
}

fn put(path: &Path, bytes: &[u8]) -> Result<(), SwarmError> {
    let io = |e: std::io::Error| SwarmError::Io(format!("{}: {e}", path.display()));
    let tmp = tmp_name(path);
    std::fs::write(&tmp, bytes).map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)?;
    sync_dir(path).map_err(io)
}
