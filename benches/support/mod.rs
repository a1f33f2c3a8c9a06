//! What the benches share: paths and knobs, the machine line every report starts from (CPU
//! model and its SIMD level), child processes killed on drop, `hermes serve` started and
//! ready, the `/metrics` page read, RSS, percentiles, and the report files in `target/bench/`.
//! The load generator (clients, request shapes, latencies) is [`load`].
//!
//! Each bench includes this with `mod support;`; not every bench uses every helper.
#![allow(dead_code)]

pub mod load;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

// ---- paths and knobs ----

/// The repository root (where `hermes` runs, and what `models/`, `.cache/` are under).
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The release `hermes` binary cargo builds for the benches.
pub fn hermes_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_hermes"))
}

/// The wiki corpus `make setup` downloads.
pub fn wiki_jsonl() -> PathBuf {
    root().join(".cache/data/wiki.jsonl")
}

/// The default bundle.
pub fn default_bundle_dir() -> PathBuf {
    root().join("models/minilm-wiki")
}

/// `HERMES_BENCH_QUICK=1`: short phases, for a smoke test.
pub fn quick() -> bool {
    std::env::var("HERMES_BENCH_QUICK").is_ok_and(|v| v == "1")
}

/// `HERMES_BENCH_RUNS`: how many timed runs a median is taken over (default 3).
pub fn runs() -> usize {
    std::env::var("HERMES_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3)
}

// ---- the machine ----

/// The CPU's model name from `/proc/cpuinfo`.
pub fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            let line = s.lines().find(|l| l.starts_with("model name"))?;
            Some(line[line.find(':')? + 1..].trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".to_string())
}

/// The widest SIMD the encoder's and the quantizer's kernels can use: `AVX-512`, `AVX2` or
/// `no AVX2`. Figures from the two differ by tens of percent, so every report names it.
pub fn simd() -> &'static str {
    let flags = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    if flags.contains(" avx512f") {
        "AVX-512"
    } else if flags.contains(" avx2") {
        "AVX2"
    } else {
        "no AVX2"
    }
}

pub fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// The `/proc/cpuinfo` flags that move hermes' figures: the SIMD the encoder and quantizer
/// use (`avx2`, `fma`, `avx512f`, `avx512bw`, `avx512_vnni`, `avx512_bf16`, `amx_*`) and
/// `sha_ni`, which the key hash of `mix` runs on.
pub fn cpu_flags() -> String {
    const WATCHED: [&str; 9] = [
        "avx2",
        "fma",
        "avx512f",
        "avx512bw",
        "avx512_vnni",
        "avx512_bf16",
        "amx_tile",
        "amx_int8",
        "sha_ni",
    ];
    let info = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let have: Vec<&str> = info
        .lines()
        .find(|l| l.starts_with("flags"))
        .map(|l| l.split_whitespace().collect())
        .unwrap_or_default();
    let on: Vec<&str> = WATCHED
        .iter()
        .copied()
        .filter(|f| have.contains(f))
        .collect();
    if on.is_empty() {
        "none of avx2/fma/avx512/sha_ni".to_string()
    } else {
        on.join(" ")
    }
}

/// `<model> (<SIMD>; flags ...), <n> cores`: the line a report's figures are read against.
pub fn cpu_line() -> String {
    format!(
        "{} ({}; flags: {}), {} cores",
        cpu_model(),
        simd(),
        cpu_flags(),
        cores()
    )
}

// ---- processes ----

/// A child process killed (and reaped) when dropped: no bench leaves a server behind, even
/// when it panics half-way.
pub struct Proc(pub Child);

impl Proc {
    pub fn spawn(cmd: &mut Command, what: &str) -> Self {
        Self(cmd.spawn().unwrap_or_else(|e| panic!("start {what}: {e}")))
    }

    pub fn id(&self) -> u32 {
        self.0.id()
    }

