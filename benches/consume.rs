//! `hermes consume` against `hermes label` on the same texts, for both tiers and both brokers
//! (tansu and redis-server, started here on loopback), then end-to-end lag at a fixed offered
//! rate (half of label's rate). [`support::runs`] runs; each run measures label and then
//! consume back to back for every (tier, broker) pair, so each ratio comes from one run; the
//! report gives the medians.
//!
//! - label's rate: (N − n) / (t(N) − t(n)) over two runs of N and n = N/10 documents, so the
//!   bundle load and the batch-size measurement cancel out.
//! - consume's rate: N documents produced first (librdkafka's default batching on Kafka);
//!   from the first output to the N-th (the group join and the bundle load are before the
//!   first output), timed on consume's output counter.
//! - counts: the input and output topics are read back to their ends (never counted from
//!   watermarks: tansu under-reports them): every document was produced once and has an
//!   output.
//! - lag: for each document, the output record's timestamp minus the input's (Kafka: the
//!   producers' timestamps; Redis: the entry ids' milliseconds); p50 and p99.
//!
//! Writes `target/bench/consume.md`. Short runs: `HERMES_BENCH_QUICK=1`.

#[path = "../tests/common/mod.rs"]
mod common;
mod support;

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::time::{Duration, Instant};

use common::stream::{Broker, Consumer, doc};
use support::{percentile, quick};

fn texts(n: usize) -> Vec<String> {
    let mut t = common::wiki_texts(10_000);
    t.truncate(n);
    t
}

/// Seconds `hermes label` takes for the first `n` texts.
fn label_seconds(dir: &Path, tier: &str, texts: &[String]) -> f64 {
    let input = dir.join(format!("label-{tier}-{}.jsonl", texts.len()));
    let lines: Vec<String> = texts
        .iter()
        .enumerate()
        .map(|(i, t)| serde_json::json!({"id": format!("d{i}"), "text": t}).to_string())
        .collect();
    std::fs::write(&input, lines.join("\n") + "\n").unwrap();
    let out = dir.join(format!("label-out-{tier}-{}", texts.len()));
    let _ = std::fs::remove_dir_all(&out);
    let started = Instant::now();
    let o = common::hermes(&[
        "label",
        "--input",
        input.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--encoder",
        tier,
        // consume's default layout on this machine (one session per core, one ONNX Runtime
        // thread each, `--encoder-sessions 0`): both sides run the same labeler, and the
        // ratio measures what the stream costs around it, not two thread layouts.
        "--encoder-sessions",
        "2",
        "--intra-threads",
        "1",
    ]);
    assert!(o.status.success(), "{}", common::stderr(&o));
    started.elapsed().as_secs_f64()
}

