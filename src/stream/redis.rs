//! Redis Streams through the `redis` crate already used by the id store.
//!
//! **Source.** The group is created at the stream's start (`XGROUP CREATE … 0 MKSTREAM`).
//! The fetch task first reads this consumer's own pending entries (`XREADGROUP … 0`: what a
//! killed process with the same consumer name fetched and never acknowledged), then claims
//! entries that other consumers left pending longer than `claim-idle-ms` (`XAUTOCLAIM`, a
//! consumer that died for good), then reads new entries (`XREADGROUP … >`, blocking at most
//! [`BLOCK_MS`]). An input is acknowledged (`XACK`) only once its output and dead letters are
//! written. Reads and acknowledgements use two connections, so a blocked read never delays
//! a commit. A Redis that cannot be reached is retried with back-off: the stream stalls and
//! loses nothing.
//!
//! **Sink.** `XADD stream * value JSON`, pipelined per batch.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::streams::{StreamAutoClaimReply, StreamId, StreamReadOptions, StreamReadReply};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::endpoint::RedisEndpoint;
use super::inflight::InFlight;
use super::record::{Coords, Input, Offset};
use super::{ConsumeError, Outgoing};

/// How long one blocking read waits for new entries (how quickly the task sees its stop flag).
pub const BLOCK_MS: usize = 500;

/// Bound on every other command; a slower answer is an error and the command is retried.
const TIMEOUT: Duration = Duration::from_secs(5);

/// How often the group's lag is read for `/metrics`.
const LAG_EVERY: Duration = Duration::from_secs(1);

async fn connect(server: &str, response: Duration) -> Result<ConnectionManager, String> {
    let client = redis::Client::open(server).map_err(|e| format!("not a Redis URL: {e}"))?;
    let addr = client.get_connection_info().addr().to_string();
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(TIMEOUT))
        .set_response_timeout(Some(response))
        .set_number_of_retries(2);
    tokio::time::timeout(TIMEOUT, ConnectionManager::new_with_config(client, config))
        .await
        .map_err(|_| format!("redis at {addr}: connecting timed out"))?
        .map_err(|e| format!("redis at {addr}: {e}"))
}

/// Retries `f` with back-off (100 ms doubling to 5 s) until it succeeds or `stop` is set.
async fn retrying<T, F, Fut>(what: &str, stop: &AtomicBool, mut f: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    let mut wait = Duration::from_millis(100);
    loop {
        match f().await {
            Ok(v) => return Some(v),
            Err(e) => {
                if stop.load(Ordering::Acquire) {
                    return None;
                }
                // A key of the wrong type stays wrong: retrying would stall the stream forever.
                if e.contains("WRONGTYPE") {
                    tracing::error!(error = %e, "{what}: not retried");
                    return None;
                }
                tracing::warn!(error = %e, retry_in_ms = wait.as_millis() as u64, "{what}");
                metrics::counter!("hermes_consume_retries_total", "what" => what.to_string())
                    .increment(1);
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_secs(5));
            }
        }
    }
}

/// The fetch task and the acknowledging connection.
pub struct Source {
    acks: ConnectionManager,
    stream: String,
    group: String,
    task: JoinHandle<()>,
}

/// What the fetch task needs.
pub struct Fetch {
    pub tx: mpsc::Sender<Input>,
    pub in_flight: Arc<InFlight>,
    pub stop: Arc<AtomicBool>,
    /// Entries per read at most.
    pub batch: usize,
}

impl Source {
    pub async fn start(e: &RedisEndpoint, fetch: Fetch) -> Result<Self, ConsumeError> {
        let source = |m: String| ConsumeError::Source(m);
        let acks = connect(&e.server, TIMEOUT).await.map_err(source)?;
        let reads = connect(&e.server, Duration::from_millis(BLOCK_MS as u64) + TIMEOUT)
            .await
            .map_err(source)?;
        let group = e.group.clone().unwrap_or_default();
        let created: Result<(), redis::RedisError> = redis::cmd("XGROUP")
            .arg("CREATE")
            .arg(&e.stream)
            .arg(&group)
            .arg("0")
            .arg("MKSTREAM")
            .query_async(&mut acks.clone())
            .await;
        if let Err(err) = created
            && err.code() != Some("BUSYGROUP")
        {
            return Err(source(format!("XGROUP CREATE {} {group}: {err}", e.stream)));
        }
        let consumer = e.consumer.clone().unwrap_or_else(host_name);
        tracing::info!(stream = %e.stream, %group, %consumer, "joined the consumer group");
        let reader = Reader {
            conn: reads,
            stream: e.stream.clone(),
            topic: e.stream.as_str().into(),
            group: group.clone(),
            consumer,
            claim_idle: e.claim_idle,
        };
        let task = tokio::spawn(reader.run(fetch));
        Ok(Self {
            acks,
            stream: e.stream.clone(),
            group,
            task,
        })
    }

