//! What every long-running hermes process needs, below both the HTTP server (`server/`) and
//! the stream consumer (`stream/`), which never import each other:
//!
//! - [`metrics::prometheus`]: the process-wide Prometheus recorder;
//! - [`signal_then_deadline`]: SIGTERM/SIGINT as a future, with a hard drain deadline;
//! - [`health`]: `/healthz`, `/readyz` and `/metrics` for a process without an HTTP API, in
//!   the same JSON shapes as `serve`'s.

pub mod health;
pub mod metrics;

use std::time::Duration;

/// Resolves on SIGTERM or SIGINT, and arms a hard deadline: if draining takes longer than
/// `grace`, the process exits with status 1.
pub async fn signal_then_deadline(grace: Duration) {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!(grace_s = grace.as_secs(), "signal received");
    std::thread::spawn(move || {
        std::thread::sleep(grace);
        tracing::error!(
            grace_s = grace.as_secs(),
            "draining took longer than the grace period; exiting"
        );
        std::process::exit(1);
    });
}
