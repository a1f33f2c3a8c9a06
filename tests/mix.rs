//! `hermes mix` as a user runs it, on the real wiki corpus labeled by the static tier, checked
//! against an independent re-computation of the contract's rules (`scripts/mix_reference.py`,
//! Python holding every row in memory): every group's quota, candidates, selected size and
//! largest copy count, and the whole selection row by row (thin pools too). Then determinism
//! across task counts and `--codes` order, the plan-only preview, an infeasible budget, and bad
//! specs.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use arrow_array::cast::AsArray;
use arrow_array::types::{UInt16Type, UInt64Type};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde_json::{Value, json};

mod common;

use common::{hermes, stderr};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// The wiki corpus in 6 files with a quality `score` (rounded, so ties happen; null for
/// every 31st row) and a `tokens` count, labeled once by the static tier.
fn labeled() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let base = Path::new(env!("CARGO_TARGET_TMPDIR")).join("mix-corpus");
        let (_, codes) = common::label_wiki(&base, 6, &["score", "tokens", "src"], |i, o| {
            let text = o["text"].as_str().unwrap().to_string();
            let words = text.split_whitespace().count();
            // A stand-in quality score: the share of long words, in steps of 0.02.
            let long = text.split_whitespace().filter(|w| w.len() > 7).count();
            let score = (50.0 * long as f64 / words.max(1) as f64).round() / 50.0;
            o["tokens"] = json!(words);
            if i % 31 != 0 {
                o["score"] = json!(score);
            }
            o["src"] = json!("wiki");
        });
        codes
    })
}

fn write_spec(dir: &Path, name: &str, body: &str) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let p = dir.join(name);
    std::fs::write(&p, body).unwrap();
    p
}

fn mix(codes: &[&Path], spec: &Path, out: &Path, extra: &[&str]) -> Output {
    let mut args = vec!["mix", "--codes"];
    args.extend(codes.iter().map(|c| c.to_str().unwrap()));
    args.extend([
        "--spec",
        spec.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    args.extend_from_slice(extra);
    hermes(&args)
}

fn reference(spec: &Path, codes: &[&Path]) -> Value {
    let py = Path::new(ROOT).join(".cache/venv/bin/python");
    let o = Command::new(py)
        .arg(Path::new(ROOT).join("scripts/mix_reference.py"))
        .arg(spec)
        .args(codes)
        .output()
        .expect("run the reference");
    assert!(o.status.success(), "reference: {}", stderr(&o));
    serde_json::from_slice(&o.stdout).unwrap()
}

/// Every selection file under `out`: codes file name → row → copies.
fn selection(out: &Path) -> BTreeMap<String, BTreeMap<u64, u16>> {
    let mut all = BTreeMap::new();
    let root = out.join("selection");
    let mut stack = vec![root.clone()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
                continue;
            }
            let name = p
                .strip_prefix(&root)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            let mut rows = BTreeMap::new();
            let mut last = None;
            for b in ParquetRecordBatchReaderBuilder::try_new(File::open(&p).unwrap())
                .unwrap()
                .build()
                .unwrap()
            {
                let b = b.unwrap();
                let r = b
                    .column_by_name("row")
                    .unwrap()
                    .as_primitive::<UInt64Type>();
                let c = b
                    .column_by_name("copies")
                    .unwrap()
                    .as_primitive::<UInt16Type>();
                for i in 0..b.num_rows() {
                    assert!(last < Some(r.value(i)), "{name}: not in row order");
                    last = Some(r.value(i));
                    assert!(c.value(i) >= 1, "{name}: a row with 0 copies");
                    rows.insert(r.value(i), c.value(i));
                }
            }
            all.insert(name, rows);
        }
    }
    all
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-6 * a.abs().max(b.abs()).max(1.0)
}

/// Runs `spec` and checks the plan and the selection against the reference.
fn check(name: &str, spec_body: &str) -> Value {
    check_with(name, spec_body, &[])
}

