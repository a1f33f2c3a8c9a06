//! The brokers of the `hermes consume` tests and bench behind one face ([`Broker`]: tansu
//! or redis-server, started here), and a `hermes consume` process with its metrics port
//! ([`Consumer`]).

use std::path::PathBuf;
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::kafka::Tansu;
use super::redis::{Redis, free_port};
use super::{Proc, client};

const BIN: &str = env!("CARGO_BIN_EXE_hermes");

pub enum Broker {
    Kafka(Tansu),
    /// The server, and its data directory (removed with it).
    Redis(Redis, #[allow(dead_code)] tempfile::TempDir),
}

impl Broker {
    pub async fn start(kafka: bool, topics: &[&str]) -> Broker {
        if kafka {
            let t = Tansu::start();
            t.create_topics(topics, 3).await;
            Broker::Kafka(t)
        } else {
            let dir = tempfile::tempdir().unwrap();
            Broker::Redis(Redis::start(dir.path(), free_port()), dir)
        }
    }

    /// [`Broker::start`], on Kafka with a [`super::gate::Gate`] in front of tansu
    /// ([`Tansu::start_gated`]): [`Broker::cut`] and [`Broker::reconnect`] then stand for the
    /// broker dying and coming back with its state. Redis is the same as [`Broker::start`].
    pub async fn start_gated(kafka: bool, topics: &[&str]) -> Broker {
        if kafka {
            let t = Tansu::start_gated();
            t.create_topics(topics, 3).await;
            Broker::Kafka(t)
        } else {
            Broker::start(false, topics).await
        }
    }

    /// The broker unreachable: on a gated Kafka broker the gate closes (the broker runs on);
    /// otherwise [`Broker::kill`].
    pub async fn cut(&mut self) {
        match self {
            Broker::Kafka(t) => t.close_gate().await,
            Broker::Redis(..) => self.kill(),
        }
    }

    /// The broker reachable again after [`Broker::cut`], with everything it held.
    pub async fn reconnect(&mut self, topics: &[&str]) {
        match self {
            Broker::Kafka(t) => t.open_gate(),
            Broker::Redis(..) => self.restart(topics).await,
        }
    }

    /// `kill -9` of the broker process.
    pub fn kill(&mut self) {
        match self {
            Broker::Kafka(t) => t.kill(),
            Broker::Redis(r, _) => r.kill(),
        }
    }

    /// The broker again on the same port (Redis from its AOF; tansu, in memory, empty: the
    /// topics are created again).
    pub async fn restart(&mut self, topics: &[&str]) {
        match self {
            Broker::Kafka(t) => {
                t.restart();
                t.create_topics(topics, 3).await;
            }
            Broker::Redis(r, _) => r.up(),
        }
    }

    /// `host:port` of the broker.
    pub fn address(&self) -> String {
        match self {
            Broker::Kafka(t) => t.brokers(),
            Broker::Redis(r, _) => format!("127.0.0.1:{}", r.port),
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            Broker::Kafka(_) => "kafka",
            Broker::Redis(..) => "redis",
        }
    }

    pub fn sink(&self, topic: &str) -> String {
        match self {
            Broker::Kafka(t) => format!("kafka://{}/{topic}", t.brokers()),
            Broker::Redis(r, _) => format!("redis://127.0.0.1:{}/0/{topic}", r.port),
        }
    }

    /// The source URL; Kafka's first group join takes about half the session timeout.
    pub fn source(&self, topic: &str, group: &str) -> String {
        match self {
            Broker::Kafka(t) => format!(
                "kafka://{}/{topic}?group={group}&session.timeout.ms=6000&heartbeat.interval.ms=1000",
                t.brokers()
            ),
            Broker::Redis(..) => format!("{}?group={group}&consumer=c1", self.sink(topic)),
        }
    }

    pub async fn produce(&self, topic: &str, records: &[(String, Vec<u8>)]) {
        match self {
            Broker::Kafka(t) => t.produce(topic, records).await,
            Broker::Redis(r, _) => xadd(r, topic, records),
        }
    }

    pub fn read(&self, topic: &str) -> Vec<Value> {
        self.read_raw(topic)
            .iter()
            .map(|v| serde_json::from_slice(v).expect("outputs are JSON"))
            .collect()
    }

    pub fn read_raw(&self, topic: &str) -> Vec<Vec<u8>> {
        self.read_timed(topic).into_iter().map(|(v, _)| v).collect()
    }

