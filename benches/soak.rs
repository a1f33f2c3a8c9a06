//! `make soak`: `hermes serve` with a Redis store and `hermes consume` on a Redis stream of the
//! same server, under steady mixed load for 10 minutes on loopback, with two faults: Redis is
//! stopped for 10 s at 40% of the run (SIGTERM; it restarts on its AOF), and the consumer is
//! killed with SIGKILL at 60% (and started again, as a supervisor would).
//!
//! The load, paced whatever the answers: `/v1/label` (8 documents with ids, one request in
//! five on MiniLM, the rest static) every 200 ms, `/v1/codes/lookup` of 16 labeled ids every
//! 200 ms, `/v1/label/stream` (8 lines) every second, and 5 records produced every 100 ms.
//!
//! It reports, per minute, the serve and consume RSS, p50/p99 latency and throughput per kind,
//! and at the end checks: every request was answered 200, or 503 only inside the outage window
//! (Redis down, plus 5 s); every produced record has an output; serve's memory did not trend
//! upward after the first two minutes (its id cache is 4,096 entries, full by then), nor
//! consume's in either of its lives (after two minutes up to the kill, and from a minute after
//! the restart): the least-squares slope, projected over the span, under 5% of the mean +
//! 8 MiB. Writes `target/bench/soak.md`; exits non-zero when a check fails.
//! `HERMES_SOAK_SECONDS` shortens or lengthens the run (default 600).

#[path = "../tests/common/mod.rs"]
mod common;
mod support;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::redis::{Redis, free_port};
use common::stream::Consumer;
use serde_json::{Value, json};
use support::{Server, percentile, rss_kib};

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    Label,
    Lookup,
    Stream,
}

const KINDS: [Kind; 3] = [Kind::Label, Kind::Lookup, Kind::Stream];

/// One request: when it was sent (s from the start), its status (0: no answer), its latency,
/// and for an error its `error.code`.
#[derive(Clone)]
struct Request {
    kind: Kind,
    at: f64,
    status: u16,
    ms: f64,
    code: String,
}

#[derive(Default)]
struct Log {
    requests: Vec<Request>,
    /// `(s, serve KiB, consume KiB)`, every 5 s.
    rss: Vec<(f64, u64, u64)>,
    labeled: Vec<String>,
}

struct Faults {
    down: f64,
    up: f64,
    killed: f64,
}

fn seconds() -> f64 {
    std::env::var("HERMES_SOAK_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(600.0)
}

async fn send(
    req: reqwest::RequestBuilder,
    kind: Kind,
    start: Instant,
    log: &Mutex<Log>,
) -> Option<Value> {
    let sent = Instant::now();
    let at = sent.duration_since(start).as_secs_f64();
    let (status, body) = match req.send().await {
        Ok(r) => {
            let status = r.status().as_u16();
            (status, r.bytes().await.ok())
        }
        Err(_) => (0, None),
    };
    let code = match (&body, status) {
        (_, 200) => String::new(),
        (Some(b), _) => serde_json::from_slice::<Value>(b)
            .ok()
            .and_then(|v| v["error"]["code"].as_str().map(String::from))
            .unwrap_or_default(),
        (None, _) => "no answer".into(),
    };
    log.lock().unwrap().requests.push(Request {
        kind,
        at,
        status,
        ms: sent.elapsed().as_secs_f64() * 1e3,
        code,
    });
    if status != 200 {
        return None;
    }
    let body = body?;
    match kind {
        Kind::Stream => Some(Value::Null),
        _ => serde_json::from_slice(&body).ok(),
    }
}

/// Runs `each` every `period` until `end`, each call in its own task (an open loop).
async fn paced<F, Fut>(period: Duration, start: Instant, end: f64, each: F)
where
    F: Fn(u64) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let mut k = 0u64;
    let mut tasks = Vec::new();
    while start.elapsed().as_secs_f64() < end {
        tokio::time::sleep_until((start + period * k as u32).into()).await;
        tasks.push(tokio::spawn(each(k)));
        k += 1;
    }
    for t in tasks {
        let _ = t.await;
    }
}