fn check_with(name: &str, spec_body: &str, extra: &[&str]) -> Value {
    let codes = labeled();
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("mix-{name}"));
    let _ = std::fs::remove_dir_all(&dir);
    let spec = write_spec(&dir, "mix.toml", spec_body);
    let out = dir.join("out");
    let o = mix(&[codes], &spec, &out, extra);
    assert!(o.status.success(), "{name}: {}", stderr(&o));
    let plan: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("plan.json")).unwrap()).unwrap();
    let want = reference(&spec, &[codes]);
    let groups = want["groups"].as_object().unwrap();
    assert_eq!(
        plan["groups"].as_array().unwrap().len(),
        groups.len(),
        "{name}"
    );
    let epochs = plan["spec"]["max_epochs"].as_u64().unwrap();
    for g in plan["groups"].as_array().unwrap() {
        let label = g["label"].as_str().unwrap();
        let r = &groups[label];
        for field in ["rows", "candidates", "largest_copies"] {
            assert_eq!(g[field], r[field], "{name}: group {label}: {field}");
        }
        for field in ["size", "quota", "selected_size"] {
            let (a, b) = (g[field].as_f64().unwrap(), r[field].as_f64().unwrap());
            assert!(
                close(a, b),
                "{name}: group {label}: {field} {a} vs reference {b}"
            );
        }
        assert!(
            g["largest_copies"].as_u64().unwrap() <= epochs,
            "{name}: {label}"
        );
        // A merged thin pool names its sub-buckets; other groups carry no `members`.
        assert_eq!(
            g.get("members").unwrap_or(&json!([])),
            &r["members"],
            "{name}: group {label}: members"
        );
    }
    for b in plan["buckets"].as_array().unwrap() {
        let r = &want["buckets"][b["label"].as_str().unwrap()];
        assert!(
            close(b["quota"].as_f64().unwrap(), r["quota"].as_f64().unwrap()),
            "{name}: bucket {b}"
        );
    }
    assert!(close(
        plan["totals"]["shortfall"].as_f64().unwrap(),
        want["shortfall"].as_f64().unwrap()
    ));
    let got = selection(&out);
    let mut expected: BTreeMap<String, BTreeMap<u64, u16>> = BTreeMap::new();
    for (file, rows) in want["selection"].as_object().unwrap() {
        let rows: BTreeMap<u64, u16> = rows
            .as_object()
            .unwrap()
            .iter()
            .map(|(r, c)| (r.parse().unwrap(), c.as_u64().unwrap() as u16))
            .collect();
        expected.insert(file.clone(), rows);
    }
    assert_eq!(
        got, expected,
        "{name}: the selection differs from the reference"
    );
    plan
}

#[test]
fn every_stage1_method_matches_the_reference() {
    let plan = check(
        "natural",
        "seed = 1\ndepth = 1\nbudget = 3000\n[stage1]\nmethod = \"natural\"\n",
    );
    assert_eq!(plan["totals"]["selected_size"], 3000.0);
    // Temperature 2 flattens the shares past one epoch of the small buckets: caps bind.
    let plan = check(
        "temperature",
        "seed = 2\ndepth = 1\nbudget = 20000\nmax_epochs = 3\n[stage1]\nmethod = \"temperature\"\ntemperature = 2.0\n",
    );
    assert!(
        plan["groups"]
            .as_array()
            .unwrap()
            .iter()
            .any(|g| g["largest_copies"] == 3)
    );
    check(
        "unimax",
        "depth = 1\nbudget = 900000\nsize = \"tokens\"\nmax_epochs = 2\n[stage1]\nmethod = \"unimax\"\n",
    );
    check(
        "explicit",
        "seed = 4\ndepth = 1\nbudget = 5000\nmax_epochs = 2\n[stage1]\nmethod = \"explicit\"\nweights = { \"0\" = 0.2, \"5\" = 0.0, \"12\" = 0.05 }\n[stage2]\ndepth = 2\nrule = \"coverage\"\n",
    );
}

#[test]
fn both_stage2_rules_with_quality_match_the_reference() {
    // The paper's two: size-proportional with within-bucket quality top-30%, and coverage.
    let plan = check(
        "proportional-top30",
        "seed = 5\ndepth = 1\nbudget = 2500\n[stage1]\nmethod = \"natural\"\n[stage2]\ndepth = 2\nrule = \"proportional\"\nquality = \"score\"\ntop = 0.3\n",
    );
    assert!(
        plan["totals"]["excluded"].as_u64().unwrap() > 0,
        "null scores are excluded"
    );
    check(
        "coverage-top30-tokens",
        "seed = 6\ndepth = 1\nbudget = 400000\nsize = \"tokens\"\nmax_epochs = 4\n[stage1]\nmethod = \"temperature\"\ntemperature = 2.0\n[stage2]\ndepth = 2\nrule = \"coverage\"\nquality = \"score\"\ntop = 0.3\n",
    );
    check(
        "quality-only",
        "depth = 1\nbudget = 1500\n[stage1]\nmethod = \"natural\"\n[stage2]\nquality = \"score\"\ntop = 0.5\n",
    );
    check(
        "depth3-coverage",
        "depth = 2\nbudget = 4000\nmax_epochs = 2\n[stage1]\nmethod = \"natural\"\n[stage2]\ndepth = 3\n",
    );
}

