//! `hermes swarm` as a user runs it, on the real wiki corpus labeled by the static tier: the
//! prior and the caps against the independent re-computation of the mixture rules
//! (`scripts/mix_reference.py`), every variant's weights against the contract (sum to 1, caps,
//! minimum weight, pinned totals), byte-identical files for the same seed, variants that
//! `hermes mix` builds whole, `--select` equal to `hermes mix` per variant, and bad input.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use serde_json::{Value, json};

mod common;

use common::{hermes, stderr};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// The wiki corpus in 4 files with a quality `score` (null for every 29th row), labeled once.
fn labeled() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let base = Path::new(env!("CARGO_TARGET_TMPDIR")).join("swarm-corpus");
        let (_, codes) = common::label_wiki(&base, 4, &["score", "tokens"], |i, o| {
            let text = o["text"].as_str().unwrap().to_string();
            let words = text.split_whitespace().count();
            let long = text.split_whitespace().filter(|w| w.len() > 7).count();
            o["tokens"] = json!(words);
            if i % 29 != 0 {
                o["score"] = json!((50.0 * long as f64 / words.max(1) as f64).round() / 50.0);
            }
        });
        codes
    })
}

fn dir(name: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("swarm-{name}"));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn write(path: &Path, body: &str) -> PathBuf {
    std::fs::write(path, body).unwrap();
    path.to_path_buf()
}

fn swarm(spec: &Path, out: &Path, extra: &[&str]) -> Output {
    run("swarm", spec, out, extra)
}

fn mix(spec: &Path, out: &Path, extra: &[&str]) -> Output {
    run("mix", spec, out, extra)
}

/// `hermes <command> --codes <the labeled corpus> --spec SPEC --out OUT EXTRA...`.
fn run(command: &str, spec: &Path, out: &Path, extra: &[&str]) -> Output {
    let mut args = vec![
        command,
        "--codes",
        labeled().to_str().unwrap(),
        "--spec",
        spec.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    hermes(&args)
}

/// The reference's stage-1 shares of `spec` made natural: the prior `p_b` by label, and
/// `n_b` (the candidate sizes of each bucket's groups).
fn reference_prior(spec_body: &str, dir: &Path) -> (BTreeMap<String, f64>, BTreeMap<String, f64>) {
    let mut spec: toml::Table = toml::from_str(spec_body).unwrap();
    spec.insert(
        "stage1".into(),
        toml::Value::Table(toml::from_str("method = \"natural\"").unwrap()),
    );
    let depth = spec["depth"].as_integer().unwrap() as usize;
    let path = write(&dir.join("natural.toml"), &toml::to_string(&spec).unwrap());
    let py = Path::new(ROOT).join(".cache/venv/bin/python");
    let o = Command::new(py)
        .arg(Path::new(ROOT).join("scripts/mix_reference.py"))
        .arg(&path)
        .arg(labeled())
        .output()
        .expect("run the reference");
    assert!(o.status.success(), "reference: {}", stderr(&o));
    let r: Value = serde_json::from_slice(&o.stdout).unwrap();
    let mut n: BTreeMap<String, f64> = BTreeMap::new();
    for (label, g) in r["groups"].as_object().unwrap() {
        let b = label.split('.').take(depth).collect::<Vec<_>>().join(".");
        *n.entry(b).or_default() += g["size"].as_f64().unwrap();
    }
    n.retain(|_, v| *v > 0.0);
    let total: f64 = n.values().sum();
    let p = n.iter().map(|(k, v)| (k.clone(), v / total)).collect();
    (p, n)
}

/// A row of `ratios.csv`: run name, index, weights.
type Run = (String, usize, Vec<f64>);

/// `ratios.csv`: the header's labels and each run.
fn ratios(out: &Path) -> (Vec<String>, Vec<Run>) {
    let text = std::fs::read_to_string(out.join("ratios.csv")).unwrap();
    let mut lines = text.lines();
    let header: Vec<String> = lines.next().unwrap().split(',').map(String::from).collect();
    assert_eq!(header[..3], ["run", "name", "index"]);
    let rows = lines
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            assert_eq!(f[0], f[1], "run = name");
            let w = f[3..].iter().map(|x| x.parse().unwrap()).collect();
            (f[0].to_string(), f[2].parse().unwrap(), w)
        })
        .collect();
    (header[3..].to_vec(), rows)
}

fn code_order(labels: &[String]) -> Vec<String> {
    let mut v = labels.to_vec();
    v.sort_by_key(|l| {
        l.split('.')
            .map(|c| c.parse::<u32>().unwrap())
            .collect::<Vec<_>>()
    });
    v
}

