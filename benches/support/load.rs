//! The load generator: wiki texts made unique, the request shapes, and the clients (closed
//! loop, open loop, paced soak) with their latencies.
//!
//! Why one of our own: every request needs a different body (distinct texts, so the content
//! cache cannot flatter the figures) and the closed loop needs per-client documents per
//! request; `oha` and `wrk` send one fixed body without scripting. Every text gets a unique
//! suffix, so no phase is served from the content cache by accident.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use rand::SeedableRng;
use rand::seq::SliceRandom;
use serde_json::{Value, json};

use super::{percentile, rss_kib, sorted, wiki_jsonl};

/// The wiki texts in a fixed order, handed out once each: text `i` is the corpus' text
/// `i mod len` with ` [i]` appended, so that no two requests carry the same text.
pub struct Texts {
    base: Vec<String>,
    next: AtomicUsize,
}

impl Texts {
    /// In corpus order.
    pub fn wiki() -> Self {
        let base = hermes::corpus::read_jsonl(&wiki_jsonl(), "text", None)
            .expect("run `make setup`")
            .into_iter()
            .map(|d| d.text)
            .collect();
        Self {
            base,
            next: AtomicUsize::new(0),
        }
    }

    /// Shuffled with a fixed seed (the corpus is grouped by topic).
    pub fn wiki_shuffled(seed: u64) -> Self {
        let mut texts = Self::wiki();
        texts
            .base
            .shuffle(&mut rand_chacha::ChaCha8Rng::seed_from_u64(seed));
        texts
    }

    /// The next `n` texts of the fixed order, each made unique by a counter suffix.
    pub fn take(&self, n: usize) -> Vec<(usize, String)> {
        let start = self.next.fetch_add(n, Ordering::Relaxed);
        (start..start + n)
            .map(|i| (i, format!("{} [{i}]", self.base[i % self.base.len()])))
            .collect()
    }
}

/// What one `POST /v1/label` carries.
#[derive(Clone, Copy)]
pub struct Shape {
    /// Documents per request.
    pub docs: usize,
    /// The `"encoder"` field; absent when `None` (the server's default).
    pub encoder: Option<&'static str>,
    /// Documents get ids `<prefix><i>` (so they can be looked up later); none when `None`.
    pub ids: Option<&'static str>,
}

impl Shape {
    pub fn body(&self, batch: &[(usize, String)]) -> Value {
        let documents: Vec<Value> = batch
            .iter()
            .map(|(i, t)| match self.ids {
                Some(prefix) => json!({"id": format!("{prefix}{i}"), "text": t}),
                None => json!({"text": t}),
            })
            .collect();
        match self.encoder {
            Some(encoder) => json!({"encoder": encoder, "documents": documents}),
            None => json!({"documents": documents}),
        }
    }

    fn ids(&self, batch: &[(usize, String)]) -> Vec<String> {
        self.ids.map_or_else(Vec::new, |prefix| {
            batch.iter().map(|(i, _)| format!("{prefix}{i}")).collect()
        })
    }
}

/// What the clients of a closed loop saw.
pub struct ClosedLoop {
    /// Milliseconds per answered request, sorted.
    pub latencies_ms: Vec<f64>,
    /// Documents labeled.
    pub docs: usize,
    /// Requests refused (503) or failed.
    pub refused: usize,
    /// Ids of the documents labeled (when the shape has ids).
    pub labeled: Vec<String>,
    pub seconds: f64,
}

impl ClosedLoop {
    pub fn docs_per_s(&self) -> f64 {
        self.docs as f64 / self.seconds
    }

    pub fn percentile_ms(&self, p: f64) -> f64 {
        percentile(&self.latencies_ms, p)
    }
}

