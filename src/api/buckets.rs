//! `/v1/buckets`, `/v1/buckets/{label}` and `/atlas`: the bundle's bucket cards (what each
//! bucket holds) as JSON and as a page. 404 when the bundle has no cards.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::response::{Html, IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::error::ApiError;
use super::extract::{ApiPath, ApiQuery};
use super::state::AppState;
use super::types::ModelRef;
use crate::cards::{Card, Cards};
use crate::labeling::Service;

#[derive(Debug, Clone, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct BucketsQuery {
    /// Depth of the buckets: 1 (the default) or 2 for the default bundle's cards.
    #[param(minimum = 1, maximum = 2)]
    #[serde(default, deserialize_with = "super::types::de_depth_query")]
    pub depth: Option<u32>,
}

#[derive(Debug, Clone, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct LabelPath {
    /// A bucket label at depth 1 or 2, e.g. `17` or `17.3`.
    #[param(max_length = 32, example = "17")]
    pub label: String,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct BucketsResponse {
    pub model: ModelRef,
    /// One card per non-empty bucket at the depth, in code order.
    pub buckets: Vec<Card>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct BucketResponse {
    pub model: ModelRef,
    pub bucket: Card,
    /// The cards of its non-empty sub-buckets (empty at the deepest depth).
    pub children: Vec<Card>,
}

fn cards(svc: &Service) -> Result<&Arc<Cards>, ApiError> {
    svc.model().cards.as_ref().ok_or_else(|| {
        ApiError::NotFound(
            "this bundle has no bucket cards (add them with `hermes fit --cards-only`)".into(),
        )
    })
}

fn model_ref(svc: &Service, cards: &Cards) -> ModelRef {
    let m = svc.model();
    ModelRef {
        name: m.name().to_string(),
        fingerprint: m.fingerprint().to_string(),
        encoder: cards.encoder,
    }
}

/// Bucket cards at one depth.
///
/// Every non-empty bucket at the depth: documents, share of the corpus and of its parent, its
/// most distinctive terms (class-based TF-IDF) and the documents nearest its centre, from the
/// bundle's fitting sample.
#[utoipa::path(get, path = "/v1/buckets", tag = "buckets", params(BucketsQuery),
    responses((status = 200, body = BucketsResponse)))]
pub async fn list(
    State(app): State<AppState>,
    ApiQuery(q): ApiQuery<BucketsQuery>,
) -> Result<Json<BucketsResponse>, ApiError> {
    let svc = app.service()?;
    let cards = cards(svc)?;
    let depth = q.depth.unwrap_or(1) as usize;
    if !(1..=cards.depth()).contains(&depth) {
        return Err(ApiError::Validation(format!(
            "depth {depth} is outside 1..={} (the depths this bundle's cards describe)",
            cards.depth()
        )));
    }
    Ok(Json(BucketsResponse {
        model: model_ref(svc, cards),
        buckets: cards.at_depth(depth).cloned().collect(),
    }))
}

/// One bucket's card and its sub-buckets' cards.
///
/// 404 for a label that is not a non-empty bucket of the cards.
#[utoipa::path(get, path = "/v1/buckets/{label}", tag = "buckets", params(LabelPath),
    responses((status = 200, body = BucketResponse)))]
pub async fn get(
    State(app): State<AppState>,
    ApiPath(LabelPath { label }): ApiPath<LabelPath>,
) -> Result<Json<BucketResponse>, ApiError> {
    let svc = app.service()?;
    let cards = cards(svc)?;
    let bucket = cards
        .get(&label)
        .ok_or_else(|| ApiError::NotFound(format!("no bucket {label:?} in this bundle's cards")))?
        .clone();
    let children = bucket
        .children
        .iter()
        .filter_map(|l| cards.get(l).cloned())
        .collect();
    Ok(Json(BucketResponse {
        model: model_ref(svc, cards),
        bucket,
        children,
    }))
}

/// The bucket atlas: a self-contained page of the bundle's cards.
///
/// Depth-1 buckets as tiles sized by share with their top terms; choosing one shows its
/// sub-buckets and exemplars; a box filters the tiles by term. Nothing is fetched from
/// elsewhere.
#[utoipa::path(get, path = "/atlas", tag = "buckets",
    responses((status = 200, content_type = "text/html", body = String),
              (status = 404, description = "not_found: the bundle has no cards", body = super::error::ErrorBody)))]
pub async fn atlas(State(app): State<AppState>) -> Result<Response, ApiError> {
    let svc = app.service()?;
    let page = svc.atlas_page().ok_or_else(|| {
        ApiError::NotFound(
            "this bundle has no bucket cards (add them with `hermes fit --cards-only`)".into(),
        )
    })?;
    Ok(Html(page).into_response())
}
