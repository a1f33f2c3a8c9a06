//! Encoders: text in, L2-normalised embedding in the teacher's space R^d out.
//!
//! [`Embedder`] is the seam every consumer uses (the batcher, the bundle, the CLI), held as
//! `Arc<dyn Embedder>`. Tokenization is separate from inference so that a batcher can group
//! documents by length before running them. [`MiniLm`] (ONNX Runtime) is the reference
//! implementation; a bundle's code space does not care which encoder produced an embedding
//! as long as it lives in the same space.

mod gather;
mod minilm;
pub mod ort_runtime;
mod pool;
pub mod static_table;
mod tokenize;
mod wordpiece;

use std::path::PathBuf;

pub use crate::tier::Tier;

pub use minilm::{EncoderConfig, MiniLm};
pub use static_table::StaticEncoder;
pub use tokenize::{TokenizedText, Tokenizer};

/// Why encoding failed. Messages name the file or the input at fault.
#[derive(Debug, thiserror::Error)]
pub enum EncoderError {
    #[error("{0}")]
    Runtime(String),
    #[error("{file}: {message}")]
    Load { file: PathBuf, message: String },
    #[error("tokenizer: {0}")]
    Tokenize(String),
    #[error("inference failed: {0}")]
    Inference(String),
}

/// Embeddings of a batch, row-major `[n, dim]`, with the truncation flag of each text.
#[derive(Debug, Clone)]
pub struct Embedded {
    pub dim: usize,
    pub vectors: Vec<f32>,
    pub truncated: Vec<bool>,
}

impl Embedded {
    pub fn row(&self, i: usize) -> &[f32] {
        &self.vectors[i * self.dim..(i + 1) * self.dim]
    }
}

/// A text encoder. Implementations must make a text's embedding independent of the other
/// texts in its batch (codes must not depend on batch neighbours).
pub trait Embedder: Send + Sync {
    /// The tier this encoder implements (answers, caches and markers carry it).
    fn tier(&self) -> Tier;

    /// Embedding width.
    fn dim(&self) -> usize;

    /// Token budget per text; longer texts are truncated and flagged.
    fn max_tokens(&self) -> usize;

    /// Tokenizes one text (truncated at `max_tokens`, unpadded).
    fn tokenize(&self, text: &str) -> Result<TokenizedText, EncoderError>;

    /// Runs one batch; returns `[n, dim]` row-major.
    fn embed_tokens(&self, batch: &[&TokenizedText]) -> Result<Vec<f32>, EncoderError>;

    /// Tokenizes and embeds `texts` as one batch.
    fn embed(&self, texts: &[&str]) -> Result<Embedded, EncoderError> {
        let tokens: Vec<TokenizedText> = texts
            .iter()
            .map(|t| self.tokenize(t))
            .collect::<Result<_, _>>()?;
        let refs: Vec<&TokenizedText> = tokens.iter().collect();
        Ok(Embedded {
            dim: self.dim(),
            vectors: self.embed_tokens(&refs)?,
            truncated: tokens.iter().map(|t| t.truncated).collect(),
        })
    }
}

/// Rounds of [`fastest_batch`]. With one round, three starts in a row on the same machine
/// measured gains of 0.23, 0.10 and 0.14: the batch shape was left to chance.
pub const CALIBRATION_ROUNDS: usize = 3;

