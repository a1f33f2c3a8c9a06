//! `/v1/label`, `/v1/codes/{id}`, `/v1/codes/lookup`: labeling documents and fetching codes.

use axum::Json;
use axum::extract::State;

use super::error::ApiError;
use super::extract::{ApiJson, ApiPath, ApiQuery};
use super::state::AppState;
use super::types::{
    CodeOut, CodeResponse, CodeResult, DepthQuery, IdPath, LabelRequest, LabelResponse,
    LabelResult, LookupRequest, LookupResponse, ModelRef,
};
use crate::labeling::Document;

/// Label documents.
///
/// Each document gets its code at the requested depth, in input order. Texts seen before (same
/// bundle) are answered from the content cache (`cached: true`); documents with an `id` can be
/// fetched later at any depth.
#[utoipa::path(post, path = "/v1/label", tag = "labels", request_body = LabelRequest,
    responses((status = 200, description = "One result per document, in input order", body = LabelResponse)))]
pub async fn label(
    State(app): State<AppState>,
    ApiJson(req): ApiJson<LabelRequest>,
) -> Result<Json<LabelResponse>, ApiError> {
    let svc = app.service()?;
    let depth = svc.depth(req.depth)?;
    let tier = svc.tier(req.encoder)?;
    let docs: Vec<Document> = req.documents.into_iter().map(Document::from).collect();
    svc.validate_documents(&docs)?;
    let levels = svc.model().levels();
    let results = svc
        .label(tier, docs)
        .await?
        .into_iter()
        .map(|d| LabelResult::at(d, depth, levels))
        .collect();
    Ok(Json(LabelResponse {
        model: ModelRef::of(tier),
        results,
    }))
}

/// Fetch a labeled document's code.
///
/// Answers any depth from the code stored at labeling time, without encoding. 404 when the id
/// was never labeled (or has been evicted from the id cache).
#[utoipa::path(get, path = "/v1/codes/{id}", tag = "labels",
    params(IdPath, DepthQuery),
    responses((status = 200, body = CodeResponse)))]
pub async fn get_code(
    State(app): State<AppState>,
    ApiPath(IdPath { id }): ApiPath<IdPath>,
    ApiQuery(q): ApiQuery<DepthQuery>,
) -> Result<Json<CodeResponse>, ApiError> {
    let svc = app.service()?;
    let depth = svc.depth(q.depth)?;
    let tier = svc.tier(q.encoder)?;
    svc.check_id("id", &id)?;
    let entry = svc
        .lookup(tier, std::slice::from_ref(&id))
        .await?
        .pop()
        .flatten()
        .ok_or_else(|| ApiError::NotFound(format!("no code for id {id:?}")))?;
    Ok(Json(CodeResponse {
        code: CodeOut::at(&entry.code, depth, svc.model().levels()),
        id,
        model: ModelRef::of(tier),
    }))
}

/// Fetch many codes by id.
///
/// One result per id, in input order; `null` for ids never labeled.
#[utoipa::path(post, path = "/v1/codes/lookup", tag = "labels", request_body = LookupRequest,
    responses((status = 200, body = LookupResponse)))]
pub async fn lookup(
    State(app): State<AppState>,
    ApiJson(req): ApiJson<LookupRequest>,
) -> Result<Json<LookupResponse>, ApiError> {
    let svc = app.service()?;
    let depth = svc.depth(req.depth)?;
    let tier = svc.tier(req.encoder)?;
    svc.check_lookup(&req.ids)?;
    let found = svc.lookup(tier, &req.ids).await?;
    let levels = svc.model().levels();
    let results = req
        .ids
        .into_iter()
        .zip(found)
        .map(|(id, entry)| {
            entry.map(|e| CodeResult {
                code: CodeOut::at(&e.code, depth, levels),
                id,
            })
        })
        .collect();
    Ok(Json(LookupResponse {
        model: ModelRef::of(tier),
        results,
    }))
}
