//! `make bench` (second part): 1 replica against 2 behind haproxy, sharing Redis.
//!
//! For each setting: a redis-server (AOF) on loopback, N `hermes serve --store` replicas,
//! haproxy round-robin in front (health-checked on /readyz); 16 closed-loop clients post
//! single-document requests with ids through haproxy for a fixed time, then every id labeled
//! is looked up through haproxy (each lookup lands on either replica) and a closed loop of
//! `GET /v1/codes/{id}` measures retrieval. On 2 cores, 2 replicas cannot be faster than 1
//! (they share the same cores, and each runs ONNX Runtime on both); what must hold is that no
//! id is lost.
//!
//! Needs `redis-server` and `haproxy` (Debian; `scripts/setup.sh --test` installs them).
//! Writes `target/bench/replicas.md`. Short runs: `HERMES_BENCH_QUICK=1`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn wait_ready(url: &str) {
    let c = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    while c
        .get(url)
        .send()
        .await
        .map(|r| r.status() != 200)
        .unwrap_or(true)
    {
        assert!(Instant::now() < deadline, "{url} not ready");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn start_replica(bin: &Path, store: &str) -> (Proc, u16) {
    let port = free_port();
    let child = Command::new(bin)
        .args([
            "serve",
            "--port",
            &port.to_string(),
            "--store",
            store,
            "--log-format",
            "json",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start hermes serve");
    (Proc(child), port)
}

fn start_haproxy(dir: &Path, ports: &[u16]) -> (Proc, u16) {
    let port = free_port();
    let servers: String = ports
        .iter()
        .enumerate()
        .map(|(i, p)| format!("    server r{i} 127.0.0.1:{p} check inter 1s\n"))
        .collect();
    let cfg = format!(
        "global\n    maxconn 4096\ndefaults\n    mode http\n    timeout connect 2s\n    timeout client 120s\n    timeout server 120s\n\
         frontend fe\n    bind 127.0.0.1:{port}\n    default_backend be\n\
         backend be\n    balance roundrobin\n    option httpchk GET /readyz\n{servers}"
    );
    let path = dir.join(format!("haproxy-{port}.cfg"));
    std::fs::write(&path, cfg).unwrap();
    let child = Command::new("haproxy")
        .arg("-db")
        .arg("-f")
        .arg(&path)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("haproxy (run scripts/setup.sh --test)");
    (Proc(child), port)
}

struct Outcome {
    replicas: usize,
    docs_per_s: f64,
    labeled: usize,
    found: usize,
    gets_per_s: f64,
    get_p99_ms: f64,
}

async fn run(
    bin: &Path,
    texts: Arc<Vec<String>>,
    replicas: usize,
    seconds: f64,
    next: Arc<AtomicUsize>,
) -> Outcome {
    let dir = tempfile::tempdir().unwrap();
    let redis_port = free_port();
    let _redis = Proc(
        Command::new("redis-server")
            .args([
                "--bind",
                "127.0.0.1",
                "--port",
                &redis_port.to_string(),
                "--appendonly",
                "yes",
                "--save",
                "",
            ])
            .arg("--dir")
            .arg(dir.path())
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server (run scripts/setup.sh --test)"),
    );
    let store = format!("redis://127.0.0.1:{redis_port}/0");
    std::thread::sleep(Duration::from_millis(300));
    let mut procs = Vec::new();
    let mut ports = Vec::new();
    for _ in 0..replicas {
        let (p, port) = start_replica(bin, &store);
        wait_ready(&format!("http://127.0.0.1:{port}/readyz")).await;
        procs.push(p);
        ports.push(port);
    }
    let (_lb, lb_port) = start_haproxy(dir.path(), &ports);
    let base = format!("http://127.0.0.1:{lb_port}");
    wait_ready(&format!("{base}/readyz")).await;
    // Let haproxy's health checks mark every replica up.
    tokio::time::sleep(Duration::from_millis(1500)).await;

    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs_f64(seconds);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let (client, texts, next, url) = (
            client.clone(),
            texts.clone(),
            next.clone(),
            format!("{base}/v1/label"),
        );
        tasks.push(tokio::spawn(async move {
            let mut ids = Vec::new();
            while Instant::now() < deadline {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let id = format!("r{i}");
                let body = json!({"documents": [{"id": id, "text": format!("{} [{i}]", texts[i % texts.len()])}]});
                let r = client.post(&url).json(&body).send().await.expect("request");
                if r.status() == 200 {
                    ids.push(id);
                } else {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                let _ = r.bytes().await;
            }
            ids
        }));
    }
    let mut labeled = Vec::new();
    for t in tasks {
        labeled.extend(t.await.unwrap());
    }
    let docs_per_s = labeled.len() as f64 / started.elapsed().as_secs_f64();

    let mut found = 0;
    for chunk in labeled.chunks(1000) {
        let v: Value = client
            .post(format!("{base}/v1/codes/lookup"))
            .json(&json!({ "ids": chunk }))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        found += v["results"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| !r.is_null())
            .count();
    }
    // Retrieval: 8 closed-loop clients, 2,000 GETs through haproxy.
    let ids = Arc::new(labeled.clone());
    let counter = Arc::new(AtomicUsize::new(0));
    let t0 = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let (client, ids, counter, base) =
            (client.clone(), ids.clone(), counter.clone(), base.clone());
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            loop {
                let k = counter.fetch_add(1, Ordering::Relaxed);
                if k >= 2000 || ids.is_empty() {
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
    let gets_per_s = lat.len() as f64 / t0.elapsed().as_secs_f64();
    lat.sort_by(f64::total_cmp);
    let get_p99_ms = lat
        .get(((lat.len() as f64 - 1.0) * 0.99) as usize)
        .copied()
        .unwrap_or(f64::NAN);
    drop(procs);
    Outcome {
        replicas,
        docs_per_s,
        labeled: labeled.len(),
        found,
        gets_per_s,
        get_p99_ms,
    }
}

#[tokio::main]
async fn main() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let bin = root.join("target/release/hermes");
    let seconds = if std::env::var("HERMES_BENCH_QUICK").is_ok() {
        6.0
    } else {
        20.0
    };
    let texts: Vec<String> =
        hermes::corpus::read_jsonl(&root.join(".cache/data/wiki.jsonl"), "text", None)
            .expect("run `make setup`")
            .into_iter()
            .map(|d| d.text)
            .collect();
    let texts = Arc::new(texts);
    let next = Arc::new(AtomicUsize::new(0));
    let mut rows = Vec::new();
    for replicas in [1, 2] {
        eprintln!("bench: {replicas} replica(s) behind haproxy ({seconds}s)");
        rows.push(run(&bin, texts.clone(), replicas, seconds, next.clone()).await);
    }
    let mut md = String::from(
        "# hermes replicas behind haproxy, sharing Redis\n\n16 clients, 1 document per request, through haproxy (round robin).\n\n\
         | replicas | docs/s | ids labeled | ids found through haproxy | GET/s (8 clients) | GET p99 ms |\n|---|---|---|---|---|---|\n",
    );
    for o in &rows {
        md.push_str(&format!(
            "| {} | {:.1} | {} | {} | {:.0} | {:.2} |\n",
            o.replicas, o.docs_per_s, o.labeled, o.found, o.gets_per_s, o.get_p99_ms
        ));
    }
    md.push_str(&format!(
        "\n2 replicas / 1: {:.2} x. On 2 cores both replicas share the same cores (each runs ONNX Runtime on both), so a second replica adds contention, not capacity; every labeled id was found: {}.\n",
        rows[1].docs_per_s / rows[0].docs_per_s,
        rows.iter().all(|o| o.found == o.labeled)
    ));
    let out = root.join("target/bench");
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(out.join("replicas.md"), &md).unwrap();
    println!("{md}");
    assert!(rows.iter().all(|o| o.found == o.labeled), "ids were lost");
}
