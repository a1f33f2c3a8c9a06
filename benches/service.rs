//! `make bench`: the service against the in-process ceiling, in one run, on the same inputs.
//!
//! 1. Ceiling: the default bundle's encoder + transform + quantizer called directly (no HTTP)
//!    on wiki texts in a fixed shuffled order, at its best batch size and session layout; Python
//!    `onnxruntime` on the same texts as a cross-check; then paired rounds (ceiling, then the
//!    service at 16 clients) for the target.
//! 2. Service: `hermes serve` (release) on loopback, driven by the closed-loop load generator
//!    below with 1, 4, 16 and 64 clients posting requests of 1 and of 16 documents.
//! 3. Cache path: `GET /v1/codes/{id}` for labeled ids, open loop at 2,000 requests/s for 10 s,
//!    latency measured from each request's scheduled start (no coordinated omission) and from its
//!    send (without the pacing timer's lateness).
//! 4. Duplicate path: one batch of 16 posted, then posted again and again (content cache).
//! 5. Overload soak: 4× the measured saturation rate for 3 minutes; RSS sampled every 5 s.
//!
//! Why a load generator of our own: every request needs a different body (distinct texts, so
//! the content cache cannot flatter the figures) and the closed loop needs per-client
//! documents-per-request; `oha` and `wrk` send one fixed body without scripting.
//! Every text gets a unique suffix, so no phase is served from the content cache by accident.
//!
//! Writes `target/bench/report.md` and `target/bench/report.json`; prints the markdown.
//! Short runs for a smoke test: `HERMES_BENCH_QUICK=1`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use hermes::bundle::{LoadOptions, Model};
use hermes::encoder::{Embedder, EncoderConfig, MiniLm};
use hermes::quantize::CodeSpace;
use rand::SeedableRng;
use rand::seq::SliceRandom;
use serde_json::{Value, json};

struct Texts {
    base: Vec<String>,
    next: AtomicUsize,
}

impl Texts {
    fn load() -> Self {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(".cache/data/wiki.jsonl");
        let mut base: Vec<String> = hermes::corpus::read_jsonl(&path, "text", None)
            .expect("run `make setup`")
            .into_iter()
            .map(|d| d.text)
            .collect();
        base.shuffle(&mut rand_chacha::ChaCha8Rng::seed_from_u64(7));
        Self {
            base,
            next: AtomicUsize::new(0),
        }
    }

