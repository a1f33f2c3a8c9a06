//! `/v1/model`, `/healthz`, `/readyz`, `/metrics`, `/openapi.json` and `/docs`.

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};

use super::error::ApiError;
use super::state::AppState;
use super::types::{Health, ModelInfo};

/// Describe the served bundle.
#[utoipa::path(get, path = "/v1/model", tag = "model", responses((status = 200, body = ModelInfo)))]
pub async fn model(State(app): State<AppState>) -> Result<Json<ModelInfo>, ApiError> {
    let svc = app.service()?;
    let m = &svc.model().manifest;
    let fit = serde_json::to_value(&m.fit).map_err(|e| ApiError::Internal(e.to_string()))?;
    Ok(Json(ModelInfo {
        name: m.name.clone(),
        fingerprint: m.fingerprint.clone(),
        levels: m.levels.clone(),
        dim: m.encoder.dim,
        max_tokens: m.encoder.max_tokens,
        encoder: svc.tier(None)?.labeler.tier(),
        encoders: svc.tiers.iter().map(|t| t.labeler.tier()).collect(),
        fit,
    }))
}

/// Liveness: 200 while the process runs.
#[utoipa::path(get, path = "/healthz", tag = "operations", responses((status = 200, body = Health)))]
pub async fn healthz() -> Json<Health> {
    Json(Health {
        status: "ok".into(),
    })
}

/// Readiness: 200 once the bundle is loaded and warmed up and the id store (with `--store`)
/// answers; 503 before, while draining, and while the store is unreachable.
#[utoipa::path(get, path = "/readyz", tag = "operations", responses((status = 200, body = Health)))]
pub async fn readyz(State(app): State<AppState>) -> Result<Json<Health>, ApiError> {
    let svc = app.service()?;
    for tier in &svc.tiers {
        tier.ids
            .health()
            .await
            .map_err(|e| ApiError::Unavailable(e.to_string()))?;
    }
    Ok(Json(Health {
        status: "ready".into(),
    }))
}

/// Prometheus metrics (text exposition format).
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, content_type = "text/plain; version=0.0.4", body = String)))]
pub async fn metrics(State(app): State<AppState>) -> Response {
    if let Some(svc) = app.loaded() {
        for tier in &svc.tiers {
            tier.texts.report().await;
            tier.ids.report().await;
        }
        let queued: usize = svc.tiers.iter().map(|t| t.labeler.batcher().queued()).sum();
        metrics::gauge!("hermes_queue_docs_reserved").set(queued as f64);
    }
    let body = app.metrics().render();
    (
        StatusCode::OK,
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        body,
    )
        .into_response()
}

/// The OpenAPI document of this API.
#[utoipa::path(get, path = "/openapi.json", tag = "operations",
    responses((status = 200, content_type = "application/json", body = Object)))]
pub async fn openapi() -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        super::openapi_json(),
    )
        .into_response()
}

/// A page that renders the OpenAPI document (self-contained: nothing is fetched from the internet).
#[utoipa::path(get, path = "/docs", tag = "operations",
    responses((status = 200, content_type = "text/html", body = String)))]
pub async fn docs() -> Html<&'static str> {
    Html(include_str!("docs.html"))
}
