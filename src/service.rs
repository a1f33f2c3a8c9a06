//! What the HTTP API does, without HTTP: validate, consult the caches, batch-encode the misses,
//! quantize, remember. Handlers in `api/` parse, call one method here and wrap the answer.

use std::sync::Arc;

use crate::api::error::ApiError;
use crate::api::types::{CodeOut, DocumentIn, LabelResult, ModelRef};
use crate::batch::{BatchError, Batcher};
use crate::bundle::Model;
use crate::cache::{CachedCode, CodeCache};
use crate::quantize::{Code, QuantizeError};

/// Request limits (from `ServeArgs`).
#[derive(Debug, Clone)]
pub struct Limits {
    pub max_docs: usize,
    pub max_text_chars: usize,
    pub max_id_chars: usize,
    pub max_items: usize,
    /// Lines of one NDJSON stream in flight at once.
    pub stream_concurrency: usize,
}

/// The loaded model with its batcher and caches.
pub struct Service {
    pub model: Arc<Model>,
    pub batcher: Batcher,
    pub cache: CodeCache,
    pub limits: Limits,
}

impl From<BatchError> for ApiError {
    fn from(e: BatchError) -> Self {
        match e {
            BatchError::Overloaded { .. } => ApiError::Overloaded {
                message: e.to_string(),
                retry_after: 1,
            },
            BatchError::Closed => ApiError::Unavailable(e.to_string()),
            BatchError::Encoder(e) => ApiError::Internal(format!("encoder: {e}")),
        }
    }
}

impl From<QuantizeError> for ApiError {
    fn from(e: QuantizeError) -> Self {
        match e {
            QuantizeError::Dimension { row, got, want } => ApiError::Validation(format!(
                "embeddings[{row}] has {got} values, the model's dim is {want}"
            )),
            QuantizeError::NonFinite { row } => {
                ApiError::Validation(format!("embeddings[{row}] contains NaN or infinity"))
            }
            QuantizeError::Depth { depth, levels } => {
                ApiError::Validation(format!("depth {depth} is outside 1..={levels}"))
            }
        }
    }
}

/// Refuses a string of more than `max` characters (counted only as far as needed).
fn check_chars(field: &str, s: &str, max: usize) -> Result<(), ApiError> {
    if s.len() > max && s.chars().nth(max).is_some() {
        return Err(ApiError::Validation(format!(
            "{field} has more than {max} characters"
        )));
    }
    Ok(())
}

impl Service {
    pub fn model_ref(&self) -> ModelRef {
        ModelRef {
            name: self.model.name().to_string(),
            fingerprint: self.model.fingerprint().to_string(),
        }
    }

    /// The requested depth, defaulting to the full code.
    pub fn depth(&self, depth: Option<u32>) -> Result<usize, ApiError> {
        let levels = self.model.levels().len();
        match depth {
            None => Ok(levels),
            Some(d) if (1..=levels as u32).contains(&d) => Ok(d as usize),
            Some(d) => Err(ApiError::Validation(format!(
                "depth {d} is outside 1..={levels}"
            ))),
        }
    }

    pub fn code_out(&self, code: &Code, depth: usize) -> CodeOut {
        let code = code.truncate(depth);
        CodeOut {
            label: code.label(),
            cell: code.cell(self.model.levels()),
            code: code.0,
        }
    }

    fn check_count(&self, what: &str, n: usize, max: usize) -> Result<(), ApiError> {
        if n == 0 {
            return Err(ApiError::Validation(format!("{what} must not be empty")));
        }
        if n > max {
            return Err(ApiError::Validation(format!(
                "{n} {what}; at most {max} per request"
            )));
        }
        Ok(())
    }

    pub fn check_id(&self, field: &str, id: &str) -> Result<(), ApiError> {
        check_chars(field, id, self.limits.max_id_chars)
    }

    fn check_text(&self, field: &str, text: &str) -> Result<(), ApiError> {
        check_chars(field, text, self.limits.max_text_chars)
    }

    /// Checks a whole label request before any work starts.
    pub fn validate_documents(&self, docs: &[DocumentIn]) -> Result<(), ApiError> {
        self.check_count("documents", docs.len(), self.limits.max_docs)?;
        for (i, d) in docs.iter().enumerate() {
            if let Some(id) = &d.id {
                self.check_id(&format!("documents[{i}].id"), id)?;
            }
            self.check_text(&format!("documents[{i}].text"), &d.text)?;
        }
        Ok(())
    }

