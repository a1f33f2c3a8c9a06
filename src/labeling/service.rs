//! What the HTTP API does, without HTTP: validate against the limits, consult the content
//! cache, label the misses through the [`Labeler`], remember ids in the id store. Handlers
//! in `api/` parse, call one method here and shape the answer; [`ServiceError`] is mapped to
//! statuses there and only there.

use std::sync::Arc;

use super::labeler::{LabelError, Labeler};
use super::limits::{Limits, check_count, defaults::MAX_ABS_EMBEDDING};
use crate::batch::BatchError;
use crate::bundle::Model;
use crate::cache::TextCache;
use crate::quantize::{Code, QuantizeError};
use crate::store::{IdStore, StoreError, StoredCode};
use crate::tier::Tier;

/// Why a request could not be served, in the service's own terms.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ServiceError {
    /// The caller's input breaks a rule or a limit.
    #[error("{0}")]
    Validation(String),
    /// Too much work is queued; retry after `retry_after` seconds.
    #[error("{message}")]
    Overloaded { message: String, retry_after: u32 },
    /// A part the request needs is not available (shutting down, store unreachable).
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    Internal(String),
}

impl From<BatchError> for ServiceError {
    fn from(e: BatchError) -> Self {
        match e {
            BatchError::Overloaded { .. } => Self::Overloaded {
                message: e.to_string(),
                retry_after: 1,
            },
            BatchError::Closed => Self::Unavailable(e.to_string()),
            BatchError::Encoder(e) => Self::Internal(format!("encoder: {e}")),
        }
    }
}

impl From<LabelError> for ServiceError {
    fn from(e: LabelError) -> Self {
        match e {
            LabelError::Batch(e) => e.into(),
            LabelError::Codes(_) => Self::Internal(e.to_string()),
        }
    }
}

impl From<QuantizeError> for ServiceError {
    fn from(e: QuantizeError) -> Self {
        Self::Validation(match e {
            QuantizeError::Dimension { row, got, want } => {
                format!("embeddings[{row}] has {got} values, the model's dim is {want}")
            }
            QuantizeError::NonFinite { row } => {
                format!("embeddings[{row}] contains NaN or infinity")
            }
            QuantizeError::Depth { depth, levels } => {
                format!("depth {depth} is outside 1..={levels}")
            }
        })
    }
}

impl From<StoreError> for ServiceError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Unavailable(_) => Self::Unavailable(e.to_string()),
            StoreError::Corrupt { .. } => Self::Internal(e.to_string()),
        }
    }
}

/// A document to label.
#[derive(Debug, Clone)]
pub struct Document {
    /// Remembered in the id store when present.
    pub id: Option<String>,
    pub text: String,
}

/// A labeled document: its full code (callers truncate to the depth they answer at).
#[derive(Debug, Clone)]
pub struct LabeledDoc {
    pub id: Option<String>,
    pub code: Arc<StoredCode>,
    /// Answered from the content cache, without encoding.
    pub cached: bool,
}

/// One encoder tier's labeler with its own caches: codes of two tiers never answer for each
/// other.
pub struct TierService {
    pub labeler: Labeler,
    /// Content cache: a repeated text is not encoded again.
    pub texts: TextCache,
    /// Id → code, for `/v1/codes/*`.
    pub ids: Arc<dyn IdStore>,
}

/// The tiers with the limits the HTTP API puts around them.
pub struct Service {
    /// minilm, and static when the bundle has it.
    pub tiers: Vec<TierService>,
    /// The tier used when a request names none (`--encoder`).
    pub default_tier: usize,
    pub limits: Limits,
    /// The bundle's atlas page, rendered once from its cards (`GET /atlas`).
    pub atlas: Option<bytes::Bytes>,
}

/// Refuses a string of more than `max` characters (counted only as far as needed).
impl Service {
    pub fn atlas_page(&self) -> Option<bytes::Bytes> {
        self.atlas.clone()
    }

    pub fn model(&self) -> &Arc<Model> {
        self.tiers[self.default_tier].labeler.model()
    }

    /// The tier a request asks for (`None`: the server's default).
    pub fn tier(&self, encoder: Option<Tier>) -> Result<&TierService, ServiceError> {
        let Some(tier) = encoder else {
            return Ok(&self.tiers[self.default_tier]);
        };
        self.tiers
            .iter()
            .find(|t| t.labeler.tier() == tier)
            .ok_or_else(|| {
                let have: Vec<&str> = self
                    .tiers
                    .iter()
                    .map(|t| t.labeler.tier().as_str())
                    .collect();
                ServiceError::Validation(format!(
                    "encoder {:?} is not served here (this bundle has {})",
                    tier.as_str(),
                    have.join(", ")
                ))
            })
    }

