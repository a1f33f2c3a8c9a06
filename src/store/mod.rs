//! The id store: document id → full code, so `GET /v1/codes/{id}` and `/v1/codes/lookup`
//! answer at any depth without encoding.
//!
//! [`IdStore`] is the seam; [`MemoryStore`] (moka, bounded by capacity: a cache, lost on
//! restart) is the default; with `--store redis://…`, [`TieredStore`] puts it in front of
//! [`RedisStore`], shared by every replica and kept across restarts. Calls are batched (`get_many`/`put_many`) and can fail, so a
//! shared store over the network fits behind the same trait. Keys carry the bundle
//! fingerprint and the encoder tier ([`Namespace`]): codes of two bundles or two tiers never
//! answer for each other, even in one shared store.

mod memory;
pub mod redis;
mod tiered;

use std::sync::Arc;

use futures::future::BoxFuture;

pub use memory::MemoryStore;
pub use redis::RedisStore;
pub use tiered::TieredStore;

pub use crate::keyspace::{Namespace, StoredCode};

#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// The store cannot be reached or did not answer in time.
    #[error("the id store is unavailable: {0}")]
    Unavailable(String),
    /// The store answered with a value hermes did not write (another program's key, or a
    /// damaged value): an error, not "unknown id", so the caller does not relabel over it.
    #[error("the id store holds an undecodable value at {key}: {reason}")]
    Corrupt { key: String, reason: String },
}

/// Id → full code, batched and fallible.
pub trait IdStore: Send + Sync {
    /// One entry per id, in order; `None` for ids never stored (or evicted).
    fn get_many<'a>(
        &'a self,
        ids: &'a [String],
    ) -> BoxFuture<'a, Result<Vec<Option<Arc<StoredCode>>>, StoreError>>;

    /// Stores every entry; returns once they are stored.
    fn put_many(
        &self,
        entries: Vec<(String, Arc<StoredCode>)>,
    ) -> BoxFuture<'_, Result<(), StoreError>>;

    /// Whether the store can serve requests now (for `/readyz`); bounded in time.
    fn health(&self) -> BoxFuture<'_, Result<(), StoreError>>;

    /// Publishes entry counts and the like as metrics (called when metrics are scraped).
    fn report(&self) -> BoxFuture<'_, ()>;
}