    /// Full codes for documents: content-cache hits answer at once, misses are batch-encoded.
    /// Every code is remembered by content and, when the document has one, by id.
    pub async fn label(
        &self,
        docs: Vec<DocumentIn>,
        depth: usize,
    ) -> Result<Vec<LabelResult>, ApiError> {
        let mut found: Vec<Option<(Arc<CachedCode>, bool)>> = Vec::with_capacity(docs.len());
        let mut keys = Vec::with_capacity(docs.len());
        let mut misses = Vec::new();
        for (i, d) in docs.iter().enumerate() {
            let key = self.cache.text_key(&d.text);
            match self.cache.get_text(&key).await {
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
            let embedded = self.batcher.embed(texts).await?;
            let flat: Vec<f32> = embedded
                .iter()
                .flat_map(|e| e.vector.iter().copied())
                .collect();
            let codes = self.model.code_embeddings(&flat).map_err(|e| {
                ApiError::Internal(format!("the encoder produced unusable embeddings: {e}"))
            })?;
            for ((&i, code), e) in misses.iter().zip(codes).zip(&embedded) {
                let entry = Arc::new(CachedCode {
                    code,
                    truncated: e.truncated,
                });
                self.cache.put_text(keys[i], entry.clone()).await;
                found[i] = Some((entry, false));
            }
        }
        let mut results = Vec::with_capacity(docs.len());
        for (doc, entry) in docs.into_iter().zip(found) {
            let (entry, cached) =
                entry.ok_or_else(|| ApiError::Internal("a document was not coded".into()))?;
            if let Some(id) = &doc.id {
                self.cache.put_id(id.clone(), entry.clone()).await;
            }
            results.push(LabelResult {
                id: doc.id,
                code: self.code_out(&entry.code, depth),
                truncated: entry.truncated,
                cached,
            });
        }
        Ok(results)
    }

    /// Raw encoder embeddings (before the transform).
    pub async fn embed(&self, texts: Vec<String>) -> Result<Vec<Vec<f32>>, ApiError> {
        self.check_count("texts", texts.len(), self.limits.max_docs)?;
        for (i, t) in texts.iter().enumerate() {
            self.check_text(&format!("texts[{i}]"), t)?;
        }
        Ok(self
            .batcher
            .embed(texts)
            .await?
            .into_iter()
            .map(|e| e.vector)
            .collect())
    }

    /// Codes of caller-computed embeddings (transform + quantizer applied here).
    pub fn quantize(
        &self,
        embeddings: &[Vec<f32>],
        depth: usize,
    ) -> Result<Vec<CodeOut>, ApiError> {
        self.check_count("embeddings", embeddings.len(), self.limits.max_docs)?;
        let dim = self.model.transform.in_dim;
        if let Some(i) = embeddings.iter().position(|e| e.len() != dim) {
            return Err(ApiError::Validation(format!(
                "embeddings[{i}] has {} values, the model's dim is {dim}",
                embeddings[i].len()
            )));
        }
        let flat: Vec<f32> = embeddings.iter().flatten().copied().collect();
        let limit = crate::config::defaults::MAX_ABS_EMBEDDING;
        if let Some(pos) = flat.iter().position(|x| x.is_finite() && x.abs() > limit) {
            return Err(ApiError::Validation(format!(
                "embeddings[{}] has a value beyond ±{limit:e}",
                pos / dim
            )));
        }
        let codes = self.model.code_embeddings(&flat)?;
        Ok(codes.iter().map(|c| self.code_out(c, depth)).collect())
    }

    /// The full code remembered for an id, if any.
    pub async fn lookup(&self, id: &str) -> Option<Arc<CachedCode>> {
        self.cache.get_id(id).await
    }

    pub fn check_lookup(&self, ids: &[String]) -> Result<(), ApiError> {
        self.check_count("ids", ids.len(), self.limits.max_items)?;
        for (i, id) in ids.iter().enumerate() {
            self.check_id(&format!("ids[{i}]"), id)?;
        }
        Ok(())
    }
}
