//! `hermes fit-mix` as a user runs it, on swarms that `scripts/fit_mix_reference.py` makes for a
//! known mixing law (18 buckets at depth 2, caps at 3× the prior, three metrics with Gaussian
//! noise, a few failed proxies missing and a few wild ones), judged by the same script against
//! SciPy's optimum of the true law under the same caps and pins: held-out Spearman, the share of
//! the possible improvement the proposal gets, the KL-penalised optimum, caps, pins, sums,
//! `optimal.toml` read back by tomllib. Then the bad inputs, each refused naming file, line, run
//! and column, with nothing written.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

mod common;

use common::{hermes, stderr};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");
const METRICS: [&str; 3] = ["bpb_web", "bpb_code", "err_qa"];

fn reference(args: &[&str]) -> Output {
    let o = Command::new(Path::new(ROOT).join(".cache/venv/bin/python"))
        .arg(Path::new(ROOT).join("scripts/fit_mix_reference.py"))
        .args(args)
        .output()
        .expect("run the venv's python (make setup)");
    assert!(o.status.success(), "reference {args:?}: {}", stderr(&o));
    o
}

/// A fresh swarm for a known law under the test's own directory.
fn make(name: &str, extra: &[&str]) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("fit-mix")
        .join(name);
    let _ = std::fs::remove_dir_all(&dir);
    let mut args = vec!["make", dir.to_str().unwrap()];
    args.extend_from_slice(extra);
    reference(&args);
    dir
}

fn fit_mix(dir: &Path, metrics: &Path, out: &Path, extra: &[&str]) -> Output {
    let swarm = dir.join("swarm");
    let mut args = vec![
        "fit-mix",
        "--swarm",
        swarm.to_str().unwrap(),
        "--metrics",
        metrics.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    hermes(&args)
}

/// Runs fit-mix into `dir/<out>` and asks the reference to judge it.
fn fit_and_check(dir: &Path, out: &str, flags: &[&str], check: &[&str]) -> Value {
    let out = dir.join(out);
    let o = fit_mix(dir, &dir.join("metrics.csv"), &out, flags);
    assert!(o.status.success(), "fit-mix {flags:?}: {}", stderr(&o));
    let mut args = vec!["check", dir.to_str().unwrap(), out.to_str().unwrap()];
    args.extend_from_slice(check);
    let o = reference(&args);
    serde_json::from_slice(&o.stdout).unwrap()
}

fn f(v: &Value) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("not a number: {v}"))
}

