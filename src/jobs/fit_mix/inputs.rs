//! Reading and checking what fit-mix is given: the swarm's `swarm.json` and `ratios.csv`, the
//! team's `metrics.csv` and the optional objective table, joined by `run`. Every refusal names
//! the file and, where there is one, the line, run and column; nothing here panics on bad input.

use std::cmp::Ordering;
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use super::FitMixError;
use super::csv;
use crate::jobs::swarm::{SwarmRecord, run_name};

/// Tolerance on sums that should be 1 (a run's weights, the prior, the pin's totals).
const SUM_TOL: f64 = 1e-6;

/// A run with both its weights and its metrics.
#[derive(Debug, Clone, PartialEq)]
pub struct Run {
    pub name: String,
    pub index: usize,
    /// Weights by bucket, in the order of [`Inputs::record`]'s buckets.
    pub w: Vec<f64>,
    /// Metric values, in the order of [`Inputs::metrics`].
    pub y: Vec<f64>,
}

/// Buckets whose weights must sum to `total`: every bucket (total 1), or, with a pin, the
/// children of one pinned prefix.
#[derive(Debug, Clone, PartialEq)]
pub struct Group {
    /// The pinned prefix; `None` for the whole simplex.
    pub prefix: Option<String>,
    pub members: Vec<usize>,
    pub total: f64,
}

/// Everything read, checked and joined.
#[derive(Debug, Clone)]
pub struct Inputs {
    /// The swarm as recorded, its buckets (with sizes, prior and caps) in code order.
    pub record: SwarmRecord,
    pub metrics: Vec<String>,
    /// Each metric's weight in the objective.
    pub objective: Vec<f64>,
    /// The runs of `ratios.csv` that `metrics.csv` measured, by index.
    pub runs: Vec<Run>,
    /// Rows of `ratios.csv`.
    pub swarm_runs: usize,
    pub groups: Vec<Group>,
}

fn bad(path: &Path, msg: impl std::fmt::Display) -> FitMixError {
    FitMixError::Input(format!("{}: {msg}", path.display()))
}

fn read(path: &Path) -> Result<String, FitMixError> {
    std::fs::read_to_string(path).map_err(|e| bad(path, e))
}

/// Orders bucket labels as codes are ordered: level by level, as numbers (`2.9` < `2.10` <
/// `10.1`); a level that is not a number compares as text, after the numbers.
pub fn code_cmp(a: &str, b: &str) -> Ordering {
    let mut x = a.split('.');
    let mut y = b.split('.');
    loop {
        match (x.next(), y.next()) {
            (None, None) => return Ordering::Equal,
            (None, Some(_)) => return Ordering::Less,
            (Some(_), None) => return Ordering::Greater,
            (Some(p), Some(q)) => {
                let o = match (p.parse::<u64>(), q.parse::<u64>()) {
                    (Ok(m), Ok(n)) => m.cmp(&n),
                    (Ok(_), Err(_)) => Ordering::Less,
                    (Err(_), Ok(_)) => Ordering::Greater,
                    (Err(_), Err(_)) => p.cmp(q),
                };
                if o != Ordering::Equal {
                    return o;
                }
            }
        }
    }
}

/// A label's first `depth` levels.
pub fn prefix(label: &str, depth: usize) -> String {
    label.split('.').take(depth).collect::<Vec<_>>().join(".")
}

/// Reads everything; `holdout` only to check that enough runs are left to fit.
pub fn load(
    swarm: &Path,
    metrics: &Path,
    objective: Option<&Path>,
    holdout: usize,
) -> Result<Inputs, FitMixError> {
    let record_path = swarm.join("swarm.json");
    let record = read_record(&record_path)?;
    let groups = groups(&record, &record_path)?;
    let ratios_path = swarm.join("ratios.csv");
    let ratios = read_ratios(&ratios_path, &record)?;
    let swarm_runs = ratios.len();
    let (names, measured) = read_metrics(metrics, &ratios)?;
    let objective = match objective {
        Some(p) => read_objective(p, &names)?,
        None => vec![1.0; names.len()],
    };
    let mut runs: Vec<Run> = measured
        .into_iter()
        .map(|(i, y)| Run {
            name: ratios[i].name.clone(),
            index: ratios[i].index,
            w: ratios[i].w.clone(),
            y,
        })
        .collect();
    runs.sort_by_key(|r| r.index);
    let b = record.buckets.len();
    let fitted = runs.len().saturating_sub(holdout);
    if fitted < b + 2 {
        return Err(bad(
            metrics,
            format!(
                "{} run(s) measured{}, so {fitted} to fit: the law needs at least buckets + 2 = {} runs ({b} buckets)",
                runs.len(),
                if holdout > 0 {
                    format!(", {holdout} held out")
                } else {
                    String::new()
                },
                b + 2
            ),
        ));
    }
    Ok(Inputs {
        record,
        metrics: names,
        objective,
        runs,
        swarm_runs,
        groups,
    })
}

