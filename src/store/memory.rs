//! The in-process id store (moka): today's behaviour without `--store`. Bounded by
//! capacity and optional TTL / idle expiry, so it is a cache, not storage.

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use moka::future::Cache;

use super::{IdStore, Namespace, StoreError, StoredCode};

pub struct MemoryStore {
    /// Keyed by [`Namespace::key`].
    entries: Cache<String, Arc<StoredCode>>,
    namespace: Namespace,
}

impl MemoryStore {
    pub fn new(
        namespace: Namespace,
        capacity: u64,
        ttl: Option<Duration>,
        idle: Option<Duration>,
    ) -> Self {
        Self {
            entries: crate::keyspace::bounded(capacity, ttl, idle),
            namespace,
        }
    }
}

impl IdStore for MemoryStore {
    fn get_many<'a>(
        &'a self,
        ids: &'a [String],
    ) -> BoxFuture<'a, Result<Vec<Option<Arc<StoredCode>>>, StoreError>> {
        Box::pin(async move {
            let mut out = Vec::with_capacity(ids.len());
            for id in ids {
                let hit = self.entries.get(&self.namespace.key(id)).await;
                crate::keyspace::record_lookup("id", hit.is_some());
                out.push(hit);
            }
            Ok(out)
        })
    }

    fn put_many(
        &self,
        entries: Vec<(String, Arc<StoredCode>)>,
    ) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async move {
            // A cache of no entries keeps nothing: not even the key and moka's bookkeeping of
            // an entry it then evicts.
            if self.entries.policy().max_capacity() == Some(0) {
                return Ok(());
            }
            for (id, code) in entries {
                self.entries.insert(self.namespace.key(&id), code).await;
            }
            Ok(())
        })
    }

    fn health(&self) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async { Ok(()) })
    }

    fn report(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            // moka counts lazily: run pending maintenance first.
            self.entries.run_pending_tasks().await;
            metrics::gauge!("hermes_cache_entries", "cache" => "id", "encoder" => self.namespace.encoder.as_str())
                .set(self.entries.entry_count() as f64);
        })
    }
}