    /// Acknowledges inputs whose outputs are written (retried until it succeeds or `stop`).
    pub async fn done(&self, coords: &[Coords], stop: &AtomicBool) -> Result<(), ConsumeError> {
        let ids: Vec<&str> = coords
            .iter()
            .filter_map(|c| match &c.offset {
                Offset::Redis(id) => Some(id.as_str()),
                Offset::Kafka(_) => None,
            })
            .collect();
        if ids.is_empty() {
            return Ok(());
        }
        let started = Instant::now();
        let acked = retrying("redis XACK", stop, || {
            let mut conn = self.acks.clone();
            let cmd = redis::cmd("XACK")
                .arg(&self.stream)
                .arg(&self.group)
                .arg(&ids)
                .clone();
            async move {
                cmd.query_async::<i64>(&mut conn)
                    .await
                    .map_err(|e| e.to_string())
            }
        })
        .await;
        metrics::histogram!("hermes_consume_commit_seconds")
            .record(started.elapsed().as_secs_f64());
        acked
            .map(|_| ())
            .ok_or_else(|| ConsumeError::Source("stopped before XACK succeeded".into()))
    }

    /// Waits for the fetch task to stop (it does once the stop flag is set).
    pub async fn finish(self) -> Result<(), ConsumeError> {
        self.task
            .await
            .map_err(|e| ConsumeError::Source(format!("the redis fetch task: {e}")))
    }
}

/// The consumer name when the URL gives none: the host name (a pod's name in Kubernetes).
fn host_name() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|h| h.trim().to_string())
        })
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "hermes".into())
}

struct Reader {
    conn: ConnectionManager,
    stream: String,
    topic: Arc<str>,
    group: String,
    consumer: String,
    claim_idle: Duration,
}

impl Reader {
    async fn run(mut self, fetch: Fetch) {
        let stop = fetch.stop.clone();
        // 1. This consumer's own pending entries, oldest first.
        let mut cursor = "0-0".to_string();
        loop {
            let n = self.room(&fetch).await;
            if stop.load(Ordering::Acquire) {
                return;
            }
            let Some(entries) = self.read(&cursor, n, None, &stop).await else {
                return;
            };
            let Some(last) = entries.last() else { break };
            cursor = last.id.clone();
            if self.send(entries, &fetch).await.is_err() {
                return;
            }
        }
        // 2. Entries other consumers left pending, then new entries.
        let mut claim_cursor = "0-0".to_string();
        let mut next_claim = Instant::now();
        let mut next_lag = Instant::now();
        while !stop.load(Ordering::Acquire) {
            let n = self.room(&fetch).await;
            if n == 0 {
                continue;
            }
            if Instant::now() >= next_claim {
                let Some((next, claimed)) = self.claim(&claim_cursor, n, &stop).await else {
                    return;
                };
                if next == "0-0" {
                    // A full pass over the pending list: the next one after a pause.
                    next_claim = Instant::now() + self.claim_idle / 2;
                }
                claim_cursor = next;
                if !claimed.is_empty() {
                    tracing::info!(
                        entries = claimed.len(),
                        "claimed entries another consumer left pending"
                    );
                    if self.send(claimed, &fetch).await.is_err() {
                        return;
                    }
                    continue;
                }
            }
            let Some(entries) = self.read(">", n, Some(BLOCK_MS), &stop).await else {
                return;
            };
            if self.send(entries, &fetch).await.is_err() {
                return;
            }
            if Instant::now() >= next_lag {
                self.report_lag().await;
                next_lag = Instant::now() + LAG_EVERY;
            }
        }
    }

    /// Entries that may be fetched now (waits a little when none may).
    async fn room(&self, fetch: &Fetch) -> usize {
        fetch.in_flight.wait_room(Duration::from_millis(200)).await;
        fetch.in_flight.room().min(fetch.batch)
    }

    async fn read(
        &mut self,
        id: &str,
        count: usize,
        block: Option<usize>,
        stop: &AtomicBool,
    ) -> Option<Vec<StreamId>> {
        let (conn, stream) = (self.conn.clone(), self.stream.clone());
        let (group, consumer) = (self.group.clone(), self.consumer.clone());
        retrying("redis XREADGROUP", stop, || {
            let mut options = StreamReadOptions::default()
                .group(&group, &consumer)
                .count(count);
            if let Some(ms) = block {
                options = options.block(ms);
            }
            let (mut conn, stream) = (conn.clone(), stream.clone());
            async move {
                let reply: Option<StreamReadReply> =
                    redis::AsyncCommands::xread_options(&mut conn, &[&stream], &[id], &options)
                        .await
                        .map_err(|e| e.to_string())?;
                Ok(reply
                    .map(|r| r.keys.into_iter().flat_map(|k| k.ids).collect())
                    .unwrap_or_default())
            }
        })
        .await
    }

