//! Request and response bodies of the HTTP API, with their OpenAPI schemas and examples.
//!
//! Requests reject unknown fields (422): a misspelt `"dept": 2` silently answering at full
//! depth would be worse than an error.

use serde::{Deserialize, Serialize};
use utoipa::openapi::schema::{ArrayBuilder, KnownFormat, ObjectBuilder, SchemaFormat, Type};
use utoipa::{IntoParams, ToSchema};

pub use crate::tier::Tier;

use crate::labeling::limits::defaults::{
    MAX_ABS_EMBEDDING, MAX_DOCS_PER_REQUEST, MAX_ID_CHARS, MAX_ITEMS_PER_REQUEST, MAX_TEXT_CHARS,
};

// The spec states the server's default limits (`labeling::limits::defaults`; tests/openapi.rs checks
// that the two agree). A server started with other limits accepts or refuses accordingly.

/// A depth query parameter (`?depth=2`, also `2.0`).
pub(crate) fn de_depth_query<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<u32>, D::Error> {
    use serde::de::Error;
    let Some(raw) = Option::<String>::deserialize(d)? else {
        return Ok(None);
    };
    let parsed = raw.trim().parse::<u32>().ok().or_else(|| {
        raw.trim()
            .parse::<f64>()
            .ok()
            .filter(|f| f.fract() == 0.0 && (0.0..=f64::from(u32::MAX)).contains(f))
            .map(|f| f as u32)
    });
    parsed
        .map(Some)
        .ok_or_else(|| D::Error::custom(format!("depth must be a positive integer, got {raw:?}")))
}

/// Depth as JSON Schema sees an integer: `2` and `2.0` are the same value.
fn de_depth<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
    use serde::de::Error;
    match Option::<serde_json::Number>::deserialize(d)? {
        None => Ok(None),
        Some(n) => {
            if let Some(v) = n.as_u64() {
                return u32::try_from(v)
                    .map(Some)
                    .map_err(|_| D::Error::custom(format!("depth {v} is too large")));
            }
            match n.as_f64() {
                Some(f) if f.fract() == 0.0 && (0.0..=f64::from(u32::MAX)).contains(&f) => {
                    Ok(Some(f as u32))
                }
                _ => Err(D::Error::custom(format!(
                    "depth must be a positive integer, got {n}"
                ))),
            }
        }
    }
}

/// A list of strings, as the spec's schemas for `texts` and `ids` need item limits.
fn string_list(max_items: usize, max_length: usize, description: &str) -> ArrayBuilder {
    ArrayBuilder::new()
        .items(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .max_length(Some(max_length)),
        )
        .min_items(Some(1))
        .max_items(Some(max_items))
        .description(Some(description))
}

fn texts_schema() -> ArrayBuilder {
    string_list(
        MAX_DOCS_PER_REQUEST,
        MAX_TEXT_CHARS,
        "Texts to embed (at most 256 by default, each at most 16,384 characters).",
    )
}

fn ids_schema() -> ArrayBuilder {
    string_list(
        MAX_ITEMS_PER_REQUEST,
        MAX_ID_CHARS,
        "Document ids (at most 4096 by default, each at most 256 characters).",
    )
}

fn embeddings_schema() -> ArrayBuilder {
    let vector = ArrayBuilder::new()
        .items(
            ObjectBuilder::new()
                .schema_type(Type::Number)
                .format(Some(SchemaFormat::KnownFormat(KnownFormat::Float)))
                .minimum(Some(-f64::from(MAX_ABS_EMBEDDING)))
                .maximum(Some(f64::from(MAX_ABS_EMBEDDING))),
        )
        .min_items(Some(384))
        .max_items(Some(384))
        .description(Some(
            "One embedding: exactly the model's dim (384 for the default bundle) finite numbers.",
        ));
    ArrayBuilder::new()
        .items(vector)
        .min_items(Some(1))
        .max_items(Some(MAX_DOCS_PER_REQUEST))
        .description(Some("Encoder embeddings (from `/v1/embed` or the same model elsewhere); NaN, infinity or a wrong length are 422."))
}

/// Which bundle produced a code: codes are comparable only between equal fingerprints.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({"name": "minilm-wiki", "fingerprint": "3f2a9c0d1e2b4a5c", "encoder": "minilm"}))]
pub struct ModelRef {
    pub name: String,
    pub fingerprint: String,
    /// The encoder tier that produced the answer.
    pub encoder: Tier,
}