#[test]
fn tasks_and_codes_order_do_not_change_the_selection() {
    let codes = labeled();
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("mix-shards");
    let _ = std::fs::remove_dir_all(&dir);
    let spec = write_spec(
        &dir,
        "mix.toml",
        "seed = 9\ndepth = 1\nbudget = 6000\nmax_epochs = 2\n[stage1]\nmethod = \"temperature\"\ntemperature = 2.0\n[stage2]\ndepth = 2\nrule = \"proportional\"\nquality = \"score\"\ntop = 0.3\n",
    );
    let one = dir.join("one");
    assert!(mix(&[codes], &spec, &one, &[]).status.success());
    // A preview first writes the plan and no selection...
    let four = dir.join("four");
    let o = mix(&[codes], &spec, &four, &["--plan-only"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(four.join("plan.json").is_file() && four.join("plan.svg").is_file());
    assert!(
        !four.join("selection").exists(),
        "--plan-only selected rows"
    );
    let svg = std::fs::read_to_string(four.join("plan.svg")).unwrap();
    assert!(
        svg.starts_with("<svg") && svg.contains("selected"),
        "plan.svg"
    );
    // ...then 4 array tasks reuse it, each taking its files.
    for i in 0..4 {
        let (idx, n) = (i.to_string(), "4".to_string());
        let o = mix(
            &[codes],
            &spec,
            &four,
            &["--shard-index", &idx, "--shard-count", &n],
        );
        assert!(o.status.success(), "task {i}: {}", stderr(&o));
        assert!(
            stderr(&o).contains("reused the plan"),
            "task {i}: {}",
            stderr(&o)
        );
    }
    assert_eq!(selection(&one), selection(&four));
    // A rerun skips what is done.
    let o = mix(&[codes], &spec, &four, &[]);
    assert!(
        stderr(&o).contains("0 files selected, 6 already done"),
        "{}",
        stderr(&o)
    );

    // The same codes split over two directories, given in either order.
    let (a, b) = (dir.join("a"), dir.join("b"));
    for (k, part) in (0..6).map(|k| (k, format!("part-{k}.jsonl"))) {
        let to = if k % 2 == 0 { &a } else { &b };
        for sub in ["codes", "done"] {
            std::fs::create_dir_all(to.join(sub)).unwrap();
        }
        std::fs::copy(
            codes.join(format!("codes/{part}.parquet")),
            to.join(format!("codes/{part}.parquet")),
        )
        .unwrap();
        std::fs::copy(
            codes.join(format!("done/{part}.json")),
            to.join(format!("done/{part}.json")),
        )
        .unwrap();
    }
    let (ab, ba) = (dir.join("ab"), dir.join("ba"));
    assert!(mix(&[&a, &b], &spec, &ab, &[]).status.success());
    assert!(mix(&[&b, &a], &spec, &ba, &[]).status.success());
    assert_eq!(selection(&ab), selection(&ba));
    // The rows chosen are the same as from one directory; only the file names carry the split.
    let strip = |s: BTreeMap<String, BTreeMap<u64, u16>>| -> BTreeMap<String, BTreeMap<u64, u16>> {
        s.into_iter()
            .map(|(k, v)| (k[2..].to_string(), v))
            .collect()
    };
    assert_eq!(strip(selection(&ab)), selection(&one));
}

/// `--threads` changes how the passes are read, never what they find: groups at depth 1 hold
/// ~150 rows each (their cut searches run histogram passes), the quality has ties, and the
/// plan and selection must be the reference's and the same bytes on 1 and 3 threads; the
/// scratch records are gone afterwards.
#[test]
fn threads_change_nothing_and_the_scratch_records_go() {
    let body = "seed = 5\ndepth = 1\nbudget = 150000\nsize = \"tokens\"\nmax_epochs = 3\n[stage1]\nmethod = \"temperature\"\ntemperature = 3.0\n[stage2]\nquality = \"score\"\ntop = 0.6\n";
    let one = check_with("threads-1", body, &["--threads", "1"]);
    let three = check_with("threads-3", body, &["--threads", "3"]);
    assert_eq!(one["groups"], three["groups"]);
    let dir = |n: &str| Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("mix-threads-{n}/out"));
    assert_eq!(
        std::fs::read(dir("1").join("plan.json")).unwrap(),
        std::fs::read(dir("3").join("plan.json")).unwrap()
    );
    assert_eq!(selection(&dir("1")), selection(&dir("3")));
    for n in ["1", "3"] {
        let left: Vec<_> = std::fs::read_dir(dir(n))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|f| f.starts_with(".scratch"))
            .collect();
        assert!(left.is_empty(), "--threads {n} left {left:?}");
    }
    // Some group needed histogram passes: more than 64 eligible rows.
    assert!(
        one["groups"]
            .as_array()
            .unwrap()
            .iter()
            .any(|g| g["rows"].as_u64().unwrap() > 2 * 64),
        "no group large enough to search by histograms"
    );
}