/// Closed loop: `clients` clients each post a request of `shape`, wait for the answer, and post
/// the next, for `seconds`. A refused request costs its client 1 s (a well-behaved client
/// honours Retry-After).
pub async fn closed_loop(
    client: &reqwest::Client,
    base: &str,
    texts: &Arc<Texts>,
    clients: usize,
    shape: Shape,
    seconds: f64,
) -> ClosedLoop {
    let deadline = Instant::now() + Duration::from_secs_f64(seconds);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (client, texts, url) = (client.clone(), texts.clone(), format!("{base}/v1/label"));
        tasks.push(tokio::spawn(async move {
            let (mut lat, mut docs, mut refused, mut ids) =
                (Vec::new(), 0usize, 0usize, Vec::new());
            while Instant::now() < deadline {
                let batch = texts.take(shape.docs);
                let body = shape.body(&batch);
                let t = Instant::now();
                let r = client.post(&url).json(&body).send().await.expect("request");
                let ok = r.status().is_success();
                let _ = r.bytes().await;
                if ok {
                    lat.push(t.elapsed().as_secs_f64() * 1000.0);
                    docs += shape.docs;
                    ids.extend(shape.ids(&batch));
                } else {
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
    ClosedLoop {
        seconds: started.elapsed().as_secs_f64(),
        latencies_ms: sorted(lat),
        docs,
        refused,
        labeled,
    }
}

/// Closed loop of `GET /v1/codes/{id}` over `ids`: `clients` clients, `total` requests in all,
/// every one must answer 200. Returns requests per second and the sorted latencies (ms).
pub async fn closed_gets(
    client: &reqwest::Client,
    base: &str,
    ids: &[String],
    clients: usize,
    total: usize,
) -> (f64, Vec<f64>) {
    let ids = Arc::new(ids.to_vec());
    let counter = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (client, ids, counter, base) = (
            client.clone(),
            ids.clone(),
            counter.clone(),
            base.to_string(),
        );
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            loop {
                let k = counter.fetch_add(1, Ordering::Relaxed);
                if k >= total || ids.is_empty() {
                    break lat;
                }
                let t = Instant::now();
                let r = client
                    .get(format!("{base}/v1/codes/{}", ids[k % ids.len()]))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 200);
                let _ = r.bytes().await;
                lat.push(t.elapsed().as_secs_f64() * 1000.0);
            }
        }));
    }
    let mut lat = Vec::new();
    for t in tasks {
        lat.extend(t.await.unwrap());
    }
    let per_s = lat.len() as f64 / started.elapsed().as_secs_f64();
    (per_s, sorted(lat))
}

/// What the client saw of an open loop of cached GETs.
pub struct GetLatency {
    pub requests: usize,
    pub failed: usize,
    /// From each request's scheduled start (no coordinated omission), body read.
    pub p50_ms: f64,
    pub p99_ms: f64,
    /// From the moment the request was handed to the HTTP client, after the pacing timer
    /// fired: the server's and loopback's share without the timer's lateness.
    pub p99_from_send_ms: f64,
    /// How late requests started: the pacing thread's lateness plus the wait for a runtime
    /// thread to pick the request up.
    pub late_p99_ms: f64,
}

/// Open loop: `rate` `GET /v1/codes/{id}?depth=1..3` per second for `seconds`; latency from
/// each scheduled start, and from each actual send. The pacing runs on a thread of its own with
/// `std::thread::sleep` (tens of microseconds late): tokio's timer ticks in whole milliseconds,
/// so with it every request left up to 1 ms after its scheduled start, and that lateness was
/// counted as latency.
pub async fn open_loop_gets(base: &str, ids: &[String], rate: f64, seconds: f64) -> GetLatency {
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
    let (lat, from_send, late) = (sorted(lat), sorted(from_send), sorted(late));
    GetLatency {
        requests: n,
        failed,
        p50_ms: percentile(&lat, 0.5),
        p99_ms: percentile(&lat, 0.99),
        p99_from_send_ms: percentile(&from_send, 0.99),
        late_p99_ms: percentile(&late, 0.99),
    }
}

/// What a soak saw: RSS samples `(seconds, KiB)` and the requests answered 200 or not.
pub struct Soak {
    pub rss_samples: Vec<(f64, u64)>,
    pub ok: usize,
    pub refused: usize,
}

/// Offers `rate` documents/s as requests of 16 (no ids, default encoder) for `seconds`,
/// paced, whatever the answers; samples the RSS of `pid` every 5 s.
pub async fn soak(base: &str, pid: u32, texts: &Arc<Texts>, rate: f64, seconds: f64) -> Soak {
    let shape = Shape {
        docs: 16,
        encoder: None,
        ids: None,
    };
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(120))
        .build()
        .unwrap();
    let per_second = rate / shape.docs as f64;
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
        let body = shape.body(&texts.take(shape.docs));
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
    Soak {
        rss_samples: samples,
        ok: ok.load(Ordering::Relaxed),
        refused: refused.load(Ordering::Relaxed),
    }
}