fn consume_args(broker: &Broker, tier: &str, topic: &str) -> Vec<String> {
    [
        "--source",
        &broker.source(topic, "bench"),
        "--sink",
        &broker.sink(&format!("{topic}-codes")),
        "--encoder",
        tier,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

struct Row {
    tier: &'static str,
    broker: &'static str,
    label: f64,
    consume: f64,
    offered: f64,
    lag_p50: f64,
    lag_p99: f64,
}

async fn consume_once(kafka: bool, tier: &'static str, texts: &[String], label_rate: f64) -> Row {
    let dir = tempfile::tempdir().unwrap();
    let topics = ["in", "in-codes", "in.dead-letter"];
    let broker = Broker::start(kafka, &topics).await;
    let docs: Vec<_> = texts
        .iter()
        .enumerate()
        .map(|(i, t)| doc(&format!("d{i}"), t))
        .collect();
    broker.produce("in", &docs).await;
    let c = Consumer::start(&consume_args(&broker, tier, "in"), dir.path(), 1).await;
    let n = docs.len() as f64;
    let deadline = Instant::now() + Duration::from_secs(900);
    let (mut first, mut t_first) = (0.0, None);
    loop {
        let done = c.metric("hermes_consume_outputs_total").await;
        if t_first.is_none() && done > 0.0 {
            (first, t_first) = (done, Some(Instant::now()));
        }
        if done >= n {
            break;
        }
        assert!(Instant::now() < deadline, "consume did not finish");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let t_first = t_first.unwrap();
    let consume = (n - first) / t_first.elapsed().as_secs_f64().max(1e-9);

    // Lag at a fixed offered rate: half of label's, for 10 s (5 s quick), in 100 ms ticks.
    let offered = (label_rate / 2.0).max(1.0);
    let seconds = if quick() { 5.0 } else { 10.0 };
    let per_tick = (offered / 10.0).ceil() as usize;
    let ticks = (seconds * 10.0) as usize;
    let mut sent = 0;
    let start = Instant::now();
    for k in 0..ticks {
        let batch: Vec<_> = (0..per_tick)
            .map(|j| {
                let i = sent + j;
                doc(&format!("lag-{i}"), &texts[i % texts.len()])
            })
            .collect();
        sent += batch.len();
        broker.produce("in", &batch).await;
        let next = start + Duration::from_millis(100 * (k as u64 + 1));
        tokio::time::sleep_until(next.into()).await;
    }
    let offered = sent as f64 / start.elapsed().as_secs_f64();
    let deadline = Instant::now() + Duration::from_secs(300);
    while c.metric("hermes_consume_outputs_total").await < n + sent as f64 {
        assert!(
            Instant::now() < deadline,
            "the offered load was not labeled"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (status, log) = c.terminate();
    assert!(status.success(), "{log}");
    let stamp = |records: Vec<(Vec<u8>, i64)>| -> HashMap<String, i64> {
        records
            .into_iter()
            .filter_map(|(v, ts)| {
                let v: serde_json::Value = serde_json::from_slice(&v).ok()?;
                let id = v["id"].as_str()?.to_string();
                id.starts_with("lag-").then_some((id, ts))
            })
            .collect()
    };
    // Counted by reading both topics to their ends: every document produced once, each with
    // an output.
    let (inputs, outputs) = (broker.read_timed("in"), broker.read_timed("in-codes"));
    let ids = |records: &[(Vec<u8>, i64)]| -> HashSet<String> {
        records
            .iter()
            .filter_map(|(v, _)| {
                let v: serde_json::Value = serde_json::from_slice(v).ok()?;
                Some(v["id"].as_str()?.to_string())
            })
            .collect()
    };
    let total = docs.len() + sent;
    assert_eq!(inputs.len(), total, "{} inputs read back", broker.name());
    assert_eq!(ids(&inputs).len(), total, "{}: input ids", broker.name());
    assert_eq!(
        ids(&outputs).len(),
        total,
        "{}: distinct output ids read back",
        broker.name()
    );
    let inputs = stamp(inputs);
    let outputs = stamp(outputs);
    let lags = support::sorted(
        outputs
            .iter()
            .filter_map(|(id, out)| Some((out - inputs.get(id)?) as f64 / 1000.0))
            .collect(),
    );
    assert!(!lags.is_empty(), "no lag samples");
    Row {
        tier,
        broker: broker.name(),
        label: label_rate,
        consume,
        offered,
        lag_p50: percentile(&lags, 0.5),
        lag_p99: percentile(&lags, 0.99),
    }
}

/// The median of `f` over the runs of one (tier, broker) pair.
fn med(runs: &[&Row], f: impl Fn(&Row) -> f64) -> f64 {
    support::median(runs.iter().map(|r| f(r)).collect())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let dir = tempfile::tempdir().unwrap();
    let mut rows = Vec::new();
    let tiers = [
        ("static", if quick() { 5_000 } else { 10_000 }),
        ("minilm", if quick() { 300 } else { 1_000 }),
    ];
    for run in 1..=support::runs() {
        for (tier, n) in tiers {
            let t = texts(n);
            for kafka in [true, false] {
                // label, then consume at once: the ratio is measured in one stretch of time.
                let small = label_seconds(dir.path(), tier, &t[..n / 10]);
                let full = label_seconds(dir.path(), tier, &t);
                let label_rate = (n - n / 10) as f64 / (full - small).max(1e-9);
                let row = consume_once(kafka, tier, &t, label_rate).await;
                eprintln!(
                    "run {run}: {} {}: label {:.0} docs/s, consume {:.0} docs/s ({:.2}x); lag at {:.0} docs/s: p50 {:.3} s, p99 {:.3} s",
                    row.tier,
                    row.broker,
                    row.label,
                    row.consume,
                    row.consume / row.label,
                    row.offered,
                    row.lag_p50,
                    row.lag_p99
                );
                rows.push(row);
            }
        }
    }
    let mut md = format!(
        "# hermes consume vs hermes label\n\n{}; one process each, 2 encoder sessions of one ONNX Runtime thread; \
         brokers on loopback (tansu 0.6.0 in memory, librdkafka's default produce batching; \
         redis-server with AOF). Medians of {} runs; each run measures label and then consume \
         for a pair, and its ratio is consume / label of that run (the ratio column is the \
         median of those, with the runs' ratios in brackets).\n\n\
         | tier | broker | label docs/s | consume docs/s | ratio | offered docs/s | lag p50 s | lag p99 s |\n\
         |---|---|---|---|---|---|---|---|\n",
        support::cpu_line(),
        support::runs()
    );
    for (tier, _) in tiers {
        for broker in ["kafka", "redis"] {
            let runs: Vec<&Row> = rows
                .iter()
                .filter(|r| r.tier == tier && r.broker == broker)
                .collect();
            let ratios: Vec<String> = runs
                .iter()
                .map(|r| format!("{:.2}", r.consume / r.label))
                .collect();
            md.push_str(&format!(
                "| {tier} | {broker} | {:.0} | {:.0} | {:.2} ({}) | {:.0} | {:.3} | {:.3} |\n",
                med(&runs, |r| r.label),
                med(&runs, |r| r.consume),
                med(&runs, |r| r.consume / r.label),
                ratios.join(", "),
                med(&runs, |r| r.offered),
                med(&runs, |r| r.lag_p50),
                med(&runs, |r| r.lag_p99)
            ));
        }
    }
    support::write_report("consume.md", &md);
    print!("{md}");
}
