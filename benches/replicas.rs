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
//! Each setting runs `HERMES_BENCH_RUNS` (3) times, each on a fresh stack; the report gives
//! medians, and the 2-over-1 ratio comes from the same bench run.
//! Writes `target/bench/replicas.md`. Short runs: `HERMES_BENCH_QUICK=1`.

mod support;

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use support::load::{self, Shape, Texts};
use support::{Proc, Server, free_port, wait_ready};

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
    let child = Proc::spawn(
        Command::new("haproxy")
            .arg("-db")
            .arg("-f")
            .arg(&path)
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
        "haproxy (run scripts/setup.sh --test)",
    );
    (child, port)
}

/// redis-server with AOF on a free loopback port, its files in `dir`.
fn start_redis(dir: &Path) -> (Proc, u16) {
    let port = free_port();
    let child = Proc::spawn(
        Command::new("redis-server")
            .args([
                "--bind",
                "127.0.0.1",
                "--port",
                &port.to_string(),
                "--appendonly",
                "yes",
                "--save",
                "",
            ])
            .arg("--dir")
            .arg(dir)
            .stdout(Stdio::null()),
        "redis-server (run scripts/setup.sh --test)",
    );
    (child, port)
}

struct Outcome {
    replicas: usize,
    docs_per_s: f64,
    labeled: usize,
    found: usize,
    gets_per_s: f64,
    get_p99_ms: f64,
}

impl Outcome {
    /// One setting's runs folded: the rates and the p99 are medians (each run starts a fresh
    /// Redis, replicas and haproxy), the ids labeled and found are summed over the runs, so a
    /// lost id in any run shows.
    fn median(samples: Vec<Outcome>) -> Outcome {
        let of = |f: fn(&Outcome) -> f64| support::median(samples.iter().map(f).collect());
        Outcome {
            replicas: samples[0].replicas,
            docs_per_s: of(|o| o.docs_per_s),
            labeled: samples.iter().map(|o| o.labeled).sum(),
            found: samples.iter().map(|o| o.found).sum(),
            gets_per_s: of(|o| o.gets_per_s),
            get_p99_ms: of(|o| o.get_p99_ms),
        }
    }
}

/// One setting: redis, `replicas` replicas, haproxy; 16 clients label through haproxy for
/// `seconds`, then every id labeled is looked up, then 2,000 GETs measure retrieval.
async fn run(texts: &Arc<Texts>, replicas: usize, seconds: f64) -> Outcome {
    let dir = tempfile::tempdir().unwrap();
    let (_redis, redis_port) = start_redis(dir.path());
    let store = format!("redis://127.0.0.1:{redis_port}/0");
    std::thread::sleep(Duration::from_millis(300));
    let mut servers = Vec::new();
    for _ in 0..replicas {
        servers.push(Server::start(&["--store", &store]).await);
    }
    let ports: Vec<u16> = servers.iter().map(Server::port).collect();
    let (_lb, lb_port) = start_haproxy(dir.path(), &ports);
    let base = format!("http://127.0.0.1:{lb_port}");
    wait_ready(&format!("{base}/readyz")).await;
    // Let haproxy's health checks mark every replica up.
    tokio::time::sleep(Duration::from_millis(1500)).await;

    let client = reqwest::Client::new();
    let shape = Shape {
        docs: 1,
        encoder: None,
        ids: Some("r"),
    };
    let labeling = load::closed_loop(&client, &base, texts, 16, shape, seconds).await;
    let labeled = labeling.labeled;
    let docs_per_s = labeled.len() as f64 / labeling.seconds;
    let found = lookup(&client, &base, &labeled).await;
    // Retrieval: 8 closed-loop clients, 2,000 GETs through haproxy.
    let (gets_per_s, lat) = load::closed_gets(&client, &base, &labeled, 8, 2000).await;
    drop(servers);
    Outcome {
        replicas,
        docs_per_s,
        labeled: labeled.len(),
        found,
        gets_per_s,
        get_p99_ms: support::percentile(&lat, 0.99),
    }
}

/// How many of `ids` `POST /v1/codes/lookup` finds, 1,000 ids a request.
async fn lookup(client: &reqwest::Client, base: &str, ids: &[String]) -> usize {
    let mut found = 0;
    for chunk in ids.chunks(1000) {
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
    found
}

#[tokio::main]
async fn main() {
    let seconds = if support::quick() { 6.0 } else { 20.0 };
    // In corpus order; the ids continue from one setting to the next.
    let texts = Arc::new(Texts::wiki());
    let runs = support::runs();
    let mut rows = Vec::new();
    for replicas in [1, 2] {
        let mut samples = Vec::new();
        for i in 0..runs {
            eprintln!(
                "bench: {replicas} replica(s) behind haproxy ({seconds}s), run {}/{runs}",
                i + 1
            );
            samples.push(run(&texts, replicas, seconds).await);
        }
        rows.push(Outcome::median(samples));
    }
    let md = report(&rows, runs);
    support::write_report("replicas.md", &md);
    println!("{md}");
    assert!(rows.iter().all(|o| o.found == o.labeled), "ids were lost");
}

fn report(rows: &[Outcome], runs: usize) -> String {
    let mut md = format!(
        "# hermes replicas behind haproxy, sharing Redis\n\n16 clients, 1 document per request, through haproxy (round robin); \
         each setting run {runs} times on a fresh stack: rates and p99 are medians, ids are summed over the runs.\n\n",
    );
    md.push_str(&format!("CPU: {}\n\n", support::cpu_line()));
    md.push_str(
        "| replicas | docs/s (median) | ids labeled | ids found through haproxy | GET/s (8 clients, median) | GET p99 ms (median) |\n|---|---|---|---|---|---|\n",
    );
    for o in rows {
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
    md
}
