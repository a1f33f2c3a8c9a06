//! What the server does to connections that hold it without asking anything (issue 26): idle
//! and half-sent sockets are closed after their timeouts, a stalled body gets 408, the cap on
//! connections leaves room for a health check, and hyper's own answers to heads it cannot
//! parse carry the documented error shape. Real loopback sockets against the in-process
//! server; every socket is owned by the test's stack and the server's task is aborted on drop,
//! so a failing test leaves nothing open.
//!
//! The assertions are properties with wide margins (answered within a second; closed within
//! seconds of a one-second timeout, and not before it), not timings.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use futures::StreamExt;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use common::client;
use common::inprocess::{InProcess, metric};
use hermes::server::ServeConfig;

/// The tests of this file read one process-wide metrics recorder: they run one at a time.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The defaults as `change` changes them, on one encoder session of a fixed batch size (no
/// start-up measurement: these tests label next to nothing).
fn config(change: impl FnOnce(&mut ServeConfig)) -> ServeConfig {
    common::inprocess::config(|c| {
        c.core.encoder_sessions = 1;
        c.core.batching.max_batch_docs = Some(8);
        change(c);
    })
}

/// Generous bound on anything that should take a moment.
const PATIENCE: Duration = Duration::from_secs(15);

/// The process's own metrics (the server runs in it).
fn metrics() -> String {
    hermes::ops::metrics::prometheus().render()
}

fn closed(reason: &str) -> f64 {
    metric(
        &metrics(),
        &format!("hermes_http_connections_closed_total{{reason=\"{reason}\"}}"),
    )
}

/// Raises this process's soft descriptor limit to the hard one; returns the hard one.
fn raise_descriptor_limit() -> u64 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain system calls on a local struct.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit), 0);
        limit.rlim_cur = limit.rlim_max;
        assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &limit), 0);
    }
    limit.rlim_max
}

/// `n` connections that send nothing, opened `at_once` at a time (1: in order).
async fn open_idle(addr: SocketAddr, n: usize, at_once: usize) -> Vec<TcpStream> {
    futures::stream::iter(0..n)
        .map(|_| async move { TcpStream::connect(addr).await })
        .buffered(at_once)
        .map(|s| s.expect("connect"))
        .collect()
        .await
}

/// Reads until the server closes the socket; `None` when it has not after [`PATIENCE`].
async fn read_to_eof(s: &mut TcpStream) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let read = tokio::time::timeout(PATIENCE, s.read_to_end(&mut out)).await;
    match read {
        Ok(Ok(_)) => Some(out),
        // A reset is the server closing too.
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionReset => Some(out),
        Ok(Err(e)) => panic!("read: {e}"),
        Err(_) => None,
    }
}

/// One response: status, head (lower-case) and body, read by its Content-Length.
async fn read_response(s: &mut TcpStream) -> (u16, String, Vec<u8>) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let deadline = Instant::now() + PATIENCE;
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let length: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .map(|v| v.trim().parse().unwrap())
                .unwrap_or(0);
            if buf.len() >= end + 4 + length {
                let status = head[9..12].parse().unwrap();
                let body = buf[end + 4..end + 4 + length].to_vec();
                return (status, head, body);
            }
        }
        let left = deadline.saturating_duration_since(Instant::now());
        let n = tokio::time::timeout(left, s.read(&mut chunk))
            .await
            .expect("a response within the patience")
            .expect("read");
        assert!(
            n > 0,
            "closed mid-response: {:?}",
            String::from_utf8_lossy(&buf)
        );
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// `{"error":{"code","message"}}` with this code and a message.
fn assert_error_shape(body: &[u8], code: &str) {
    let v: Value = serde_json::from_slice(body)
        .unwrap_or_else(|e| panic!("{e}: {:?}", String::from_utf8_lossy(body)));
    assert_eq!(v["error"]["code"], code, "{v}");
    let message = v["error"]["message"].as_str().unwrap_or("");
    assert!(!message.is_empty(), "{v}");
}