fn read_json(p: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

/// What every proposal must satisfy, whatever the flags.
fn common_checks(r: &Value) {
    assert!(f(&r["cap_excess"]) <= 1e-12, "a cap is exceeded: {r}");
    assert!(f(&r["min_weight"]) >= 0.0, "{r}");
    assert!((f(&r["weights_sum"]) - 1.0).abs() <= 1e-9, "{r}");
    assert!(f(&r["pin_error"]) <= 1e-12, "{r}");
    let toml = &r["toml"];
    assert_eq!(toml["method"], "explicit", "{r}");
    let sum = f(&toml["sum"]);
    assert!((sum - 1.0).abs() <= 1e-9 && sum <= 1.0 + 1e-9, "{r}");
    assert_eq!(toml["same_weights"], true, "optimal.toml's weights: {r}");
    assert_eq!(
        toml["same_base"], true,
        "optimal.toml keeps the base spec: {r}"
    );
    assert_eq!(r["buckets_in_code_order"], true, "{r}");
    assert_eq!(r["metrics_in_file_order"], true, "{r}");
    assert_eq!(r["held_out_are_last"], true, "{r}");
    for m in METRICS {
        let x = &r["metrics"][m];
        let (ours, theirs) = (f(&x["spearman"]), f(&x["hermes"]["spearman"]));
        assert!(ours >= 0.9, "{m}: held-out Spearman {ours}: {r}");
        assert!(
            (ours - theirs).abs() < 1e-9,
            "{m}: Spearman {theirs} vs scipy {ours}"
        );
        assert!(
            (f(&x["mae"]) - f(&x["hermes"]["mae"])).abs() < 1e-9,
            "{m}: {r}"
        );
    }
    // The optimiser alone: hermes' minimum of its fitted laws against SciPy's.
    let (got, best) = (f(&r["hermes_at_fitted"]), f(&r["fitted_optimum"]));
    assert!(
        got <= best + 1e-8 * best.abs().max(1.0),
        "hermes {got} vs SciPy {best} on the same fitted laws"
    );
}

#[test]
fn proposes_near_the_true_optimum_of_a_known_law() {
    let dir = make(
        "plain",
        &[
            "--seed",
            "1",
            "--noise",
            "0.01",
            "--missing",
            "3",
            "--outliers",
            "2",
        ],
    );
    let r = fit_and_check(&dir, "out0", &["--kl", "0", "--holdout", "16"], &[]);
    common_checks(&r);
    let gain = f(&r["improvement"]);
    assert!(
        gain >= 0.95,
        "the proposal gets {gain} of the improvement: {r}"
    );
    assert!(
        f(&r["caps_binding"]) >= 1.0,
        "no cap binds at the optimum: {r}"
    );
    assert_eq!(r["missing"], 3);

    let fit = read_json(&dir.join("out0/fit.json"));
    assert_eq!(
        fit["runs"],
        serde_json::json!({"swarm": 80, "measured": 77, "missing": 3, "fitted": 61, "held_out": 16})
    );
    for m in METRICS {
        let fm = &fit["metrics"][m];
        assert!(
            f(&fm["k"]) > 0.0 && !fm["constant"].as_bool().unwrap(),
            "{m}: {fm}"
        );
        assert_eq!(fm["runs"], 61);
        assert_eq!(fm["holdout"]["runs"], 16);
        // The gauge: t sums to 0 over the buckets.
        let sum: f64 = fm["t"].as_object().unwrap().values().map(f).sum();
        assert!(sum.abs() < 1e-6, "{m}: Σ t = {sum}");
    }
    // The wild proxies (metric 1) cost the fit R² but not the ranking: see common_checks.
    assert!(f(&fit["metrics"]["bpb_code"]["r2"]) > 0.95);
    let optimal = read_json(&dir.join("out0/optimal.json"));
    assert!(f(&optimal["objective"]) < f(&optimal["prior"]["objective"]));
    assert_eq!(optimal["prior_pinned"], false);
    let svg = std::fs::read_to_string(dir.join("out0/fit.svg")).unwrap();
    assert!(svg.starts_with("<svg") || svg.contains("<svg"), "fit.svg");
    for word in METRICS.iter().chain(&["held out", "measured", "predicted"]) {
        assert!(svg.contains(word), "fit.svg does not say {word:?}");
    }

    // Same inputs, same files.
    let again = dir.join("again");
    let o = fit_mix(
        &dir,
        &dir.join("metrics.csv"),
        &again,
        &["--kl", "0", "--holdout", "16"],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    for name in ["fit.json", "optimal.json", "optimal.toml", "fit.svg"] {
        assert_eq!(
            std::fs::read(dir.join("out0").join(name)).unwrap(),
            std::fs::read(again.join(name)).unwrap(),
            "{name} differs between two runs"
        );
    }

    // With the pull toward the prior: the true objective + kl · KL at the proposal, against
    // SciPy's minimum of it on the true law.
    let r = fit_and_check(
        &dir,
        "out-kl",
        &["--kl", "0.1", "--holdout", "16"],
        &["--kl", "0.1"],
    );
    common_checks(&r);
    let gap = f(&r["penalised_gap"]);
    assert!(
        gap <= 0.02,
        "objective + kl·KL at the proposal is {gap} of the way back to the prior's: {r}"
    );
}

#[test]
fn a_pin_holds_its_totals_and_objective_weights_count() {
    let dir = make(
        "pin",
        &[
            "--seed",
            "1",
            "--pin",
            "--noise",
            "0.005",
            "--missing",
            "2",
            "--outliers",
            "2",
        ],
    );
    let objective = dir.join("objective.toml");
    std::fs::write(&objective, "bpb_web = 2.0\nbpb_code = 0.5\nerr_qa = 1\n").unwrap();
    let o = objective.to_str().unwrap();
    let r = fit_and_check(
        &dir,
        "out",
        &["--kl", "0", "--holdout", "12", "--objective", o],
        &["--objective", o],
    );
    common_checks(&r);
    let gain = f(&r["improvement"]);
    assert!(
        gain >= 0.95,
        "the proposal gets {gain} of the improvement: {r}"
    );

    let fit = read_json(&dir.join("out/fit.json"));
    assert_eq!(fit["objective"]["bpb_web"], 2.0);
    // The gauge with a pin: t sums to 0 within each pinned prefix.
    for m in METRICS {
        let t = fit["metrics"][m]["t"].as_object().unwrap();
        for parent in ["2", "3", "10"] {
            let sum: f64 = t
                .iter()
                .filter(|(l, _)| l.split('.').next() == Some(parent))
                .map(|(_, v)| f(v))
                .sum();
            assert!(sum.abs() < 1e-6, "{m}, prefix {parent}: Σ t = {sum}");
        }
    }
    // The prior reported is the pinned one: p rescaled within each prefix to its total.
    let optimal = read_json(&dir.join("out/optimal.json"));
    assert_eq!(optimal["prior_pinned"], true);
    let record = read_json(&dir.join("swarm/swarm.json"));
    for (parent, total) in record["pin"]["weights"].as_object().unwrap() {
        let total = f(total);
        let sum: f64 = optimal["prior"]["weights"]
            .as_object()
            .unwrap()
            .iter()
            .filter(|(l, _)| l.split('.').next() == Some(parent))
            .map(|(_, v)| f(v))
            .sum();
        assert!((sum - total).abs() < 1e-12, "prior of {parent}: {sum}");
    }

    let r = fit_and_check(
        &dir,
        "out-kl",
        &["--kl", "0.05", "--holdout", "12", "--objective", o],
        &["--kl", "0.05", "--objective", o],
    );
    common_checks(&r);
    let gap = f(&r["penalised_gap"]);
    assert!(gap <= 0.02, "penalised gap {gap}: {r}");
}

/// Runs fit-mix on a changed copy of the metrics (or ratios), expects a refusal that says
/// every one of `want`, and no output directory.
fn refused(dir: &Path, case: &str, metrics: &str, extra: &[&str], want: &[&str]) {
    let path = dir.join(format!("{case}.csv"));
    std::fs::write(&path, metrics).unwrap();
    let out = dir.join(format!("out-{case}"));
    let o = fit_mix(dir, &path, &out, extra);
    let err = stderr(&o);
    assert!(!o.status.success(), "{case}: accepted");
    for w in want {
        assert!(err.contains(w), "{case}: {w:?} not in {err}");
    }
    assert!(!out.exists(), "{case}: wrote {}", out.display());
}

#[test]
fn bad_inputs_are_refused_naming_file_line_run_and_column() {
    let dir = make("bad", &["--seed", "3", "--runs", "30"]);
    let good = std::fs::read_to_string(dir.join("metrics.csv")).unwrap();
    let lines: Vec<&str> = good.lines().collect();
    assert_eq!(lines[0], "name,run,index,bpb_web,bpb_code,err_qa");
    let with = |i: usize, line: &str| {
        let mut l = lines.clone();
        l[i] = line;
        l.join("\n") + "\n"
    };
    // Row 4 (line 5) is run swarm-0003.
    let row = |a: &str, b: &str| format!("swarm-0003,swarm-0003,3,{a},{b},1.5");

    let no_run = good
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            [&f[..1], &f[2..]].concat().join(",")
        })
        .collect::<Vec<_>>()
        .join("\n");
    refused(
        &dir,
        "no-run",
        &no_run,
        &[],
        &["no-run.csv", "no column \"run\""],
    );
    refused(
        &dir,
        "unknown-run",
        &with(5, "swarm-0099,swarm-0099,99,1,1,1"),
        &[],
        &[
            "unknown-run.csv",
            "line 6",
            "\"swarm-0099\" is not a run of the swarm",
        ],
    );
    for (case, value) in [
        ("nan", "nan"),
        ("empty", ""),
        ("inf", "inf"),
        ("word", "low"),
    ] {
        refused(
            &dir,
            case,
            &with(4, &row("1.2", value)),
            &[],
            &[
                &format!("{case}.csv"),
                "line 5 (run swarm-0003), column \"bpb_code\"",
                &format!("{value:?} is not a finite number"),
            ],
        );
    }
    refused(
        &dir,
        "duplicate",
        &with(6, lines[4]),
        &[],
        &["line 7: run swarm-0003 is measured twice (also on line 5)"],
    );
    refused(
        &dir,
        "short-row",
        &with(4, "swarm-0003,swarm-0003,3,1.2"),
        &[],
        &["line 5: 4 fields, the header has 6"],
    );
    // 18 buckets: 20 runs at least. 19 measured, then 25 measured with 6 held out.
    refused(
        &dir,
        "too-few",
        &(lines[..20].join("\n") + "\n"),
        &[],
        &[
            "19 run(s) measured",
            "at least buckets + 2 = 20 runs (18 buckets)",
        ],
    );
    refused(
        &dir,
        "too-few-held",
        &(lines[..26].join("\n") + "\n"),
        &["--holdout", "6"],
        &["25 run(s) measured, 6 held out, so 19 to fit"],
    );
    let objective = dir.join("objective.toml");
    std::fs::write(&objective, "bpb_web = 1\nbpb_xx = 2\n").unwrap();
    refused(
        &dir,
        "objective-unknown",
        &good,
        &["--objective", objective.to_str().unwrap()],
        &[
            "objective.toml",
            "\"bpb_xx\" is not a metric",
            "bpb_web, bpb_code, err_qa",
        ],
    );
    std::fs::write(&objective, "bpb_web = 0\nerr_qa = 0.0\n").unwrap();
    refused(
        &dir,
        "objective-zero",
        &good,
        &["--objective", objective.to_str().unwrap()],
        &["every metric weighs 0"],
    );
    std::fs::write(&objective, "bpb_web = -1\n").unwrap();
    refused(
        &dir,
        "objective-negative",
        &good,
        &["--objective", objective.to_str().unwrap()],
        &["\"bpb_web\" = -1: a weight is a finite number >= 0"],
    );
    refused(&dir, "kl", &good, &["--kl=-1"], &["--kl -1"]);

    // ratios.csv that does not match swarm.json: a bucket's column missing.
    let ratios = dir.join("swarm/ratios.csv");
    let text = std::fs::read_to_string(&ratios).unwrap();
    let cut: String = text
        .lines()
        .map(|l| l.rsplit_once(',').unwrap().0.to_string() + "\n")
        .collect();
    std::fs::write(&ratios, cut).unwrap();
    refused(
        &dir,
        "ratios",
        &good,
        &[],
        &["ratios.csv", "no column for bucket \"10.3\" of swarm.json"],
    );
    std::fs::write(&ratios, text).unwrap();
    // And the good file is accepted (the refusals above were for what they say).
    let o = fit_mix(&dir, &dir.join("metrics.csv"), &dir.join("out"), &[]);
    assert!(o.status.success(), "{}", stderr(&o));
}
