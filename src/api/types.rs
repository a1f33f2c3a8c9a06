//! Request and response bodies of the HTTP API, with their OpenAPI schemas and examples.
//!
//! Requests reject unknown fields (422): a misspelt `"dept": 2` silently answering at full
//! depth would be worse than an error.

use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::bundle::FitInfo;

/// Which bundle produced a code: codes are comparable only between equal fingerprints.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({"name": "minilm-wiki", "fingerprint": "3f2a9c0d1e2b4a5c"}))]
pub struct ModelRef {
    pub name: String,
    pub fingerprint: String,
}

#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DocumentIn {
    /// Caller's id; when given, the code can be fetched later by `GET /v1/codes/{id}`.
    #[schema(max_length = 256, example = "doc-1")]
    pub id: Option<String>,
    #[schema(example = "Photosynthesis converts light energy into chemical energy.")]
    pub text: String,
}

#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"documents": [{"id": "doc-1", "text": "Photosynthesis converts light energy into chemical energy."}], "depth": 2}))]
pub struct LabelRequest {
    #[schema(min_items = 1)]
    pub documents: Vec<DocumentIn>,
    /// Code depth 1..L (default L, the full code).
    #[schema(minimum = 1)]
    pub depth: Option<u32>,
}

/// A code at some depth in the three forms of the label format.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct CodeOut {
    /// Level indices, coarse first, truncated to the requested depth.
    #[schema(example = json!([17, 3]))]
    pub code: Vec<u32>,
    /// The code joined by '.'.
    #[schema(example = "17.3")]
    pub label: String,
    /// Mixed-radix index of the code at its depth (c1·K2 + c2 at depth 2).
    #[schema(example = 1091)]
    pub cell: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct LabelResult {
    /// The document's id as sent (null when none was sent).
    pub id: Option<String>,
    #[serde(flatten)]
    pub code: CodeOut,
    /// The text had more than the model's max_tokens tokens and was cut.
    pub truncated: bool,
    /// Answered from the content cache without encoding.
    pub cached: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({"model": {"name": "minilm-wiki", "fingerprint": "3f2a9c0d1e2b4a5c"}, "results": [{"id": "doc-1", "code": [17, 3], "label": "17.3", "cell": 1091, "truncated": false, "cached": false}]}))]
pub struct LabelResponse {
    pub model: ModelRef,
    /// One per document, in input order.
    pub results: Vec<LabelResult>,
}

#[derive(Debug, Clone, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct DepthQuery {
    /// Code depth 1..L (default L).
    #[param(minimum = 1)]
    pub depth: Option<u32>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CodeResult {
    pub id: String,
    #[serde(flatten)]
    pub code: CodeOut,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({"id": "doc-1", "code": [17], "label": "17", "cell": 17, "model": {"name": "minilm-wiki", "fingerprint": "3f2a9c0d1e2b4a5c"}}))]
pub struct CodeResponse {
    pub id: String,
    #[serde(flatten)]
    pub code: CodeOut,
    pub model: ModelRef,
}

#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"ids": ["doc-1", "unknown"], "depth": 1}))]
pub struct LookupRequest {
    pub ids: Vec<String>,
    #[schema(minimum = 1)]
    pub depth: Option<u32>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct LookupResponse {
    pub model: ModelRef,
    /// One per id, in input order; null for ids never labeled (or evicted).
    pub results: Vec<Option<CodeResult>>,
}

#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct QuantizeRequest {
    /// Encoder embeddings (from `/v1/embed` or the same model elsewhere), each of the model's dim.
    pub embeddings: Vec<Vec<f32>>,
    #[schema(minimum = 1)]
    pub depth: Option<u32>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct QuantizeResponse {
    pub model: ModelRef,
    pub results: Vec<CodeOut>,
}

#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"texts": ["hello world"]}))]
pub struct EmbedRequest {
    #[schema(min_items = 1)]
    pub texts: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct EmbedResponse {
    pub model: ModelRef,
    /// One L2-normalised vector per text, before the transform.
    pub embeddings: Vec<Vec<f32>>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ModelInfo {
    pub name: String,
    pub fingerprint: String,
    /// Codebook size per level, coarse first.
    #[schema(example = json!([64, 64, 32]))]
    pub levels: Vec<usize>,
    /// Encoder embedding dimension (what `/v1/quantize` expects).
    pub dim: usize,
    pub max_tokens: usize,
    pub fit: FitInfo,
}

/// One line of the NDJSON stream's input.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StreamLine {
    pub id: Option<String>,
    pub text: String,
}

/// A line of the stream's output that could not be labeled; the stream goes on.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct StreamLineError {
    /// 1-based line number of the input.
    pub line: usize,
    pub error: crate::api::error::ErrorDetail,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Health {
    #[schema(example = "ok")]
    pub status: String,
}
