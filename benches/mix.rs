//! `hermes mix` over synthetic labeled corpora of 4,000,000 rows against 1,000,000: the plan
//! (every pass) and the selection (one pass per file) timed separately, with the peak RSS of
//! each run, so that "memory does not grow with rows" is a measurement. The codes are
//! synthetic (a skewed code distribution, a token count and a quality score with ties); the
//! spec is the paper's heaviest case: temperature over depth 1, size-proportional quality
//! top-30% at depth 2, budgets in tokens. Run with `make bench` (or `cargo bench --bench mix`);
//! the report goes to `target/bench/mix.md`.

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

fn main() {
    let base = support::bench_dir();
    let spec = base.join("mix-bench.toml");
    std::fs::write(
        &spec,
        "seed = 0\ndepth = 1\nbudget = 200000000\nsize = \"tokens\"\nmax_epochs = 4\n\
         [stage1]\nmethod = \"temperature\"\ntemperature = 2.0\n\
         [stage2]\ndepth = 2\nrule = \"proportional\"\nquality = \"score\"\ntop = 0.3\n",
    )
    .unwrap();
    let runs = support::runs();
    let mut report = format!(
        "# hermes mix\n\n{}; median of {runs} runs; one task, one thread.\n\n\
         | rows | plan s | plan rows/s | plan peak RSS MiB | select s | select rows/s | select peak RSS MiB |\n|---|---|---|---|---|---|---|\n",
        support::cpu_line()
    );
    for rows in [1_000_000usize, 4_000_000] {
        let codes = base.join(format!("mix-codes-{rows}"));
        generate(&codes, rows);
        let (mut plan_s, mut plan_rss, mut sel_s, mut sel_rss) = (vec![], vec![], vec![], vec![]);
        for _ in 0..runs {
            let out = base.join(format!("mix-out-{rows}"));
            let _ = std::fs::remove_dir_all(&out);
            let args = |extra: &[&'static str]| {
                let mut a: Vec<String> = [
                    "mix",
                    "--codes",
                    codes.to_str().unwrap(),
                    "--spec",
                    spec.to_str().unwrap(),
                    "--out",
                    out.to_str().unwrap(),
                ]
                .iter()
                .map(|s| s.to_string())
                .collect();
                a.extend(extra.iter().map(|s| s.to_string()));
                a
            };
            let a = args(&["--plan-only"]);
            let (s, r) = support::run_peak_rss(&a.iter().map(String::as_str).collect::<Vec<_>>());
            plan_s.push(s);
            plan_rss.push(r);
            let a = args(&[]);
            let (s, r) = support::run_peak_rss(&a.iter().map(String::as_str).collect::<Vec<_>>());
            sel_s.push(s);
            sel_rss.push(r);
        }
        let (p, s) = (support::median(plan_s), support::median(sel_s));
        let line = format!(
            "| {rows} | {p:.2} | {:.0} | {:.0} | {s:.2} | {:.0} | {:.0} |\n",
            rows as f64 / p,
            support::median(plan_rss),
            rows as f64 / s,
            support::median(sel_rss)
        );
        print!("{line}");
        report.push_str(&line);
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
