//! `hermes serve`: bind, load the bundle in the background, serve, drain on shutdown.
//!
//! [`serve`] takes a bound listener, the configuration ([`ServeConfig`]) and a shutdown
//! future, in the style of mini-redis's `server::run`, so tests run the whole server
//! in-process; `hermes serve` binds, and turns SIGTERM/SIGINT into that future with
//! [`signal_then_deadline`].
//!
//! The listener is bound before the bundle loads so that `/healthz` answers (and `/readyz`
//! says 503) during start-up. A bundle that fails verification stops the server with an
//! error naming the file and field. On shutdown, `/readyz` turns 503, `/v1/*` refuses new
//! requests, the listener stops accepting, every request already accepted is answered, the
//! batching workers finish their queue (dropping [`crate::batch::Workers`] closes it, so no
//! early return can skip that), and `serve` returns. The binary exits anyway after
//! `--shutdown-timeout-s`.

mod config;
mod telemetry;

pub use config::{Batching, CacheConfig, ServeConfig, StoreConfig};
pub(crate) use telemetry::prometheus;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::api::app;
use crate::api::state::AppState;
use crate::batch::BatchConfig;
use crate::cache::TextCache;
use crate::labeling::{Labeler, Service, TierService, open};
use crate::store::{IdStore, MemoryStore, Namespace, RedisStore, TieredStore};
use crate::tier::Tier;

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
    let state = AppState::new(config.api_key.clone(), telemetry::prometheus());
    let http = config.http.clone();
    let addr = listener.local_addr()?;
    tracing::info!(%addr, bundle = %config.bundle.display(), "listening; loading the bundle");

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
    let server = {
        let app = app(state.clone(), &http);
        let mut stop = stop_rx.clone();
        tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = stop.wait_for(|s| *s).await;
                })
                .await
        })
    };

    let loaded = load_service(&config).await;
    let workers = match loaded {
        Ok((service, workers)) => {
            state.set_service(Arc::new(service));
            workers
        }
        Err(e) => {
            server.abort();
            return Err(e);
        }
    };
    server
        .await
        .context("the server task failed")?
        .context("serving failed")?;
    tokio::task::spawn_blocking(move || workers.into_iter().for_each(|w| w.shutdown()))
        .await
        .context("the batching workers did not stop")?;
    tracing::info!("drained; bye");
    Ok(())
}

/// Refuses flag combinations that could never work, before anything loads.
fn check_config(config: &ServeConfig) -> Result<()> {
    anyhow::ensure!(
        config.batching.max_queue_docs >= config.limits.max_docs,
        "--max-queue-docs {} is below --max-docs-per-request {}: a full-size request could never be admitted",
        config.batching.max_queue_docs,
        config.limits.max_docs
    );
    crate::api::check_cors_origins(&config.http.cors_origins)
        .map_err(|e| anyhow::anyhow!("--cors-origin: {e}"))?;
    Ok(())
}

