//! The shared id store: Redis (`--store redis://host:port/db`), so every replica answers for
//! every id and codes survive restarts.
//!
//! Client: the `redis` crate's tokio `ConnectionManager` (one multiplexed connection that
//! reconnects by itself; pipelining comes free), chosen over fred for its smaller dependency
//! tree and because hermes needs nothing beyond MGET and pipelined SET. Every call is bounded
//! by `--store-timeout-ms`, so an unreachable store is an error within that time, never a
//! hang; the connection is made lazily, so hermes starts (and reports 503) while Redis is down
//! and recovers by itself when it is back.
//!
//! Keys are `hermes:{fingerprint}:{encoder}:{id}` ([`Namespace::key`]; the static tier adds its
//! table's digest to `{encoder}`); values are compact:
//! one byte of flags (bit 0: truncated), one byte of depth, then each level index as u16 LE
//! (8 bytes for a 3-level code).

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use redis::AsyncCommands;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use tokio::sync::OnceCell;

use super::{IdStore, Namespace, StoreError, StoredCode};
use crate::quantize::Code;

/// Keys per MGET or pipeline at most (bounds one command's size).
const BATCH: usize = 1000;

pub struct RedisStore {
    client: redis::Client,
    /// Connected on first use; retried on every call until it succeeds.
    manager: OnceCell<ConnectionManager>,
    namespace: Namespace,
    /// Expiry of written keys (`--store-ttl-s`); `None` keeps them.
    ttl: Option<Duration>,
    /// Bound on connecting and on every command (`--store-timeout-ms`).
    timeout: Duration,
    /// The URL without credentials, for messages.
    display: String,
}

fn unavailable(what: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(format!("{what}: {e}"))
}

/// `[flags, depth, c1 lo, c1 hi, ...]`.
pub fn encode(code: &StoredCode) -> Vec<u8> {
    let mut v = Vec::with_capacity(2 + 2 * code.code.0.len());
    v.push(u8::from(code.truncated));
    // Levels are at most 255 and indices below 65,536: `bundle` refuses anything larger.
    v.push(u8::try_from(code.code.0.len()).expect("a bundle has at most 255 levels"));
    for &c in &code.code.0 {
        let c = u16::try_from(c).expect("codebooks have at most 65,536 entries");
        v.extend_from_slice(&c.to_le_bytes());
    }
    v
}

pub fn decode(bytes: &[u8]) -> Option<StoredCode> {
    let (&flags, rest) = bytes.split_first()?;
    let (&depth, rest) = rest.split_first()?;
    if rest.len() != 2 * depth as usize {
        return None;
    }
    let code = rest
        .chunks_exact(2)
        .map(|c| u32::from(u16::from_le_bytes([c[0], c[1]])))
        .collect();
    Some(StoredCode {
        code: Code(code),
        truncated: flags & 1 == 1,
    })
}

impl RedisStore {
    /// Parses the URL; connects on first use.
    pub fn new(
        url: &str,
        namespace: Namespace,
        ttl: Option<Duration>,
        timeout: Duration,
    ) -> Result<Self, StoreError> {
        let client = redis::Client::open(url).map_err(|e| {
            StoreError::Unavailable(format!("--store {url:?} is not a Redis URL: {e}"))
        })?;
        let info = client.get_connection_info();
        let display = format!("redis at {}", info.addr());
        Ok(Self {
            client,
            manager: OnceCell::new(),
            namespace,
            ttl,
            timeout,
            display,
        })
    }

