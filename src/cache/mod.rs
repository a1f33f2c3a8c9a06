//! Two caches of full codes (moka, async):
//!
//! - by document id, so `GET /v1/codes/{id}` and `POST /v1/codes/lookup` answer at any depth
//!   without encoding;
//! - by content (sha256 of the bundle fingerprint and the text), so a repeated text is not
//!   encoded again (`cached: true`).
//!
//! Codes are stored at full depth and truncated on the way out. Hits, misses and entry counts
//! are exported as metrics.

use std::sync::Arc;
use std::time::Duration;

use moka::future::Cache;
use sha2::{Digest, Sha256};

use crate::quantize::Code;

#[derive(Debug, Clone)]
pub struct CacheConfig {
    /// Entries in the id → code cache.
    pub id_capacity: u64,
    /// Entries in the text → code cache.
    pub text_capacity: u64,
    /// Evict entries this long after they were written (None: never).
    pub ttl: Option<Duration>,
    /// Evict entries not read for this long (None: never).
    pub idle: Option<Duration>,
}

/// A cached full code with the truncation flag of the text it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct CachedCode {
    pub code: Code,
    pub truncated: bool,
}

#[derive(Clone)]
pub struct CodeCache {
    by_id: Cache<String, Arc<CachedCode>>,
    by_text: Cache<[u8; 32], Arc<CachedCode>>,
    /// Mixed into content keys: codes from another bundle never answer for this one.
    fingerprint: String,
}

fn build<K, V>(capacity: u64, config: &CacheConfig) -> Cache<K, V>
where
    K: std::hash::Hash + Eq + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    let mut b = Cache::builder().max_capacity(capacity);
    if let Some(ttl) = config.ttl {
        b = b.time_to_live(ttl);
    }
    if let Some(idle) = config.idle {
        b = b.time_to_idle(idle);
    }
    b.build()
}

impl CodeCache {
    pub fn new(config: &CacheConfig, fingerprint: &str) -> Self {
        Self {
            by_id: build(config.id_capacity, config),
            by_text: build(config.text_capacity, config),
            fingerprint: fingerprint.to_string(),
        }
    }

    pub fn text_key(&self, text: &str) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(self.fingerprint.as_bytes());
        h.update([0]);
        h.update(text.as_bytes());
        h.finalize().into()
    }

    pub async fn get_text(&self, key: &[u8; 32]) -> Option<Arc<CachedCode>> {
        let hit = self.by_text.get(key).await;
        record("text", hit.is_some());
        hit
    }

    pub async fn put_text(&self, key: [u8; 32], code: Arc<CachedCode>) {
        self.by_text.insert(key, code).await;
    }

    pub async fn get_id(&self, id: &str) -> Option<Arc<CachedCode>> {
        let hit = self.by_id.get(id).await;
        record("id", hit.is_some());
        hit
    }

    pub async fn put_id(&self, id: String, code: Arc<CachedCode>) {
        self.by_id.insert(id, code).await;
    }

    /// Publishes entry counts (called when metrics are scraped). moka counts lazily, so
    /// pending maintenance runs first.
    pub async fn report_entries(&self) {
        self.by_id.run_pending_tasks().await;
        self.by_text.run_pending_tasks().await;
        metrics::gauge!("hermes_cache_entries", "cache" => "id")
            .set(self.by_id.entry_count() as f64);
        metrics::gauge!("hermes_cache_entries", "cache" => "text")
            .set(self.by_text.entry_count() as f64);
    }
}

fn record(cache: &'static str, hit: bool) {
    let outcome = if hit { "hit" } else { "miss" };
    metrics::counter!("hermes_cache_requests_total", "cache" => cache, "outcome" => outcome)
        .increment(1);
}