/// Measures which batch size (at most `max`) embeds `texts` fastest on this machine: each
/// candidate size runs over the same texts, sorted by length as the batcher sorts them.
/// Whether a batch is cheaper per document than one text alone depends on the CPU (the
/// project's AVX2 and AVX-512 machines disagree), so it is measured rather than assumed.
/// `parallel` callers run at once, one per encoder session, as the batcher's workers do:
/// what a batch gains on a session alone need not survive its neighbours' share of the
/// caches and memory bandwidth.
/// The sizes take turns over [`CALIBRATION_ROUNDS`] rounds and each keeps its best round: a
/// shared machine's speed drifts by more than the differences measured, and drift only ever
/// slows a round down. After the first round, only sizes faster than every smaller one are
/// timed again. Returns the best size and the docs/s of every candidate.
pub fn fastest_batch(
    encoder: &dyn Embedder,
    texts: &[&str],
    max: usize,
    parallel: usize,
) -> Result<(usize, Vec<(usize, f64)>), EncoderError> {
    let mut tokens: Vec<TokenizedText> = texts
        .iter()
        .map(|t| encoder.tokenize(t))
        .collect::<Result<_, _>>()?;
    tokens.sort_by_key(|t| t.ids.len());
    let parallel = parallel.max(1);
    let mut rates: Vec<(usize, f64)> = [1usize, 4, 16, 32, 64]
        .into_iter()
        .filter(|&s| s <= max.max(1))
        .map(|s| (s, 0.0))
        .collect();
    let run_all = |size: usize| -> Result<(), EncoderError> {
        for batch in tokens.chunks(size) {
            let refs: Vec<&TokenizedText> = batch.iter().collect();
            encoder.embed_tokens(&refs)?;
        }
        Ok(())
    };
    let mut timed: Vec<usize> = rates.iter().map(|r| r.0).collect();
    for round in 0..CALIBRATION_ROUNDS {
        if round == 1 {
            // A size already slower than a smaller one after a round will not win: drift
            // only slows rounds down, so its best could still rise, but rarely past a size
            // it lost to. Timing it twice more cost about 18 s per task on AVX2.
            let mut best_smaller = 0.0f64;
            timed.retain(|&size| {
                let rate = rates.iter().find(|r| r.0 == size).map_or(0.0, |r| r.1);
                let keep = rate >= best_smaller;
                best_smaller = best_smaller.max(rate);
                keep
            });
        }
        for (size, rate) in rates.iter_mut().filter(|r| timed.contains(&r.0)) {
            let started = std::time::Instant::now();
            std::thread::scope(|s| {
                let callers: Vec<_> = (0..parallel).map(|_| s.spawn(|| run_all(*size))).collect();
                callers
                    .into_iter()
                    .try_for_each(|c| c.join().expect("a calibration thread panicked"))
            })?;
            let secs = started.elapsed().as_secs_f64().max(1e-9);
            *rate = rate.max((parallel * tokens.len()) as f64 / secs);
        }
    }
    let best = rates
        .iter()
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .map_or(1, |r| r.0);
    Ok((best, rates))
}

/// The batch shape the measured `rates` (docs/s by batch size, from [`fastest_batch`]) call
/// for: the fastest size, and the padding a batch may carry, as a fraction of its real tokens.
/// Padding costs encoder time in proportion to the tokens it adds, and batching saves
/// `best / single − 1` of it, so a batch padded by more than that is slower than running its
/// documents one by one. On a CPU where batches do not pay (best size 1) the allowance is 0.
pub fn batch_shape(rates: &[(usize, f64)]) -> (usize, f64) {
    let best = rates
        .iter()
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .copied()
        .unwrap_or((1, 1.0));
    let single = rates.iter().find(|r| r.0 == 1).map_or(best.1, |r| r.1);
    let gain = if single > 0.0 {
        best.1 / single - 1.0
    } else {
        0.0
    };
    (best.0, gain.max(0.0))
}

#[cfg(test)]
mod tests {
    use super::batch_shape;

    #[test]
    fn batches_may_pad_by_what_batching_gains() {
        let (best, padding) = batch_shape(&[(1, 50.0), (4, 60.0), (16, 40.0)]);
        assert_eq!(best, 4);
        assert!((padding - 0.2).abs() < 1e-9);
        // Where one text alone is fastest, no padding is worth it.
        assert_eq!(batch_shape(&[(1, 60.0), (4, 50.0)]), (1, 0.0));
    }
}
