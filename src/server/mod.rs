//! `hermes serve`: bind, load the bundle in the background, serve, drain on shutdown.
//!
//! [`serve`] takes a bound listener, the configuration ([`ServeConfig`]) and a shutdown
//! future, in the style of mini-redis's `server::run`, so tests run the whole server
//! in-process; `hermes serve` binds, and turns SIGTERM/SIGINT into that future with
//! [`crate::ops::signal_then_deadline`].
//!
//! The listener is bound before the bundle loads so that `/healthz` answers (and `/readyz`
//! says 503) during start-up. A bundle that fails verification stops the server with an
//! error naming the file and field. On shutdown, `/readyz` turns 503, `/v1/*` refuses new
//! requests, the listener stops accepting, every request already accepted is answered, the
//! batching workers finish their queue (dropping [`crate::batch::Workers`] closes it, so no
//! early return can skip that), and `serve` returns. The binary exits anyway after
//! `--shutdown-timeout-s`.
//!
//! Connections are accepted and served by [`conn`] (hyper's HTTP/1 directly): it closes
//! connections that send no complete request head in time or sit idle, and caps how many
//! are open ([`ConnLimits`]).

mod config;
pub mod conn;

pub use crate::labeling::{Batching, CacheConfig, StoreConfig};
pub use config::{ConnLimits, ServeConfig};

use std::future::Future;
use std::sync::Arc;

use anyhow::{Context, Result};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::api::app;
use crate::api::state::AppState;

/// The OpenAPI document this server publishes at `/openapi.json` (`hermes openapi` prints it):
/// the command line reaches the HTTP layer only through the server.
pub fn openapi_json() -> &'static str {
    crate::api::openapi_json()
}

/// Serves `config`'s bundle on `listener` until `shutdown` resolves, then drains and returns.
pub async fn serve(
    listener: TcpListener,
    config: ServeConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    check_config(&config)?;
    let state = AppState::new(config.api_key.clone(), crate::ops::metrics::prometheus());
    let http = config.http.clone();
    let addr = listener.local_addr()?;
    tracing::info!(%addr, bundle = %config.core.bundle.display(), "listening; loading the bundle");

    // The shutdown future is awaited once, here; the server and the loader both watch it.
    let (stop_tx, stop_rx) = watch::channel(false);
    {
        let state = state.clone();
        tokio::spawn(async move {
            shutdown.await;
            tracing::info!("shutdown requested: draining");
            state.start_draining();
            let _ = stop_tx.send(true);
        });
    }
    conn::raise_descriptor_limit(config.conn.max_connections);
    let server = tokio::spawn(conn::run(
        listener,
        app(state.clone(), &http),
        config.conn.clone(),
        stop_rx,
    ));

    let loaded = crate::labeling::build(&config.core).await;
    let workers = match loaded {
        Ok(core) => {
            let (service, workers) = core.into_parts();
            state.set_service(Arc::new(service));
            workers
        }
        Err(e) => {
            server.abort();
            return Err(e.into());
        }
    };
    server.await.context("the server task failed")?;
    tokio::task::spawn_blocking(move || workers.into_iter().for_each(|w| w.shutdown()))
        .await
        .context("the batching workers did not stop")?;
    tracing::info!("drained; bye");
    Ok(())
}

/// Refuses flag combinations that could never work, before anything loads.
fn check_config(config: &ServeConfig) -> Result<()> {
    let core = &config.core;
    anyhow::ensure!(
        core.batching.max_queue_docs >= core.limits.max_docs,
        "--max-queue-docs {} is below --max-docs-per-request {}: a full-size request could never be admitted",
        core.batching.max_queue_docs,
        core.limits.max_docs
    );
    for (flag, value) in [
        ("--header-timeout-s", config.conn.header_timeout),
        ("--idle-timeout-s", config.conn.idle_timeout),
        ("--body-timeout-s", config.http.body_timeout),
    ] {
        anyhow::ensure!(!value.is_zero(), "{flag} must be at least 1");
    }
    anyhow::ensure!(
        config.conn.max_connections > 0,
        "--max-connections must be at least 1"
    );
    crate::api::check_cors_origins(&config.http.cors_origins)
        .map_err(|e| anyhow::anyhow!("--cors-origin: {e}"))?;
    Ok(())
}
