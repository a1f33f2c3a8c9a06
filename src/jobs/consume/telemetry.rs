//! `--metrics-port`: `/metrics` (Prometheus text), `/healthz` (200 while the process runs)
//! and `/readyz` (200 once the bundle is loaded and the source joined, 503 before and while
//! draining), on a listener of their own: a consumer has no HTTP API to put them on.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;

use super::ConsumeError;

/// What `/readyz` reports.
#[derive(Clone, Default)]
pub struct Health {
    pub ready: Arc<AtomicBool>,
    pub draining: Arc<AtomicBool>,
}

/// Stops the listener when dropped.
pub struct Listener(tokio::task::JoinHandle<()>);

impl Drop for Listener {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Binds `addr` and serves the three routes in the background.
pub async fn serve(addr: SocketAddr, health: Health) -> Result<Listener, ConsumeError> {
    let prometheus = crate::server::prometheus();
    let app = Router::new()
        .route(
            "/metrics",
            get(move || {
                let p = prometheus.clone();
                async move { p.render() }
            }),
        )
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .with_state(health);
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(ConsumeError::Metrics)?;
    let bound = listener.local_addr().map_err(ConsumeError::Metrics)?;
    tracing::info!(addr = %bound, "metrics listening");
    Ok(Listener(tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "the metrics listener failed");
        }
    })))
}

async fn readyz(State(h): State<Health>) -> (StatusCode, &'static str) {
    if h.draining.load(Ordering::Acquire) {
        (StatusCode::SERVICE_UNAVAILABLE, "draining")
    } else if h.ready.load(Ordering::Acquire) {
        (StatusCode::OK, "ready")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "starting")
    }
}