    /// The requested depth, defaulting to the full code.
    pub fn depth(&self, depth: Option<u32>) -> Result<usize, ServiceError> {
        Ok(self.model().space.depth(depth)?)
    }

    pub fn check_id(&self, field: &str, id: &str) -> Result<(), ServiceError> {
        self.limits.check_id(field, id)
    }

    /// Checks a whole label request before any work starts.
    pub fn validate_documents(&self, docs: &[Document]) -> Result<(), ServiceError> {
        self.limits.check_documents(docs)
    }

    /// Full codes for documents, in order: content-cache hits answer at once, misses are
    /// labeled. Every code is remembered by content and, when the document has an id, in
    /// the id store before this returns (a store failure fails the request).
    pub async fn label(
        &self,
        tier: &TierService,
        docs: Vec<Document>,
    ) -> Result<Vec<LabeledDoc>, ServiceError> {
        let mut found: Vec<Option<(Arc<StoredCode>, bool)>> = Vec::with_capacity(docs.len());
        let mut keys = Vec::with_capacity(docs.len());
        let mut misses = Vec::new();
        for (i, d) in docs.iter().enumerate() {
            let key = tier.texts.key(&d.text);
            match tier.texts.get(&key).await {
                Some(hit) => found.push(Some((hit, true))),
                None => {
                    found.push(None);
                    misses.push(i);
                }
            }
            keys.push(key);
        }
        if !misses.is_empty() {
            let texts: Vec<String> = misses.iter().map(|&i| docs[i].text.clone()).collect();
            let labeled = tier.labeler.label(texts).await?;
            for (&i, l) in misses.iter().zip(labeled) {
                let entry = Arc::new(StoredCode {
                    code: l.code,
                    truncated: l.truncated,
                });
                tier.texts.put(keys[i], entry.clone()).await;
                found[i] = Some((entry, false));
            }
        }
        let mut results = Vec::with_capacity(docs.len());
        let mut remember = Vec::new();
        for (doc, entry) in docs.into_iter().zip(found) {
            let (code, cached) =
                entry.ok_or_else(|| ServiceError::Internal("a document was not coded".into()))?;
            if let Some(id) = &doc.id {
                remember.push((id.clone(), code.clone()));
            }
            results.push(LabeledDoc {
                id: doc.id,
                code,
                cached,
            });
        }
        if !remember.is_empty() {
            tier.ids.put_many(remember).await?;
        }
        Ok(results)
    }

    /// Raw encoder embeddings (before the transform).
    pub async fn embed(
        &self,
        tier: &TierService,
        texts: Vec<String>,
    ) -> Result<Vec<Vec<f32>>, ServiceError> {
        self.limits.check_texts(&texts)?;
        Ok(tier
            .labeler
            .embed(texts)
            .await?
            .into_iter()
            .map(|e| e.vector)
            .collect())
    }

    /// Full codes of caller-computed embeddings (transform + quantizer applied here).
    pub fn quantize(&self, embeddings: &[Vec<f32>]) -> Result<Vec<Code>, ServiceError> {
        check_count("embeddings", embeddings.len(), self.limits.max_docs)?;
        let dim = self.model().space.in_dim();
        if let Some(i) = embeddings.iter().position(|e| e.len() != dim) {
            return Err(QuantizeError::Dimension {
                row: i,
                got: embeddings[i].len(),
                want: dim,
            }
            .into());
        }
        let flat: Vec<f32> = embeddings.iter().flatten().copied().collect();
        if let Some(pos) = flat
            .iter()
            .position(|x| x.is_finite() && x.abs() > MAX_ABS_EMBEDDING)
        {
            return Err(ServiceError::Validation(format!(
                "embeddings[{}] has a value beyond ±{MAX_ABS_EMBEDDING:e}",
                pos / dim
            )));
        }
        Ok(self.tiers[self.default_tier].labeler.quantize(&flat)?)
    }

    /// The full codes remembered for `ids`, in order (`None` for unknown ids).
    pub async fn lookup(
        &self,
        tier: &TierService,
        ids: &[String],
    ) -> Result<Vec<Option<Arc<StoredCode>>>, ServiceError> {
        Ok(tier.ids.get_many(ids).await?)
    }

    pub fn check_lookup(&self, ids: &[String]) -> Result<(), ServiceError> {
        self.limits.check_lookup(ids)
    }
}
