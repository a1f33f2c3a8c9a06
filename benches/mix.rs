//! `hermes mix` (plan, then selection) over synthetic labeled corpora of 1M, 4M and 40M rows
//! (40M skipped under `HERMES_BENCH_QUICK=1`) against the same mixture as one DuckDB query
//! (`scripts/mix_duckdb.py`, Python `duckdb` from the set-up venv), both on 1 and on 2 threads,
//! in the same run: times, peak RSS and their ratios, and a cross-check that both select the
//! same rows with the same copies (DuckDB computes hermes' sha256 row key). A second DuckDB
//! line uses DuckDB's own hash() as the row key (what the query costs without sha256). The
//! codes are synthetic (a skewed code distribution, a token count and a quality score with
//! ties); the spec is the paper's heaviest case: temperature over depth 1, size-proportional
//! quality top-30% at depth 2, budgets in tokens. Run with `make bench` (or
//! `cargo bench --bench mix`); the report goes to `target/bench/mix.md`.

mod support;

use std::path::Path;

use hermes::corpus::codes::{CarriedType, CodeRow, CodesWriter, Done};
use hermes::corpus::reader::Carried;
use hermes::tier::Tier;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const FILES: usize = 8;

fn generate(dir: &Path, rows: usize) {
    if dir
        .join("done")
        .join(format!("part-{}.jsonl.json", FILES - 1))
        .is_file()
    {
        return;
    }
    let _ = std::fs::remove_dir_all(dir);
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let carry = vec![
        ("tokens".to_string(), CarriedType::Float64),
        ("score".to_string(), CarriedType::Float64),
    ];
    for f in 0..FILES {
        let name = format!("part-{f}.jsonl");
        let path = dir.join("codes").join(format!("{name}.parquet"));
        let mut w = CodesWriter::create(&path, 3, false, carry.clone()).unwrap();
        let n = rows / FILES;
        let mut batch = Vec::with_capacity(65_536);
        for r in 0..n {
            // Skewed buckets: the square of a uniform draw favours small codes.
            let c1 = (rng.random::<f64>().powi(2) * 64.0) as u32;
            let c2 = rng.random_range(0..64u32);
            let c3 = rng.random_range(0..32u32);
            batch.push(CodeRow {
                id: format!("doc-{f}-{r}"),
                row: r as u64,
                code: vec![c1, c2, c3],
                cell: c1 * 2048 + c2 * 32 + c3,
                truncated: false,
                bytes: rng.random_range(200..4000),
                residuals: vec![0.5, 0.4, 0.3],
                tokens: None,
                carried: vec![
                    Carried::Number(f64::from(rng.random_range(50..1000u32))),
                    Carried::Number(f64::from(rng.random_range(0..100u32)) / 100.0),
                ],
            });
            if batch.len() == batch.capacity() {
                w.write(&batch).unwrap();
                batch.clear();
            }
        }
        w.write(&batch).unwrap();
        let rows = w.finish().unwrap();
        Done {
            input: name.clone(),
            rows,
            seconds: 0.0,
            encoder: Tier::Static,
            weights: None,
            bundle: "synthetic".into(),
            fingerprint: "0000000000000000".into(),
            tokens_tokenizer: None,
        }
        .write(&dir.join("done").join(format!("{name}.json")))
        .unwrap();
    }
}

const BUDGET: u64 = 200_000_000;

/// What one DuckDB run printed.
struct Duck {
    seconds: f64,
    peak_mib: f64,
    rows: u64,
    copies: u64,
    /// Rows on which its selection and hermes' differ (`None`: not checked).
    differing: Option<u64>,
}

/// The set-up venv's Python, when it has duckdb.
fn duckdb_python() -> Option<std::path::PathBuf> {
    let py = support::root().join(".cache/venv/bin/python");
    let ok = std::process::Command::new(&py)
        .args(["-c", "import duckdb"])
        .status()
        .is_ok_and(|s| s.success());
    ok.then_some(py)
}

