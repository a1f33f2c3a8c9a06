//! Shared state of the HTTP layer: the service once it is loaded, and the lifecycle flags
//! `/readyz` reports.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use metrics_exporter_prometheus::PrometheusHandle;

use super::error::ApiError;
use crate::labeling::Service;

#[derive(Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

struct Inner {
    /// Set once the bundle is loaded and warmed up; `/v1/*` answers 503 until then.
    service: OnceLock<Arc<Service>>,
    /// Set on SIGTERM/SIGINT: `/readyz` turns 503 and new `/v1/*` requests are refused.
    draining: AtomicBool,
    /// Required bearer token on `/v1/*`, if any.
    api_key: Option<String>,
    metrics: PrometheusHandle,
}

impl AppState {
    pub fn new(api_key: Option<String>, metrics: PrometheusHandle) -> Self {
        Self {
            inner: Arc::new(Inner {
                service: OnceLock::new(),
                draining: AtomicBool::new(false),
                api_key,
                metrics,
            }),
        }
    }

    pub fn set_service(&self, service: Arc<Service>) {
        let _ = self.inner.service.set(service);
    }

    /// The loaded service, or 503 `unavailable` while loading or draining.
    pub fn service(&self) -> Result<&Arc<Service>, ApiError> {
        if self.is_draining() {
            return Err(ApiError::Unavailable("the server is shutting down".into()));
        }
        self.inner
            .service
            .get()
            .ok_or_else(|| ApiError::Unavailable("the model is still loading".into()))
    }

    pub fn loaded(&self) -> Option<&Arc<Service>> {
        self.inner.service.get()
    }

    pub fn start_draining(&self) {
        self.inner.draining.store(true, Ordering::SeqCst);
    }

    pub fn is_draining(&self) -> bool {
        self.inner.draining.load(Ordering::SeqCst)
    }

    pub fn api_key(&self) -> Option<&str> {
        self.inner.api_key.as_deref()
    }

    pub fn metrics(&self) -> &PrometheusHandle {
        &self.inner.metrics
    }
}