const BASE: &str = r#"
seed = 3
depth = 1
budget = 4000
max_epochs = 1
[stage1]
method = "natural"
[stage2]
depth = 2
rule = "coverage"
quality = "score"
top = 0.5
"#;

#[test]
fn variants_hold_the_rules_and_match_the_reference_prior() {
    let d = dir("rules");
    let spec = write(&d.join("base.toml"), BASE);
    let out = d.join("sw");
    let o = swarm(
        &spec,
        &out,
        &[
            "--variants",
            "24",
            "--seed",
            "5",
            "--minimum-weight",
            "0.004",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let (p, n) = reference_prior(BASE, &d);
    let priors: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("priors.json")).unwrap()).unwrap();
    assert_eq!(priors["depth"], 1);
    assert_eq!(priors["size"], "docs");
    let rel = priors["relative_sizes"].as_object().unwrap();
    assert_eq!(
        rel.len(),
        p.len(),
        "every bucket with candidates is searched"
    );
    for (label, want) in &p {
        let got = rel[label].as_f64().unwrap();
        assert!((got - want).abs() < 1e-12, "p[{label}] {got} vs {want}");
        let tokens = priors["token_counts"][label].as_f64().unwrap();
        assert!((tokens - n[label]).abs() < 1e-9, "n[{label}]");
    }
    let (labels, runs) = ratios(&out);
    assert_eq!(labels, code_order(&labels), "labels in code order");
    assert_eq!(labels.len(), p.len());
    assert_eq!(runs.len(), 24);
    // c_b = max_epochs · n_b / budget: with budget 4000 of about 5,000 candidates, caps bind.
    let caps: Vec<f64> = labels.iter().map(|l| n[l] / 4000.0).collect();
    let mut capped = 0;
    for (i, (name, index, w)) in runs.iter().enumerate() {
        assert_eq!(*name, format!("sw-{i:04}"));
        assert_eq!(*index, i);
        let sum: f64 = w.iter().sum();
        assert!((sum - 1.0).abs() < 1e-9, "{name}: sum {sum}");
        for (b, (&x, &c)) in w.iter().zip(&caps).enumerate() {
            assert!(
                x >= 0.0 && x <= c * (1.0 + 1e-9),
                "{name}: {} = {x} > cap {c}",
                labels[b]
            );
            capped += usize::from((x - c).abs() < 1e-12 * c.max(1.0));
            assert!(
                x == 0.0 || x >= 0.004 - 1e-12,
                "{name}: {} = {x} < minimum",
                labels[b]
            );
        }
        // Each variant is a spec `hermes mix` builds whole, with these shares.
        if i < 3 {
            let m = d.join(format!("mix-{i}"));
            let vspec = out.join("variants").join(format!("{name}.toml"));
            let o = mix(&vspec, &m, &["--plan-only"]);
            assert!(o.status.success(), "{name}: {}", stderr(&o));
            let plan: Value =
                serde_json::from_str(&std::fs::read_to_string(m.join("plan.json")).unwrap())
                    .unwrap();
            assert_eq!(plan["short"], false, "{name}");
            for b in plan["buckets"].as_array().unwrap() {
                let k = labels
                    .iter()
                    .position(|l| l == b["label"].as_str().unwrap());
                let want = k.map_or(0.0, |k| w[k]);
                let got = b["target_share"].as_f64().unwrap();
                assert!((got - want).abs() < 1e-9, "{name}: bucket {b}");
            }
        }
    }
    assert!(capped > 0, "the test's caps should bind for some draws");
    // Same seed, same bytes (in a directory of the same name elsewhere); another seed,
    // other draws.
    let again = d.join("again").join("sw");
    let o = swarm(
        &spec,
        &again,
        &[
            "--variants",
            "24",
            "--seed",
            "5",
            "--minimum-weight",
            "0.004",
        ],
    );
    assert!(o.status.success());
    for f in [
        "priors.json",
        "ratios.csv",
        "swarm.json",
        "variants/sw-0007.toml",
    ] {
        let (a, b) = (
            std::fs::read(out.join(f)).unwrap(),
            std::fs::read(again.join(f)).unwrap(),
        );
        assert!(a == b, "{f} differs for the same seed");
    }
    let other = d.join("sw-other");
    let o = swarm(
        &spec,
        &other,
        &[
            "--variants",
            "24",
            "--seed",
            "6",
            "--minimum-weight",
            "0.004",
        ],
    );
    assert!(o.status.success());
    assert_ne!(
        ratios(&other).1[0].2,
        runs[0].2,
        "another seed draws other weights"
    );
}

