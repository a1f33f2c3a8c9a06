//! `/v1/embed` and `/v1/quantize`: the two halves of the pipeline on their own.

use axum::Json;
use axum::extract::State;

use super::error::ApiError;
use super::extract::ApiJson;
use super::state::AppState;
use super::types::{
    CodeOut, EmbedRequest, EmbedResponse, ModelRef, QuantizeRequest, QuantizeResponse,
};

/// Embed texts.
///
/// The encoder's L2-normalised embeddings, before the learned transform. Feeding them to
/// `/v1/quantize` gives the same codes `/v1/label` gives for the same texts.
#[utoipa::path(post, path = "/v1/embed", tag = "vectors", request_body = EmbedRequest,
    responses((status = 200, body = EmbedResponse)))]
pub async fn embed(
    State(app): State<AppState>,
    ApiJson(req): ApiJson<EmbedRequest>,
) -> Result<Json<EmbedResponse>, ApiError> {
    let svc = app.service()?;
    let tier = svc.tier(req.encoder)?;
    let embeddings = svc.embed(tier, req.texts).await?;
    Ok(Json(EmbedResponse {
        model: ModelRef::of(tier),
        embeddings,
    }))
}

/// Code caller-computed embeddings.
///
/// Applies the bundle's transform and quantizer to embeddings made with the same encoder.
/// Wrong dimension, NaN or infinity (e.g. `1e39`, which overflows f32) are 422.
#[utoipa::path(post, path = "/v1/quantize", tag = "vectors", request_body = QuantizeRequest,
    responses((status = 200, body = QuantizeResponse)))]
pub async fn quantize(
    State(app): State<AppState>,
    ApiJson(req): ApiJson<QuantizeRequest>,
) -> Result<Json<QuantizeResponse>, ApiError> {
    let svc = app.service()?;
    let depth = svc.depth(req.depth)?;
    let levels = svc.model().levels();
    let results = svc
        .quantize(&req.embeddings)?
        .iter()
        .map(|c| CodeOut::at(c, depth, levels))
        .collect();
    Ok(Json(QuantizeResponse {
        model: ModelRef::of(svc.tier(None)?),
        results,
    }))
}
