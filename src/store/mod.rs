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

use crate::quantize::Code;

/// A stored full code with the truncation flag of the text it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredCode {
    pub code: Code,
    pub truncated: bool,
}

/// What a key is scoped to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Namespace {
    /// The bundle fingerprint: codes are comparable only within one.
    pub fingerprint: String,
    /// The encoder tier (`minilm`, `static`).
    pub encoder: String,
    /// A digest of the tier's weights where the fingerprint does not cover them: the static
    /// table, which `hermes fit --static-only` refits without touching the codebooks or the
    /// fingerprint. Without it, ids stored before such a refit would keep answering with the
    /// old table's codes. `None` for minilm, whose encoder the fingerprint covers.
    pub weights: Option<String>,
}

impl Namespace {
    /// `hermes:{fingerprint}:{encoder}:{id}`, or `hermes:{fingerprint}:{encoder}-{weights}:{id}`
    /// for a tier with its own weights digest.
    pub fn key(&self, id: &str) -> String {
        // Written in one go: this runs for every id of every store call.
        match &self.weights {
            Some(w) => format!("hermes:{}:{}-{w}:{id}", self.fingerprint, self.encoder),
            None => format!("hermes:{}:{}:{id}", self.fingerprint, self.encoder),
        }
    }
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// The store cannot be reached or did not answer in time.
    #[error("the id store is unavailable: {0}")]
    Unavailable(String),
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

#[cfg(test)]
mod tests {
    use super::Namespace;

    #[test]
    fn a_refitted_static_table_does_not_answer_for_the_old_one() {
        let ns = |encoder: &str, weights: Option<&str>| Namespace {
            fingerprint: "d4cf1c3f79371e30".into(),
            encoder: encoder.into(),
            weights: weights.map(str::to_string),
        };
        assert_eq!(
            ns("minilm", None).key("a"),
            "hermes:d4cf1c3f79371e30:minilm:a"
        );
        let old = ns("static", Some("0011223344556677")).key("a");
        assert_eq!(old, "hermes:d4cf1c3f79371e30:static-0011223344556677:a");
        assert_ne!(old, ns("static", Some("8899aabbccddeeff")).key("a"));
    }
}