    async fn connection(&self) -> Result<ConnectionManager, StoreError> {
        let conn = self
            .manager
            .get_or_try_init(|| async {
                let config = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(self.timeout))
                    .set_response_timeout(Some(self.timeout))
                    .set_number_of_retries(1)
                    .set_max_delay(self.timeout);
                tokio::time::timeout(
                    self.timeout,
                    ConnectionManager::new_with_config(self.client.clone(), config),
                )
                .await
                .map_err(|_| unavailable(&self.display, "connecting timed out"))?
                .map_err(|e| unavailable(&self.display, e))
            })
            .await?;
        Ok(conn.clone())
    }

    /// Runs `f` on the connection within the timeout, recording latency and errors. A
    /// command that meets a connection the server dropped (Redis restarted) is tried once
    /// more on the manager's fresh connection, within the same time bound.
    async fn call<T, F, Fut>(&self, op: &'static str, f: F) -> Result<T, StoreError>
    where
        F: Fn(ConnectionManager) -> Fut,
        Fut: std::future::Future<Output = redis::RedisResult<T>>,
    {
        let started = Instant::now();
        let deadline = tokio::time::Instant::now() + self.timeout;
        let result = async {
            let mut tries = 0;
            loop {
                tries += 1;
                let conn = self.connection().await?;
                match tokio::time::timeout_at(deadline, f(conn)).await {
                    Err(_) => {
                        return Err(unavailable(
                            &self.display,
                            format!("{op} timed out after {:?}", self.timeout),
                        ));
                    }
                    Ok(Ok(v)) => return Ok(v),
                    Ok(Err(e)) if tries == 1 && (e.is_connection_dropped() || e.is_io_error()) => {
                        continue;
                    }
                    Ok(Err(e)) => return Err(unavailable(&self.display, e)),
                }
            }
        }
        .await;
        metrics::histogram!("hermes_store_seconds", "op" => op)
            .record(started.elapsed().as_secs_f64());
        if result.is_err() {
            metrics::counter!("hermes_store_errors_total", "op" => op).increment(1);
        }
        result
    }
}

impl IdStore for RedisStore {
    fn get_many<'a>(
        &'a self,
        ids: &'a [String],
    ) -> BoxFuture<'a, Result<Vec<Option<Arc<StoredCode>>>, StoreError>> {
        Box::pin(async move {
            let mut out = Vec::with_capacity(ids.len());
            for chunk in ids.chunks(BATCH) {
                let keys: Vec<String> = chunk.iter().map(|id| self.namespace.key(id)).collect();
                let keys = &keys;
                let values: Vec<Option<Vec<u8>>> = self
                    .call("get", |mut c| async move {
                        if keys.len() == 1 {
                            // MGET with one key answers a bare value in some clients' eyes;
                            // GET is unambiguous.
                            let v: Option<Vec<u8>> = c.get(&keys[0]).await?;
                            Ok(vec![v])
                        } else {
                            c.mget(keys).await
                        }
                    })
                    .await?;
                for (key, v) in keys.iter().zip(values) {
                    out.push(match v {
                        None => None,
                        Some(bytes) => Some(Arc::new(decode(&bytes).ok_or_else(|| {
                            let reason = format!("{} bytes, not a hermes code", bytes.len());
                            tracing::error!(%key, %reason, "undecodable value in the id store");
                            StoreError::Corrupt {
                                key: key.clone(),
                                reason,
                            }
                        })?)),
                    });
                }
            }
            Ok(out)
        })
    }

    fn put_many(
        &self,
        entries: Vec<(String, Arc<StoredCode>)>,
    ) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async move {
            for chunk in entries.chunks(BATCH) {
                let mut pipe = redis::pipe();
                for (id, code) in chunk {
                    let key = self.namespace.key(id);
                    match self.ttl {
                        Some(ttl) => pipe.set_ex(key, encode(code), ttl.as_secs().max(1)),
                        None => pipe.set(key, encode(code)),
                    };
                    pipe.ignore();
                }
                let pipe = &pipe;
                self.call("put", |mut c| async move {
                    pipe.query_async::<()>(&mut c).await
                })
                .await?;
            }
            Ok(())
        })
    }

    fn health(&self) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async move {
            self.call("ping", |mut c| async move {
                redis::cmd("PING").query_async::<String>(&mut c).await
            })
            .await
            .map(|_| ())
        })
    }

    fn report(&self) -> BoxFuture<'_, ()> {
        Box::pin(async {})
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_round_trip_and_stay_small() {
        let c = StoredCode {
            code: Code(vec![63, 0, 31]),
            truncated: true,
        };
        let bytes = encode(&c);
        assert_eq!(bytes.len(), 8);
        assert_eq!(decode(&bytes), Some(c));
        assert_eq!(decode(&[0, 3, 1]), None);
        assert_eq!(decode(&[]), None);
    }
}