/// One run of `scripts/mix_duckdb.py` with `threads` DuckDB threads; `check`: a hermes
/// output to compare selections with (sha256 key only).
fn duckdb(py: &Path, codes: &Path, threads: usize, key: &str, check: Option<&Path>) -> Duck {
    let out = support::bench_dir().join("mix-duckdb.parquet");
    let mut cmd = std::process::Command::new(py);
    cmd.arg(support::root().join("scripts/mix_duckdb.py"))
        .args(["--codes", codes.to_str().unwrap()])
        .args(["--out", out.to_str().unwrap()])
        .args(["--threads", &threads.to_string()])
        .args([
            "--seed",
            "0",
            "--budget",
            &BUDGET.to_string(),
            "--size",
            "tokens",
        ])
        .args([
            "--max-epochs",
            "4",
            "--temperature",
            "2",
            "--quality",
            "score",
        ])
        .args(["--top", "0.3", "--key", key]);
    if let Some(c) = check {
        cmd.args(["--check", c.to_str().unwrap()]);
    }
    let o = cmd.output().expect("run scripts/mix_duckdb.py");
    assert!(
        o.status.success(),
        "mix_duckdb.py failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("mix_duckdb.py JSON");
    Duck {
        seconds: v["seconds"].as_f64().unwrap(),
        peak_mib: v["peak_rss_mib"].as_f64().unwrap(),
        rows: v["rows"].as_u64().unwrap(),
        copies: v["copies"].as_u64().unwrap(),
        differing: v["differing_rows"].as_u64(),
    }
}

/// Rows and copies of a hermes selection, from its done markers.
fn hermes_selected(out: &Path) -> (u64, u64) {
    let mut total = (0, 0);
    for e in std::fs::read_dir(out.join("done")).unwrap() {
        let v: serde_json::Value =
            serde_json::from_slice(&std::fs::read(e.unwrap().path()).unwrap()).unwrap();
        total.0 += v["selected"].as_u64().unwrap();
        total.1 += v["copies"].as_u64().unwrap();
    }
    total
}

fn main() {
    let base = support::bench_dir();
    let spec = base.join("mix-bench.toml");
    std::fs::write(
        &spec,
        format!(
            "seed = 0\ndepth = 1\nbudget = {BUDGET}\nsize = \"tokens\"\nmax_epochs = 4\n\
             [stage1]\nmethod = \"temperature\"\ntemperature = 2.0\n\
             [stage2]\ndepth = 2\nrule = \"proportional\"\nquality = \"score\"\ntop = 0.3\n"
        ),
    )
    .unwrap();
    let runs = support::runs();
    let py = duckdb_python();
    if py.is_none() {
        println!("no duckdb in .cache/venv (scripts/setup.sh): the DuckDB columns are skipped");
    }
    let mut report = format!(
        "# hermes mix\n\n{}; median of {runs} runs; hermes and DuckDB run back to back in \
         each run, on the same threads (`hermes mix --threads N`, DuckDB `SET threads = N`).\n\n\
         `mix s` = plan (`--plan-only`) + selection; `peak MiB` = the larger of the two runs' \
         peak RSS (wait4). DuckDB: the query's time (Python's start excluded) and the process's \
         peak RSS (getrusage) after it; `DuckDB / hermes` > 1: hermes is faster / smaller. \
         `same selection`: DuckDB, with hermes' sha256 row key, selects the same (file, row, \
         copies) as hermes (rows differing). `DuckDB hash() s`: the query with DuckDB's own hash \
         as the key (other rows of the same total size, no cross-check).\n\n\
         | rows | threads | plan s | select s | mix s | mix rows/s | peak MiB | DuckDB s | DuckDB peak MiB | DuckDB / hermes time | DuckDB / hermes memory | same selection | DuckDB hash() s |\n\
         |---|---|---|---|---|---|---|---|---|---|---|---|---|\n",
        support::cpu_line()
    );
    let mut sizes = vec![1_000_000usize, 4_000_000];
    if !support::quick() {
        sizes.push(40_000_000);
    }
    for rows in sizes {
        let codes = base.join(format!("mix-codes-{rows}"));
        generate(&codes, rows);
        for threads in [1usize, 2] {
            let out = base.join(format!("mix-out-{rows}"));
            let args = |extra: &[&str]| {
                let mut a: Vec<String> = [
                    "mix",
                    "--codes",
                    codes.to_str().unwrap(),
                    "--spec",
                    spec.to_str().unwrap(),
                    "--out",
                    out.to_str().unwrap(),
                    "--threads",
                    &threads.to_string(),
                ]
                .iter()
                .map(|s| s.to_string())
                .collect();
                a.extend(extra.iter().map(|s| s.to_string()));
                a
            };
            let (mut plan_s, mut sel_s, mut mix_s, mut peak) = (vec![], vec![], vec![], vec![]);
            let (mut d_s, mut d_peak, mut h_s) = (vec![], vec![], vec![]);
            let mut differing = Vec::new();
            let mut counts = None;
            for _ in 0..runs {
                let _ = std::fs::remove_dir_all(&out);
                let a = args(&["--plan-only"]);
                let plan = support::run_usage(&a.iter().map(String::as_str).collect::<Vec<_>>());
                let a = args(&[]);
                let sel = support::run_usage(&a.iter().map(String::as_str).collect::<Vec<_>>());
                plan_s.push(plan.wall_s);
                sel_s.push(sel.wall_s);
                mix_s.push(plan.wall_s + sel.wall_s);
                peak.push(plan.peak_rss_mib.max(sel.peak_rss_mib));
                if let Some(py) = &py {
                    let d = duckdb(py, &codes, threads, "sha256", Some(&out));
                    d_s.push(d.seconds);
                    d_peak.push(d.peak_mib);
                    differing.extend(d.differing);
                    counts = Some(((d.rows, d.copies), hermes_selected(&out)));
                    if threads == 2 {
                        h_s.push(duckdb(py, &codes, threads, "hash", None).seconds);
                    }
                }
            }
            let (p, s, m, pk) = (
                support::median(plan_s),
                support::median(sel_s),
                support::median(mix_s),
                support::median(peak),
            );
            let same = match counts {
                Some((d, h)) => {
                    let diff = differing.iter().max().copied().unwrap_or(0);
                    format!(
                        "{} ({} rows, {} copies; DuckDB {} rows, {} copies; {diff} differ)",
                        if diff == 0 && d == h { "yes" } else { "NO" },
                        h.0,
                        h.1,
                        d.0,
                        d.1
                    )
                }
                None => "-".into(),
            };
            let duck = |v: Vec<f64>| {
                if v.is_empty() {
                    (f64::NAN, "-".to_string())
                } else {
                    let m = support::median(v);
                    (m, format!("{m:.2}"))
                }
            };
            let (ds, ds_text) = duck(d_s);
            let (dp, dp_text) = duck(d_peak);
            let (_, hs_text) = duck(h_s);
            let line = format!(
                "| {rows} | {threads} | {p:.2} | {s:.2} | {m:.2} | {:.0} | {pk:.0} | {ds_text} | {dp_text} | {:.2} | {:.1} | {same} | {hs_text} |\n",
                rows as f64 / m,
                ds / m,
                dp / pk,
            );
            print!("{line}");
            report.push_str(&line);
        }
    }
    report.push_str(&swarm(&base, &spec, runs));
    support::write_report("mix.md", &report);
    println!("{report}");
}

/// `hermes swarm --variants 32 --select` on the 1M-row codes against the 32 `hermes mix` runs
/// it stands for (each variant's spec, planned and selected; one sample of the 32, summed).
fn swarm(base: &Path, spec: &Path, runs: usize) -> String {
    const VARIANTS: usize = 32;
    let codes = base.join("mix-codes-1000000");
    let out = base.join("swarm-out");
    let a = |out: &Path| {
        vec![
            "swarm".to_string(),
            "--codes".into(),
            codes.to_string_lossy().into_owned(),
            "--spec".into(),
            spec.to_string_lossy().into_owned(),
            "--variants".into(),
            VARIANTS.to_string(),
            "--out".into(),
            out.to_string_lossy().into_owned(),
            "--select".into(),
        ]
    };
    let (mut secs, mut rss) = (vec![], vec![]);
    for _ in 0..runs {
        let _ = std::fs::remove_dir_all(&out);
        let args = a(&out);
        let (s, r) = support::run_peak_rss(&args.iter().map(String::as_str).collect::<Vec<_>>());
        secs.push(s);
        rss.push(r);
    }
    let mut mixes = 0.0;
    for i in 0..VARIANTS {
        let m = base.join("swarm-mix-out");
        let _ = std::fs::remove_dir_all(&m);
        let v = out.join("variants").join(format!("swarm-out-{i:04}.toml"));
        let args = [
            "mix",
            "--codes",
            codes.to_str().unwrap(),
            "--spec",
            v.to_str().unwrap(),
            "--out",
            m.to_str().unwrap(),
        ];
        mixes += support::run_peak_rss(&args).0;
    }
    let s = support::median(secs);
    let line = format!(
        "\n## hermes swarm --select\n\n{VARIANTS} variants of the spec above (stage 1 drawn), 1,000,000 rows: \
         `hermes swarm --select` {s:.2} s (median of {runs}, peak RSS {:.0} MiB) against the {VARIANTS} \
         `hermes mix` runs it replaces, {mixes:.2} s in all (one sample): **{:.1}x less time**.\n",
        support::median(rss),
        mixes / s
    );
    print!("{line}");
    line
}
