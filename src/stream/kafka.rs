//! Kafka through rdkafka (librdkafka, built from the crate's bundled sources).
//!
//! **Source.** One thread owns a `BaseConsumer` and is the only one that polls it, so the
//! rebalance callbacks run there and may block: on revocation it waits (at most the drain
//! timeout) until every fetched offset of the revoked partitions is done, commits them and
//! forgets them. Offsets are stored and committed by hand ([`Offsets`]: the lowest offset not
//! done yet), every [`COMMIT_EVERY`] and on revocation and shutdown. When `--max-in-flight`
//! inputs are out, the thread stops polling and waits for room; after [`PAUSE_AFTER`] at the
//! cap it pauses every assigned partition and polls again (so rebalances are served and the
//! process stays in the group) until room is freed. librdkafka's own prefetch queue is capped
//! (`queued.max.messages.kbytes`), so memory does not grow with the backlog.
//!
//! **Sink.** A `FutureProducer` with `enable.idempotence=true` and `acks=all`: a send counts
//! only once every in-sync replica has the record, and librdkafka's retries cannot
//! duplicate or reorder it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rdkafka::client::ClientContext;
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::statistics::Statistics;
use rdkafka::{Offset as KafkaOffset, TopicPartitionList};
use tokio::sync::mpsc;

use super::endpoint::KafkaEndpoint;
use super::inflight::InFlight;
use super::offsets::{Offsets, Partition};
use super::record::{Coords, Input, Offset};
use super::{ConsumeError, Outgoing};
use crate::ops::health::Readiness;

/// How often done offsets are committed while consuming.
pub const COMMIT_EVERY: Duration = Duration::from_millis(500);

/// One poll's wait: how quickly the thread sees its stop flag and freed room.
const POLL: Duration = Duration::from_millis(100);

/// How long the fetcher waits at the in-flight cap without polling before it pauses the
/// partitions and polls again (to stay in the group, and to serve a rebalance): far below
/// `max.poll.interval.ms`, far above a batch's time.
const PAUSE_AFTER: Duration = Duration::from_secs(2);

fn config(brokers: &str) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", brokers)
        .set("client.id", "hermes-consume")
        .set_log_level(RDKafkaLogLevel::Warning);
    c
}

/// librdkafka's log and errors go to hermes' log, and its statistics become the lag gauges.
pub struct Context {
    offsets: Arc<Offsets>,
    /// How long a revocation waits for in-flight inputs of the revoked partitions.
    drain: Duration,
    /// Set when partitions were assigned: a paused fetcher must pause them too.
    assigned: AtomicBool,
    /// `/readyz`: whether the brokers can be reached.
    readiness: Readiness,
    /// `bootstrap.servers`, for the reason `/readyz` gives.
    brokers: String,
}

impl Context {
    fn unreachable(&self, why: &str) {
        self.readiness.broker_down(format!(
            "the Kafka broker {} cannot be reached: {why}",
            self.brokers
        ));
    }
}

impl ClientContext for Context {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        match level {
            RDKafkaLogLevel::Emerg
            | RDKafkaLogLevel::Alert
            | RDKafkaLogLevel::Critical
            | RDKafkaLogLevel::Error => tracing::error!(target: "librdkafka", fac, "{message}"),
            RDKafkaLogLevel::Warning => tracing::warn!(target: "librdkafka", fac, "{message}"),
            _ => tracing::debug!(target: "librdkafka", fac, "{message}"),
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        tracing::warn!(target: "librdkafka", %error, "{reason}");
        if error.rdkafka_error_code() == Some(RDKafkaErrorCode::AllBrokersDown) {
            self.unreachable(reason);
        }
    }

