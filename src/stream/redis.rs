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
//! loses nothing, and `/readyz` answers 503 until a command on the source succeeds again.
//!
//! An entry deleted from the stream (`XDEL`, `MAXLEN` trimming) while pending comes back from
//! `XREADGROUP … 0` as its id without fields: there is nothing to label, so it is
//! acknowledged, logged with its id and counted (`hermes_consume_deleted_pending_total`);
//! `XAUTOCLAIM` drops such entries itself and they are logged and counted the same way.
//! Other consumers of the group idle longer than `--consumer-idle-timeout-s` (a process
//! gone for good, under a name that will not come back) have their pending entries claimed
//! (`XCLAIM`) and processed here, and are then removed (`XGROUP DELCONSUMER`).
//!
//! **Sink.** `XADD stream * value JSON`, pipelined per batch.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use redis::Value;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::streams::{StreamAutoClaimReply, StreamReadOptions};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::endpoint::RedisEndpoint;
use super::inflight::InFlight;
use super::record::{Coords, Input, Offset};
use super::{ConsumeError, Outgoing};
use crate::ops::health::Readiness;

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

/// `/readyz` for the source's server: the result of the last command on it.
#[derive(Clone)]
struct Health {
    readiness: Readiness,
    /// `host:port`, without credentials.
    addr: String,
}

/// XACK of `ids` in `(stream, group)`, retried as [`retrying`] does; `None` when stopped first.
async fn xack(
    conn: &ConnectionManager,
    (stream, group): (&str, &str),
    ids: &[&str],
    stop: &AtomicBool,
    health: &Health,
) -> Option<i64> {
    retrying("redis XACK", stop, Some(health), || {
        let mut conn = conn.clone();
        let cmd = redis::cmd("XACK").arg(stream).arg(group).arg(ids).clone();
        async move {
            cmd.query_async::<i64>(&mut conn)
                .await
                .map_err(|e| e.to_string())
        }
    })
    .await
}