    /// Every record of `topic` with its time in ms since the epoch (Kafka: the producer's
    /// timestamp, read to the end, not to the watermark; Redis: the entry id's, XRANGE).
    pub fn read_timed(&self, topic: &str) -> Vec<(Vec<u8>, i64)> {
        match self {
            Broker::Kafka(t) => t.read_timed(topic),
            Broker::Redis(r, _) => {
                let mut con = redis::Client::open(r.url())
                    .unwrap()
                    .get_connection()
                    .unwrap();
                let reply: redis::streams::StreamRangeReply = redis::cmd("XRANGE")
                    .arg(topic)
                    .arg("-")
                    .arg("+")
                    .query(&mut con)
                    .unwrap();
                reply
                    .ids
                    .into_iter()
                    .map(|e| match e.map.get("value") {
                        Some(redis::Value::BulkString(b)) => {
                            let ms = e.id.split('-').next().and_then(|m| m.parse().ok());
                            (b.clone(), ms.unwrap_or_default())
                        }
                        other => panic!("entry {} has no value: {other:?}", e.id),
                    })
                    .collect()
            }
        }
    }
}

/// A `hermes consume` process with its metrics port; killed when dropped ([`Proc`]).
pub struct Consumer {
    pub child: Proc,
    pub metrics: u16,
    log: PathBuf,
}

impl Consumer {
    pub async fn start(args: &[String], dir: &std::path::Path, n: usize) -> Consumer {
        let metrics = free_port();
        // HERMES_TEST_LOG_DIR keeps the consumers' logs after the test (its temporary
        // directory goes with it).
        let log = match std::env::var_os("HERMES_TEST_LOG_DIR") {
            Some(keep) => PathBuf::from(keep).join(format!("consume-{n}-{metrics}.log")),
            None => dir.join(format!("consume-{n}.log")),
        };
        let child = Proc::spawn(
            Command::new(BIN)
                .args(["consume", "--log-format", "json"])
                .args(["--metrics-port", &metrics.to_string()])
                .args(args)
                .current_dir(env!("CARGO_MANIFEST_DIR"))
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(&log).unwrap()),
        )
        .expect("spawn hermes consume");
        let mut c = Consumer {
            child,
            metrics,
            log,
        };
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            if let Ok(r) = client().get(c.url("/readyz")).send().await
                && r.status() == 200
            {
                return c;
            }
            if let Ok(Some(s)) = c.child.try_wait() {
                panic!("hermes consume exited ({s}):\n{}", c.log_text());
            }
            assert!(Instant::now() < deadline, "not ready:\n{}", c.log_text());
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.metrics)
    }

    /// `/readyz`: status and body.
    pub async fn readyz(&self) -> (u16, Value) {
        let r = client()
            .get(self.url("/readyz"))
            .timeout(Duration::from_secs(5))
            .send()
            .await
            .unwrap_or_else(|e| panic!("/readyz: {e}; log:\n{}", self.log_text()));
        (r.status().as_u16(), r.json().await.unwrap())
    }

    /// The exit status, waiting at most `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        self.child.wait_timeout(timeout)
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// A counter or gauge from `/metrics` (summed over its labels).
    pub async fn metric(&self, name: &str) -> f64 {
        let text = client()
            .get(self.url("/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        text.lines()
            .filter(|l| {
                l.strip_prefix(name)
                    .is_some_and(|rest| rest.starts_with(' ') || rest.starts_with('{'))
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    /// Waits until the consumer has written `at_least` outputs (fails after `secs`).
    pub async fn wait_outputs(&self, at_least: f64, secs: u64) {
        let deadline = Instant::now() + Duration::from_secs(secs);
        while self.metric("hermes_consume_outputs_total").await < at_least {
            assert!(
                Instant::now() < deadline,
                "fewer than {at_least} outputs after {secs} s:\n{}",
                self.log_text()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The resident set now (`VmRSS`).
    pub fn rss_kib(&self) -> u64 {
        self.status_kib("VmRSS:")
    }

    /// The highest resident set since the start or the last [`Consumer::reset_peak_rss`]
    /// (`VmHWM`, kept by the kernel: no peak between two samples is missed).
    pub fn peak_rss_kib(&self) -> u64 {
        self.status_kib("VmHWM:")
    }

    /// Resets the peak ([`Consumer::peak_rss_kib`]) to the resident set now.
    pub fn reset_peak_rss(&self) {
        std::fs::write(format!("/proc/{}/clear_refs", self.child.id()), "5")
            .expect("reset the peak RSS (/proc/PID/clear_refs)");
    }

    fn status_kib(&self, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix(field))
            .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
            .unwrap_or_else(|| panic!("no {field} in /proc/PID/status"))
    }

    pub fn kill9(mut self) {
        self.child.kill9();
    }

    /// SIGTERM, then the exit status (at most 60 s later).
    pub fn terminate(mut self) -> (ExitStatus, String) {
        self.child.signal(libc::SIGTERM);
        match self.child.wait_timeout(Duration::from_secs(60)) {
            Some(s) => (s, self.log_text()),
            None => panic!("no exit after SIGTERM:\n{}", self.log_text()),
        }
    }
}

/// XADDs `records`' values to the stream `topic`, in one pipeline.
fn xadd(r: &Redis, topic: &str, records: &[(String, Vec<u8>)]) {
    let mut con = redis::Client::open(r.url())
        .unwrap()
        .get_connection()
        .unwrap();
    let mut pipe = redis::pipe();
    for (_, v) in records {
        pipe.cmd("XADD")
            .arg(topic)
            .arg("*")
            .arg("value")
            .arg(v)
            .ignore();
    }
    pipe.query::<()>(&mut con).unwrap();
}

pub fn doc(id: &str, text: &str) -> (String, Vec<u8>) {
    (
        id.to_string(),
        serde_json::to_vec(&json!({"id": id, "text": text})).unwrap(),
    )
}
