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

/// What `/readyz` reports: why the process is not ready, or nothing when it is. Two
/// conditions: the process's own stage ("starting", "draining") and whether its broker can be
/// reached, which comes and goes while the process runs; the stage, when set, is the reason
/// given.
#[derive(Clone)]
pub struct Readiness(Arc<Mutex<Why>>);

#[derive(Default)]
struct Why {
    stage: Option<String>,
    broker: Option<String>,
}

impl Default for Readiness {
    fn default() -> Self {
        Self(Arc::new(Mutex::new(Why {
            stage: Some("starting".into()),
            broker: None,
        })))
    }
}

impl Readiness {
    fn lock(&self) -> std::sync::MutexGuard<'_, Why> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn ready(&self) {
        self.lock().stage = None;
    }

    /// Not ready, and why (e.g. "draining").
    pub fn not_ready(&self, why: impl Into<String>) {
        self.lock().stage = Some(why.into());
    }

    /// The broker cannot be reached, and why (the message names the broker).
    pub fn broker_down(&self, why: impl Into<String>) {
        let why = why.into();
        let mut w = self.lock();
        if w.broker.is_none() {
            tracing::warn!(reason = %why, "not ready: the broker cannot be reached");
        }
        w.broker = Some(why);
    }

    /// The broker answers again.
    pub fn broker_up(&self) {
        let mut w = self.lock();
        if w.broker.take().is_some() {
            tracing::info!("the broker answers again");
        }
    }

    pub fn why_not(&self) -> Option<String> {
        let w = self.lock();
        w.stage.clone().or_else(|| w.broker.clone())
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