/// `swarm.json`, checked, its buckets put in code order.
fn read_record(path: &Path) -> Result<SwarmRecord, FitMixError> {
    let text = read(path)?;
    let mut r: SwarmRecord =
        serde_json::from_str(&text).map_err(|e| bad(path, format!("not a swarm record: {e}")))?;
    let b = r.buckets.len();
    if b == 0 {
        return Err(bad(path, "no buckets"));
    }
    for (what, v) in [("sizes", &r.sizes), ("prior", &r.prior), ("caps", &r.caps)] {
        if v.len() != b {
            return Err(bad(
                path,
                format!("{what} has {} values for {b} buckets", v.len()),
            ));
        }
    }
    let mut order: Vec<usize> = (0..b).collect();
    order.sort_by(|&i, &j| code_cmp(&r.buckets[i], &r.buckets[j]));
    if let Some(w) = order
        .windows(2)
        .find(|w| r.buckets[w[0]] == r.buckets[w[1]])
    {
        return Err(bad(
            path,
            format!("bucket \"{}\" is listed twice", r.buckets[w[0]]),
        ));
    }
    let pick = |v: &[f64]| order.iter().map(|&i| v[i]).collect::<Vec<f64>>();
    r.sizes = pick(&r.sizes);
    r.prior = pick(&r.prior);
    r.caps = pick(&r.caps);
    r.buckets = order.iter().map(|&i| r.buckets[i].clone()).collect();
    for (i, label) in r.buckets.iter().enumerate() {
        for (what, x) in [("prior", r.prior[i]), ("caps", r.caps[i])] {
            if !(x.is_finite() && x >= 0.0) {
                return Err(bad(
                    path,
                    format!("{what} of bucket \"{label}\" is {x}, not a finite number >= 0"),
                ));
            }
        }
    }
    let sum: f64 = r.prior.iter().sum();
    if (sum - 1.0).abs() > SUM_TOL {
        return Err(bad(path, format!("the prior sums to {sum}, not 1")));
    }
    let caps: f64 = r.caps.iter().sum();
    if caps < 1.0 - SUM_TOL {
        return Err(bad(
            path,
            format!("the caps sum to {caps}: no mixture of these buckets fits under them"),
        ));
    }
    Ok(r)
}

/// The sets of buckets whose weights have a fixed total, checked against the caps.
fn groups(r: &SwarmRecord, path: &Path) -> Result<Vec<Group>, FitMixError> {
    let Some(pin) = &r.pin else {
        return Ok(vec![Group {
            prefix: None,
            members: (0..r.buckets.len()).collect(),
            total: 1.0,
        }]);
    };
    if pin.depth == 0 || pin.depth >= r.spec.depth {
        return Err(bad(
            path,
            format!(
                "pin.depth = {} must be in 1..{} (shallower than the spec's depth)",
                pin.depth, r.spec.depth
            ),
        ));
    }
    let mut members: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (i, label) in r.buckets.iter().enumerate() {
        let p = prefix(label, pin.depth);
        let Some((key, _)) = pin.weights.get_key_value(p.as_str()) else {
            return Err(bad(
                path,
                format!("bucket \"{label}\": its prefix \"{p}\" has no pinned weight"),
            ));
        };
        members.entry(key.as_str()).or_default().push(i);
    }
    let mut out = Vec::new();
    let mut sum = 0.0;
    let mut keys: Vec<&String> = pin.weights.keys().collect();
    keys.sort_by(|a, b| code_cmp(a, b));
    for key in keys {
        let total = pin.weights[key];
        if !(total.is_finite() && total >= 0.0) {
            return Err(bad(
                path,
                format!("pin.weights.\"{key}\" = {total} is not a finite number >= 0"),
            ));
        }
        sum += total;
        let m = members.remove(key.as_str()).unwrap_or_default();
        let room: f64 = m.iter().map(|&i| r.caps[i]).sum();
        if total > room + SUM_TOL {
            return Err(bad(
                path,
                format!(
                    "pin.weights.\"{key}\" = {total}, but the caps of its {} bucket(s) hold {room}",
                    m.len()
                ),
            ));
        }
        if !m.is_empty() {
            out.push(Group {
                prefix: Some(key.clone()),
                members: m,
                total,
            });
        }
    }
    if (sum - 1.0).abs() > SUM_TOL {
        return Err(bad(path, format!("the pinned weights sum to {sum}, not 1")));
    }
    Ok(out)
}