impl ModelRef {
    pub fn of(tier: &crate::labeling::TierService) -> Self {
        let model = tier.labeler.model();
        Self {
            name: model.name().to_string(),
            fingerprint: model.fingerprint().to_string(),
            encoder: tier.labeler.tier(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DocumentIn {
    /// Caller's id; when given, the code can be fetched later by `GET /v1/codes/{id}`.
    #[schema(max_length = 256, example = "doc-1")]
    pub id: Option<String>,
    #[schema(
        max_length = 16384,
        example = "Photosynthesis converts light energy into chemical energy."
    )]
    pub text: String,
}

#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"documents": [{"id": "doc-1", "text": "Photosynthesis converts light energy into chemical energy."}], "depth": 2}))]
pub struct LabelRequest {
    /// At most 256 documents by default.
    #[schema(min_items = 1, max_items = 256)]
    pub documents: Vec<DocumentIn>,
    /// Code depth 1..L, where L is the bundle's number of levels (3 for the default bundle); default L.
    #[schema(minimum = 1, maximum = 3)]
    #[serde(default, deserialize_with = "de_depth")]
    pub depth: Option<u32>,
    /// Encoder tier; default: the server's `--encoder`.
    #[serde(default)]
    pub encoder: Option<Tier>,
}

impl From<DocumentIn> for crate::labeling::Document {
    fn from(d: DocumentIn) -> Self {
        Self {
            id: d.id,
            text: d.text,
        }
    }
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

impl CodeOut {
    /// `code` truncated to `depth`, in the label format's three forms.
    pub fn at(code: &crate::quantize::Code, depth: usize, levels: &[usize]) -> Self {
        let code = code.truncate(depth);
        Self {
            label: code.label(),
            cell: code.cell(levels),
            code: code.0,
        }
    }
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

impl LabelResult {
    pub fn at(doc: crate::labeling::LabeledDoc, depth: usize, levels: &[usize]) -> Self {
        Self {
            code: CodeOut::at(&doc.code.code, depth, levels),
            truncated: doc.code.truncated,
            cached: doc.cached,
            id: doc.id,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({"model": {"name": "minilm-wiki", "fingerprint": "3f2a9c0d1e2b4a5c", "encoder": "minilm"}, "results": [{"id": "doc-1", "code": [17, 3], "label": "17.3", "cell": 1091, "truncated": false, "cached": false}]}))]
pub struct LabelResponse {
    pub model: ModelRef,
    /// One per document, in input order.
    pub results: Vec<LabelResult>,
}

#[derive(Debug, Clone, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct DepthQuery {
    /// Code depth 1..L, where L is the bundle's number of levels (3 for the default bundle); default L.
    #[param(minimum = 1, maximum = 3)]
    #[serde(default, deserialize_with = "de_depth_query")]
    pub depth: Option<u32>,
    /// Encoder tier (which tier's codes); default: the server's `--encoder`.
    #[param(inline)]
    #[serde(default)]
    pub encoder: Option<Tier>,
}

#[derive(Debug, Clone, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct IdPath {
    /// The id sent with the document (at most 256 characters by default).
    #[param(max_length = 256)]
    pub id: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CodeResult {
    pub id: String,
    #[serde(flatten)]
    pub code: CodeOut,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({"id": "doc-1", "code": [17], "label": "17", "cell": 17, "model": {"name": "minilm-wiki", "fingerprint": "3f2a9c0d1e2b4a5c", "encoder": "minilm"}}))]
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
    #[schema(schema_with = ids_schema)]
    pub ids: Vec<String>,
    /// Code depth 1..L, where L is the bundle's number of levels (3 for the default bundle); default L.
    #[schema(minimum = 1, maximum = 3)]
    #[serde(default, deserialize_with = "de_depth")]
    pub depth: Option<u32>,
    /// Encoder tier (which tier's codes); default: the server's `--encoder`.
    #[serde(default)]
    pub encoder: Option<Tier>,
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
    #[schema(schema_with = embeddings_schema)]
    pub embeddings: Vec<Vec<f32>>,
    /// Code depth 1..L, where L is the bundle's number of levels (3 for the default bundle); default L.
    #[schema(minimum = 1, maximum = 3)]
    #[serde(default, deserialize_with = "de_depth")]
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
    #[schema(schema_with = texts_schema)]
    pub texts: Vec<String>,
    /// Encoder tier; default: the server's `--encoder`.
    #[serde(default)]
    pub encoder: Option<Tier>,
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
    /// The tier answers use when a request names none.
    pub encoder: Tier,
    /// Every tier this server answers with.
    pub encoders: Vec<Tier>,
    /// How the bundle was fitted, as its manifest records it (corpus, documents, seed,
    /// k-means runs, per-depth statistics). Free-form here so that a manifest change does
    /// not change this API's schema.
    #[schema(value_type = Object)]
    pub fit: serde_json::Value,
}

/// One line of the NDJSON stream's input.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StreamLine {
    #[schema(max_length = 256)]
    pub id: Option<String>,
    #[schema(max_length = 16384)]
    pub text: String,
}

/// One line of the stream's output: a result, or the error of that input line.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum StreamOutLine {
    Result(LabelResult),
    Error(StreamLineError),
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
