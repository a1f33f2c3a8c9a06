//! The documented row key: a 64-bit hash of `(seed, s)` that orders rows for mixtures
//! (docs/mix.md, rule 5) and draws the bucket-card samples (docs/cards.md). Its bytes are
//! a contract: stable across machines and versions.

use sha2::{Digest, Sha256};

/// The documented 64-bit hash of `(seed, s)`: the first 8 bytes, big-endian, of
/// `sha256(le_u64(seed) ‖ utf8(s))`. Row keys hash a row's `id`; stage-2 coverage breaks its
/// ties by the hash of a sub-bucket's label. Stable across machines and versions.
pub fn key_hash(seed: u64, s: &str) -> u64 {
    let mut h = Sha256::new();
    h.update(seed.to_le_bytes());
    h.update(s.as_bytes());
    let d = h.finalize();
    u64::from_be_bytes(d[..8].try_into().expect("8 bytes"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_row_key_is_the_documented_sha256_prefix() {
        // sha256(le_u64(0) ‖ "doc-1"), first 8 bytes big-endian (python: int.from_bytes(
        // hashlib.sha256((0).to_bytes(8, "little") + b"doc-1").digest()[:8], "big")).
        let mut h = Sha256::new();
        h.update([0u8; 8]);
        h.update(b"doc-1");
        let d = h.finalize();
        assert_eq!(
            key_hash(0, "doc-1"),
            u64::from_be_bytes(d[..8].try_into().unwrap())
        );
        assert_ne!(key_hash(1, "doc-1"), key_hash(0, "doc-1"));
    }
}
