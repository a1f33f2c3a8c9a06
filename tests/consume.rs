//! `hermes consume` against real brokers started here on loopback: the tansu Kafka-protocol
//! broker (in memory, 3 partitions) and redis-server (AOF), each through the same scenarios:
//!
//! - 10,000 wiki documents and 4 poison records, half produced before the consumer starts and
//!   half while it runs; `kill -9` of the consumer mid-stream, then a restart: every input id
//!   has an output, duplicates are identical, each poison record is a dead letter with its
//!   coordinates and error; the codes are `/v1/label`'s, and a `serve` replica sharing the
//!   `--store` answers for every consumed id; after SIGTERM (exit 0) a restart reprocesses
//!   nothing.
//! - a backlog far beyond the minilm labeler's rate, of 600 and of 4,800 records of 128 KiB: in
//!   flight stays at the cap, the RSS growth with the big backlog is within half its extra
//!   bytes of the growth with the small one (memory does not grow with the backlog),
//!   SIGTERM drains and exits 0, and the codes are minilm's.
//! - the loose ends of issue 26: a fatal error (the sink's broker killed, a Redis sink key
//!   turned into a string) exits non-zero at once with what was written committed; `/readyz`
//!   follows the source's broker (Redis killed, Kafka cut off by a gate, then back on its
//!   port; Kafka killed and restarted empty: ignored, a librdkafka crash); Redis pending entries
//!   deleted from the stream are acknowledged, and consumers gone for good are claimed and
//!   removed; a second member joining mid-stream moves partitions with every output once.

mod common;

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use common::redis::{Redis, free_port};
use common::stream::{Broker, Consumer, doc};
use common::{Server, client, wiki_texts};

/// One scenario at a time: each measures rates and memory, which a second one beside it on
/// a 2-core machine would disturb.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Not JSON, no text field, a number as text, a text over --max-text-chars.
fn poison() -> Vec<(String, Vec<u8>, &'static str)> {
    vec![
        (
            "p1".into(),
            b"{\"id\": \"p1\", \"text\": ".to_vec(),
            "invalid_json",
        ),
        (
            "p2".into(),
            br#"{"id":"p2","title":"no text"}"#.to_vec(),
            "validation_error",
        ),
        (
            "p3".into(),
            br#"{"id":"p3","text":12345}"#.to_vec(),
            "validation_error",
        ),
        (
            "p4".into(),
            serde_json::to_vec(&json!({"id": "p4", "text": "word ".repeat(4000)})).unwrap(),
            "validation_error",
        ),
    ]
}