/// One row of `ratios.csv`.
#[derive(Debug, Clone)]
struct Ratio {
    name: String,
    index: usize,
    w: Vec<f64>,
}

/// Column `name` of a header, if there (and refused when there twice).
fn column(path: &Path, header: &[String], name: &str) -> Result<Option<usize>, FitMixError> {
    let mut at = header.iter().enumerate().filter(|(_, h)| h.trim() == name);
    let first = at.next().map(|(i, _)| i);
    if at.next().is_some() {
        return Err(bad(path, format!("column \"{name}\" appears twice")));
    }
    Ok(first)
}

fn read_ratios(path: &Path, r: &SwarmRecord) -> Result<Vec<Ratio>, FitMixError> {
    let (head, rows) = csv::table(&read(path)?).map_err(|e| bad(path, e))?;
    let header = &head.fields;
    let run_col = column(path, header, "run")?.ok_or_else(|| bad(path, "no column \"run\""))?;
    let index_col =
        column(path, header, "index")?.ok_or_else(|| bad(path, "no column \"index\""))?;
    let name_col = column(path, header, "name")?;
    let mut at = vec![None; r.buckets.len()];
    let by_label: HashMap<&str, usize> = r
        .buckets
        .iter()
        .enumerate()
        .map(|(i, l)| (l.as_str(), i))
        .collect();
    for (c, h) in header.iter().enumerate() {
        if Some(c) == name_col || c == run_col || c == index_col {
            continue;
        }
        let h = h.trim();
        let Some(&b) = by_label.get(h) else {
            return Err(bad(
                path,
                format!("column \"{h}\" is not a bucket of swarm.json"),
            ));
        };
        if at[b].is_some() {
            return Err(bad(path, format!("column \"{h}\" appears twice")));
        }
        at[b] = Some(c);
    }
    if let Some(b) = at.iter().position(Option::is_none) {
        return Err(bad(
            path,
            format!("no column for bucket \"{}\" of swarm.json", r.buckets[b]),
        ));
    }
    let at: Vec<usize> = at.into_iter().flatten().collect();
    let mut out: Vec<Ratio> = Vec::with_capacity(rows.len());
    let mut seen: HashMap<usize, usize> = HashMap::new();
    for row in rows {
        let line = row.line;
        let f = &row.fields;
        let run = f[run_col].trim();
        let index: usize = f[index_col].trim().parse().map_err(|_| {
            bad(
                path,
                format!(
                    "line {line} (run {run}), column \"index\": {:?} is not a run index",
                    f[index_col]
                ),
            )
        })?;
        let want = run_name(&r.name, index);
        if run != want {
            return Err(bad(
                path,
                format!("line {line}: run {run:?} with index {index} should be named {want:?}"),
            ));
        }
        if let Some(c) = name_col
            && f[c].trim() != run
        {
            return Err(bad(
                path,
                format!("line {line}: name {:?} is not its run {run:?}", f[c]),
            ));
        }
        if index >= r.variants {
            return Err(bad(
                path,
                format!(
                    "line {line} (run {run}): index {index} is not below the swarm's {} variants",
                    r.variants
                ),
            ));
        }
        if let Some(first) = seen.insert(index, line) {
            return Err(bad(
                path,
                format!("line {line}: run {run} is also on line {first}"),
            ));
        }
        let mut w = Vec::with_capacity(at.len());
        for (b, &c) in at.iter().enumerate() {
            let x = number(&f[c]).filter(|x| *x >= 0.0).ok_or_else(|| {
                bad(
                    path,
                    format!(
                        "line {line} (run {run}), column \"{}\": {:?} is not a weight (a finite number >= 0)",
                        r.buckets[b], f[c]
                    ),
                )
            })?;
            w.push(x);
        }
        let sum: f64 = w.iter().sum();
        if (sum - 1.0).abs() > SUM_TOL {
            return Err(bad(
                path,
                format!("line {line} (run {run}): the weights sum to {sum}, not 1"),
            ));
        }
        out.push(Ratio {
            name: run.to_string(),
            index,
            w,
        });
    }
    if out.is_empty() {
        return Err(bad(path, "no runs"));
    }
    Ok(out)
}