/// Loads and verifies the bundle and builds the service around it (also what `hermes
/// consume` labels through, so a stream's codes are the API's).
pub(crate) async fn load_service(
    config: &ServeConfig,
) -> Result<(Service, Vec<crate::batch::Workers>)> {
    // By default one single-threaded session per core, not spinning: parallel batches rather
    // than parallel operators. With one two-thread session, any other thread that runs (HTTP,
    // JSON, tokenizer, the load generator) stalls both ONNX Runtime threads at their next
    // barrier; a single-threaded session only loses the time taken. Paired rounds at 16
    // clients on the AVX-512 machine: 60-66 docs/s with one two-thread session, 71-75 with
    // one session per core (README, "Performance").
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let sessions = match config.encoder_sessions {
        0 => cores,
        n => n,
    };
    let options = config.runtime.load_options(sessions, false);
    let b = &config.batching;
    let batch = BatchConfig {
        max_batch_tokens: b.max_batch_tokens,
        max_batch_docs: b.max_batch_docs.unwrap_or(CALIBRATION_MAX),
        max_wait: b.max_wait,
        max_queue_docs: b.max_queue_docs,
        workers: sessions,
        // When many documents wait, sort many together: batches of similar lengths pad less.
        // Nothing waits longer for it: a worker runs only the window's batch holding the
        // oldest document and leaves the rest queued.
        min_window_docs: SERVE_WINDOW_DOCS,
    };
    let opened = open(&config.bundle, &options, batch).await?;
    let model = opened.labeler.model().clone();
    if b.max_batch_docs.is_none() {
        calibrate(&opened.labeler).await?;
        release_freed_memory();
    }
    let max_tokens = model.encoder.max_tokens();
    anyhow::ensure!(
        b.max_batch_tokens >= max_tokens,
        "--max-batch-tokens {} is below the bundle's max_tokens {max_tokens}: a long text would not fit any batch",
        b.max_batch_tokens
    );
    // The minilm tier, and the static tier when the bundle has one, each with its own
    // batcher and caches (codes of two tiers never answer for each other).
    let mut tiers = Vec::new();
    let mut workers = vec![opened.workers];
    let static_batch = BatchConfig {
        max_batch_tokens: usize::MAX,
        max_batch_docs: 256,
        max_wait: b.max_wait,
        max_queue_docs: b.max_queue_docs,
        workers: 1,
        min_window_docs: 0,
    };
    let other = opened.labeler.for_tier(Tier::Static, static_batch);
    for labeler in std::iter::once(opened.labeler).chain(other.map(|(l, w)| {
        workers.push(w);
        l
    })) {
        let namespace = Namespace {
            fingerprint: model.fingerprint().to_string(),
            encoder: labeler.tier(),
            weights: labeler.weights_digest(),
        };
        let c = &config.cache;
        tiers.push(TierService {
            texts: TextCache::new(namespace.clone(), c.texts, c.ttl, c.idle),
            ids: id_store(config, namespace)?,
            labeler,
        });
    }
    let default_tier = tiers
        .iter()
        .position(|t| t.labeler.tier() == config.encoder)
        .ok_or_else(|| {
            anyhow::anyhow!(
                "--encoder {}: the bundle {} has no {} tier (fit one with `hermes fit --static`)",
                config.encoder,
                config.bundle.display(),
                config.encoder
            )
        })?;
    let service = Service {
        tiers,
        default_tier,
        limits: config.limits.clone(),
        atlas: model
            .cards
            .as_ref()
            .map(|c| bytes::Bytes::from(crate::jobs::describe::atlas::page(c))),
    };
    tracing::info!(
        name = model.name(),
        fingerprint = model.fingerprint(),
        "bundle verified; ready"
    );
    Ok((service, workers))
}

/// The moka id cache, in front of Redis when `--store` is given.
fn id_store(config: &ServeConfig, namespace: Namespace) -> Result<Arc<dyn IdStore>> {
    let c = &config.cache;
    let l1: Arc<dyn IdStore> = Arc::new(MemoryStore::new(namespace.clone(), c.ids, c.ttl, c.idle));
    let Some(store) = &config.store else {
        return Ok(l1);
    };
    let shared = RedisStore::new(&store.url, namespace, store.ttl, store.timeout)?;
    Ok(Arc::new(TieredStore {
        l1,
        shared: Arc::new(shared),
    }))
}

/// Largest batch size tried when measuring (`--max-batch-docs 0`).
const CALIBRATION_MAX: usize = 32;

/// Documents a worker sorts together when that many are queued (see `BatchConfig`): the
/// in-process ceiling sorts chunks of 256, and sorting them under the queue lock takes
/// microseconds.
const SERVE_WINDOW_DOCS: usize = 256;

/// Caps batches at the size measured fastest here, timed on the bundle's probe texts
/// repeated to [`CALIBRATION_MAX`] documents (real texts of the corpus the bundle was fitted
/// on; 3 rounds of 4 x 32 encodings, a few seconds).
async fn calibrate(labeler: &Labeler) -> Result<()> {
    let probes: Vec<String> = labeler
        .model()
        .manifest
        .probes
        .iter()
        .map(|p| p.text.clone())
        .collect();
    if probes.is_empty() {
        return Ok(());
    }
    let labeler = labeler.clone();
    tokio::task::spawn_blocking(move || {
        let texts: Vec<&str> = probes
            .iter()
            .cycle()
            .take(CALIBRATION_MAX)
            .map(String::as_str)
            .collect();
        labeler.calibrate(&texts, CALIBRATION_MAX)
    })
    .await
    .context("the calibration task failed")??;
    Ok(())
}

/// Hands the heap that the batch-size measurement freed back to the system. glibc keeps
/// what a burst of large batches freed, so idle RSS moved with the measurement's largest
/// batch (402 to 727 MiB over four starts); a trim once, after it, costs nothing later.
fn release_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns free heap pages to the kernel; it has no
    // preconditions and touches no live allocation.
    unsafe {
        libc::malloc_trim(0);
    }
}

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
