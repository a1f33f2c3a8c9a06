//! What the content cache ([`crate::cache`]) and the id store ([`crate::store`]) both stand
//! on: the code they keep ([`StoredCode`]), the scope of their keys ([`Namespace`]) and the
//! bounded moka map with its hit/miss metric. It lives below both so neither imports the other.

use std::time::Duration;

use moka::future::Cache;

use crate::quantize::Code;
use crate::tier::Tier;

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
    /// The encoder tier: two tiers' codes of one text differ.
    pub encoder: Tier,
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

/// Builds a moka cache bounded by `capacity`, with optional TTL and idle expiry.
pub(crate) fn bounded<K, V>(
    capacity: u64,
    ttl: Option<Duration>,
    idle: Option<Duration>,
) -> Cache<K, V>
where
    K: std::hash::Hash + Eq + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    let mut b = Cache::builder().max_capacity(capacity);
    if let Some(ttl) = ttl {
        b = b.time_to_live(ttl);
    }
    if let Some(idle) = idle {
        b = b.time_to_idle(idle);
    }
    b.build()
}

/// Counts a cache look-up in `hermes_cache_requests_total`.
pub(crate) fn record_lookup(cache: &'static str, hit: bool) {
    let outcome = if hit { "hit" } else { "miss" };
    metrics::counter!("hermes_cache_requests_total", "cache" => cache, "outcome" => outcome)
        .increment(1);
}

#[cfg(test)]
mod tests {
    use super::Namespace;
    use crate::tier::Tier;

    #[test]
    fn a_refitted_static_table_does_not_answer_for_the_old_one() {
        let ns = |encoder: Tier, weights: Option<&str>| Namespace {
            fingerprint: "d4cf1c3f79371e30".into(),
            encoder,
            weights: weights.map(str::to_string),
        };
        assert_eq!(
            ns(Tier::Minilm, None).key("a"),
            "hermes:d4cf1c3f79371e30:minilm:a"
        );
        let old = ns(Tier::Static, Some("0011223344556677")).key("a");
        assert_eq!(old, "hermes:d4cf1c3f79371e30:static-0011223344556677:a");
        assert_ne!(old, ns(Tier::Static, Some("8899aabbccddeeff")).key("a"));
    }
}