/// Waits until `check` holds on the sink's records (polled every 500 ms, up to `secs`).
async fn wait_for(
    broker: &Broker,
    topic: &str,
    secs: u64,
    check: impl Fn(&[Value]) -> bool,
) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let got = broker.read(topic);
        if check(&got) {
            return got;
        }
        assert!(
            Instant::now() < deadline,
            "{topic}: {} records, condition not met",
            got.len()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

fn outputs_by_id(outputs: &[Value]) -> HashMap<String, Vec<&Value>> {
    let mut by_id: HashMap<String, Vec<&Value>> = HashMap::new();
    for o in outputs {
        by_id
            .entry(o["id"].as_str().unwrap().to_string())
            .or_default()
            .push(o);
    }
    by_id
}

async fn at_least_once(kafka: bool) {
    let broker = Broker::start(kafka, &["docs", "codes", "docs.dead-letter"]).await;
    let which = broker.name();
    let tmp = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(tmp.path().join("store")).unwrap();
    let store = Redis::start(&tmp.path().join("store"), free_port());
    let texts = wiki_texts(10_000);
    assert_eq!(texts.len(), 10_000);
    let docs: Vec<(String, Vec<u8>)> = texts
        .iter()
        .enumerate()
        .map(|(i, t)| doc(&format!("doc-{i}"), t))
        .collect();
    let bad = poison();
    let bad_records: Vec<(String, Vec<u8>)> =
        bad.iter().map(|(k, v, _)| (k.clone(), v.clone())).collect();

    let mut first: Vec<_> = docs[..5000].to_vec();
    first.insert(1000, bad_records[0].clone());
    first.insert(3000, bad_records[1].clone());
    broker.produce("docs", &first).await;

    let args: Vec<String> = [
        "--source",
        &broker.source("docs", "hermes"),
        "--sink",
        &broker.sink("codes"),
        "--encoder",
        "static",
        "--store",
        &store.url(),
        "--max-in-flight",
        "256",
        "--batch-docs",
        "64",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    // The second half arrives while the consumer runs, and goes on after its kill -9.
    let mut rest: Vec<_> = docs[5000..].to_vec();
    rest.insert(2000, bad_records[2].clone());
    rest.insert(4000, bad_records[3].clone());
    let c1 = Consumer::start(&args, tmp.path(), 1).await;
    let producing = async move {
        for chunk in rest.chunks(250) {
            broker.produce("docs", chunk).await;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        broker
    };
    let kill = async {
        // The output rate just before the kill, for the bound on what is written again.
        c1.wait_outputs(2000.0, 120).await;
        let (t, from) = (
            Instant::now(),
            c1.metric("hermes_consume_outputs_total").await,
        );
        c1.wait_outputs(3000.0, 120).await;
        let done = c1.metric("hermes_consume_outputs_total").await;
        let rate = (done - from) / t.elapsed().as_secs_f64();
        c1.kill9();
        (done, rate)
    };
    let (broker, (killed_at, rate)) = tokio::join!(producing, kill);
    eprintln!("{which}: kill -9 after {killed_at} outputs, mid-stream, at {rate:.0} outputs/s");
    assert!(
        killed_at < 9000.0,
        "{which}: the kill came after the stream"
    );
    // What the first consumer wrote, each id with its count.
    let mut before_kill: HashMap<String, usize> = HashMap::new();
    for o in broker.read("codes") {
        *before_kill
            .entry(o["id"].as_str().unwrap().to_string())
            .or_default() += 1;
    }

    // A second kill -9, then a consumer under another name: on Redis it must claim what the
    // dead one left pending (XAUTOCLAIM after 2 s idle), where the first restart, under the
    // same name, read its own pending entries first.
    let c2 = Consumer::start(&args, tmp.path(), 2).await;
    c2.wait_outputs(2000.0, 120).await;
    c2.kill9();
    // Written again by the successor: outputs the first one wrote after its last commit.
    let mut again: HashMap<String, usize> = HashMap::new();
    for o in broker.read("codes") {
        if let Some(id) = o["id"].as_str().filter(|id| before_kill.contains_key(*id)) {
            *again.entry(id.to_string()).or_default() += 1;
        }
    }
    let redelivered: usize = again
        .iter()
        .map(|(id, n)| n.saturating_sub(before_kill[id]))
        .sum();
    // Kafka commits every 500 ms (Redis acknowledges each batch): at most what was written in
    // one commit interval and the commit's own round trip (2 × 500 ms at the rate measured),
    // plus what was in flight (--max-in-flight 256) and one batch of 64.
    let bound = rate * 2.0 * 0.5 + 256.0 + 64.0;
    eprintln!(
        "{which}: {redelivered} of the {} outputs written before the kill -9 written again after it (bound {bound:.0} at {rate:.0} outputs/s)",
        before_kill.len()
    );
    assert!(
        (redelivered as f64) <= bound,
        "{which}: {redelivered} outputs written again after a kill -9, over {bound:.0}"
    );
    let renamed: Vec<String> = args
        .iter()
        .map(|a| a.replace("consumer=c1", "consumer=c2&claim-idle-ms=2000"))
        .collect();
    let c2 = Consumer::start(&renamed, tmp.path(), 3).await;
    let ids: HashSet<String> = docs.iter().map(|(k, _)| k.clone()).collect();
    let deadline = Instant::now() + Duration::from_secs(60);
    let outputs = loop {
        let o = broker.read("codes");
        let seen: HashSet<&str> = o.iter().filter_map(|v| v["id"].as_str()).collect();
        let missing: Vec<&String> = ids
            .iter()
            .filter(|id| !seen.contains(id.as_str()))
            .collect();
        if missing.is_empty() {
            break o;
        }
        if Instant::now() > deadline {
            let log = c2.log_text();
            let inputs: Vec<Value> = broker
                .read_raw("docs")
                .iter()
                .filter_map(|v| serde_json::from_slice(v).ok())
                .collect();
            let there = missing
                .iter()
                .filter(|m| inputs.iter().any(|v| v["id"].as_str() == Some(m.as_str())))
                .count();
            panic!(
                "{which}: {} ids without an output, e.g. {:?} ({there} of them in the source topic, of {} records); consumer: {} inputs, {} in flight, lag {}; log tail:\n{}",
                missing.len(),
                &missing[..missing.len().min(5)],
                inputs.len(),
                c2.metric("hermes_consume_inputs_total").await,
                c2.metric("hermes_consume_in_flight").await,
                c2.metric("hermes_consume_lag").await,
                &log[log.len().saturating_sub(4000)..]
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let letters = wait_for(&broker, "docs.dead-letter", 60, |d| d.len() >= 4).await;
    let (status, log) = c2.terminate();
    assert!(status.success(), "{which}: SIGTERM exit {status}:\n{log}");

    // Every input has an output; duplicates (redelivered after the kill) are identical.
    let by_id = outputs_by_id(&outputs);
    assert_eq!(
        by_id.len(),
        10_000,
        "{which}: only the documents have outputs"
    );
    let mut duplicates = 0;
    for (id, outs) in &by_id {
        duplicates += outs.len() - 1;
        assert!(
            outs.iter().all(|o| o == &outs[0]),
            "{which}: {id} has differing outputs {outs:?}"
        );
        let o = outs[0];
        assert_eq!(o["code"].as_array().unwrap().len(), 3);
        assert_eq!(o["model"]["encoder"], "static");
        assert_eq!(o["source"]["topic"], "docs");
    }
    eprintln!(
        "{which}: {} outputs, {duplicates} duplicates after the kill, all identical",
        outputs.len()
    );

    // Each poison record is a dead letter with its error and coordinates.
    for (id, payload, code) in &bad {
        let prefix: String = String::from_utf8_lossy(payload).chars().take(30).collect();
        let letter = letters
            .iter()
            .find(|l| l["payload"].as_str().unwrap().starts_with(&prefix))
            .unwrap_or_else(|| panic!("{which}: no dead letter for {id}: {letters:?}"));
        assert_eq!(letter["error"]["code"], *code, "{which}: {id}: {letter}");
        assert_eq!(letter["source"]["topic"], "docs");
        assert!(letter["source"]["offset"].is_i64() || letter["source"]["offset"].is_string());
    }

    // A serve replica sharing the store answers for every consumed id, with the same code,
    // and /v1/label gives each text that code.
    let serve = Server::start(&["--store", &store.url(), "--encoder", "static"]).await;
    let all_ids: Vec<String> = (0..10_000).map(|i| format!("doc-{i}")).collect();
    for (chunk_i, chunk) in all_ids.chunks(2000).enumerate() {
        let r: Value = client()
            .post(serve.url("/v1/codes/lookup"))
            .json(&json!({"ids": chunk}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        for (j, got) in r["results"].as_array().unwrap().iter().enumerate() {
            let id = &chunk[j];
            assert!(
                !got.is_null(),
                "{which}: the store has no code for {id} (chunk {chunk_i})"
            );
            assert_eq!(got["code"], by_id[id][0]["code"], "{which}: {id}");
        }
    }
    for (chunk_i, chunk) in texts.chunks(256).enumerate() {
        let documents: Vec<Value> = chunk.iter().map(|t| json!({"text": t})).collect();
        let r: Value = client()
            .post(serve.url("/v1/label"))
            .json(&json!({"documents": documents}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        for (j, got) in r["results"].as_array().unwrap().iter().enumerate() {
            let id = format!("doc-{}", chunk_i * 256 + j);
            assert_eq!(
                got["code"], by_id[&id][0]["code"],
                "{which}: {id} differs from /v1/label"
            );
        }
    }

    // After a SIGTERM everything was committed: a restart reads only what is new.
    let before = outputs.len();
    let c3 = Consumer::start(&renamed, tmp.path(), 4).await;
    broker
        .produce(
            "docs",
            &[doc("sentinel", "A sentinel document after the drain.")],
        )
        .await;
    let after = wait_for(&broker, "codes", 60, |o| {
        o.iter().any(|v| v["id"] == "sentinel")
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after_settle = broker.read("codes").len();
    let (status, log) = c3.terminate();
    assert!(status.success(), "{which}: {status}\n{log}");
    assert_eq!(
        after.len(),
        before + 1,
        "{which}: the restart after SIGTERM reprocessed inputs"
    );
    assert_eq!(
        after_settle,
        before + 1,
        "{which}: the restart after SIGTERM reprocessed inputs"
    );
}

/// The backlog scenario's sizes. Each record carries `PAD` bytes in a field hermes ignores, so
/// that a consumer holding its backlog in memory would hold those bytes: the big backlog has
/// `(BIG - SMALL) * PAD` = 525 MiB more of them than the small one. (The consumer's own RSS
/// varies by some 60 MiB from run to run on a loaded 2-core machine, whatever its backlog.)
const PAD: usize = 128 * 1024;
const SMALL: usize = 600;
const BIG: usize = 8 * SMALL;
const CAP: usize = 64;
/// Outputs watched once the whole backlog is on the broker: the same work for both backlogs.
const WATCHED: f64 = 160.0;

/// What one consumer did over a backlog.
struct Watched {
    /// RSS once ready, before its backlog exists.
    idle_kib: u64,
    /// The highest RSS from then to the end of the watch (the kernel's `VmHWM`).
    peak_kib: u64,
    max_in_flight: f64,
    produce_rate: f64,
    label_rate: f64,
    /// Outputs counted when the watch ended.
    outputs: f64,
}

impl Watched {
    fn growth_kib(&self) -> u64 {
        self.peak_kib.saturating_sub(self.idle_kib)
    }
}

/// Starts a minilm consumer on the empty `topic`, notes its RSS, then puts `docs` there at once
/// (far faster than minilm labels them) and watches its in-flight count until it has written
/// [`WATCHED`] more outputs after the last record was acknowledged; its peak RSS over all of
/// that is the kernel's. Then SIGTERM: it drains and exits 0, and every input it counted has
/// an output on the sink, read back.
async fn watch_backlog(
    broker: &Broker,
    topic: &str,
    docs: &[(String, Vec<u8>)],
    dir: &std::path::Path,
    n: usize,
) -> (Watched, Vec<Value>) {
    let which = broker.name();
    let codes = format!("{topic}-codes");
    let args: Vec<String> = [
        "--source",
        &broker.source(topic, "hermes"),
        "--sink",
        &broker.sink(&codes),
        "--max-in-flight",
        &CAP.to_string(),
        "--batch-docs",
        "16",
        // The encoder's batch size fixed, not measured at start-up (a measured one depends on
        // the machine's speed and load, and memory with it), and small, in one session: the
        // labeler's own working memory comes and goes with each batch, and is kept small
        // beside what a held backlog would cost.
        "--max-batch-docs",
        "4",
        "--encoder-sessions",
        "1",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let c = Consumer::start(&args, dir, n).await;
    // Its resident set, model loaded, before the backlog exists; the peak counts from here.
    let idle_kib = c.rss_kib();
    c.reset_peak_rss();
    let mut max_in_flight = 0.0f64;
    let produced = Instant::now();
    {
        // Watched while the backlog arrives too.
        let producing = broker.produce(topic, docs);
        tokio::pin!(producing);
        loop {
            tokio::select! {
                _ = &mut producing => break,
                _ = tokio::time::sleep(Duration::from_millis(100)) => {
                    max_in_flight =
                        max_in_flight.max(c.metric("hermes_consume_in_flight").await);
                }
            }
        }
    }
    let produce_rate = docs.len() as f64 / produced.elapsed().as_secs_f64();
    let t0 = Instant::now();
    let out0 = c.metric("hermes_consume_outputs_total").await;
    let deadline = t0 + Duration::from_secs(300);
    let outputs = loop {
        max_in_flight = max_in_flight.max(c.metric("hermes_consume_in_flight").await);
        let out = c.metric("hermes_consume_outputs_total").await;
        if out >= out0 + WATCHED {
            break out;
        }
        assert!(
            Instant::now() < deadline,
            "{which} {topic}: {out} outputs after 300 s:\n{}",
            c.log_text()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let label_rate = (outputs - out0) / t0.elapsed().as_secs_f64();
    let peak_kib = c.peak_rss_kib();
    let (status, log) = c.terminate();
    assert!(status.success(), "{which} {topic}: {status}\n{log}");

    // Every input counted has its output on the sink (read back, not from watermarks).
    let written = broker.read(&codes);
    assert!(
        written.len() >= outputs as usize,
        "{which} {topic}: {} outputs read back, {outputs} counted: committed inputs without outputs",
        written.len()
    );
    let w = Watched {
        idle_kib,
        peak_kib,
        max_in_flight,
        produce_rate,
        label_rate,
        outputs,
    };
    eprintln!(
        "{which} {topic} ({} records of {} KiB): produced at {:.0} docs/s, labeled at {:.0} docs/s; in flight at most {}; RSS idle {} KiB, peak {} KiB, growth {} KiB",
        docs.len(),
        PAD / 1024,
        w.produce_rate,
        w.label_rate,
        w.max_in_flight,
        w.idle_kib,
        w.peak_kib,
        w.growth_kib()
    );
    (w, written)
}

/// Memory does not grow with the backlog: one consumer over a backlog of [`SMALL`] records,
/// another over [`BIG`], the same work watched; their RSS growths differ by less than half
/// the extra backlog's padding bytes (what holding that backlog would cost at the least).
/// Both run in this one test on this one machine, so the verdict does not depend on its
/// speed or load. In-flight stays at the cap, SIGTERM drains and exits 0, and the codes
/// written are minilm's, as /v1/label gives them.
async fn bounded_backlog(kafka: bool) {
    let broker = Broker::start(
        kafka,
        &[
            "small",
            "small-codes",
            "small.dead-letter",
            "big",
            "big-codes",
            "big.dead-letter",
        ],
    )
    .await;
    let which = broker.name();
    let tmp = tempfile::tempdir().unwrap();
    let texts = wiki_texts(BIG);
    assert_eq!(texts.len(), BIG);
    let pad = "p".repeat(PAD);
    let docs: Vec<(String, Vec<u8>)> = texts
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let id = format!("b-{i}");
            let v = json!({"id": id, "text": t, "pad": pad});
            (id, serde_json::to_vec(&v).unwrap())
        })
        .collect();
    let (small, small_out) = watch_backlog(&broker, "small", &docs[..SMALL], tmp.path(), 1).await;
    let (big, big_out) = watch_backlog(&broker, "big", &docs, tmp.path(), 2).await;

    for (name, w) in [("small", &small), ("big", &big)] {
        assert!(
            w.max_in_flight <= CAP as f64,
            "{which} {name}: {} in flight over the cap {CAP}",
            w.max_in_flight
        );
    }
    // The big backlog was still there, far beyond the cap, when its watch ended. (The small
    // one may have drained on a fast machine: that lowers the growth it is compared to by at
    // most what is in flight and prefetched, some 20 MiB of these records.)
    assert!(
        big.outputs + (4 * CAP) as f64 <= BIG as f64,
        "{which}: the backlog of {BIG} drained ({} outputs) before the watch ended",
        big.outputs
    );
    let extra_kib = ((BIG - SMALL) * PAD / 1024) as u64;
    let margin_kib = extra_kib / 2;
    let (gs, gb) = (small.growth_kib(), big.growth_kib());
    eprintln!(
        "{which}: RSS growth {gs} KiB with {SMALL} records, {gb} KiB with {BIG}: {:+} KiB for {extra_kib} KiB more backlog (margin {margin_kib} KiB)",
        gb as i64 - gs as i64
    );
    assert!(
        gb < gs + margin_kib,
        "{which}: RSS grew by {gb} KiB with a backlog of {BIG} records and by {gs} KiB with {SMALL}: memory grows with the backlog ({extra_kib} KiB more of it)"
    );

    // The outputs written are minilm's codes, as /v1/label gives them.
    let outputs: Vec<Value> = small_out.into_iter().chain(big_out).collect();
    let by_id = outputs_by_id(&outputs);
    let serve = Server::start(&[]).await;
    let sample: Vec<(&String, &Vec<&Value>)> = by_id.iter().take(200).collect();
    let documents: Vec<Value> = sample
        .iter()
        .map(|(id, _)| json!({"text": texts[id[2..].parse::<usize>().unwrap()]}))
        .collect();
    for (chunk_i, chunk) in documents.chunks(100).enumerate() {
        let r: Value = client()
            .post(serve.url("/v1/label"))
            .json(&json!({"documents": chunk}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        for (j, got) in r["results"].as_array().unwrap().iter().enumerate() {
            let (id, outs) = sample[chunk_i * 100 + j];
            assert_eq!(outs[0]["model"]["encoder"], "minilm");
            assert_eq!(
                got["code"], outs[0]["code"],
                "{which}: {id} differs from /v1/label"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kafka_loses_no_input_across_kill_and_restart() {
    let _one = ONE_AT_A_TIME.lock().await;
    at_least_once(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_streams_lose_no_input_across_kill_and_restart() {
    let _one = ONE_AT_A_TIME.lock().await;
    at_least_once(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kafka_backlog_stays_within_the_in_flight_cap() {
    let _one = ONE_AT_A_TIME.lock().await;
    bounded_backlog(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_backlog_stays_within_the_in_flight_cap() {
    let _one = ONE_AT_A_TIME.lock().await;
    bounded_backlog(false).await;
}

/// Kafka partitions move between two consumers of one group: the first drains and commits
/// what it had of the revoked partitions before they move, so nothing is lost and nothing
/// is labeled twice.
///
/// A member paused at the in-flight cap when the partitions move used to keep them paused
/// inside librdkafka through the revocation and their assignment again (only librdkafka's own
/// pause is reset on assign) while its fetcher, below the cap after the drain, never resumed
/// them: fixed, see `kafka::Context::pre_rebalance`.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kafka_rebalance_drains_and_commits_revoked_partitions() {
    let _one = ONE_AT_A_TIME.lock().await;
    let broker = Broker::start(true, &["moving", "moving-codes", "moving.dead-letter"]).await;
    let tmp = tempfile::tempdir().unwrap();
    // Long enough that the second member joins mid-stream (checked below).
    let texts = wiki_texts(8000);
    let docs: Vec<_> = texts
        .iter()
        .chain(&texts)
        .enumerate()
        .map(|(i, t)| doc(&format!("m-{i}"), t))
        .collect();
    // Half now; the other half once the second member has its partitions, so that both have
    // work after the rebalance however fast the first one is.
    broker.produce("moving", &docs[..docs.len() / 2]).await;
    let args: Vec<String> = [
        "--source",
        &broker.source("moving", "hermes"),
        "--sink",
        &broker.sink("moving-codes"),
        "--encoder",
        "static",
        "--max-in-flight",
        "256",
        "--batch-docs",
        "64",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let a = Consumer::start(&args, tmp.path(), 1).await;
    // The first member has its partitions (it wrote an output): the second one joins at once,
    // while the first is mid-stream, and the group rebalances.
    a.wait_outputs(1.0, 120).await;
    let b = Consumer::start(&args, tmp.path(), 2).await;
    let deadline = Instant::now() + Duration::from_secs(120);
    while !b.log_text().contains("partitions assigned") {
        assert!(
            Instant::now() < deadline,
            "no assignment:\n{}",
            b.log_text()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    broker.produce("moving", &docs[docs.len() / 2..]).await;
    // Waited for on the members' counters: reading the whole output topic back from tansu
    // over and over (what this loop did) takes seconds per read on a loaded machine and slows
    // the broker the members write to. It is read back once, at the end.
    let deadline = Instant::now() + Duration::from_secs(300);
    let outputs = loop {
        let written = a.metric("hermes_consume_outputs_total").await
            + b.metric("hermes_consume_outputs_total").await;
        if written >= docs.len() as f64 {
            break wait_for(&broker, "moving-codes", 120, |o| o.len() >= docs.len()).await;
        }
        if Instant::now() > deadline {
            let (la, lb) = (a.log_text(), b.log_text());
            let common::stream::Broker::Kafka(t) = &broker else {
                unreachable!()
            };
            panic!(
                "{written} of {} outputs ({} committed); first member: {} out, {} in flight; second: {} out, {} in flight\nfirst log:\n{}\nsecond log:\n{}",
                docs.len(),
                t.committed("hermes", "moving", 3),
                a.metric("hermes_consume_outputs_total").await,
                a.metric("hermes_consume_in_flight").await,
                b.metric("hermes_consume_outputs_total").await,
                b.metric("hermes_consume_in_flight").await,
                &la[la.len().saturating_sub(3000)..],
                &lb[lb.len().saturating_sub(3000)..]
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let (by_a, by_b) = (
        a.metric("hermes_consume_outputs_total").await,
        b.metric("hermes_consume_outputs_total").await,
    );
    eprintln!("rebalance: {by_a} outputs by the first member, {by_b} by the second");
    assert!(
        by_b > 0.0 && by_a < docs.len() as f64,
        "the partitions did not move mid-stream"
    );
    let (sa, la) = a.terminate();
    let (sb, lb) = b.terminate();
    assert!(sa.success() && sb.success(), "{la}\n{lb}");
    assert!(
        la.contains("partitions revoked: drained and committed"),
        "no revocation:\n{la}"
    );
    let by_id = outputs_by_id(&outputs);
    assert_eq!(by_id.len(), docs.len(), "every input has an output");
    let twice: Vec<_> = by_id
        .iter()
        .filter(|(_, o)| o.len() > 1)
        .map(|(id, _)| id)
        .collect();
    assert!(
        twice.is_empty(),
        "labeled twice across the rebalance: {} ids, e.g. {:?}",
        twice.len(),
        &twice[..twice.len().min(5)]
    );
    let final_outputs = broker.read("moving-codes");
    assert_eq!(
        final_outputs.len(),
        docs.len(),
        "no output after the drain either"
    );
}

/// A static-tier consumer starts only the tier it runs: it measures no MiniLM batch size (the
/// measurement took 18 s of a task's start on the AVX2 machine), and its health routes answer
/// in `serve`'s shapes. How long it takes to be ready is printed, not asserted (it depends on
/// the machine and its load).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_static_consumer_measures_nothing_and_answers_health_like_serve() {
    let _one = ONE_AT_A_TIME.lock().await;
    let broker = Broker::start(false, &["docs", "codes"]).await;
    let tmp = tempfile::tempdir().unwrap();
    let args: Vec<String> = [
        "--source",
        &broker.source("docs", "g"),
        "--sink",
        &broker.sink("codes"),
        "--encoder",
        "static",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let started = Instant::now();
    let c = Consumer::start(&args, tmp.path(), 1).await;
    println!(
        "static consumer ready in {:.2}s",
        started.elapsed().as_secs_f64()
    );
    let log = c.log_text();
    assert!(!log.contains("batch size measured"), "{log}");
    let get = |path: &'static str| {
        let url = c.url(path);
        async move {
            let r = client().get(url).send().await.unwrap();
            (r.status().as_u16(), r.json::<Value>().await.unwrap())
        }
    };
    assert_eq!(get("/healthz").await, (200, json!({"status": "ok"})));
    assert_eq!(get("/readyz").await, (200, json!({"status": "ready"})));
    broker
        .produce("docs", &[doc("s1", &wiki_texts(1)[0])])
        .await;
    c.wait_outputs(1.0, 60).await;
    let outputs = broker.read("codes");
    assert_eq!(outputs.len(), 1);
    assert_eq!(outputs[0]["model"]["encoder"], "static", "{}", outputs[0]);
}

/// `[stream, group]`'s pending entries (`XPENDING` summary count).
fn xpending_count(con: &mut redis::Connection, stream: &str, group: &str) -> i64 {
    let v: redis::Value = redis::cmd("XPENDING")
        .arg(stream)
        .arg(group)
        .query(con)
        .unwrap();
    match v {
        redis::Value::Array(items) => redis::from_redis_value_ref(&items[0]).unwrap(),
        other => panic!("XPENDING: {other:?}"),
    }
}

/// Reads `count` new entries of `stream` as `consumer` of `group` (created at the start),
/// acknowledging none: what a consumer killed mid-batch leaves pending. Their ids.
fn read_unacked(
    con: &mut redis::Connection,
    stream: &str,
    group: &str,
    consumer: &str,
    count: usize,
) -> Vec<String> {
    let _: Result<(), _> = redis::cmd("XGROUP")
        .arg("CREATE")
        .arg(stream)
        .arg(group)
        .arg("0")
        .arg("MKSTREAM")
        .query(con);
    let reply: redis::streams::StreamReadReply = redis::cmd("XREADGROUP")
        .arg("GROUP")
        .arg(group)
        .arg(consumer)
        .arg("COUNT")
        .arg(count)
        .arg("STREAMS")
        .arg(stream)
        .arg(">")
        .query(con)
        .unwrap();
    reply.keys[0].ids.iter().map(|e| e.id.clone()).collect()
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| s.to_string()).collect()
}

/// A fatal error mid-run (the sink's broker killed: every delivery fails after librdkafka's
/// `message.timeout.ms`) ends the job with a non-zero exit at once, not after the drain
/// timeout (60 s here), and what was written is committed: a successor writes exactly the
/// inputs past the commits.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kafka_fatal_sink_failure_exits_at_once_with_what_was_written_committed() {
    let _one = ONE_AT_A_TIME.lock().await;
    let source = Broker::start(true, &["docs", "docs.dead-letter", "codes2"]).await;
    let common::stream::Broker::Kafka(tansu) = &source else {
        unreachable!()
    };
    let mut sink = common::kafka::Tansu::start();
    sink.create_topics(&["codes"], 3).await;
    let tmp = tempfile::tempdir().unwrap();
    let texts = wiki_texts(8000);
    let docs: Vec<_> = texts
        .iter()
        .enumerate()
        .map(|(i, t)| doc(&format!("f-{i}"), t))
        .collect();
    source.produce("docs", &docs).await;
    let sink_url = format!("kafka://{}/codes?message.timeout.ms=2000", sink.brokers());
    let common = [
        "--encoder",
        "static",
        "--max-in-flight",
        "256",
        "--batch-docs",
        "64",
        "--shutdown-timeout-s",
        "60",
    ];
    let src = source.source("docs", "hermes");
    let mut args = strings(&["--source", &src, "--sink", &sink_url]);
    args.extend(strings(&common));
    let mut c = Consumer::start(&args, tmp.path(), 1).await;
    c.wait_outputs(1000.0, 120).await;
    let written = c.metric("hermes_consume_outputs_total").await;
    sink.kill();
    let killed = Instant::now();
    let status = c
        .wait_exit(Duration::from_secs(120))
        .unwrap_or_else(|| panic!("no exit 120 s after the sink died:\n{}", c.log_text()));
    let took = killed.elapsed().as_secs_f64();
    let log = c.log_text();
    eprintln!(
        "kafka fatal: exit {status} {took:.1} s after the sink's broker died ({written} outputs before)"
    );
    assert!(!status.success(), "a fatal error exits non-zero:\n{log}");
    assert!(
        took < 20.0,
        "exit {took:.1} s after the sink died: the drain timeout (60 s) was waited out:\n{log}"
    );
    let tail: Vec<&str> = log.lines().rev().take(25).collect();
    eprintln!("kafka fatal: log tail (newest first):\n{}", tail.join("\n"));
    let committed = tansu.committed("hermes", "docs", 3);
    eprintln!("kafka fatal: {committed} inputs committed, {written} written before the kill");
    assert!(
        committed as f64 >= written - 256.0 && committed < docs.len() as i64,
        "{committed} committed, {written} written before the sink died:\n{log}"
    );

    // A successor (another sink) writes exactly what was not committed.
    let rest = docs.len() - committed as usize;
    successor_writes_the_rest(&source, &src, &common, tmp.path(), rest).await;
}

/// A successor on another sink (`codes2`) writes exactly the `rest` inputs that were not
/// committed, each once, and nothing more.
async fn successor_writes_the_rest(
    broker: &common::stream::Broker,
    src: &str,
    common: &[&str],
    dir: &std::path::Path,
    rest: usize,
) {
    let mut args = strings(&["--source", src, "--sink", &broker.sink("codes2")]);
    args.extend(strings(common));
    let c2 = Consumer::start(&args, dir, 2).await;
    let outputs = wait_for(broker, "codes2", 120, |o| o.len() >= rest).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let settled = broker.read("codes2").len();
    let (status, log2) = c2.terminate();
    assert!(status.success(), "{log2}");
    let ids: HashSet<&str> = outputs.iter().filter_map(|o| o["id"].as_str()).collect();
    assert_eq!(
        ids.len(),
        rest,
        "the successor writes each uncommitted input once"
    );
    assert_eq!(
        settled, rest,
        "the successor redid committed inputs: {settled} outputs, {rest} uncommitted"
    );
}

/// On Redis: the sink's key turned into a string mid-run (every XADD then fails WRONGTYPE, not
/// retried) ends the job with a non-zero exit at once, and what was written is acknowledged:
/// a successor writes exactly what was read and not acknowledged, and what was never read.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_fatal_sink_failure_exits_at_once_with_what_was_written_acknowledged() {
    let _one = ONE_AT_A_TIME.lock().await;
    let broker = Broker::start(false, &[]).await;
    let common::stream::Broker::Redis(redis, _) = &broker else {
        unreachable!()
    };
    let tmp = tempfile::tempdir().unwrap();
    let texts = wiki_texts(8000);
    let docs: Vec<_> = texts
        .iter()
        .enumerate()
        .map(|(i, t)| doc(&format!("f-{i}"), t))
        .collect();
    broker.produce("docs", &docs).await;
    let common = [
        "--encoder",
        "static",
        "--max-in-flight",
        "256",
        "--batch-docs",
        "64",
        "--shutdown-timeout-s",
        "60",
    ];
    let src = broker.source("docs", "hermes");
    let mut args = strings(&["--source", &src, "--sink", &broker.sink("codes")]);
    args.extend(strings(&common));
    let mut c = Consumer::start(&args, tmp.path(), 1).await;
    c.wait_outputs(1000.0, 120).await;
    let written = c.metric("hermes_consume_outputs_total").await;
    let mut con = redis.conn();
    redis::pipe()
        .atomic()
        .cmd("DEL")
        .arg("codes")
        .ignore()
        .cmd("SET")
        .arg("codes")
        .arg("not a stream")
        .ignore()
        .query::<()>(&mut con)
        .unwrap();
    let broken = Instant::now();
    let status = c
        .wait_exit(Duration::from_secs(120))
        .unwrap_or_else(|| panic!("no exit 120 s after the sink broke:\n{}", c.log_text()));
    let took = broken.elapsed().as_secs_f64();
    let log = c.log_text();
    eprintln!(
        "redis fatal: exit {status} {took:.1} s after the sink broke ({written} outputs before)"
    );
    assert!(!status.success(), "a fatal error exits non-zero:\n{log}");
    assert!(took < 20.0, "exit {took:.1} s after the sink broke:\n{log}");
    assert!(log.contains("WRONGTYPE"), "{log}");
    let pending = xpending_count(&mut con, "docs", "hermes");
    let groups: Vec<HashMap<String, redis::Value>> = redis::cmd("XINFO")
        .arg("GROUPS")
        .arg("docs")
        .query(&mut con)
        .unwrap();
    let read: i64 = redis::from_redis_value_ref(&groups[0]["entries-read"]).unwrap();
    let acked = read - pending;
    eprintln!("redis fatal: {read} read, {pending} pending, {acked} acknowledged");
    assert!(
        acked as f64 >= written && acked < docs.len() as i64,
        "{log}"
    );

    let rest = docs.len() - acked as usize;
    successor_writes_the_rest(&broker, &src, &common, tmp.path(), rest).await;
}

/// How the source's broker goes away in [`readiness_follows_the_broker`].
#[derive(Clone, Copy, PartialEq, Eq)]
enum Outage {
    /// `kill -9` of the broker process, then a new one on the same port. Redis comes back from
    /// its AOF; tansu, in memory, comes back empty and the test creates the topics again.
    Kill,
    /// A gate in front of the broker closes, then opens again on the same port (`common::gate::Gate`): the
    /// broker, with its topics and groups, is what comes back, as a real Kafka broker does.
    Gate,
}

/// `/readyz` follows the source's broker: 503 naming it while it cannot be reached, 200 again
/// once it is back on the same port, and the outputs resume. (On Kafka the sink is on a broker
/// of its own, so that only the source goes away; with [`Outage::Kill`] a restarted tansu,
/// in memory, has also lost the sink producer's idempotence state, which a real broker keeps,
/// and that producer would stall.)
async fn readiness_follows_the_broker(kafka: bool, outage: Outage) {
    let topics = ["docs", "codes", "docs.dead-letter"];
    let mut broker = match outage {
        Outage::Kill => Broker::start(kafka, &topics).await,
        Outage::Gate => Broker::start_gated(kafka, &topics).await,
    };
    let sink_broker = if kafka {
        Some(Broker::start(true, &["codes"]).await)
    } else {
        None
    };
    let which = broker.name();
    let tmp = tempfile::tempdir().unwrap();
    let texts = wiki_texts(400);
    let docs: Vec<_> = texts
        .iter()
        .enumerate()
        .map(|(i, t)| doc(&format!("r-{i}"), t))
        .collect();
    let args = strings(&[
        "--source",
        &broker.source("docs", "hermes"),
        "--sink",
        &sink_broker.as_ref().unwrap_or(&broker).sink("codes"),
        "--encoder",
        "static",
    ]);
    let c = Consumer::start(&args, tmp.path(), 1).await;
    broker.produce("docs", &docs[..200]).await;
    c.wait_outputs(200.0, 120).await;
    assert_eq!(c.readyz().await, (200, json!({"status": "ready"})));

    match outage {
        Outage::Kill => broker.kill(),
        Outage::Gate => broker.cut().await,
    }
    let killed = Instant::now();
    let (status, body) = loop {
        let got = c.readyz().await;
        if got.0 != 200 {
            break got;
        }
        assert!(
            killed.elapsed() < Duration::from_secs(60),
            "{which}: /readyz still 200 60 s after the broker died:\n{}",
            c.log_text()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    eprintln!(
        "{which}: /readyz {status} {:.1} s after the broker died: {body}",
        killed.elapsed().as_secs_f64()
    );
    assert_eq!(status, 503);
    assert_eq!(body["error"]["code"], "unavailable", "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains(&broker.address()),
        "{which}: the reason names the broker: {message}"
    );
    // It stays 503 while the broker is away.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(c.readyz().await.0, 503);

    match outage {
        Outage::Kill => broker.restart(&topics).await,
        Outage::Gate => broker.reconnect(&topics).await,
    }
    let back = Instant::now();
    loop {
        if c.readyz().await.0 == 200 {
            break;
        }
        assert!(
            back.elapsed() < Duration::from_secs(60),
            "{which}: /readyz not 200 60 s after the broker came back:\n{}",
            c.log_text()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    eprintln!(
        "{which}: /readyz 200 {:.1} s after the broker came back",
        back.elapsed().as_secs_f64()
    );
    broker.produce("docs", &docs[200..]).await;
    c.wait_outputs(400.0, 120).await;
    let (status, log) = c.terminate();
    assert!(status.success(), "{which}: {status}\n{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kafka_readiness_follows_the_broker() {
    let _one = ONE_AT_A_TIME.lock().await;
    readiness_follows_the_broker(true, Outage::Gate).await;
}

/// The Kafka broker killed and restarted empty (tansu, in memory): `hermes consume` dies with
/// SIGSEGV inside librdkafka in about one run of two. tansu, restarted without the topics,
/// answers a Fetch of them with `UNKNOWN_TOPIC_OR_PARTITION`, a zero topic id, a current
/// leader (node 0, epoch 0) and an empty list of node endpoints; librdkafka 2.12.1 (bundled by
/// rdkafka-sys 4.10.0) turns the current leader into a metadata update without a topic name
/// (the Fetch path never sets one) and, the topic id being zero, looks it up by that name:
/// `strcmp(…, NULL)` in `rd_kafka_metadata_cache_find` under `rd_kafka_metadata_update_op`
/// whenever the metadata cache still holds a topic. See docs/streams.md, "Known crash".
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "librdkafka 2.12.1 dereferences a NULL topic name (SIGSEGV in about one run of two) \
            when a broker restarted without its topics answers a Fetch with a current leader: \
            docs/streams.md, Known crash; run with --ignored"]
async fn kafka_readiness_follows_a_broker_restarted_empty() {
    let _one = ONE_AT_A_TIME.lock().await;
    readiness_follows_the_broker(true, Outage::Kill).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_readiness_follows_the_broker() {
    let _one = ONE_AT_A_TIME.lock().await;
    readiness_follows_the_broker(false, Outage::Kill).await;
}

/// Entries deleted from the stream (XDEL) while pending with this consumer come back from its
/// own-pending read as ids without fields: acknowledged, logged with their ids and counted,
/// and the rest of the stream goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_pending_entries_deleted_from_the_stream_are_acknowledged() {
    let _one = ONE_AT_A_TIME.lock().await;
    let broker = Broker::start(false, &[]).await;
    let common::stream::Broker::Redis(redis, _) = &broker else {
        unreachable!()
    };
    let tmp = tempfile::tempdir().unwrap();
    let texts = wiki_texts(300);
    let docs: Vec<_> = texts
        .iter()
        .enumerate()
        .map(|(i, t)| doc(&format!("x-{i}"), t))
        .collect();
    broker.produce("docs", &docs).await;
    // This consumer (c1) read 100 entries in an earlier life and died; 10 of them were then
    // deleted from the stream.
    let mut con = redis.conn();
    let read = read_unacked(&mut con, "docs", "hermes", "c1", 100);
    assert_eq!(read.len(), 100);
    let deleted = &read[10..20];
    let n: i64 = redis::cmd("XDEL")
        .arg("docs")
        .arg(deleted)
        .query(&mut con)
        .unwrap();
    assert_eq!(n, 10);
    let args = strings(&[
        "--source",
        &broker.source("docs", "hermes"),
        "--sink",
        &broker.sink("codes"),
        "--encoder",
        "static",
    ]);
    let c = Consumer::start(&args, tmp.path(), 1).await;
    let outputs = wait_for(&broker, "codes", 60, |o| o.len() >= 290).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while xpending_count(&mut con, "docs", "hermes") > 0 {
        assert!(
            Instant::now() < deadline,
            "entries still pending:\n{}",
            c.log_text()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(c.metric("hermes_consume_deleted_pending_total").await, 10.0);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (status, log) = c.terminate();
    assert!(status.success(), "{status}\n{log}");
    for id in deleted {
        assert!(
            log.contains(id.as_str()),
            "the deleted id {id} is not logged:\n{log}"
        );
    }
    let ids: HashSet<&str> = outputs.iter().filter_map(|o| o["id"].as_str()).collect();
    assert_eq!(ids.len(), 290, "every entry left has one output");
    assert_eq!(broker.read("codes").len(), 290);
}

/// A consumer of the group idle past `--consumer-idle-timeout-s` (gone for good, its name
/// never back) has its pending entries claimed and processed, and is removed from the group;
/// `claim-idle-ms` is set far beyond the test, so the claim is this rule's, not XAUTOCLAIM's.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_consumers_gone_for_good_are_claimed_and_removed() {
    let _one = ONE_AT_A_TIME.lock().await;
    let broker = Broker::start(false, &[]).await;
    let common::stream::Broker::Redis(redis, _) = &broker else {
        unreachable!()
    };
    let tmp = tempfile::tempdir().unwrap();
    let texts = wiki_texts(300);
    let docs: Vec<_> = texts
        .iter()
        .enumerate()
        .map(|(i, t)| doc(&format!("g-{i}"), t))
        .collect();
    broker.produce("docs", &docs).await;
    let mut con = redis.conn();
    assert_eq!(
        read_unacked(&mut con, "docs", "hermes", "gone", 50).len(),
        50
    );
    let source = format!("{}&claim-idle-ms=3600000", broker.source("docs", "hermes"));
    let args = strings(&[
        "--source",
        &source,
        "--sink",
        &broker.sink("codes"),
        "--encoder",
        "static",
        "--consumer-idle-timeout-s",
        "2",
    ]);
    let c = Consumer::start(&args, tmp.path(), 1).await;
    let outputs = wait_for(&broker, "codes", 60, |o| o.len() >= 300).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let consumers: Vec<HashMap<String, redis::Value>> = redis::cmd("XINFO")
            .arg("CONSUMERS")
            .arg("docs")
            .arg("hermes")
            .query(&mut con)
            .unwrap();
        let names: Vec<String> = consumers
            .iter()
            .map(|c| redis::from_redis_value_ref(&c["name"]).unwrap())
            .collect();
        if !names.iter().any(|n| n == "gone") {
            assert!(names.iter().any(|n| n == "c1"), "{names:?}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the gone consumer is still in the group: {names:?}\n{}",
            c.log_text()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(xpending_count(&mut con, "docs", "hermes"), 0);
    assert_eq!(
        c.metric("hermes_consume_consumers_removed_total").await,
        1.0
    );
    let (status, log) = c.terminate();
    assert!(status.success(), "{status}\n{log}");
    assert!(
        log.contains("claimed the pending entries of a consumer gone for good"),
        "{log}"
    );
    let ids: HashSet<&str> = outputs.iter().filter_map(|o| o["id"].as_str()).collect();
    assert_eq!(ids.len(), 300);
    assert_eq!(broker.read("codes").len(), 300, "each entry once");
}