    fn stats(&self, statistics: Statistics) {
        // Readiness from the connections to real brokers (not librdkafka's internal and
        // logical ones): up when one is up, down when none is and one is known to be down.
        // Nothing is concluded while connections are still being made (at start-up).
        let real = || {
            statistics
                .brokers
                .values()
                .filter(|b| b.source == "learned" || b.source == "configured")
        };
        if real().any(|b| b.state == "UP" || b.state == "UPDATE") {
            self.readiness.broker_up();
        } else if real().any(|b| b.state == "DOWN") {
            self.unreachable("no connection to it is up");
        }
        for (topic, t) in &statistics.topics {
            for (partition, p) in &t.partitions {
                // -1 is librdkafka's internal "unassigned" partition; a lag of -1 is unknown.
                if *partition >= 0 && p.consumer_lag >= 0 {
                    metrics::gauge!("hermes_consume_lag", "topic" => topic.clone(), "partition" => partition.to_string())
                        .set(p.consumer_lag as f64);
                }
            }
        }
    }
}

impl ConsumerContext for Context {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let Rebalance::Revoke(tpl) = rebalance else {
            return;
        };
        let revoked: Vec<Partition> = tpl
            .elements()
            .iter()
            .map(|e| (e.topic().to_string(), e.partition()))
            .collect();
        let drained = self.offsets.wait_done(Some(&revoked), self.drain);
        if !drained {
            tracing::warn!(
                partitions = revoked.len(),
                "revoked partitions still had inputs in flight after the drain timeout; their new owner reads them again"
            );
        }
        if let Err(e) = commit(consumer, &self.offsets, Some(&revoked)) {
            tracing::warn!(error = %e, "commit on revocation failed; the new owner reads from the last commit");
        }
        self.offsets.forget(&revoked);
        // A partition paused here (the in-flight cap) stays paused inside librdkafka through
        // the unassignment and an assignment of it later (only librdkafka's own pause is reset
        // on assign): it would never be read again. Resumed here; the fetcher pauses what is
        // assigned again if it is still at the cap.
        let _ = consumer.resume(tpl);
        tracing::info!(
            partitions = revoked.len(),
            "partitions revoked: drained and committed"
        );
    }

    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(tpl) = rebalance {
            // Whatever pause an earlier assignment left on these partitions is lifted: the
            // fetcher decides afresh (see `pre_rebalance`).
            let _ = consumer.resume(tpl);
            self.assigned.store(true, Ordering::Release);
            tracing::info!(partitions = tpl.count(), "partitions assigned");
        }
    }
}

/// Commits what [`Offsets`] says may be committed (of `only`, or all), synchronously.
fn commit(
    consumer: &BaseConsumer<Context>,
    offsets: &Offsets,
    only: Option<&[Partition]>,
) -> Result<(), KafkaError> {
    let todo = offsets.to_commit(only);
    if todo.is_empty() {
        return Ok(());
    }
    let mut tpl = TopicPartitionList::new();
    for ((topic, partition), offset) in &todo {
        tpl.add_partition_offset(topic, *partition, KafkaOffset::Offset(*offset))?;
    }
    let started = Instant::now();
    consumer.commit(&tpl, CommitMode::Sync)?;
    metrics::histogram!("hermes_consume_commit_seconds").record(started.elapsed().as_secs_f64());
    offsets.committed(&todo);
    Ok(())
}

/// The fetch thread and what the pipeline tells it.
pub struct Source {
    offsets: Arc<Offsets>,
    thread: Option<JoinHandle<Result<(), String>>>,
}

/// What the fetch thread needs.
pub struct Fetch {
    pub tx: mpsc::Sender<Input>,
    pub in_flight: Arc<InFlight>,
    pub stop: Arc<AtomicBool>,
    /// Bounds the wait for in-flight inputs at revocation and at shutdown.
    pub drain: Duration,
    /// `/readyz`: turned 503 while the brokers cannot be reached.
    pub readiness: Readiness,
}

