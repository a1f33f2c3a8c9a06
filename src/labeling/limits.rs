//! Request limits. The defaults are also stated in the OpenAPI document (a test checks), so a
//! client generated from the spec and the server agree on what is valid.

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