    async fn claim(
        &mut self,
        cursor: &str,
        count: usize,
        stop: &AtomicBool,
    ) -> Option<(String, Vec<StreamId>)> {
        let idle_ms = self.claim_idle.as_millis() as u64;
        let (conn, stream, group, consumer) = (
            self.conn.clone(),
            self.stream.clone(),
            self.group.clone(),
            self.consumer.clone(),
        );
        retrying("redis XAUTOCLAIM", stop, || {
            let mut conn = conn.clone();
            let cmd = redis::cmd("XAUTOCLAIM")
                .arg(&stream)
                .arg(&group)
                .arg(&consumer)
                .arg(idle_ms)
                .arg(cursor)
                .arg("COUNT")
                .arg(count)
                .clone();
            async move {
                let reply: StreamAutoClaimReply = cmd
                    .query_async(&mut conn)
                    .await
                    .map_err(|e| e.to_string())?;
                Ok((reply.next_stream_id, reply.claimed))
            }
        })
        .await
    }

    async fn send(&self, entries: Vec<StreamId>, fetch: &Fetch) -> Result<(), ()> {
        fetch.in_flight.take(entries.len());
        for e in entries {
            let payload = match e.map.get("value") {
                Some(redis::Value::BulkString(b)) => Some(b.clone()),
                Some(redis::Value::SimpleString(s)) => Some(s.clone().into_bytes()),
                _ => None,
            };
            let input = Input {
                coords: Coords {
                    topic: self.topic.clone(),
                    partition: 0,
                    offset: Offset::Redis(e.id),
                },
                payload,
                fetched: Instant::now(),
            };
            fetch.tx.send(input).await.map_err(|_| ())?;
        }
        Ok(())
    }

    /// `XINFO GROUPS`' `lag` of this group (entries not yet delivered to it; Redis 7+).
    async fn report_lag(&mut self) {
        let groups: Result<Vec<std::collections::HashMap<String, redis::Value>>, _> =
            redis::cmd("XINFO")
                .arg("GROUPS")
                .arg(&self.stream)
                .query_async(&mut self.conn)
                .await;
        let Ok(groups) = groups else { return };
        for g in groups {
            let name: Option<String> = g
                .get("name")
                .and_then(|v| redis::from_redis_value_ref(v).ok());
            if name.as_deref() != Some(self.group.as_str()) {
                continue;
            }
            if let Some(lag) = g
                .get("lag")
                .and_then(|v| redis::from_redis_value_ref::<i64>(v).ok())
            {
                metrics::gauge!("hermes_consume_lag", "topic" => self.stream.clone(), "partition" => "0")
                    .set(lag as f64);
            }
        }
    }
}

/// `XADD` per record, pipelined.
pub struct Sink {
    conn: ConnectionManager,
    stream: String,
}

impl Sink {
    pub async fn open(e: &RedisEndpoint) -> Result<Self, ConsumeError> {
        let mut conn = connect(&e.server, TIMEOUT)
            .await
            .map_err(ConsumeError::Sink)?;
        // A key of another type would refuse every XADD (WRONGTYPE): say so at once.
        let kind: String = redis::cmd("TYPE")
            .arg(&e.stream)
            .query_async(&mut conn)
            .await
            .map_err(|err| ConsumeError::Sink(err.to_string()))?;
        if kind != "stream" && kind != "none" {
            return Err(ConsumeError::Sink(format!(
                "the key {:?} holds a {kind}, not a stream",
                e.stream
            )));
        }
        Ok(Self {
            conn,
            stream: e.stream.clone(),
        })
    }

    /// Appends every record; retried (the whole batch) until it succeeds or `stop`.
    pub async fn send(&self, records: &[Outgoing], stop: &AtomicBool) -> Result<(), ConsumeError> {
        if records.is_empty() {
            return Ok(());
        }
        let mut pipe = redis::pipe();
        for r in records {
            pipe.cmd("XADD")
                .arg(&self.stream)
                .arg("*")
                .arg("value")
                .arg(&r.value)
                .ignore();
        }
        retrying("redis XADD", stop, || {
            let (mut conn, pipe) = (self.conn.clone(), pipe.clone());
            async move {
                pipe.query_async::<()>(&mut conn)
                    .await
                    .map_err(|e| e.to_string())
            }
        })
        .await
        .ok_or_else(|| {
            ConsumeError::Sink(format!(
                "XADD to {:?} did not succeed before the stop or a fatal error (see the log)",
                self.stream
            ))
        })
    }
}