impl Source {
    /// Joins the group and starts fetching.
    pub fn start(e: &KafkaEndpoint, fetch: Fetch) -> Result<Self, ConsumeError> {
        let offsets = Arc::new(Offsets::default());
        let context = Context {
            offsets: offsets.clone(),
            drain: fetch.drain,
            assigned: AtomicBool::new(false),
            readiness: fetch.readiness.clone(),
            brokers: e.brokers.clone(),
        };
        let mut c = config(&e.brokers);
        c.set("group.id", e.group.as_deref().unwrap_or_default())
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set("statistics.interval.ms", "1000")
            // The prefetch queue per partition: bounded, a few batches deep.
            .set("queued.max.messages.kbytes", "4096")
            .set(
                "queued.min.messages",
                fetch.in_flight.max.clamp(100, 100_000).to_string(),
            );
        // The URL's properties last: they may override any of the above.
        for (k, v) in &e.properties {
            c.set(k, v);
        }
        let consumer: BaseConsumer<Context> = c
            .create_with_context(context)
            .map_err(|err| ConsumeError::Source(format!("kafka consumer: {err}")))?;
        consumer
            .subscribe(&[&e.topic])
            .map_err(|err| ConsumeError::Source(format!("subscribe to {:?}: {err}", e.topic)))?;
        let topic: Arc<str> = e.topic.as_str().into();
        let thread = std::thread::Builder::new()
            .name("hermes-kafka-fetch".into())
            .spawn({
                let offsets = offsets.clone();
                move || fetch_loop(consumer, topic, offsets, fetch)
            })
            .map_err(|err| ConsumeError::Source(format!("start the fetch thread: {err}")))?;
        Ok(Self {
            offsets,
            thread: Some(thread),
        })
    }

    /// Marks inputs abandoned (a fatal error): never committed past, not waited for.
    pub fn abandon<'a>(&self, coords: impl Iterator<Item = &'a Coords>) {
        for c in coords {
            if let Offset::Kafka(o) = c.offset {
                self.offsets.abandon(&(c.topic.to_string(), c.partition), o);
            }
        }
    }

    /// Marks inputs done; the fetch thread commits them.
    pub fn done(&self, coords: &[Coords]) {
        for c in coords {
            if let Offset::Kafka(o) = c.offset {
                self.offsets.done(&(c.topic.to_string(), c.partition), o);
            }
        }
    }

    /// Waits for the fetch thread: it stops once the stop flag is set, waits for what is in
    /// flight, commits and leaves the group.
    pub async fn finish(mut self) -> Result<(), ConsumeError> {
        let Some(thread) = self.thread.take() else {
            return Ok(());
        };
        tokio::task::spawn_blocking(move || thread.join())
            .await
            .map_err(|e| ConsumeError::Source(format!("the fetch thread: {e}")))?
            .map_err(|_| ConsumeError::Source("the fetch thread panicked".into()))?
            .map_err(ConsumeError::Source)
    }
}

/// Commits what is done when [`COMMIT_EVERY`] has passed since the last commit.
fn commit_now(consumer: &BaseConsumer<Context>, offsets: &Offsets, last_commit: &mut Instant) {
    if last_commit.elapsed() >= COMMIT_EVERY {
        if let Err(e) = commit(consumer, offsets, None) {
            tracing::warn!(error = %e, "kafka commit failed; retrying");
        }
        *last_commit = Instant::now();
    }
}

