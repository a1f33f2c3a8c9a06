//! Request limits. The defaults are also stated in the OpenAPI document (a test checks), so a
//! client generated from the spec and the server agree on what is valid.

use super::service::{Document, ServiceError};

pub mod defaults {
    pub const MAX_DOCS_PER_REQUEST: usize = 256;
    pub const MAX_TEXT_CHARS: usize = 16_384;
    pub const MAX_ID_CHARS: usize = 256;
    pub const MAX_ITEMS_PER_REQUEST: usize = 4096;
    /// Largest magnitude accepted in a caller's embedding (encoder outputs are unit vectors).
    pub const MAX_ABS_EMBEDDING: f32 = 1e6;
}

/// Request limits (from `hermes serve`'s flags).
#[derive(Debug, Clone, PartialEq)]
pub struct Limits {
    /// Documents per `/v1/label` (texts per `/v1/embed`, embeddings per `/v1/quantize`).
    pub max_docs: usize,
    pub max_text_chars: usize,
    pub max_id_chars: usize,
    /// Ids per `/v1/codes/lookup`.
    pub max_items: usize,
    /// Lines of one NDJSON stream in flight at once.
    pub stream_concurrency: usize,
}

impl Limits {
    pub fn check_id(&self, field: &str, id: &str) -> Result<(), ServiceError> {
        check_chars(field, id, self.max_id_chars)
    }

    /// A label request's documents: count, id and text lengths (the HTTP bodies' door).
    pub fn check_documents(&self, docs: &[Document]) -> Result<(), ServiceError> {
        check_count("documents", docs.len(), self.max_docs)?;
        for (i, d) in docs.iter().enumerate() {
            if let Some(id) = &d.id {
                self.check_id(&format!("documents[{i}].id"), id)?;
            }
            check_chars(
                &format!("documents[{i}].text"),
                &d.text,
                self.max_text_chars,
            )?;
        }
        Ok(())
    }

    /// An embed request's texts.
    pub fn check_texts(&self, texts: &[String]) -> Result<(), ServiceError> {
        check_count("texts", texts.len(), self.max_docs)?;
        for (i, t) in texts.iter().enumerate() {
            check_chars(&format!("texts[{i}]"), t, self.max_text_chars)?;
        }
        Ok(())
    }

    /// A lookup request's ids.
    pub fn check_lookup(&self, ids: &[String]) -> Result<(), ServiceError> {
        check_count("ids", ids.len(), self.max_items)?;
        for (i, id) in ids.iter().enumerate() {
            self.check_id(&format!("ids[{i}]"), id)?;
        }
        Ok(())
    }
}

pub(crate) fn check_chars(field: &str, s: &str, max: usize) -> Result<(), ServiceError> {
    if s.len() > max && s.chars().nth(max).is_some() {
        return Err(ServiceError::Validation(format!(
            "{field} has more than {max} characters"
        )));
    }
    Ok(())
}

pub(crate) fn check_count(what: &str, n: usize, max: usize) -> Result<(), ServiceError> {
    if n == 0 {
        return Err(ServiceError::Validation(format!(
            "{what} must not be empty"
        )));
    }
    if n > max {
        return Err(ServiceError::Validation(format!(
            "{n} {what}; at most {max} per request"
        )));
    }
    Ok(())
}
