//! `/healthz`, `/readyz` and `/metrics` on a listener of their own, for a process that has no
//! HTTP API to put them on (`hermes consume --metrics-port`). The answers have `serve`'s
//! shapes: `{"status":"ok"}`, `{"status":"ready"}`, and for a 503 the API's error object
//! `{"error":{"code":"unavailable","message":...}}` whose message says why.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use serde_json::{Value, json};

/// What `/readyz` reports: why the process is not ready, or nothing when it is.
#[derive(Clone)]
pub struct Readiness(Arc<Mutex<Option<String>>>);

impl Default for Readiness {
    fn default() -> Self {
        Self(Arc::new(Mutex::new(Some("starting".into()))))
    }
}

impl Readiness {
    pub fn ready(&self) {
        *self.0.lock().expect("not poisoned") = None;
    }

    /// Not ready, and why (e.g. "draining", "the broker cannot be reached: ...").
    pub fn not_ready(&self, why: impl Into<String>) {
        *self.0.lock().expect("not poisoned") = Some(why.into());
    }

    pub fn why_not(&self) -> Option<String> {
        self.0.lock().expect("not poisoned").clone()
    }
}

/// Stops the listener when dropped.
pub struct Listener(tokio::task::JoinHandle<()>);

impl Drop for Listener {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Binds `addr` and serves the three routes in the background.
pub async fn serve(addr: SocketAddr, readiness: Readiness) -> std::io::Result<Listener> {
    let prometheus = super::metrics::prometheus();
    let app = Router::new()
        .route(
            "/metrics",
            get(move || {
                let p = prometheus.clone();
                async move { p.render() }
            }),
        )
        .route("/healthz", get(|| async { Json(json!({"status": "ok"})) }))
        .route("/readyz", get(readyz))
        .with_state(readiness);
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    tracing::info!(addr = %bound, "metrics listening");
    Ok(Listener(tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "the metrics listener failed");
        }
    })))
}

async fn readyz(State(r): State<Readiness>) -> (StatusCode, Json<Value>) {
    match r.why_not() {
        None => (StatusCode::OK, Json(json!({"status": "ready"}))),
        Some(why) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"error": {"code": "unavailable", "message": why}})),
        ),
    }
}