#[test]
fn a_pin_keeps_each_prefix_total_and_draws_only_inside() {
    let d = dir("pin");
    let base = BASE
        .replace("depth = 1\n", "depth = 2\n")
        .replace("depth = 2\nrule", "depth = 3\nrule")
        .replace("budget = 4000", "budget = 2000")
        .replace("max_epochs = 1", "max_epochs = 3");
    let spec = write(&d.join("base.toml"), &base);
    // Pin the depth-1 prior, shifted: the first bucket doubled, the rest scaled down.
    let (p1, _) = reference_prior(BASE, &d);
    let first = p1.keys().next().unwrap().clone();
    let scale = (1.0 - 2.0 * p1[&first]) / (1.0 - p1[&first]);
    let pinned: BTreeMap<String, f64> = p1
        .iter()
        .map(|(k, v)| (k.clone(), if *k == first { 2.0 * v } else { v * scale }))
        .collect();
    let body = format!(
        "weights = {{ {} }}\n",
        pinned
            .iter()
            .map(|(k, v)| format!("\"{k}\" = {v}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let pin = write(&d.join("pin.toml"), &body);
    let out = d.join("refine");
    let o = swarm(
        &spec,
        &out,
        &["--variants", "12", "--pin", pin.to_str().unwrap()],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let (labels, runs) = ratios(&out);
    assert!(labels.iter().all(|l| l.split('.').count() == 2));
    for (name, _, w) in &runs {
        let mut totals: BTreeMap<String, f64> = BTreeMap::new();
        for (l, x) in labels.iter().zip(w) {
            *totals
                .entry(l.split('.').next().unwrap().to_string())
                .or_default() += x;
        }
        for (parent, want) in &pinned {
            let got = totals.get(parent).copied().unwrap_or(0.0);
            assert!(
                (got - want).abs() < 1e-9,
                "{name}: {parent} sums to {got}, pinned {want}"
            );
        }
    }
    // Variants differ inside the prefixes.
    assert_ne!(runs[0].2, runs[1].2);
    // A pin that sums to 1 within its tolerance is scaled to 1: `hermes mix` builds every
    // variant whole.
    let off: Vec<String> = pinned
        .iter()
        .map(|(k, v)| format!("\"{k}\" = {}", v * (1.0 + 5e-7)))
        .collect();
    let pin = write(
        &d.join("pin-off.toml"),
        &format!("weights = {{ {} }}\n", off.join(", ")),
    );
    let out = d.join("off");
    let o = swarm(
        &spec,
        &out,
        &["--variants", "3", "--pin", pin.to_str().unwrap()],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    for i in 0..3 {
        let v = out.join("variants").join(format!("off-{i:04}.toml"));
        let o = mix(&v, &d.join(format!("mix-off-{i}")), &["--plan-only"]);
        assert!(o.status.success(), "variant {i}: {}", stderr(&o));
    }
}

#[test]
fn bad_swarms_get_clear_errors() {
    let d = dir("bad");
    let spec = write(&d.join("base.toml"), BASE);
    let cases: Vec<(&str, Vec<String>, &str)> = vec![
        (
            "no variants",
            vec!["--variants".into(), "0".into()],
            "--variants 0",
        ),
        (
            "strengths",
            vec![
                "--variants".into(),
                "2".into(),
                "--min-strength".into(),
                "0".into(),
            ],
            "--min-strength",
        ),
    ];
    for (what, extra, want) in cases {
        let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
        let o = swarm(&spec, &d.join("o"), &extra);
        assert!(!o.status.success(), "{what}");
        assert!(stderr(&o).contains(want), "{what}: {}", stderr(&o));
    }
    // The caps cannot hold the budget: 1 epoch of about 5,000 candidates, budget 10^6.
    let big = write(
        &d.join("big.toml"),
        &BASE.replace("budget = 4000", "budget = 1000000"),
    );
    let o = swarm(&big, &d.join("o"), &["--variants", "2"]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("the caps cannot hold a whole mixture"),
        "{}",
        stderr(&o)
    );
    // Pins: not covering, not summing to 1, too deep, unknown label.
    let pins = [
        ("weights = { \"0\" = 1.0 }", "does not cover"),
        ("", "missing field `weights`"),
        (
            "weights = { \"0.1\" = 1.0 }",
            "shallower than the spec's depth",
        ),
        ("weights = { \"x\" = 1.0 }", "must be a code prefix"),
    ];
    let deep = write(
        &d.join("deep.toml"),
        &BASE
            .replace("depth = 1\n", "depth = 2\n")
            .replace("depth = 2\nrule", "depth = 3\nrule"),
    );
    for (body, want) in pins {
        let pin = write(&d.join("pin.toml"), body);
        let o = swarm(
            &deep,
            &d.join("o"),
            &["--variants", "2", "--pin", pin.to_str().unwrap()],
        );
        assert!(!o.status.success(), "{body}");
        let e = stderr(&o);
        assert!(e.contains(want) && e.contains("pin.toml"), "{body}: {e}");
    }
    let (p1, _) = reference_prior(BASE, &d);
    let half: Vec<String> = p1
        .keys()
        .map(|k| format!("\"{k}\" = {}", 0.5 / p1.len() as f64))
        .collect();
    let pin = write(
        &d.join("pin.toml"),
        &format!("weights = {{ {} }}", half.join(", ")),
    );
    let o = swarm(
        &deep,
        &d.join("o"),
        &["--variants", "2", "--pin", pin.to_str().unwrap()],
    );
    assert!(stderr(&o).contains("sum to 0.5"), "{}", stderr(&o));
}

/// "N rows read" from a command's summary line.
fn rows_read(o: &Output) -> u64 {
    let e = stderr(o);
    let at = e
        .find(" rows read")
        .unwrap_or_else(|| panic!("no rows read in {e}"));
    e[..at].rsplit(' ').next().unwrap().parse().unwrap()
}

/// Runs `swarm --select` with `base` and `variants`, then `hermes mix` on the variants
/// `check`: their plans and selections must be the same bytes, and a rerun of `hermes mix` on a
/// variant's own directory must have nothing to do. Returns the rows read by the swarm and by
/// the mix runs.
fn check_select(name: &str, base: &str, variants: usize, check: &[usize]) -> (u64, u64) {
    let d = dir(name);
    let spec = write(&d.join("base.toml"), base);
    let out = d.join("sel");
    let o = swarm(
        &spec,
        &out,
        &["--variants", &variants.to_string(), "--select"],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let swarm_rows = rows_read(&o);
    let mut mix_rows = 0;
    for &i in check {
        let name = format!("sel-{i:04}");
        let m = d.join(format!("mix-{i}"));
        let vspec = out.join("variants").join(format!("{name}.toml"));
        let o = mix(&vspec, &m, &[]);
        assert!(o.status.success(), "{name}: {}", stderr(&o));
        mix_rows += rows_read(&o);
        let v = out.join("variants").join(&name);
        assert_eq!(
            std::fs::read(v.join("plan.json")).unwrap(),
            std::fs::read(m.join("plan.json")).unwrap(),
            "{name}: plan.json"
        );
        let files: Vec<_> = std::fs::read_dir(m.join("selection")).unwrap().collect();
        assert_eq!(files.len(), 4);
        for f in files {
            let f = f.unwrap().file_name();
            assert_eq!(
                std::fs::read(v.join("selection").join(&f)).unwrap(),
                std::fs::read(m.join("selection").join(&f)).unwrap(),
                "{name}: selection {f:?}"
            );
        }
        let o = mix(&vspec, &v, &[]);
        assert!(o.status.success(), "{name}: {}", stderr(&o));
        assert!(
            stderr(&o).contains("reused the plan")
                && stderr(&o).contains("0 files selected, 4 already done"),
            "{name}: {}",
            stderr(&o)
        );
    }
    (swarm_rows, mix_rows)
}

#[test]
fn select_writes_what_hermes_mix_writes_for_every_variant_from_one_count() {
    // Quality, thin pools and a token size: every rule the variants share.
    let base = BASE
        .replace("budget = 4000", "budget = 300000\nsize = \"tokens\"")
        .replace("top = 0.5", "top = 0.5\nmin_candidates = 3");
    let all: Vec<usize> = (0..12).collect();
    let (swarm_rows, mix_rows) = check_select("select", &base, 12, &all);
    // Shared passes: twelve variants read the codes about as often as one mix, not twelve times.
    assert!(
        swarm_rows * 4 < mix_rows,
        "swarm --select read {swarm_rows} rows; 12 hermes mix runs read {mix_rows}"
    );
    // Depth-1 groups of hundreds of candidates: crossing searches of several passes, which
    // variants finish at different passes; and more variants than one read writes (64).
    let deep =
        "seed = 9\ndepth = 1\nbudget = 2500\nmax_epochs = 2\n[stage1]\nmethod = \"natural\"\n";
    check_select("select-passes", deep, 130, &[0, 1, 63, 64, 129]);
}