fn fetch_loop(
    consumer: BaseConsumer<Context>,
    topic: Arc<str>,
    offsets: Arc<Offsets>,
    fetch: Fetch,
) -> Result<(), String> {
    let mut paused = false;
    let mut full_since: Option<Instant> = None;
    let mut last_commit = Instant::now();
    let mut last_report = Instant::now();
    while !fetch.stop.load(Ordering::Acquire) {
        if last_report.elapsed() >= Duration::from_secs(5)
            && tracing::enabled!(tracing::Level::DEBUG)
        {
            last_report = Instant::now();
            let position = consumer
                .position()
                .map(|t| {
                    let mut p: Vec<_> = t
                        .to_topic_map()
                        .into_iter()
                        .map(|((_, p), o)| (p, o))
                        .collect();
                    p.sort_by_key(|(p, _)| *p);
                    format!("{p:?}")
                })
                .unwrap_or_default();
            tracing::debug!(paused, in_flight = fetch.in_flight.count(), %position, "fetch state");
        }
        let full = fetch.in_flight.room() == 0;
        if consumer.context().assigned.swap(false, Ordering::AcqRel) {
            // A new assignment arrives resumed (see `post_rebalance`).
            paused = false;
        }
        if !full {
            full_since = None;
        }
        if full && !paused {
            // At the cap: wait for room without polling (librdkafka's prefetch queue is
            // bounded, and what it holds is kept). Only a longer wait pauses the partitions and
            // polls, so that the process stays in the group: a pause makes librdkafka drop
            // what it prefetched and fetch it again on resume, and pausing at every batch
            // (the cap is reached all the time when labeling is the bottleneck) made fetching
            // crawl and starved partitions.
            let since = *full_since.get_or_insert_with(Instant::now);
            if since.elapsed() < PAUSE_AFTER {
                std::thread::sleep(Duration::from_millis(5));
                commit_now(&consumer, &offsets, &mut last_commit);
                continue;
            }
            if let Ok(tpl) = consumer.assignment() {
                let _ = consumer.pause(&tpl);
            }
            paused = true;
        } else if !full && paused {
            if let Ok(tpl) = consumer.assignment() {
                let _ = consumer.resume(&tpl);
            }
            paused = false;
        }
        match consumer.poll(POLL) {
            None => {}
            Some(Err(e)) => tracing::warn!(error = %e, "kafka fetch"),
            Some(Ok(m)) => {
                let offset = m.offset();
                let partition = m.partition();
                offsets.fetched(&(topic.to_string(), partition), offset);
                fetch.in_flight.take(1);
                let input = Input {
                    coords: Coords {
                        topic: topic.clone(),
                        partition,
                        offset: Offset::Kafka(offset),
                    },
                    payload: m.payload().map(<[u8]>::to_vec),
                    fetched: Instant::now(),
                };
                if fetch.tx.blocking_send(input).is_err() {
                    // The pipeline stopped (a fatal error): commit what is done and leave.
                    break;
                }
            }
        }
        commit_now(&consumer, &offsets, &mut last_commit);
    }
    drop(fetch.tx);
    if !offsets.wait_done(None, fetch.drain) {
        tracing::warn!("inputs still in flight after the drain timeout; they will be read again");
    }
    let result = commit(&consumer, &offsets, None).map_err(|e| format!("final commit: {e}"));
    consumer.unsubscribe();
    // Dropping the consumer closes it: it leaves the group at once, so the partitions move
    // to the other members without waiting for the session timeout.
    drop(consumer);
    result
}

/// An idempotent producer with `acks=all`.
pub struct Sink {
    producer: FutureProducer,
    topic: String,
}

impl Sink {
    pub fn open(e: &KafkaEndpoint) -> Result<Self, ConsumeError> {
        let mut c = config(&e.brokers);
        c.set("enable.idempotence", "true")
            .set("acks", "all")
            .set("linger.ms", "5");
        for (k, v) in &e.properties {
            c.set(k, v);
        }
        let producer = c
            .create()
            .map_err(|err| ConsumeError::Sink(format!("kafka producer: {err}")))?;
        Ok(Self {
            producer,
            topic: e.topic.clone(),
        })
    }

    /// Sends every record and returns once the broker acknowledged them all.
    pub async fn send(&self, records: &[Outgoing]) -> Result<(), ConsumeError> {
        let sends = records.iter().map(|r| {
            let record = FutureRecord::to(&self.topic)
                .key(r.key.as_bytes())
                .payload(&r.value);
            // Waits while librdkafka's send queue is full: back-pressure, not an error.
            self.producer.send(record, rdkafka::util::Timeout::Never)
        });
        for result in futures::future::join_all(sends).await {
            result.map_err(|(e, _)| {
                ConsumeError::Sink(format!("kafka topic {:?}: {e}", self.topic))
            })?;
        }
        Ok(())
    }
}