    /// The next `n` texts of the fixed order, each made unique by a counter suffix.
    fn take(&self, n: usize) -> Vec<(usize, String)> {
        let start = self.next.fetch_add(n, Ordering::Relaxed);
        (start..start + n)
            .map(|i| (i, format!("{} [{i}]", self.base[i % self.base.len()])))
            .collect()
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn rss_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

struct Server {
    child: Child,
    base: String,
}

impl Server {
    fn start(bin: &Path) -> Self {
        let mut child = Command::new(bin)
            .args(["serve", "--port", "0", "--log-format", "json"])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start hermes serve");
        let mut line = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(child.stdout.take().unwrap()),
            &mut line,
        )
        .unwrap();
        let base = line
            .trim()
            .trim_start_matches("hermes listening on ")
            .to_string();
        Self { child, base }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The in-process ceiling: the bundle's encoder + transform + quantizer called directly, on
/// chunks of 256 texts sorted by token count and cut into batches of `b` (almost no padding),
/// for every `b` in `BATCHES`. The ceiling is the best of them: on some CPUs a batch is
/// cheaper per document than one text alone, on others (this project's AVX2 machine) dearer.
const BATCHES: [usize; 4] = [1, 4, 16, 32];

fn ceiling(model: &Model, texts: &Texts, seconds_each: f64) -> Vec<(usize, f64)> {
    BATCHES
        .iter()
        .map(|&b| {
            let rate = ceiling_at(model.encoder.as_ref(), &model.space, texts, b, seconds_each);
            (b, rate)
        })
        .collect()
}

/// The session options hermes leaves off (ONNX Runtime's CPU arena and memory pattern, off
/// because they let RSS creep): the best batch size's rate with them on, so the report shows
/// whether the ceiling is a ceiling over session options too.
fn arena_rate(model: &Model, texts: &Texts, b: usize, seconds: f64) -> f64 {
    let encoder = encoder_with(|c| c.arena = true);
    ceiling_at(&encoder, &model.space, texts, b, seconds)
}

/// One session per core, one ONNX Runtime thread each, every session busy at once (one
/// thread per core feeding it): parallel batches instead of parallel operators.
fn ceiling_per_core(
    encoder: Arc<MiniLm>,
    model: &Model,
    texts: &Arc<Texts>,
    b: usize,
    seconds: f64,
) -> f64 {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..cores)
            .map(|_| {
                let encoder = encoder.clone();
                s.spawn(move || ceiling_at(encoder.as_ref(), &model.space, texts, b, seconds))
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).sum()
    })
}

/// The default bundle's encoder with some session option changed.
fn encoder_with(change: impl FnOnce(&mut EncoderConfig)) -> MiniLm {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/minilm-wiki");
    let mut config = EncoderConfig::for_dir(&dir);
    change(&mut config);
    MiniLm::load(&config).expect("load the encoder")
}

/// The ceiling at one batch size, docs/s over `seconds`.
fn ceiling_at(
    encoder: &dyn Embedder,
    space: &CodeSpace,
    texts: &Texts,
    b: usize,
    seconds: f64,
) -> f64 {
    use hermes::encoder::TokenizedText;
    let started = Instant::now();
    let mut docs = 0;
    while started.elapsed().as_secs_f64() < seconds {
        let chunk = texts.take(256);
        let mut tokens: Vec<TokenizedText> = chunk
            .iter()
            .map(|(_, t)| encoder.tokenize(t).expect("tokenize"))
            .collect();
        tokens.sort_by_key(|t| t.ids.len());
        for batch in tokens.chunks(b) {
            let refs: Vec<&TokenizedText> = batch.iter().collect();
            let e = encoder.embed_tokens(&refs).expect("embed");
            space.codes(&e).expect("code");
        }
        docs += tokens.len();
    }
    docs as f64 / started.elapsed().as_secs_f64()
}

fn load_default_bundle() -> Model {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/minilm-wiki");
    let model = Model::load(&dir, &LoadOptions::default()).expect("load the default bundle");
    let _ = model.encoder.embed(&["warm-up"]);
    model
}

/// One paired round: the ceiling at its best batch size, then the service, back to back.
struct Round {
    docs_per_request: usize,
    /// The better of the two below.
    ceiling: f64,
    /// The ceiling with ONNX Runtime's threads spinning (hermes' batch commands) and not.
    spinning: (f64, f64),
    /// The ceiling with one session of one thread per core, all busy (`serve`'s default), at
    /// its own best batch size.
    per_core: f64,
    service: f64,
    /// Mean documents per encoder batch the server ran in the round.
    batch: f64,
}

/// `hermes label` (release binary, default flags) on `n` wiki texts in 4 `.jsonl` files:
/// documents per second of the whole run, model loading (and, for minilm, the start-up
/// measurement of the batch size) included, and the steady rate: the same run less the wall
/// time of a run on 4 documents (that fixed start-up cost is seconds; a corpus job runs hours).
fn label_throughput(bin: &Path, texts: &Texts, n: usize, encoder: &str) -> (usize, f64, f64) {
    let tiny = label_wall(bin, texts, 4, encoder);
    let wall = label_wall(bin, texts, n, encoder);
    (n, n as f64 / wall, n as f64 / (wall - tiny).max(1e-3))
}

fn label_wall(bin: &Path, texts: &Texts, n: usize, encoder: &str) -> f64 {
    let dir = tempfile::tempdir().expect("temp dir");
    let docs = texts.take(n);
    for (f, chunk) in docs.chunks(docs.len().div_ceil(4)).enumerate() {
        let lines: String = chunk
            .iter()
            .map(|(i, t)| json!({"id": format!("l{i}"), "text": t}).to_string() + "\n")
            .collect();
        std::fs::write(dir.path().join(format!("part{f}.jsonl")), lines).expect("write input");
    }
    let started = Instant::now();
    let status = Command::new(bin)
        .args(["label", "--encoder", encoder, "--input"])
        .arg(dir.path())
        .arg("--out")
        .arg(dir.path().join("out"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stderr(Stdio::null())
        .status()
        .expect("run hermes label");
    assert!(status.success(), "hermes label failed");
    started.elapsed().as_secs_f64()
}

/// The server's `/metrics` page.
async fn metrics_text(client: &reqwest::Client, base: &str) -> String {
    client
        .get(format!("{base}/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("metrics body")
}

/// `(sum, count)` of the server's `hermes_batch_docs` histogram (documents per encoder batch).
async fn batch_docs(client: &reqwest::Client, base: &str) -> (f64, f64) {
    let text = metrics_text(client, base).await;
    let value = |name: &str| {
        text.lines()
            .find(|l| l.starts_with(name) && l[name.len()..].starts_with([' ', '{']))
            .and_then(|l| l.rsplit(' ').next()?.parse().ok())
            .unwrap_or(0.0)
    };
    (
        value("hermes_batch_docs_sum"),
        value("hermes_batch_docs_count"),
    )
}

/// Cumulative bucket counts `(le, count)` of the server's latency histogram for
/// `GET /v1/codes/{id}` answered 200.
async fn get_histogram(client: &reqwest::Client, base: &str) -> Vec<(f64, f64)> {
    let text = metrics_text(client, base).await;
    let mut buckets: Vec<(f64, f64)> = text
        .lines()
        .filter(|l| {
            l.starts_with("hermes_http_request_duration_seconds_bucket")
                && l.contains("route=\"/v1/codes/{id}\"")
                && l.contains("method=\"GET\"")
                && l.contains("status=\"200\"")
        })
        .filter_map(|l| {
            let le = l.split("le=\"").nth(1)?.split('"').next()?;
            let le = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().ok()?
            };
            Some((le, l.rsplit(' ').next()?.parse().ok()?))
        })
        .collect();
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    buckets
}

fn delta(before: &[(f64, f64)], after: &[(f64, f64)]) -> Vec<(f64, f64)> {
    after
        .iter()
        .map(|&(le, n)| {
            let was = before.iter().find(|b| b.0 == le).map_or(0.0, |b| b.1);
            (le, n - was)
        })
        .collect()
}

/// The histogram bucket bound (seconds) under which `q` of the requests fell.
fn histogram_quantile(before: &[(f64, f64)], after: &[(f64, f64)], q: f64) -> f64 {
    let d = delta(before, after);
    let total = d.last().map_or(0.0, |b| b.1);
    d.iter()
        .find(|b| total > 0.0 && b.1 >= q * total)
        .map_or(f64::NAN, |b| b.0)
}

/// Share of the requests the server answered within `bound` seconds.
fn share_under(before: &[(f64, f64)], after: &[(f64, f64)], bound: f64) -> f64 {
    let d = delta(before, after);
    let total = d.last().map_or(0.0, |b| b.1);
    d.iter()
        .find(|b| b.0 == bound)
        .map_or(f64::NAN, |b| b.1 / total)
}

/// Python `onnxruntime` (the set-up venv's wheel) on the same encoder.onnx and wiki texts,
/// length-sorted batches of 32, default session options: a check that the Rust path's
/// ceiling is not below what ONNX Runtime can do. `None` when the venv is missing.
fn python_ort(root: &Path, seconds: f64) -> Option<f64> {
    let py = root.join(".cache/venv/bin/python");
    let out = Command::new(py)
        .arg(root.join("scripts/ort_throughput.py"))
        .arg(root.join("models/minilm-wiki"))
        .arg(root.join(".cache/data/wiki.jsonl"))
        .arg(format!("{seconds}"))
        .output()
        .ok()?;
    String::from_utf8_lossy(&out.stdout).trim().parse().ok()
}

#[derive(serde::Serialize)]
struct LoadResult {
    clients: usize,
    docs_per_request: usize,
    requests: usize,
    refused: usize,
    docs_per_s: f64,
    p50_ms: f64,
    p95_ms: f64,
    p99_ms: f64,
    ratio_to_ceiling: f64,
    /// Ids of the documents that were labeled (for the cached-GET phase).
    #[serde(skip)]
    labeled: Vec<String>,
}

#[allow(clippy::too_many_arguments)]
async fn closed_loop(
    base: &str,
    texts: Arc<Texts>,
    clients: usize,
    per_request: usize,
    seconds: f64,
    ceiling: f64,
    encoder: &'static str,
) -> LoadResult {
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs_f64(seconds);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (client, texts, url) = (client.clone(), texts.clone(), format!("{base}/v1/label"));
        tasks.push(tokio::spawn(async move {
            let (mut lat, mut docs, mut refused, mut ids) = (Vec::new(), 0usize, 0usize, Vec::new());
            while Instant::now() < deadline {
                let batch = texts.take(per_request);
                let body = json!({"encoder": encoder, "documents": batch.iter().map(|(i, t)| json!({"id": format!("b{i}"), "text": t})).collect::<Vec<_>>()});
                let t = Instant::now();
                let r = client.post(&url).json(&body).send().await.expect("request");
                let ok = r.status().is_success();
                let _ = r.bytes().await;
                if ok {
                    lat.push(t.elapsed().as_secs_f64() * 1000.0);
                    docs += per_request;
                    ids.extend(batch.iter().map(|(i, _)| format!("b{i}")));
                } else {
                    // A well-behaved client honours Retry-After (1 s) after a 503.
                    refused += 1;
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
            (lat, docs, refused, ids)
        }));
    }
    let (mut lat, mut docs, mut refused, mut labeled) = (Vec::new(), 0, 0, Vec::new());
    for t in tasks {
        let (l, d, r, ids) = t.await.unwrap();
        lat.extend(l);
        docs += d;
        refused += r;
        labeled.extend(ids);
    }
    let elapsed = started.elapsed().as_secs_f64();
    lat.sort_by(f64::total_cmp);
    let docs_per_s = docs as f64 / elapsed;
    LoadResult {
        clients,
        docs_per_request: per_request,
        requests: lat.len(),
        refused,
        docs_per_s,
        p50_ms: percentile(&lat, 0.5),
        p95_ms: percentile(&lat, 0.95),
        p99_ms: percentile(&lat, 0.99),
        ratio_to_ceiling: docs_per_s / ceiling,
        labeled,
    }
}

/// Pins every thread of `pid` to `cpus` (`taskset` list syntax); false if that failed (no
/// `taskset`, or fewer cores).
fn pin(pid: u32, cpus: &str) -> bool {
    Command::new("taskset")
        .args(["-a", "-cp", cpus, &pid.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// What the client saw of the cached-GET phase.
struct GetLatency {
    requests: usize,
    failed: usize,
    /// From each request's scheduled start (no coordinated omission), body read.
    p50_ms: f64,
    p99_ms: f64,
    /// From the moment the request was handed to the HTTP client, after the pacing timer
    /// fired: the server's and loopback's share without the timer's lateness.
    p99_from_send_ms: f64,
    /// How late requests started: the pacing thread's lateness plus the wait for a runtime
    /// thread to pick the request up.
    late_p99_ms: f64,
}

/// Open loop: `rate` GETs per second for `seconds`; latency from each scheduled start, and
/// from each actual send. The pacing runs on a thread of its own with `std::thread::sleep`
/// (tens of microseconds late): tokio's timer ticks in whole milliseconds, so with it every
/// request left up to 1 ms after its scheduled start, and that lateness was counted as latency.
async fn cached_gets(base: &str, ids: &[String], rate: f64, seconds: f64) -> GetLatency {
    let client = reqwest::Client::new();
    let n = (rate * seconds) as usize;
    let runtime = tokio::runtime::Handle::current();
    let (base, ids) = (base.to_string(), ids.to_vec());
    let tasks = tokio::task::spawn_blocking(move || {
        let start = Instant::now();
        let mut tasks = Vec::with_capacity(n);
        for k in 0..n {
            let scheduled = start + Duration::from_secs_f64(k as f64 / rate);
            if let Some(wait) = scheduled.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
            let url = format!("{base}/v1/codes/{}?depth={}", ids[k % ids.len()], 1 + k % 3);
            let client = client.clone();
            tasks.push(runtime.spawn(async move {
                let sent = Instant::now();
                // The body is read, as a client would: an unread body also keeps hyper from
                // reusing the connection.
                let ok = match client.get(url).send().await {
                    Ok(r) => r.status() == 200 && r.bytes().await.is_ok(),
                    Err(_) => false,
                };
                let ms = |from: Instant| from.elapsed().as_secs_f64() * 1000.0;
                (
                    ok,
                    ms(scheduled),
                    ms(sent),
                    (sent - scheduled).as_secs_f64() * 1000.0,
                )
            }));
        }
        tasks
    })
    .await
    .unwrap();
    let (mut lat, mut from_send, mut late) = (Vec::new(), Vec::new(), Vec::new());
    let mut failed = 0;
    for t in tasks {
        let (ok, ms, sent_ms, late_ms) = t.await.unwrap();
        failed += usize::from(!ok);
        lat.push(ms);
        from_send.push(sent_ms);
        late.push(late_ms);
    }
    for v in [&mut lat, &mut from_send, &mut late] {
        v.sort_by(f64::total_cmp);
    }
    GetLatency {
        requests: n,
        failed,
        p50_ms: percentile(&lat, 0.5),
        p99_ms: percentile(&lat, 0.99),
        p99_from_send_ms: percentile(&from_send, 0.99),
        late_p99_ms: percentile(&late, 0.99),
    }
}

/// Offers `rate` documents/s as requests of 16 for `seconds`; samples RSS every 5 s.
async fn soak(
    base: &str,
    pid: u32,
    texts: Arc<Texts>,
    rate: f64,
    seconds: f64,
) -> (Vec<(f64, u64)>, usize, usize) {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(120))
        .build()
        .unwrap();
    let per_second = rate / 16.0;
    let start = Instant::now();
    let ok = Arc::new(AtomicUsize::new(0));
    let refused = Arc::new(AtomicUsize::new(0));
    let mut samples = vec![(0.0, rss_kib(pid, "VmRSS:"))];
    let mut next_sample = 5.0;
    let mut k = 0usize;
    let mut tasks = Vec::new();
    while start.elapsed().as_secs_f64() < seconds {
        let scheduled = start + Duration::from_secs_f64(k as f64 / per_second);
        tokio::time::sleep_until(scheduled.into()).await;
        k += 1;
        let body = json!({"documents": texts.take(16).into_iter().map(|(_, t)| json!({"text": t})).collect::<Vec<_>>()});
        let (client, url, ok, refused) = (
            client.clone(),
            format!("{base}/v1/label"),
            ok.clone(),
            refused.clone(),
        );
        tasks.push(tokio::spawn(async move {
            match client.post(url).json(&body).send().await {
                Ok(r) if r.status() == 200 => ok.fetch_add(1, Ordering::Relaxed),
                _ => refused.fetch_add(1, Ordering::Relaxed),
            };
        }));
        let t = start.elapsed().as_secs_f64();
        if t >= next_sample {
            samples.push((t, rss_kib(pid, "VmRSS:")));
            next_sample += 5.0;
        }
    }
    for t in tasks {
        let _ = t.await;
    }
    samples.push((start.elapsed().as_secs_f64(), rss_kib(pid, "VmRSS:")));
    (
        samples,
        ok.load(Ordering::Relaxed),
        refused.load(Ordering::Relaxed),
    )
}

#[tokio::main]
async fn main() {
    let quick = std::env::var("HERMES_BENCH_QUICK").is_ok();
    // A developer's loop on batching: only the ceiling, Python and the 16-client rows.
    let focus = std::env::var("HERMES_BENCH_FOCUS").is_ok();
    let (phase_s, get_s, mut soak_s) = if quick {
        (4.0, 2.0, 20.0)
    } else {
        (12.0, 10.0, 180.0)
    };
    if let Some(s) = std::env::var("HERMES_BENCH_SOAK_S")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        soak_s = s;
    }
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let bin = root.join("target/release/hermes");
    assert!(
        bin.exists(),
        "build first: cargo build --release (make bench does)"
    );
    let texts = Arc::new(Texts::load());
    let machine = format!(
        "{} cores, {}",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0),
        std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(
                |c| c.lines().find(|l| l.starts_with("model name")).map(|l| l
                    .split(':')
                    .nth(1)
                    .unwrap_or("")
                    .trim()
                    .to_string())
            )
            .unwrap_or_default()
    );
    let started = Instant::now();

    eprintln!("bench: in-process ceiling ({phase_s}s per batch size)");
    let model = Arc::new(load_default_bundle());
    let ceilings = tokio::task::spawn_blocking({
        let (model, texts) = (model.clone(), texts.clone());
        move || ceiling(&model, &texts, phase_s)
    })
    .await
    .unwrap();
    let ceil = ceilings.iter().map(|c| c.1).fold(0.0, f64::max);
    let best_batch = ceilings
        .iter()
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .map_or(1, |c| c.0);
    eprintln!("bench: the best batch size with ONNX Runtime's arena and memory pattern on");
    let arena = tokio::task::spawn_blocking({
        let (model, texts) = (model.clone(), texts.clone());
        move || arena_rate(&model, &texts, best_batch, phase_s)
    })
    .await
    .unwrap();
    eprintln!("bench: Python onnxruntime on the same texts ({phase_s}s)");
    let python = python_ort(&root, phase_s);
    eprintln!(
        "bench: hermes label on wiki texts (about {}s)",
        phase_s * 2.0
    );
    let (label, label_static) = if focus {
        ((0, 0.0, 0.0), (0, 0.0, 0.0))
    } else {
        let label = label_throughput(&bin, &texts, (ceil * phase_s * 4.0) as usize, "minilm");
        eprintln!("bench: hermes label --encoder static on the wiki texts");
        (label, label_throughput(&bin, &texts, 20_000, "static"))
    };

    let mut server = Server::start(&bin);
    let client = reqwest::Client::new();
    while client
        .get(format!("{}/readyz", server.base))
        .send()
        .await
        .map(|r| r.status() != 200)
        .unwrap_or(true)
    {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let pid = server.child.id();
    let idle_rss = rss_kib(pid, "VmRSS:");

    let mut load = Vec::new();
    let client_counts: &[usize] = if focus { &[] } else { &[1, 4, 16, 64] };
    for &clients in client_counts {
        for per_request in [1usize, 16] {
            eprintln!("bench: {clients} clients x {per_request} docs ({phase_s}s)");
            load.push(
                closed_loop(
                    &server.base,
                    texts.clone(),
                    clients,
                    per_request,
                    phase_s,
                    ceil,
                    "minilm",
                )
                .await,
            );
        }
    }
    // The target, measured in paired rounds: this machine's speed drifts by several percent
    // from minute to minute (a shared host), more than the gap being measured, so each round
    // times the ceiling (best batch size) and then the service back to back, and the verdict
    // is the median of the rounds' ratios.
    let rounds_each = if quick { 1 } else { 3 };
    let calm = Arc::new(encoder_with(|c| c.spinning = false));
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let per_core = Arc::new(encoder_with(|c| {
        c.sessions = cores;
        c.intra_threads = 1;
        c.spinning = false;
    }));
    let mut rounds = Vec::new();
    for per_request in [1usize, 16] {
        for r in 0..rounds_each {
            eprintln!("bench: paired round {r}, 16 clients x {per_request} docs");
            // The two-thread session's best batch size need not be a single-thread session's:
            // the per-core layout gets its own best of 1, 4 and that size.
            let pc = tokio::task::spawn_blocking({
                let (model, per_core, texts) = (model.clone(), per_core.clone(), texts.clone());
                move || {
                    let mut sizes = vec![1, 4, best_batch];
                    sizes.sort_unstable();
                    sizes.dedup();
                    sizes
                        .into_iter()
                        .map(|b| ceiling_per_core(per_core.clone(), &model, &texts, b, phase_s))
                        .fold(0.0, f64::max)
                }
            })
            .await
            .unwrap();
            let spinning = tokio::task::spawn_blocking({
                let (model, calm, texts) = (model.clone(), calm.clone(), texts.clone());
                move || {
                    let on = ceiling_at(
                        model.encoder.as_ref(),
                        &model.space,
                        &texts,
                        best_batch,
                        phase_s,
                    );
                    let off = ceiling_at(calm.as_ref(), &model.space, &texts, best_batch, phase_s);
                    (on, off)
                }
            })
            .await
            .unwrap();
            let c = spinning.0.max(spinning.1).max(pc);
            let before = batch_docs(&client, &server.base).await;
            let l = closed_loop(
                &server.base,
                texts.clone(),
                16,
                per_request,
                phase_s,
                c,
                "minilm",
            )
            .await;
            let after = batch_docs(&client, &server.base).await;
            rounds.push(Round {
                docs_per_request: per_request,
                ceiling: c,
                spinning,
                per_core: pc,
                service: l.docs_per_s,
                batch: (after.0 - before.0) / (after.1 - before.1).max(1.0),
            });
        }
    }
    let median_ratio = |per_request: usize| {
        let mut r: Vec<f64> = rounds
            .iter()
            .filter(|r| r.docs_per_request == per_request)
            .map(|r| r.service / r.ceiling)
            .collect();
        r.sort_by(f64::total_cmp);
        r[r.len() / 2]
    };
    let paired_line = [1usize, 16]
        .iter()
        .map(|&n| {
            let each: Vec<String> = rounds
                .iter()
                .filter(|r| r.docs_per_request == n)
                .map(|r| {
                    format!(
                        "{:.1}/{:.1} (ceiling spinning {:.1}, not {:.1}, a session per core {:.1}; mean batch {:.1})",
                        r.service, r.ceiling, r.spinning.0, r.spinning.1, r.per_core, r.batch
                    )
                })
                .collect();
            format!(
                "{n} doc(s)/request: median **{:.2} x** (service/ceiling docs/s per round: {})",
                median_ratio(n),
                each.join(", ")
            )
        })
        .collect::<Vec<_>>()
        .join("; ");
    eprintln!("{paired_line}; arena on at batch {best_batch}: {arena:.1} vs ceiling {ceil:.1}");
    if focus {
        return;
    }
    eprintln!("bench: 16 clients x 16 docs, static tier ({phase_s}s)");
    let service_static =
        closed_loop(&server.base, texts.clone(), 16, 16, phase_s, ceil, "static").await;
    let peak_rss_load = rss_kib(pid, "VmHWM:");

    eprintln!("bench: cached GET at 2000/s ({get_s}s)");
    let labeled: Vec<String> = load
        .iter()
        .flat_map(|l| l.labeled.iter().cloned())
        .take(2000)
        .collect();
    let before = get_histogram(&client, &server.base).await;
    let gets = cached_gets(&server.base, &labeled, 2000.0, get_s).await;
    let after = get_histogram(&client, &server.base).await;
    // The same load with the server and the load generator pinned to different cores, so
    // neither waits for the other's time slice: what the client sees of the server alone.
    let pinned = if pin(pid, "0") && pin(std::process::id(), "1") {
        let r = cached_gets(&server.base, &labeled, 2000.0, get_s).await;
        Some(r)
    } else {
        None
    };
    pin(pid, "0-1");
    pin(std::process::id(), "0-1");
    // The server's own view of the same requests (its latency histogram, from routing to
    // response, without the load generator's share of the two cores).
    let server_p99_ms = histogram_quantile(&before, &after, 0.99) * 1000.0;
    let server_under_1ms = share_under(&before, &after, 0.001);

    eprintln!("bench: duplicate path");
    let dup: Vec<Value> = texts
        .take(16)
        .into_iter()
        .map(|(_, t)| json!({"text": t}))
        .collect();
    let body = json!({"documents": dup});
    let t = Instant::now();
    client
        .post(format!("{}/v1/label", server.base))
        .json(&body)
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let encode_docs_s = 16.0 / t.elapsed().as_secs_f64();
    let repeats = 200;
    let t = Instant::now();
    for _ in 0..repeats {
        let r = client
            .post(format!("{}/v1/label", server.base))
            .json(&body)
            .send()
            .await
            .unwrap();
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["results"][0]["cached"], true);
    }
    let cached_docs_s = (16 * repeats) as f64 / t.elapsed().as_secs_f64();

    let saturation = load.iter().map(|l| l.docs_per_s).fold(0.0, f64::max);
    eprintln!(
        "bench: overload soak at 4x saturation ({:.0} docs/s offered, {soak_s}s)",
        4.0 * saturation
    );
    let (samples, soak_ok, soak_refused) =
        soak(&server.base, pid, texts.clone(), 4.0 * saturation, soak_s).await;
    // RSS moves with batch shapes; what matters is the trend after the first third (the first
    // minute of a 3-minute run): the least-squares slope, in MiB per minute.
    let tail: Vec<(f64, f64)> = samples
        .iter()
        .filter(|(t, _)| *t >= soak_s / 3.0)
        .map(|&(t, k)| (t, k as f64 / 1024.0))
        .collect();
    let n = tail.len().max(1) as f64;
    let (mt, mr) = (
        tail.iter().map(|p| p.0).sum::<f64>() / n,
        tail.iter().map(|p| p.1).sum::<f64>() / n,
    );
    let var: f64 = tail.iter().map(|p| (p.0 - mt).powi(2)).sum();
    let slope = if var > 0.0 {
        tail.iter().map(|p| (p.0 - mt) * (p.1 - mr)).sum::<f64>() / var * 60.0
    } else {
        0.0
    };
    let rss_min_after = tail.iter().map(|p| p.1).fold(f64::INFINITY, f64::min);
    let rss_max_after = tail.iter().map(|p| p.1).fold(0.0, f64::max);
    let peak_rss = rss_kib(pid, "VmHWM:");

    let survived = matches!(server.child.try_wait(), Ok(None));
    let still_ready = client
        .get(format!("{}/readyz", server.base))
        .send()
        .await
        .map(|r| r.status() == 200)
        .unwrap_or(false);
    let total_s = started.elapsed().as_secs_f64();

    let at16 = load
        .iter()
        .filter(|l| l.clients == 16)
        .map(|l| l.docs_per_s)
        .fold(0.0, f64::max);
    let by_batch = ceilings
        .iter()
        .map(|(b, d)| format!("batch {b}: {d:.1}"))
        .collect::<Vec<_>>()
        .join(", ");
    let python_line = python.map_or("not run (no .cache/venv)".to_string(), |p| {
        format!("{p:.1} docs/s = {:.2} x the ceiling", p / ceil)
    });
    let arena_ratio = arena / ceil;
    let mut md = format!(
        "# hermes bench ({machine})\n\nIn-process ceiling (encoder + transform + quantizer, length-sorted batches, best batch size): **{ceil:.1} docs/s** ({by_batch}). Python onnxruntime, same encoder.onnx and texts, batches of 32: {python_line}. Batch {best_batch} with ONNX Runtime's CPU arena and memory pattern on (hermes leaves them off): {arena:.1} docs/s = {arena_ratio:.2} x the ceiling.\n\n\
         | clients | docs/request | requests | refused | docs/s | p50 ms | p95 ms | p99 ms | service/ceiling |\n|---|---|---|---|---|---|---|---|---|\n"
    );
    for l in &load {
        md.push_str(&format!(
            "| {} | {} | {} | {} | {:.1} | {:.0} | {:.0} | {:.0} | {:.2} |\n",
            l.clients,
            l.docs_per_request,
            l.requests,
            l.refused,
            l.docs_per_s,
            l.p50_ms,
            l.p95_ms,
            l.p99_ms,
            l.ratio_to_ceiling
        ));
    }
    let per_core_sizes = match best_batch {
        1 | 4 => "1 and 4".to_string(),
        b => format!("1, 4 and {b}"),
    };
    md.push_str(&format!(
        "\nTarget service >= 0.95 x ceiling at 16 clients, in paired rounds (the ceiling: the best of one two-thread session at batch {best_batch} with ONNX Runtime's threads spinning and not spinning, and one single-threaded session per core at its best of batch {per_core_sizes}; then the service, back to back, {rounds_each} rounds each): {paired_line}. In the table above (ceiling measured once, at the start): best {at16:.1} docs/s = {:.2} x.\n",
        at16 / ceil
    ));
    let minilm16 = load
        .iter()
        .filter(|l| l.clients == 16 && l.docs_per_request == 16)
        .map(|l| l.docs_per_s)
        .fold(0.0, f64::max);
    md.push_str(&format!(
        "\nStatic tier, same run: `hermes label --encoder static` on {} texts: {:.0} docs/s steady ({:.0} with start-up) = {:.0} x minilm's `hermes label` (steady rates); the service at 16 clients x 16 docs with `\"encoder\":\"static\"`: {:.0} docs/s = {:.0} x minilm's {:.1} (p50 {:.0} ms).\n",
        label_static.0,
        label_static.2,
        label_static.1,
        label_static.2 / label.2,
        service_static.docs_per_s,
        service_static.docs_per_s / minilm16,
        minilm16,
        service_static.p50_ms,
    ));
    md.push_str(&format!(
        "\n`hermes label` on {} wiki texts in 4 .jsonl files, one task: {:.1} docs/s steady = {:.2} x the ceiling (goal >= 0.95); {:.1} docs/s with its start-up (model loading, batch-size measurement) included.\n",
        label.0,
        label.2,
        label.2 / ceil,
        label.1
    ));
    let pinned_line = pinned.as_ref().map_or(
        "Pinning the server and the client to different cores failed (no taskset?)".to_string(),
        |p| {
            format!(
                "Again with the server pinned to core 0 and the load generator to core 1 (`taskset`): {} requests, {} failed, p50 {:.2} ms, **p99 {:.2} ms**, p99 from the send {:.2} ms.",
                p.requests, p.failed, p.p50_ms, p.p99_ms, p.p99_from_send_ms
            )
        },
    );
    md.push_str(&format!(
        "\nCached `GET /v1/codes/{{id}}` at 2,000 requests/s for {get_s:.0} s: {} requests, {} failed, p50 {:.2} ms, **p99 {:.2} ms** (goal p99 <= 1 ms), measured by the client on the same 2 cores from each request's scheduled start. Requests started up to {:.2} ms after their scheduled time (p99: pacing thread and runtime pick-up); from the moment each request was sent, p99 {:.2} ms. The server's own histogram: {:.1}% answered within 1 ms, p99 bucket <= {server_p99_ms:.1} ms. {pinned_line}\n\n\
         Duplicate path (16 documents, content cache): {cached_docs_s:.0} docs/s vs {encode_docs_s:.1} docs/s encoding = {:.0}x (target >= 20x).\n\n\
         RSS: idle {:.0} MiB, peak under closed-loop load {:.0} MiB, peak overall {:.0} MiB.\n\
         Overload soak, {:.0} docs/s offered (4x saturation) for {soak_s:.0} s: {soak_ok} requests answered 200, {soak_refused} refused; after the first {:.0} s RSS stayed within {:.0}..{:.0} MiB, trend {slope:+.1} MiB/min.\n\n\
         Server pid {pid} survived the whole run: {survived}; still ready: {still_ready}. Bench took {total_s:.0} s.\n",
        gets.requests,
        gets.failed,
        gets.p50_ms,
        gets.p99_ms,
        gets.late_p99_ms,
        gets.p99_from_send_ms,
        server_under_1ms * 100.0,
        cached_docs_s / encode_docs_s,
        idle_rss as f64 / 1024.0,
        peak_rss_load as f64 / 1024.0,
        peak_rss as f64 / 1024.0,
        4.0 * saturation,
        soak_s / 3.0,
        rss_min_after,
        rss_max_after,
    ));
    let report = json!({
        "machine": machine,
        "ceiling_docs_per_s": ceil,
        "ceiling_by_batch": ceilings,
        "arena_on_best_batch_docs_per_s": arena,
        "python_onnxruntime_docs_per_s": python,
        "label": {"docs": label.0, "docs_per_s_with_startup": label.1, "docs_per_s_steady": label.2, "ratio": label.2 / ceil},
        "label_static": {"docs": label_static.0, "docs_per_s_with_startup": label_static.1, "docs_per_s_steady": label_static.2, "vs_minilm": label_static.2 / label.2},
        "service_static_16x16": {"docs_per_s": service_static.docs_per_s, "p50_ms": service_static.p50_ms},
        "load": load,
        "paired_16_clients": rounds.iter().map(|r| json!({"docs_per_request": r.docs_per_request, "mean_batch_docs": r.batch, "ceiling": r.ceiling, "ceiling_spinning": r.spinning.0, "ceiling_not_spinning": r.spinning.1, "ceiling_session_per_core": r.per_core, "service": r.service, "ratio": r.service / r.ceiling})).collect::<Vec<_>>(),
        "paired_median_ratio": {"1": median_ratio(1), "16": median_ratio(16)},
        "cached_get": {"rate": 2000, "seconds": get_s, "requests": gets.requests, "failed": gets.failed, "p50_ms": gets.p50_ms, "p99_ms": gets.p99_ms, "p99_from_send_ms": gets.p99_from_send_ms, "timer_late_p99_ms": gets.late_p99_ms, "server_share_under_1ms": server_under_1ms, "pinned_p99_ms": pinned.as_ref().map(|p| p.p99_ms), "pinned_p99_from_send_ms": pinned.as_ref().map(|p| p.p99_from_send_ms), "server_p99_bucket_ms": server_p99_ms},
        "duplicate": {"encode_docs_per_s": encode_docs_s, "cached_docs_per_s": cached_docs_s, "ratio": cached_docs_s / encode_docs_s},
        "rss_kib": {"idle": idle_rss, "peak_load": peak_rss_load, "peak": peak_rss, "soak_samples": samples},
        "soak": {"offered_docs_per_s": 4.0 * saturation, "seconds": soak_s, "ok": soak_ok, "refused": soak_refused, "rss_trend_mib_per_min": slope},
        "server_survived": survived,
        "still_ready": still_ready,
        "seconds": total_s,
    });
    let out = root.join("target/bench");
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(out.join("report.md"), &md).unwrap();
    std::fs::write(
        out.join("report.json"),
        serde_json::to_string_pretty(&report).unwrap(),
    )
    .unwrap();
    println!("{md}");
    assert!(
        survived && still_ready,
        "the server did not survive the bench"
    );
}
