//! [`Labeler`]: texts → full codes through the batcher and the bundle's code space.

use std::path::Path;
use std::sync::Arc;

use crate::batch::{BatchConfig, BatchError, Batcher, DocEmbedding, Workers};
use crate::bundle::{BundleError, LoadOptions, MANIFEST, Model, invalid};
use crate::encoder::{EncoderError, batch_shape, fastest_batch};
use crate::quantize::{Code, QuantizeError};
use crate::tier::Tier;

/// One text's full code.
#[derive(Debug, Clone, PartialEq)]
pub struct Labeled {
    pub code: Code,
    /// The text had more tokens than the encoder's budget and was cut.
    pub truncated: bool,
    /// `‖r_d‖` for d = 1..L: how far the text lies from its code at each depth.
    pub residuals: Vec<f32>,
}

#[derive(Debug, thiserror::Error)]
pub enum LabelError {
    #[error(transparent)]
    Batch(#[from] BatchError),
    /// Only a broken encoder gets here: its embeddings were not finite or had the wrong width.
    #[error("the encoder produced unusable embeddings: {0}")]
    Codes(QuantizeError),
}

/// A bundle's model and the batching queue in front of its encoder; clone freely.
#[derive(Clone)]
pub struct Labeler {
    model: Arc<Model>,
    batcher: Batcher,
}

/// What [`open`] returns: the labeler, and the workers to keep alive while it is used
/// (dropping them closes the queue and joins the threads).
pub struct Opened {
    pub labeler: Labeler,
    pub workers: Workers,
}

/// Loads and verifies the bundle at `dir`, starts its batcher and checks that every probe
/// still gets its recorded code through the labeling path itself.
pub async fn open(
    dir: &Path,
    options: &LoadOptions,
    batch: BatchConfig,
) -> Result<Opened, BundleError> {
    let (dir, options) = (dir.to_path_buf(), options.clone());
    let model = tokio::task::spawn_blocking(move || Model::load(&dir, &options))
        .await
        .map_err(|e| BundleError::Task(e.to_string()))??;
    let model = Arc::new(model);
    let (batcher, workers) = Batcher::start(model.encoder.clone(), batch);
    let labeler = Labeler { model, batcher };
    labeler.check_probes().await?;
    Ok(Opened { labeler, workers })
}

impl Labeler {
    /// A labeler for another tier of the same bundle, with its own batcher. `None` when the
    /// bundle lacks that tier.
    pub fn for_tier(&self, tier: Tier, batch: BatchConfig) -> Option<(Labeler, Workers)> {
        let encoder = self.model.embedder(tier)?;
        let (batcher, workers) = Batcher::start(encoder, batch);
        Some((
            Labeler {
                model: self.model.clone(),
                batcher,
            },
            workers,
        ))
    }

    /// The tier this labeler runs.
    pub fn tier(&self) -> Tier {
        self.batcher.encoder().tier()
    }

    /// The tier's weights digest where the fingerprint does not cover it (see
    /// [`crate::keyspace::Namespace::weights`]).
    pub fn weights_digest(&self) -> Option<String> {
        self.model.weights_digest(self.tier())
    }

    pub fn model(&self) -> &Arc<Model> {
        &self.model
    }

    pub fn batcher(&self) -> &Batcher {
        &self.batcher
    }

    /// Full codes of `texts` by this labeler's tier, in order. A code depends on its text
    /// alone, not on which other texts shared its batch.
    pub async fn label(&self, texts: Vec<String>) -> Result<Vec<Labeled>, LabelError> {
        let embedded = self.batcher.embed(texts).await?;
        let flat: Vec<f32> = embedded
            .iter()
            .flat_map(|e| e.vector.iter().copied())
            .collect();
        let (codes, norms) = self
            .model
            .space
            .codes_and_residuals(&flat)
            .map_err(LabelError::Codes)?;
        let levels = self.model.levels().len();
        Ok(codes
            .into_iter()
            .zip(embedded)
            .zip(norms.chunks_exact(levels.max(1)))
            .map(|((code, e), r)| Labeled {
                code,
                truncated: e.truncated,
                residuals: r.to_vec(),
            })
            .collect())
    }

    /// Raw encoder embeddings (before the transform), in order.
    pub async fn embed(&self, texts: Vec<String>) -> Result<Vec<DocEmbedding>, BatchError> {
        self.batcher.embed(texts).await
    }

    /// Measures which batch size (at most `max`) the encoder runs fastest on this machine,
    /// on `texts`, caps the batcher's batches at it and lets a batch pad by what batching
    /// gains ([`batch_shape`]). Returns the docs/s of each size.
    pub fn calibrate(&self, texts: &[&str], max: usize) -> Result<Vec<(usize, f64)>, EncoderError> {
        let encoder = self.batcher.encoder().as_ref();
        let (_, rates) = fastest_batch(encoder, texts, max, self.batcher.workers())?;
        let (best, padding) = batch_shape(&rates);
        self.batcher.set_batch_shape(best, padding);
        let table: Vec<String> = rates.iter().map(|(b, r)| format!("{b}: {r:.1}")).collect();
        tracing::info!(
            best,
            padding = format!("{padding:.3}"),
            docs_per_s_by_batch = %table.join(", "),
            "batch size measured fastest on this CPU"
        );
        Ok(rates)
    }

    /// Codes of caller-computed embeddings (`[n, dim]` row-major).
    pub fn quantize(&self, embeddings: &[f32]) -> Result<Vec<Code>, QuantizeError> {
        self.model.space.codes(embeddings)
    }

    async fn check_probes(&self) -> Result<(), BundleError> {
        let probes = &self.model.manifest.probes;
        if probes.is_empty() {
            return Ok(());
        }
        let dir = &self.model.dir;
        let texts = probes.iter().map(|p| p.text.clone()).collect();
        let labeled = self
            .label(texts)
            .await
            .map_err(|e| invalid(dir, MANIFEST, format!("probes: {e}")))?;
        for (i, (probe, got)) in probes.iter().zip(labeled).enumerate() {
            if got.code.0 != probe.code {
                return Err(invalid(
                    dir,
                    MANIFEST,
                    format!(
                        "probes[{i}].code is {:?} but the bundle now codes {:?} as {:?}",
                        probe.code,
                        preview(&probe.text),
                        got.code.0
                    ),
                ));
            }
        }
        Ok(())
    }
}

fn preview(text: &str) -> String {
    let mut s: String = text.chars().take(40).collect();
    if s.len() < text.len() {
        s.push('…');
    }
    s
}
