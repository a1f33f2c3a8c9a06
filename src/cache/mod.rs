//! The content cache (moka, async): sha256 of bundle fingerprint, encoder tier and text →
//! full code, so a repeated text is not encoded again (`cached: true`). Codes are stored at
//! full depth and truncated on the way out. Hits, misses and entry counts are metrics.
//!
//! The id → code map is the id store (`crate::store`), not this cache.

use std::sync::Arc;
use std::time::Duration;

use moka::future::Cache;
use sha2::{Digest, Sha256};

use crate::keyspace::{Namespace, StoredCode, bounded, record_lookup};

#[derive(Clone)]
pub struct TextCache {
    entries: Cache<[u8; 32], Arc<StoredCode>>,
    /// Mixed into keys: codes from another bundle or tier never answer for this one.
    namespace: Namespace,
}

impl TextCache {
    pub fn new(
        namespace: Namespace,
        capacity: u64,
        ttl: Option<Duration>,
        idle: Option<Duration>,
    ) -> Self {
        Self {
            entries: bounded(capacity, ttl, idle),
            namespace,
        }
    }

    pub fn key(&self, text: &str) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(self.namespace.fingerprint.as_bytes());
        h.update([0]);
        h.update(self.namespace.encoder.as_str().as_bytes());
        if let Some(w) = &self.namespace.weights {
            h.update(b"-");
            h.update(w.as_bytes());
        }
        h.update([0]);
        h.update(text.as_bytes());
        h.finalize().into()
    }

    pub async fn get(&self, key: &[u8; 32]) -> Option<Arc<StoredCode>> {
        let hit = self.entries.get(key).await;
        record_lookup("text", hit.is_some());
        hit
    }

    pub async fn put(&self, key: [u8; 32], code: Arc<StoredCode>) {
        self.entries.insert(key, code).await;
    }

    /// Publishes the entry count (called when metrics are scraped).
    pub async fn report(&self) {
        self.entries.run_pending_tasks().await;
        metrics::gauge!("hermes_cache_entries", "cache" => "text", "encoder" => self.namespace.encoder.as_str())
            .set(self.entries.entry_count() as f64);
    }
}