/// Retries `f` with back-off (100 ms doubling to 5 s) until it succeeds or `stop` is set;
/// with `health`, each answer or failure says whether the server can be reached.
async fn retrying<T, F, Fut>(
    what: &str,
    stop: &AtomicBool,
    health: Option<&Health>,
    mut f: F,
) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    let mut wait = Duration::from_millis(100);
    loop {
        let result = f().await;
        if let Some(h) = health {
            match &result {
                Ok(_) => h.readiness.broker_up(),
                Err(e) => h.readiness.broker_down(format!(
                    "the Redis server {} cannot be reached ({what}): {e}",
                    h.addr
                )),
            }
        }
        match result {
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
    health: Health,
    task: JoinHandle<()>,
}

/// What the fetch task needs.
pub struct Fetch {
    pub tx: mpsc::Sender<Input>,
    pub in_flight: Arc<InFlight>,
    pub stop: Arc<AtomicBool>,
    /// Entries per read at most.
    pub batch: usize,
    /// `/readyz`: turned 503 while the server cannot be reached.
    pub readiness: Readiness,
    /// Other consumers idle longer than this are removed once their entries are claimed.
    pub consumer_idle: Duration,
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
        let health = Health {
            readiness: fetch.readiness.clone(),
            addr: e.address().0.to_string(),
        };
        let reader = Reader {
            health: health.clone(),
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
            health,
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
        let acked = xack(
            &self.acks,
            (&self.stream, &self.group),
            &ids,
            stop,
            &self.health,
        )
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
    health: Health,
    conn: ConnectionManager,
    stream: String,
    topic: Arc<str>,
    group: String,
    consumer: String,
    claim_idle: Duration,
}

/// An entry read from the stream: its id and its `value` field, or no fields at all when it
/// was deleted from the stream while pending.
struct Entry {
    id: String,
    deleted: bool,
    value: Option<Vec<u8>>,
}

fn bytes(v: &Value) -> Option<Vec<u8>> {
    match v {
        Value::BulkString(b) => Some(b.clone()),
        Value::SimpleString(s) => Some(s.clone().into_bytes()),
        _ => None,
    }
}

/// Entries as `XREADGROUP`, `XCLAIM` and `XRANGE` give them: `[[id, [field, value, …] | nil], …]`.
fn parse_entries(list: &Value) -> Result<Vec<Entry>, String> {
    let Value::Array(list) = list else {
        return match list {
            Value::Nil => Ok(Vec::new()),
            other => Err(format!("unexpected entries {other:?}")),
        };
    };
    let mut out = Vec::with_capacity(list.len());
    for e in list {
        let (id, fields) = match e {
            Value::Array(pair) if !pair.is_empty() => (&pair[0], pair.get(1)),
            // A claim of an entry deleted meanwhile may answer nil in its place.
            Value::Nil => continue,
            other => return Err(format!("unexpected entry {other:?}")),
        };
        let id = bytes(id)
            .and_then(|b| String::from_utf8(b).ok())
            .ok_or_else(|| format!("unexpected entry id {id:?}"))?;
        let (deleted, value) = match fields {
            None | Some(Value::Nil) => (true, None),
            Some(Value::Array(kv)) if kv.is_empty() => (true, None),
            Some(Value::Array(kv)) => {
                let value = kv
                    .chunks(2)
                    .find(|p| bytes(&p[0]).as_deref() == Some(b"value"))
                    .and_then(|p| p.get(1).and_then(bytes));
                (false, value)
            }
            Some(Value::Map(kv)) => {
                let value = kv
                    .iter()
                    .find(|(k, _)| bytes(k).as_deref() == Some(b"value"))
                    .and_then(|(_, v)| bytes(v));
                (kv.is_empty(), value)
            }
            Some(other) => return Err(format!("unexpected fields {other:?}")),
        };
        out.push(Entry { id, deleted, value });
    }
    Ok(out)
}

/// An `XREADGROUP` answer: nil, or `[[stream, entries]]` (RESP2) or `{stream: entries}` (RESP3).
fn parse_read(v: &Value) -> Result<Vec<Entry>, String> {
    match v {
        Value::Nil => Ok(Vec::new()),
        Value::Array(streams) => {
            let mut out = Vec::new();
            for s in streams {
                match s {
                    Value::Array(kv) if kv.len() == 2 => out.extend(parse_entries(&kv[1])?),
                    other => return Err(format!("unexpected stream {other:?}")),
                }
            }
            Ok(out)
        }
        Value::Map(streams) => {
            let mut out = Vec::new();
            for (_, entries) in streams {
                out.extend(parse_entries(entries)?);
            }
            Ok(out)
        }
        other => Err(format!("unexpected XREADGROUP answer {other:?}")),
    }
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
        // 2. Entries other consumers left pending, then new entries; now and then, consumers
        // gone for good are removed.
        let mut claim_cursor = "0-0".to_string();
        let mut next_claim = Instant::now();
        let mut next_lag = Instant::now();
        let gone_every =
            (fetch.consumer_idle / 2).clamp(Duration::from_millis(500), LAG_EVERY * 60);
        let mut next_gone = Instant::now();
        while !stop.load(Ordering::Acquire) {
            let n = self.room(&fetch).await;
            if n == 0 {
                continue;
            }
            if Instant::now() >= next_claim {
                let Some((next, claimed, deleted)) = self.claim(&claim_cursor, n, &stop).await
                else {
                    return;
                };
                if next == "0-0" {
                    // A full pass over the pending list: the next one after a pause.
                    next_claim = Instant::now() + self.claim_idle / 2;
                }
                claim_cursor = next;
                if !deleted.is_empty() {
                    tracing::warn!(
                        ids = ?deleted,
                        "pending entries deleted from the stream: XAUTOCLAIM dropped them, nothing to label"
                    );
                    metrics::counter!("hermes_consume_deleted_pending_total")
                        .increment(deleted.len() as u64);
                }
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
            if Instant::now() >= next_gone {
                next_gone = Instant::now() + gone_every;
                match self.gone(fetch.consumer_idle, n).await {
                    Ok(claimed) if !claimed.is_empty() => {
                        if self.send(claimed, &fetch).await.is_err() {
                            return;
                        }
                        continue;
                    }
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "looking for consumers gone for good"),
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
    ) -> Option<Vec<Entry>> {
        let (conn, stream) = (self.conn.clone(), self.stream.clone());
        let (group, consumer) = (self.group.clone(), self.consumer.clone());
        retrying("redis XREADGROUP", stop, Some(&self.health), || {
            let mut options = StreamReadOptions::default()
                .group(&group, &consumer)
                .count(count);
            if let Some(ms) = block {
                options = options.block(ms);
            }
            let (mut conn, stream) = (conn.clone(), stream.clone());
            async move {
                // Parsed here, not by the crate: a pending entry deleted from the stream is
                // its id with nil fields.
                let reply: Value =
                    redis::AsyncCommands::xread_options(&mut conn, &[&stream], &[id], &options)
                        .await
                        .map_err(|e| e.to_string())?;
                parse_read(&reply)
            }
        })
        .await
    }

    async fn claim(
        &mut self,
        cursor: &str,
        count: usize,
        stop: &AtomicBool,
    ) -> Option<(String, Vec<Entry>, Vec<String>)> {
        let idle_ms = self.claim_idle.as_millis() as u64;
        let (conn, stream, group, consumer) = (
            self.conn.clone(),
            self.stream.clone(),
            self.group.clone(),
            self.consumer.clone(),
        );
        retrying("redis XAUTOCLAIM", stop, Some(&self.health), || {
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
                let claimed = reply
                    .claimed
                    .into_iter()
                    .map(|e| Entry {
                        deleted: e.map.is_empty(),
                        value: e.map.get("value").and_then(bytes),
                        id: e.id,
                    })
                    .collect();
                Ok((reply.next_stream_id, claimed, reply.deleted_ids))
            }
        })
        .await
    }

    /// Other consumers idle longer than `idle` (gone for good): their pending entries are
    /// claimed (at most `count` now, returned to be processed here), and a consumer with none
    /// left is removed from the group.
    async fn gone(&mut self, idle: Duration, count: usize) -> Result<Vec<Entry>, String> {
        let consumers: Vec<std::collections::HashMap<String, Value>> = redis::cmd("XINFO")
            .arg("CONSUMERS")
            .arg(&self.stream)
            .arg(&self.group)
            .query_async(&mut self.conn)
            .await
            .map_err(|e| e.to_string())?;
        let int = |c: &std::collections::HashMap<String, Value>, k: &str| {
            c.get(k)
                .and_then(|v| redis::from_redis_value_ref::<i64>(v).ok())
                .unwrap_or(0)
        };
        let idle_ms = idle.as_millis() as i64;
        let mut claimed = Vec::new();
        for c in &consumers {
            let Some(name) = c
                .get("name")
                .and_then(|v| redis::from_redis_value_ref::<String>(v).ok())
            else {
                continue;
            };
            let (pending, idle_now) = (int(c, "pending"), int(c, "idle"));
            if name == self.consumer || idle_now < idle_ms {
                continue;
            }
            if pending == 0 {
                let _: i64 = redis::cmd("XGROUP")
                    .arg("DELCONSUMER")
                    .arg(&self.stream)
                    .arg(&self.group)
                    .arg(&name)
                    .query_async(&mut self.conn)
                    .await
                    .map_err(|e| e.to_string())?;
                tracing::info!(consumer = %name, idle_ms = idle_now, "removed a consumer gone for good (idle past --consumer-idle-timeout-s, nothing pending)");
                metrics::counter!("hermes_consume_consumers_removed_total").increment(1);
                continue;
            }
            if claimed.len() >= count {
                continue;
            }
            let rows: Vec<(String, String, i64, i64)> = redis::cmd("XPENDING")
                .arg(&self.stream)
                .arg(&self.group)
                .arg("-")
                .arg("+")
                .arg(count - claimed.len())
                .arg(&name)
                .query_async(&mut self.conn)
                .await
                .map_err(|e| e.to_string())?;
            if rows.is_empty() {
                continue;
            }
            let ids: Vec<&str> = rows.iter().map(|r| r.0.as_str()).collect();
            let reply: Value = redis::cmd("XCLAIM")
                .arg(&self.stream)
                .arg(&self.group)
                .arg(&self.consumer)
                .arg(0)
                .arg(&ids)
                .query_async(&mut self.conn)
                .await
                .map_err(|e| e.to_string())?;
            let entries = parse_entries(&reply)?;
            tracing::info!(consumer = %name, idle_ms = idle_now, entries = entries.len(), "claimed the pending entries of a consumer gone for good (idle past --consumer-idle-timeout-s)");
            claimed.extend(entries);
        }
        Ok(claimed)
    }

    /// Sends entries down the pipeline; entries deleted from the stream while pending are
    /// acknowledged here instead (nothing to label).
    async fn send(&mut self, entries: Vec<Entry>, fetch: &Fetch) -> Result<(), ()> {
        let (deleted, entries): (Vec<Entry>, Vec<Entry>) =
            entries.into_iter().partition(|e| e.deleted);
        if !deleted.is_empty() {
            let ids: Vec<&str> = deleted.iter().map(|e| e.id.as_str()).collect();
            let acked = xack(
                &self.conn,
                (&self.stream, &self.group),
                &ids,
                &fetch.stop,
                &self.health,
            )
            .await;
            if acked.is_none() {
                return Err(());
            }
            tracing::warn!(
                ids = ?ids,
                "pending entries deleted from the stream (XDEL or trimming): acknowledged, nothing to label"
            );
            metrics::counter!("hermes_consume_deleted_pending_total").increment(ids.len() as u64);
        }
        fetch.in_flight.take(entries.len());
        for e in entries {
            let input = Input {
                coords: Coords {
                    topic: self.topic.clone(),
                    partition: 0,
                    offset: Offset::Redis(e.id),
                },
                payload: e.value,
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
        retrying("redis XADD", stop, None, || {
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