/// A finite number, or `None` (empty, not a number, NaN, infinite).
fn number(s: &str) -> Option<f64> {
    s.trim().parse::<f64>().ok().filter(|x| x.is_finite())
}

/// `metrics.csv`: the metric names (in column order) and, per measured run, its row of
/// `ratios` and its values.
#[allow(clippy::type_complexity)]
fn read_metrics(
    path: &Path,
    ratios: &[Ratio],
) -> Result<(Vec<String>, Vec<(usize, Vec<f64>)>), FitMixError> {
    let (head, rows) = csv::table(&read(path)?).map_err(|e| bad(path, e))?;
    let header: Vec<&str> = head.fields.iter().map(|h| h.trim()).collect();
    let run_col = column(path, &head.fields, "run")?.ok_or_else(|| {
        bad(
            path,
            format!(
                "no column \"run\" (the header is {:?}): runs are joined to ratios.csv by it",
                header.join(",")
            ),
        )
    })?;
    let mut names: Vec<String> = Vec::new();
    let mut cols = Vec::new();
    for (c, h) in header.iter().enumerate() {
        if c == run_col || *h == "name" || *h == "index" {
            continue;
        }
        if h.is_empty() {
            return Err(bad(path, format!("column {} has no name", c + 1)));
        }
        if names.iter().any(|n| n == h) {
            return Err(bad(path, format!("column \"{h}\" appears twice")));
        }
        names.push(h.to_string());
        cols.push(c);
    }
    if names.is_empty() {
        return Err(bad(
            path,
            "no metric columns (only run, name, index): nothing to fit",
        ));
    }
    let by_name: HashMap<&str, usize> = ratios
        .iter()
        .enumerate()
        .map(|(i, r)| (r.name.as_str(), i))
        .collect();
    let mut seen: HashMap<usize, usize> = HashMap::new();
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        let line = row.line;
        let f = &row.fields;
        let run = f[run_col].trim();
        let Some(&i) = by_name.get(run) else {
            return Err(bad(
                path,
                format!("line {line}: run {run:?} is not a run of the swarm (ratios.csv)"),
            ));
        };
        if let Some(first) = seen.insert(i, line) {
            return Err(bad(
                path,
                format!("line {line}: run {run} is measured twice (also on line {first})"),
            ));
        }
        let mut y = Vec::with_capacity(cols.len());
        for (m, &c) in cols.iter().enumerate() {
            let x = number(&f[c]).ok_or_else(|| {
                bad(
                    path,
                    format!(
                        "line {line} (run {run}), column \"{}\": {:?} is not a finite number",
                        names[m], f[c]
                    ),
                )
            })?;
            y.push(x);
        }
        out.push((i, y));
    }
    Ok((names, out))
}

/// `--objective`: `metric = weight`; unlisted metrics weigh 0.
fn read_objective(path: &Path, metrics: &[String]) -> Result<Vec<f64>, FitMixError> {
    let table: toml::Table = read(path)?
        .parse()
        .map_err(|e: toml::de::Error| bad(path, e.to_string().trim().replace('\n', " ")))?;
    let mut o = vec![0.0; metrics.len()];
    for (key, value) in &table {
        let Some(m) = metrics.iter().position(|n| n == key) else {
            return Err(bad(
                path,
                format!(
                    "\"{key}\" is not a metric of the metrics file (its metrics: {})",
                    metrics.join(", ")
                ),
            ));
        };
        let x = match value {
            toml::Value::Float(x) => *x,
            toml::Value::Integer(i) => *i as f64,
            other => {
                return Err(bad(
                    path,
                    format!("\"{key}\" = {other}: a weight is a number"),
                ));
            }
        };
        if !(x.is_finite() && x >= 0.0) {
            return Err(bad(
                path,
                format!("\"{key}\" = {x}: a weight is a finite number >= 0"),
            ));
        }
        o[m] = x;
    }
    if o.iter().all(|&x| x == 0.0) {
        return Err(bad(
            path,
            "every metric weighs 0: there is nothing to minimise",
        ));
    }
    Ok(o)
}

#[cfg(test)]
mod tests {
    use super::{code_cmp, prefix};

    #[test]
    fn labels_order_level_by_level_as_numbers() {
        let mut v = vec!["10.1", "2.10", "2.9", "2", "3.1", "2.9.1"];
        v.sort_by(|a, b| code_cmp(a, b));
        assert_eq!(v, ["2", "2.9", "2.9.1", "2.10", "3.1", "10.1"]);
        assert_eq!(prefix("17.3.2", 1), "17");
        assert_eq!(prefix("17.3.2", 2), "17.3");
    }
}