fn redis_conn(port: u16) -> Option<redis::Connection> {
    let client = redis::Client::open(format!("redis://127.0.0.1:{port}/0")).ok()?;
    client
        .get_connection_with_timeout(Duration::from_millis(500))
        .ok()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 4)]
async fn main() {
    let total = seconds();
    let texts = Arc::new(common::wiki_texts(20_000));
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut redis = Redis::start(dir.path(), port);
    let store = redis.url();
    // A small id cache, full within the warm-up, so memory after it is the steady state.
    let server = Server::start(&["--store", &store, "--cache-ids", "4096"]).await;
    let source =
        format!("redis://127.0.0.1:{port}/0/documents?group=soak&consumer=c1&claim-idle-ms=5000");
    let sink = format!("redis://127.0.0.1:{port}/0/codes");
    let consume_args: Vec<String> = ["--source", &source, "--sink", &sink, "--encoder", "static"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let consumer = Arc::new(Mutex::new(Some(
        Consumer::start(&consume_args, dir.path(), 1).await,
    )));
    let log = Arc::new(Mutex::new(Log::default()));
    let produced = Arc::new(Mutex::new(Vec::<String>::new()));
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let base = server.base.clone();
    let start = Instant::now();
    println!(
        "soak: {total} s on {}; serve {base}, redis :{port}",
        support::cpu_line()
    );

    // Label: 8 documents with ids; one request in five on MiniLM.
    let label = {
        let (client, base, texts, log) = (client.clone(), base.clone(), texts.clone(), log.clone());
        paced(Duration::from_millis(200), start, total, move |k| {
            let (client, base, texts, log) =
                (client.clone(), base.clone(), texts.clone(), log.clone());
            async move {
                let ids: Vec<String> = (0..8).map(|j| format!("l{k}-{j}")).collect();
                let docs: Vec<Value> = ids
                    .iter()
                    .enumerate()
                    .map(|(j, id)| json!({"id": id, "text": texts[(k as usize * 8 + j) % texts.len()]}))
                    .collect();
                let encoder = if k % 5 == 0 { "minilm" } else { "static" };
                let req = client
                    .post(format!("{base}/v1/label"))
                    .json(&json!({"documents": docs, "encoder": encoder}));
                if send(req, Kind::Label, start, &log).await.is_some() && encoder == "static" {
                    log.lock().unwrap().labeled.extend(ids);
                }
            }
        })
    };
    // Lookups of ids labeled before.
    let lookup = {
        let (client, base, log) = (client.clone(), base.clone(), log.clone());
        paced(Duration::from_millis(200), start, total, move |k| {
            let (client, base, log) = (client.clone(), base.clone(), log.clone());
            async move {
                let ids: Vec<String> = {
                    let l = log.lock().unwrap();
                    let n = l.labeled.len();
                    (0..16.min(n))
                        .map(|j| l.labeled[(k as usize * 16 + j * 7) % n].clone())
                        .collect()
                };
                if ids.is_empty() {
                    return;
                }
                let req = client
                    .post(format!("{base}/v1/codes/lookup"))
                    .json(&json!({"ids": ids, "encoder": "static"}));
                send(req, Kind::Lookup, start, &log).await;
            }
        })
    };
    // NDJSON streams of 8 lines.
    let stream = {
        let (client, base, texts, log) = (client.clone(), base.clone(), texts.clone(), log.clone());
        paced(Duration::from_secs(1), start, total, move |k| {
            let (client, base, texts, log) =
                (client.clone(), base.clone(), texts.clone(), log.clone());
            async move {
                let body: String = (0..8)
                    .map(|j| {
                        json!({"text": texts[(k as usize * 8 + j + 997) % texts.len()]}).to_string()
                            + "\n"
                    })
                    .collect();
                let req = client
                    .post(format!("{base}/v1/label/stream?encoder=static"))
                    .header("content-type", "application/x-ndjson")
                    .body(body);
                send(req, Kind::Stream, start, &log).await;
            }
        })
    };
    // Records: 5 every 100 ms; a batch Redis refuses is tried again with the next tick.
    let produce = {
        let (texts, produced) = (texts.clone(), produced.clone());
        tokio::task::spawn_blocking(move || {
            let mut con: Option<redis::Connection> = None;
            let mut waiting: Vec<String> = Vec::new();
            let mut k = 0u64;
            while start.elapsed().as_secs_f64() < total {
                std::thread::sleep(
                    (start + Duration::from_millis(100) * k as u32)
                        .saturating_duration_since(Instant::now()),
                );
                waiting.extend((0..5).map(|j| format!("s{k}-{j}")));
                k += 1;
                if con.is_none() {
                    con = redis_conn(port);
                }
                let Some(c) = con.as_mut() else { continue };
                let mut pipe = redis::pipe();
                for id in &waiting {
                    let n: usize = id[1..].split('-').next().unwrap().parse().unwrap();
                    let value = json!({"id": id, "text": texts[n % texts.len()]}).to_string();
                    pipe.cmd("XADD")
                        .arg("documents")
                        .arg("*")
                        .arg("value")
                        .arg(value);
                }
                match pipe.query::<Vec<String>>(c) {
                    Ok(_) => produced.lock().unwrap().append(&mut waiting),
                    Err(_) => con = None,
                }
            }
        })
    };
    // Faults and samples.
    let faults = {
        let (log, consumer, consume_args) = (log.clone(), consumer.clone(), consume_args.clone());
        let dir = dir.path().to_path_buf();
        let serve_pid = server.pid();
        async move {
            let mut faults = Faults {
                down: 0.0,
                up: 0.0,
                killed: 0.0,
            };
            let mut next = 0.0;
            let mut restarts = 1;
            while start.elapsed().as_secs_f64() < total {
                let t = start.elapsed().as_secs_f64();
                if faults.down == 0.0 && t >= 0.4 * total {
                    faults.down = start.elapsed().as_secs_f64();
                    redis.down();
                    tokio::time::sleep(Duration::from_secs(10)).await;
                    redis.up();
                    faults.up = start.elapsed().as_secs_f64();
                    println!("soak: redis down {:.0}–{:.0} s", faults.down, faults.up);
                }
                if faults.killed == 0.0 && t >= 0.6 * total {
                    let old = consumer.lock().unwrap().take();
                    if let Some(mut c) = old {
                        c.child.kill9();
                    }
                    faults.killed = start.elapsed().as_secs_f64();
                    restarts += 1;
                    let c = Consumer::start(&consume_args, &dir, restarts).await;
                    *consumer.lock().unwrap() = Some(c);
                    println!(
                        "soak: consumer killed at {:.0} s and restarted",
                        faults.killed
                    );
                }
                if t >= next {
                    let consume_pid = consumer.lock().unwrap().as_ref().map(|c| c.child.id());
                    let sample = (
                        t,
                        rss_kib(serve_pid, "VmRSS:"),
                        consume_pid.map_or(0, |p| rss_kib(p, "VmRSS:")),
                    );
                    log.lock().unwrap().rss.push(sample);
                    next += 5.0;
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            (faults, redis)
        }
    };
    let ((faults, _redis), (), (), (), produce) =
        tokio::join!(faults, label, lookup, stream, produce);
    produce.unwrap();

    // Every produced record has an output (waits up to 5 minutes for the backlog).
    let produced: HashSet<String> = produced.lock().unwrap().iter().cloned().collect();
    let deadline = Instant::now() + Duration::from_secs(300);
    let missing = loop {
        let seen = read_output_ids(port);
        let missing: Vec<&String> = produced.iter().filter(|id| !seen.contains(*id)).collect();
        if missing.is_empty() || Instant::now() > deadline {
            break missing.len();
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    };
    let report = report(
        &log.lock().unwrap(),
        &faults,
        total,
        produced.len(),
        missing,
    );
    println!("{report}");
    let path = support::write_report("soak.md", &report);
    println!("soak: report in {}", path.display());
    drop(consumer);
    if report.contains("FAILED") {
        std::process::exit(1);
    }
}

fn read_output_ids(port: u16) -> HashSet<String> {
    let mut seen = HashSet::new();
    let Some(mut con) = redis_conn(port) else {
        return seen;
    };
    let mut from = "-".to_string();
    loop {
        let reply: redis::streams::StreamRangeReply = match redis::cmd("XRANGE")
            .arg("codes")
            .arg(&from)
            .arg("+")
            .arg("COUNT")
            .arg(10_000)
            .query(&mut con)
        {
            Ok(r) => r,
            Err(_) => return seen,
        };
        let n = reply.ids.len();
        for e in &reply.ids {
            if let Some(redis::Value::BulkString(b)) = e.map.get("value")
                && let Ok(v) = serde_json::from_slice::<Value>(b)
                && let Some(id) = v["id"].as_str()
            {
                seen.insert(id.to_string());
            }
        }
        match reply.ids.last() {
            Some(last) if n == 10_000 => from = format!("({}", last.id),
            _ => return seen,
        }
    }
}

fn report(log: &Log, faults: &Faults, total: f64, produced: usize, missing: usize) -> String {
    let mut out = format!(
        "# hermes soak\n\n{}\n\n{total:.0} s; Redis down {:.0}–{:.0} s (SIGTERM, AOF restart); \
         consumer killed (SIGKILL) at {:.0} s and restarted.\n\n",
        support::cpu_line(),
        faults.down,
        faults.up,
        faults.killed
    );
    out += "| minute | serve RSS MiB | consume RSS MiB | label p50/p99 ms | lookup p50/p99 ms | stream p50/p99 ms | requests/s | not 200 |\n|---|---|---|---|---|---|---|---|\n";
    let minutes = (total / 60.0).ceil() as usize;
    for m in 0..minutes {
        let (a, b) = (m as f64 * 60.0, (m as f64 + 1.0) * 60.0);
        let rss: Vec<&(f64, u64, u64)> = log.rss.iter().filter(|s| s.0 >= a && s.0 < b).collect();
        let last =
            |f: fn(&(f64, u64, u64)) -> u64| rss.last().map_or(0.0, |s| f(s) as f64 / 1024.0);
        let reqs: Vec<&Request> = log
            .requests
            .iter()
            .filter(|r| r.at >= a && r.at < b)
            .collect();
        let lat = |k: Kind| {
            let v = support::sorted(
                reqs.iter()
                    .filter(|r| r.kind == k && r.status == 200)
                    .map(|r| r.ms)
                    .collect(),
            );
            if v.is_empty() {
                "–".to_string()
            } else {
                format!("{:.0} / {:.0}", percentile(&v, 0.5), percentile(&v, 0.99))
            }
        };
        let span = (b.min(total) - a).max(1.0);
        out += &format!(
            "| {} | {:.0} | {:.0} | {} | {} | {} | {:.1} | {} |\n",
            m + 1,
            last(|s| s.1),
            last(|s| s.2),
            lat(Kind::Label),
            lat(Kind::Lookup),
            lat(Kind::Stream),
            reqs.len() as f64 / span,
            reqs.iter().filter(|r| r.status != 200).count()
        );
    }
    // Checks.
    let window = |r: &Request| r.at >= faults.down - 1.0 && r.at <= faults.up + 5.0;
    let bad: Vec<&Request> = log
        .requests
        .iter()
        .filter(|r| !(r.status == 200 || (r.status == 503 && window(r))))
        .collect();
    let outage_503 = log.requests.iter().filter(|r| r.status == 503).count();
    let per_kind: Vec<String> = KINDS
        .iter()
        .map(|k| {
            format!(
                "{:?} {}",
                k,
                log.requests.iter().filter(|r| r.kind == *k).count()
            )
        })
        .collect();
    let warm = 120.0_f64.min(total / 3.0);
    let serve = trend(&log.rss, |s| s.1, warm, total);
    // The consumer lives twice (killed at 60%): each life is checked after its own warm-up,
    // the first up to the kill, the second from a minute after the restart (at most a third
    // of what is left) to the end.
    let consume = [
        trend(&log.rss, |s| s.2, warm, faults.killed),
        trend(
            &log.rss,
            |s| s.2,
            faults.killed + 60.0_f64.min((total - faults.killed) / 3.0),
            total,
        ),
    ];
    let verdict = |ok: bool| if ok { "ok" } else { "FAILED" };
    out += &format!(
        "\n- requests: {} ({}); answered 200 or 503 inside the outage window: {} \
         ({} answered 503, {} otherwise): **{}**\n",
        log.requests.len(),
        per_kind.join(", "),
        log.requests.len() - bad.len(),
        outage_503,
        bad.len(),
        verdict(bad.is_empty())
    );
    for r in bad.iter().take(5) {
        out += &format!(
            "  - {:?} at {:.1} s: status {} ({}) after {:.0} ms\n",
            r.kind, r.at, r.status, r.code, r.ms
        );
    }
    out += &format!(
        "- records produced: {produced}; without an output: {missing}: **{}**\n",
        verdict(missing == 0 && produced > 0)
    );
    out += &format!(
        "- serve RSS {}: **{}**\n",
        serve.describe(),
        verdict(serve.flat())
    );
    for (life, t) in ["before the kill", "after the restart"]
        .iter()
        .zip(&consume)
    {
        out += &format!(
            "- consume RSS {life}, {}: **{}**\n",
            t.describe(),
            verdict(t.flat())
        );
    }
    out
}

/// A process' RSS over `[from, to)` (s): its least-squares trend, and whether that trend,
/// projected over the span, stays under 5% of the mean + 8 MiB.
struct Trend {
    from: f64,
    span: f64,
    /// MiB per second.
    slope: f64,
    mean: f64,
}

fn trend(
    samples: &[(f64, u64, u64)],
    kib: fn(&(f64, u64, u64)) -> u64,
    from: f64,
    to: f64,
) -> Trend {
    let points: Vec<(f64, f64)> = samples
        .iter()
        .filter(|s| s.0 >= from && s.0 < to && kib(s) > 0)
        .map(|s| (s.0, kib(s) as f64 / 1024.0))
        .collect();
    let (slope, mean) = slope(&points);
    let span = points.last().map_or(0.0, |s| s.0) - points.first().map_or(0.0, |s| s.0);
    Trend {
        from,
        span,
        slope,
        mean,
    }
}

impl Trend {
    fn growth(&self) -> f64 {
        self.slope * self.span
    }

    fn flat(&self) -> bool {
        self.growth() < 0.05 * self.mean + 8.0
    }

    fn describe(&self) -> String {
        format!(
            "from {:.0} s: mean {:.0} MiB, trend {:+.2} MiB/min, {:+.1} MiB over {:.0} s \
             (limit 5% of the mean + 8 MiB)",
            self.from,
            self.mean,
            self.slope * 60.0,
            self.growth(),
            self.span
        )
    }
}

/// Least-squares slope (per second) and mean of `(t, y)`.
fn slope(points: &[(f64, f64)]) -> (f64, f64) {
    let n = points.len() as f64;
    if n < 2.0 {
        return (0.0, points.first().map_or(0.0, |p| p.1));
    }
    let (mt, my) = (
        points.iter().map(|p| p.0).sum::<f64>() / n,
        points.iter().map(|p| p.1).sum::<f64>() / n,
    );
    let cov: f64 = points.iter().map(|p| (p.0 - mt) * (p.1 - my)).sum();
    let var: f64 = points.iter().map(|p| (p.0 - mt).powi(2)).sum();
    (if var > 0.0 { cov / var } else { 0.0 }, my)
}