    /// Still running?
    pub fn alive(&mut self) -> bool {
        matches!(self.0.try_wait(), Ok(None))
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A loopback port nobody listens on now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Polls `url` until it answers 200 (at most 120 s).
pub async fn wait_ready(url: &str) {
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    while client
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

/// `hermes serve` (release) on a free loopback port, JSON logs at `warn` discarded; ready
/// (`/readyz` 200) once [`Server::start`] returns; killed when dropped.
pub struct Server {
    pub proc: Proc,
    /// `http://127.0.0.1:<port>`.
    pub base: String,
}

impl Server {
    /// Starts `hermes serve --port 0` with `extra` flags; the port is read from the line the
    /// server prints first.
    pub async fn start(extra: &[&str]) -> Self {
        let mut proc = Proc::spawn(
            Command::new(hermes_bin())
                .args(["serve", "--port", "0", "--log-format", "json"])
                .args(extra)
                .current_dir(root())
                .env("RUST_LOG", "warn")
                .stdout(Stdio::piped())
                .stderr(Stdio::null()),
            "hermes serve (build first: cargo build --release)",
        );
        let mut line = String::new();
        BufReader::new(proc.0.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let base = line
            .trim()
            .strip_prefix("hermes listening on ")
            .unwrap_or_else(|| panic!("hermes serve printed {line:?} first"))
            .to_string();
        wait_ready(&format!("{base}/readyz")).await;
        Self { proc, base }
    }

    pub fn pid(&self) -> u32 {
        self.proc.id()
    }

    pub fn port(&self) -> u16 {
        self.base.rsplit(':').next().unwrap().parse().unwrap()
    }
}

/// Runs `hermes args` to the end; returns its wall time in seconds and its own peak RSS in
/// MiB (from `wait4`, so the figure is the child's, not the bench's).
pub fn run_peak_rss(args: &[&str]) -> (f64, f64) {
    let u = run_usage(args);
    (u.wall_s, u.peak_rss_mib)
}

/// One `hermes label --encoder static` of `input` into a fresh `out` (the default bundle, then
/// `extra` flags): what it took.
pub fn label_static(input: &Path, out: &Path, extra: &[&str]) -> Usage {
    let _ = std::fs::remove_dir_all(out);
    let bundle = default_bundle_dir();
    let mut args = vec![
        "label",
        "--bundle",
        bundle.to_str().unwrap(),
        "--input",
        input.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--encoder",
        "static",
    ];
    args.extend_from_slice(extra);
    run_usage(&args)
}

/// What one run of `hermes` took, from `wait4` (the child's own figures).
#[derive(Debug, Clone, Copy)]
pub struct Usage {
    pub wall_s: f64,
    pub peak_rss_mib: f64,
    /// User plus system CPU seconds: what a run costs on a machine shared with other work,
    /// where wall time depends on the neighbours.
    pub cpu_s: f64,
}

/// Runs `hermes args` to the end; its wall time, peak RSS and CPU time.
pub fn run_usage(args: &[&str]) -> Usage {
    let started = Instant::now();
    // Reaped by wait4 below, which also gives the child's own peak RSS.
    #[allow(clippy::zombie_processes)]
    let child = Command::new(hermes_bin())
        .args(args)
        .stderr(Stdio::null())
        .spawn()
        .expect("run hermes");
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: an all-zero rusage is a valid value for wait4 to fill.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: pid is our own unwaited child; status and usage are valid for writes.
    let got = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    assert_eq!(got, pid, "wait4");
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "hermes {args:?} failed"
    );
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    Usage {
        wall_s: started.elapsed().as_secs_f64(),
        peak_rss_mib: usage.ru_maxrss as f64 / 1024.0,
        cpu_s: secs(usage.ru_utime) + secs(usage.ru_stime),
    }
}

/// A `/proc/<pid>/status` field in KiB: `VmRSS:` (now) or `VmHWM:` (peak); 0 if unreadable.
pub fn rss_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

// ---- /metrics ----

/// The server's `/metrics` page.
pub async fn metrics_text(client: &reqwest::Client, base: &str) -> String {
    client
        .get(format!("{base}/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("metrics body")
}

/// The value of the first sample of `name` (exactly that name, labels or not); 0 if absent.
pub fn metric_value(text: &str, name: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with([' ', '{']))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or(0.0)
}

/// Cumulative buckets `(le, count)` of histogram `name` (`…_bucket` lines) whose labels
/// contain every one of `labels` (`key="value"`), in order of `le`.
pub fn histogram(text: &str, name: &str, labels: &[&str]) -> Vec<(f64, f64)> {
    let bucket = format!("{name}_bucket");
    let mut buckets: Vec<(f64, f64)> = text
        .lines()
        .filter(|l| l.starts_with(&bucket) && labels.iter().all(|m| l.contains(m)))
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

/// What a histogram counted between two reads of it.
fn histogram_delta(before: &[(f64, f64)], after: &[(f64, f64)]) -> Vec<(f64, f64)> {
    after
        .iter()
        .map(|&(le, n)| {
            let was = before.iter().find(|b| b.0 == le).map_or(0.0, |b| b.1);
            (le, n - was)
        })
        .collect()
}

/// The bucket bound (seconds) under which `q` of the observations between two reads fell.
pub fn histogram_quantile(before: &[(f64, f64)], after: &[(f64, f64)], q: f64) -> f64 {
    let d = histogram_delta(before, after);
    let total = d.last().map_or(0.0, |b| b.1);
    d.iter()
        .find(|b| total > 0.0 && b.1 >= q * total)
        .map_or(f64::NAN, |b| b.0)
}

/// Share of the observations between two reads that fell within bucket bound `bound`.
pub fn histogram_share_under(before: &[(f64, f64)], after: &[(f64, f64)], bound: f64) -> f64 {
    let d = histogram_delta(before, after);
    let total = d.last().map_or(0.0, |b| b.1);
    d.iter()
        .find(|b| b.0 == bound)
        .map_or(f64::NAN, |b| b.1 / total)
}

// ---- statistics ----

/// The `p` quantile of sorted values (nearest rank, rounded); NaN when there are none.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// Sorts `v` and returns its middle value (the upper one of an even count); NaN when empty.
pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

/// Sorts latencies (or any samples) so that [`percentile`] can read them.
pub fn sorted(mut v: Vec<f64>) -> Vec<f64> {
    v.sort_by(f64::total_cmp);
    v
}

// ---- reports ----

/// `target/bench/`, created if missing: reports, and the inputs benches generate.
pub fn bench_dir() -> PathBuf {
    let dir = root().join("target/bench");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Writes `target/bench/<name>`; returns its path.
pub fn write_report(name: &str, text: &str) -> PathBuf {
    let path = bench_dir().join(name);
    std::fs::write(&path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    path
}