#[test]
fn an_infeasible_budget_exits_2_unless_short_is_allowed() {
    let codes = labeled();
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("mix-short");
    let _ = std::fs::remove_dir_all(&dir);
    // 10,033 documents, at most 2 epochs each: 30,000 cannot be met.
    let body = "depth = 1\nbudget = 30000\nmax_epochs = 2\n[stage1]\nmethod = \"natural\"\n";
    let spec = write_spec(&dir, "mix.toml", body);
    let out = dir.join("out");
    let o = mix(&[codes], &spec, &out, &[]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("short by 9934 docs"), "{}", stderr(&o));
    let plan: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("plan.json")).unwrap()).unwrap();
    assert_eq!(plan["short"], true);
    assert_eq!(plan["totals"]["shortfall"], 30000.0 - 2.0 * 10033.0);
    assert!(!out.join("selection").exists());
    let o = mix(&[codes], &spec, &out, &["--allow-short"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let copies: u64 = selection(&out)
        .values()
        .flat_map(|r| r.values())
        .map(|&c| u64::from(c))
        .sum();
    assert_eq!(copies, 2 * 10033, "every row twice");
    let _ = check_with("short", body, &["--allow-short"]);
}

#[test]
fn bad_specs_and_codes_get_clear_errors() {
    let codes = labeled();
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("mix-bad");
    let _ = std::fs::remove_dir_all(&dir);
    let base = "depth = 1\nbudget = 100\n[stage1]\nmethod = \"natural\"\n";
    for (i, (body, want)) in [
        (format!("{base}colour = 1\n"), "unknown field `colour`"),
        (
            base.replace("natural", "explicit") + "weights = { \"999\" = 0.5 }\n",
            "no bucket \"999\" at depth 1",
        ),
        (
            base.replace("natural", "explicit") + "weights = { \"1\" = 0.8, \"2\" = 0.3 }\n",
            "more than 1",
        ),
        (
            base.replace("budget = 100", "budget = 100\nsize = \"words\""),
            "size = \"words\"",
        ),
        (
            format!("{base}[stage2]\nquality = \"src\"\n"),
            "not a number",
        ),
        (
            format!("{base}[stage2]\nquality = \"score\"\ntop = 1.5\n"),
            "must be in (0, 1]",
        ),
        (
            base.replace("depth = 1", "depth = 4"),
            "depth = 4 is outside 1..=3",
        ),
        (
            format!("{base}[stage2]\nquality = \"score\"\nmin_candidates = 5\n"),
            "stage2.min_candidates = 5 needs stage2.depth",
        ),
    ]
    .into_iter()
    .enumerate()
    {
        let spec = write_spec(&dir, &format!("bad{i}.toml"), &body);
        let o = mix(&[codes], &spec, &dir.join(format!("out{i}")), &[]);
        assert!(!o.status.success() && o.status.code() != Some(2), "{body}");
        assert!(stderr(&o).contains(want), "{body}: {}", stderr(&o));
    }
    // A plan is reused only for its own spec.
    let spec = write_spec(&dir, "a.toml", base);
    let out = dir.join("reuse");
    assert!(
        mix(&[codes], &spec, &out, &["--plan-only"])
            .status
            .success()
    );
    let other = write_spec(&dir, "b.toml", &base.replace("100", "200"));
    let o = mix(&[codes], &other, &out, &[]);
    assert!(
        stderr(&o).contains("made from another spec or other codes"),
        "{}",
        stderr(&o)
    );
    // Codes of two tiers are not comparable.
    let input = dir.join("few");
    std::fs::create_dir_all(&input).unwrap();
    let wiki = std::fs::read_to_string(Path::new(ROOT).join(".cache/data/wiki.jsonl")).unwrap();
    std::fs::write(
        input.join("x.jsonl"),
        wiki.lines().take(8).collect::<Vec<_>>().join("\n"),
    )
    .unwrap();
    let minilm = dir.join("minilm");
    let o = hermes(&[
        "label",
        "--input",
        input.to_str().unwrap(),
        "--out",
        minilm.to_str().unwrap(),
        "--max-batch-docs",
        "4",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = mix(&[codes, &minilm], &spec, &dir.join("mixed"), &[]);
    assert!(
        stderr(&o).contains("codes of different labelers are not comparable"),
        "{}",
        stderr(&o)
    );
}

/// The ready specs of `examples/mixtures/` stay valid and exact.
#[test]
fn the_example_specs_match_the_reference() {
    for name in ["coverage-l2", "quality-top30-l2"] {
        let body =
            std::fs::read_to_string(Path::new(ROOT).join(format!("examples/mixtures/{name}.toml")))
                .unwrap();
        let plan = check(&format!("example-{name}"), &body);
        assert_eq!(plan["short"], false, "{name}");
    }
}

/// Checks a plan's merged thin pools against the contract's shape: `<bucket>.*` is the last
/// group of its bucket, holds at least one sub-bucket of that bucket, and every group left on
/// its own has at least `min` candidates as it stands. Returns how many pools there are.
fn thin_pools(name: &str, plan: &Value, min: u64) -> usize {
    let groups = plan["groups"].as_array().unwrap();
    let mut pools = 0;
    for (i, g) in groups.iter().enumerate() {
        let (label, bucket) = (g["label"].as_str().unwrap(), g["bucket"].as_str().unwrap());
        if label != format!("{bucket}.*") {
            assert!(g.get("members").is_none(), "{name}: {label}");
            assert!(
                g["candidates"].as_u64().unwrap() >= min,
                "{name}: {label} is thin and alone"
            );
            continue;
        }
        pools += 1;
        let members = g["members"].as_array().unwrap();
        assert!(!members.is_empty(), "{name}: {label} holds nothing");
        for m in members {
            assert!(
                m.as_str().unwrap().starts_with(&format!("{bucket}.")),
                "{name}: {label} holds {m}"
            );
        }
        assert!(
            groups.get(i + 1).is_none_or(|n| n["bucket"] != g["bucket"]),
            "{name}: {label} is not its bucket's last group"
        );
    }
    pools
}

#[test]
fn thin_pools_match_the_reference() {
    // At depth 2 the corpus's 2,295 sub-buckets hold 1 to 22 candidates with a top-30% cut and
    // a few more without: thin pools in every bucket, and groups without any candidate (every
    // row's score null) among them.
    for (name, min, body) in [
        (
            "thin-coverage-docs",
            5,
            "seed = 11\ndepth = 1\nbudget = 3000\nmax_epochs = 2\n[stage1]\nmethod = \"natural\"\n[stage2]\ndepth = 2\nrule = \"coverage\"\nmin_candidates = 5\n",
        ),
        (
            "thin-proportional-top30-docs",
            2,
            "seed = 12\ndepth = 1\nbudget = 2500\n[stage1]\nmethod = \"natural\"\n[stage2]\ndepth = 2\nrule = \"proportional\"\nquality = \"score\"\ntop = 0.3\nmin_candidates = 2\n",
        ),
        (
            "thin-coverage-top30-tokens",
            2,
            "seed = 13\ndepth = 1\nbudget = 400000\nsize = \"tokens\"\nmax_epochs = 4\n[stage1]\nmethod = \"temperature\"\ntemperature = 2.0\n[stage2]\ndepth = 2\nrule = \"coverage\"\nquality = \"score\"\ntop = 0.3\nmin_candidates = 2\n",
        ),
        (
            "thin-proportional-tokens",
            8,
            "seed = 14\ndepth = 1\nbudget = 900000\nsize = \"tokens\"\nmax_epochs = 3\n[stage1]\nmethod = \"unimax\"\n[stage2]\ndepth = 2\nrule = \"proportional\"\nmin_candidates = 8\n",
        ),
        (
            "thin-coverage-top50-depth3",
            3,
            "seed = 15\ndepth = 1\nbudget = 4000\nmax_epochs = 2\n[stage1]\nmethod = \"natural\"\n[stage2]\ndepth = 3\nquality = \"score\"\ntop = 0.5\nmin_candidates = 3\n",
        ),
    ] {
        let plan = check(name, body);
        let pools = thin_pools(name, &plan, min);
        assert!(pools > 0, "{name}: no thin pool");
        let merged = plan["groups"]
            .as_array()
            .unwrap()
            .iter()
            .any(|g| g["members"].as_array().is_some_and(|m| m.len() > 1));
        assert!(merged, "{name}: no pool merges two sub-buckets");
    }
    // With 1, only the sub-buckets without a candidate (every row's score null) are thin: pools
    // of one sub-bucket, renamed, and pools with no candidate, which get no quota.
    let plan = check(
        "thin-empty",
        "seed = 18\ndepth = 1\nbudget = 2000\n[stage1]\nmethod = \"natural\"\n[stage2]\ndepth = 2\nrule = \"coverage\"\nquality = \"score\"\ntop = 0.3\nmin_candidates = 1\n",
    );
    assert!(thin_pools("thin-empty", &plan, 1) > 0);
    let pools: Vec<&Value> = plan["groups"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|g| g.get("members").is_some())
        .collect();
    assert!(
        pools
            .iter()
            .all(|g| g["candidates"] == 0 && g["quota"] == 0.0),
        "thin-empty: a pool with candidates"
    );
    assert!(
        pools
            .iter()
            .any(|g| g["members"].as_array().unwrap().len() == 1)
    );
}

#[test]
fn thin_pools_that_merge_nothing_or_everything_change_nothing_else() {
    let groups_and_selection = |name: &str, body: &str| {
        let plan = check(name, body);
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("mix-{name}/out"));
        (plan["groups"].clone(), selection(&dir))
    };
    // Every depth-2 sub-bucket has a row, so without quality none has fewer than 1 candidate:
    // the same plan and selection as without the key.
    let body = "seed = 16\ndepth = 1\nbudget = 3000\nmax_epochs = 2\n[stage1]\nmethod = \"temperature\"\ntemperature = 2.0\n[stage2]\ndepth = 2\nrule = \"coverage\"\n";
    let (groups, sel) = groups_and_selection("thin-none-without", body);
    let (thin, thin_sel) =
        groups_and_selection("thin-none", &format!("{body}min_candidates = 1\n"));
    assert_eq!(thin, groups);
    assert_eq!(thin_sel, sel);
    // Everything thin: each bucket is one pool `<bucket>.*` holding all its sub-buckets, and
    // the quality cut runs over the bucket, as with no stage-2 depth at all.
    let flat = "seed = 17\ndepth = 1\nbudget = 2000\n[stage1]\nmethod = \"natural\"\n[stage2]\nquality = \"score\"\ntop = 0.3\n";
    let (buckets, sel) = groups_and_selection("thin-all-without", flat);
    let (pools, pools_sel) = groups_and_selection(
        "thin-all",
        &flat.replace(
            "[stage2]\n",
            "[stage2]\ndepth = 2\nmin_candidates = 1000000\n",
        ),
    );
    assert_eq!(pools_sel, sel);
    let (buckets, pools) = (buckets.as_array().unwrap(), pools.as_array().unwrap());
    assert_eq!(pools.len(), buckets.len());
    for (p, b) in pools.iter().zip(buckets) {
        assert_eq!(p["label"], format!("{}.*", b["label"].as_str().unwrap()));
        for field in ["rows", "excluded", "candidates", "quota", "selected_size"] {
            assert_eq!(p[field], b[field], "{}: {field}", p["label"]);
        }
    }
}