/// Samples `hermes_http_connections_open` until dropped; the largest value seen.
struct OpenSampler {
    max: std::sync::Arc<std::sync::atomic::AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl OpenSampler {
    fn start() -> Self {
        let max = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let seen = max.clone();
        let task = tokio::spawn(async move {
            loop {
                let open = metric(&metrics(), "hermes_http_connections_open") as u64;
                seen.fetch_max(open, std::sync::atomic::Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        });
        Self { max, task }
    }

    fn max(&self) -> u64 {
        self.max.load(std::sync::atomic::Ordering::Relaxed)
    }
}

impl Drop for OpenSampler {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Waits until the server has closed `at_least` connections to make room since `before`
/// (the kernel completes connections before the server accepts them).
async fn wait_for_evictions(before: f64, at_least: usize) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while closed("evicted") - before < at_least as f64 {
        assert!(
            Instant::now() < deadline,
            "only {} of {at_least} connections were closed to make room",
            closed("evicted") - before
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `/healthz` on a new connection answers 200 within a second.
async fn health_check_gets_in(s: &InProcess) {
    let fresh = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    let started = Instant::now();
    let r = tokio::time::timeout(
        Duration::from_secs(1),
        fresh.get(format!("{}/healthz", s.base)).send(),
    )
    .await
    .expect("/healthz answered within 1 s")
    .expect("/healthz answered");
    assert_eq!(r.status(), 200);
    eprintln!("/healthz answered in {:?}", started.elapsed());
}

/// Opens `n` idle connections to `addr` from a child process (so the test's own descriptors
/// hold only the server's ends); returns once they are all open. The child dies with the test.
fn idle_client(addr: SocketAddr, n: usize) -> common::Proc {
    use std::io::BufRead;
    let script = r#"
import resource, socket, sys
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
host, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
held = [socket.create_connection((host, port)) for _ in range(n)]
print("open", len(held), flush=True)
sys.stdin.read()
"#;
    let mut child = common::Proc::spawn(
        std::process::Command::new("python3")
            .args([
                "-c",
                script,
                &addr.ip().to_string(),
                &addr.port().to_string(),
            ])
            .arg(n.to_string())
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped()),
    )
    .expect("python3");
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(
        line.trim(),
        format!("open {n}"),
        "the client could not open its sockets"
    );
    child
}

/// The whole of issue 26: 20,000 idle sockets (from two client processes of 10,000 each)
/// against the default cap of 10,000.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_thousand_idle_connections_leave_room_for_a_health_check() {
    const CLIENTS: usize = 2;
    const EACH: usize = 10_000;
    let _serial = SERIAL.lock().await;
    // This process holds the server's ends (at most the cap) and each client its own.
    let hard = raise_descriptor_limit();
    assert!(
        hard >= 12_000,
        "the hard descriptor limit is {hard}: a client of {EACH} sockets needs about 10,100"
    );
    let config = config(|c| {
        // Only the cap closes the idle sockets here, not their timeouts.
        c.conn.header_timeout = Duration::from_secs(600);
        c.conn.idle_timeout = Duration::from_secs(600);
    });
    let cap = config.conn.max_connections;
    let s = InProcess::start(config).await;
    let sampler = OpenSampler::start();
    let evicted = closed("evicted");
    let started = Instant::now();
    let addr = s.addr;
    let clients: Vec<common::Proc> = tokio::task::spawn_blocking(move || {
        (0..CLIENTS).map(|_| idle_client(addr, EACH)).collect()
    })
    .await
    .unwrap();
    eprintln!(
        "{} idle connections opened in {:?}",
        CLIENTS * EACH,
        started.elapsed()
    );
    wait_for_evictions(evicted, CLIENTS * EACH - cap).await;
    health_check_gets_in(&s).await;
    assert!(
        sampler.max() <= cap as u64,
        "{} open, cap {cap}",
        sampler.max()
    );
    drop(clients);
    drop(sampler);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_a_small_cap_the_connection_idle_longest_makes_room() {
    const CAP: usize = 50;
    let _serial = SERIAL.lock().await;
    let s = InProcess::start(config(|c| {
        c.conn.max_connections = CAP;
        c.conn.header_timeout = Duration::from_secs(600);
    }))
    .await;
    let sampler = OpenSampler::start();
    let evicted = closed("evicted");
    let mut idle = open_idle(s.addr, 4 * CAP, 1).await;
    wait_for_evictions(evicted, 3 * CAP).await;
    health_check_gets_in(&s).await;
    assert!(
        sampler.max() <= CAP as u64,
        "{} open, cap {CAP}",
        sampler.max()
    );
    // The oldest went first: the first sockets opened are closed.
    for (i, socket) in idle.iter_mut().take(CAP).enumerate() {
        assert!(
            read_to_eof(socket).await.is_some(),
            "idle socket {i} is still open"
        );
    }
    drop(idle);
    drop(sampler);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_half_sent_head_is_closed_after_the_header_timeout() {
    let _serial = SERIAL.lock().await;
    let s = InProcess::start(config(|c| {
        c.conn.header_timeout = Duration::from_secs(1);
        c.conn.idle_timeout = Duration::from_secs(600);
    }))
    .await;
    let timeouts = closed("header_timeout");
    let mut socket = TcpStream::connect(s.addr).await.unwrap();
    let started = Instant::now();
    socket.write_all(b"GET /healthz HT").await.unwrap();
    let answer = read_to_eof(&mut socket)
        .await
        .expect("closed within 15 s of a 1 s header timeout");
    assert!(answer.is_empty(), "{:?}", String::from_utf8_lossy(&answer));
    assert!(started.elapsed() >= Duration::from_millis(900));
    assert!(closed("header_timeout") > timeouts);

    // A socket that sends nothing at all is closed the same way.
    let mut silent = TcpStream::connect(s.addr).await.unwrap();
    assert!(read_to_eof(&mut silent).await.is_some());
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_keep_alive_connection_is_closed_after_the_idle_timeout() {
    let _serial = SERIAL.lock().await;
    let s = InProcess::start(config(|c| {
        c.conn.header_timeout = Duration::from_secs(1);
        c.conn.idle_timeout = Duration::from_secs(4);
    }))
    .await;
    let request = b"GET /healthz HTTP/1.1\r\nhost: test\r\n\r\n";
    let mut socket = TcpStream::connect(s.addr).await.unwrap();
    socket.write_all(request).await.unwrap();
    assert_eq!(read_response(&mut socket).await.0, 200);
    // Idle for longer than the header timeout: still open (the header timeout runs from a
    // request's first byte, not while the connection waits for one).
    tokio::time::sleep(Duration::from_millis(1500)).await;
    socket.write_all(request).await.unwrap();
    assert_eq!(read_response(&mut socket).await.0, 200);
    let answered = Instant::now();
    let timeouts = closed("idle_timeout");
    let rest = read_to_eof(&mut socket)
        .await
        .expect("closed within 15 s of a 4 s idle timeout");
    assert!(rest.is_empty());
    assert!(answered.elapsed() >= Duration::from_millis(3900));
    assert!(closed("idle_timeout") > timeouts);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_body_gets_408_in_the_error_shape() {
    let _serial = SERIAL.lock().await;
    let s = InProcess::start(config(|c| c.http.body_timeout = Duration::from_secs(1))).await;
    let mut socket = TcpStream::connect(s.addr).await.unwrap();
    socket
        .write_all(
            b"POST /v1/label HTTP/1.1\r\nhost: test\r\ncontent-type: application/json\r\n\
              content-length: 1000\r\n\r\n{\"documen",
        )
        .await
        .unwrap();
    let (status, head, body) = read_response(&mut socket).await;
    assert_eq!(status, 408, "{head}");
    assert!(head.contains("content-type: application/json"), "{head}");
    assert!(head.contains("connection: close"), "{head}");
    assert_error_shape(&body, "request_timeout");
    assert!(
        read_to_eof(&mut socket).await.is_some(),
        "the connection closes"
    );

    // The server still answers.
    let r = client()
        .post(format!("{}/v1/label", s.base))
        .json(&serde_json::json!({"documents": [{"text": "still here"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    s.stop().await;
}

/// hyper answers these itself, before any route: 414 for a 100 KB path, 431 for too many
/// header fields, 400 for a request line that is not HTTP.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heads_hyper_cannot_parse_get_the_error_shape() {
    let _serial = SERIAL.lock().await;
    let s = InProcess::start(config(|_| {})).await;
    let long_path = format!(
        "GET /{} HTTP/1.1\r\nhost: test\r\n\r\n",
        "a".repeat(100_000)
    );
    let many_headers = format!(
        "GET /healthz HTTP/1.1\r\nhost: test\r\n{}\r\n",
        (0..150)
            .map(|i| format!("x-h{i}: v\r\n"))
            .collect::<String>()
    );
    let cases = [
        (long_path, 414, "uri_too_long"),
        (many_headers, 431, "headers_too_large"),
        ("GARBAGE\r\n\r\n".to_string(), 400, "bad_request"),
    ];
    for (request, status, code) in cases {
        let mut socket = TcpStream::connect(s.addr).await.unwrap();
        socket.write_all(request.as_bytes()).await.unwrap();
        let (got, head, body) = read_response(&mut socket).await;
        assert_eq!(got, status, "{head}");
        assert!(head.contains("content-type: application/json"), "{head}");
        assert_error_shape(&body, code);
    }
    health_check_gets_in(&s).await;
    s.stop().await;
}
