//! `hermes serve`: bind, load the bundle in the background, serve, drain on SIGTERM/SIGINT.
//!
//! The listener is bound before the bundle loads so that `/healthz` answers (and `/readyz`
//! says 503) during start-up. A bundle that fails verification stops the process with a
//! non-zero status and a message naming the file and field. On a signal, `/readyz` turns 503,
//! `/v1/*` refuses new requests, the listener stops accepting, every request already accepted
//! is answered, the batching workers finish their queue, and the process exits; if draining
//! takes longer than `--shutdown-timeout-s`, it exits anyway.

mod telemetry;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use tokio::net::TcpListener;

use crate::api::state::AppState;
use crate::api::{HttpConfig, app};
use crate::batch::{BatchConfig, Batcher};
use crate::bundle::{LoadOptions, Model};
use crate::cache::{CacheConfig, CodeCache};
use crate::config::ServeArgs;
use crate::service::{Limits, Service};

pub fn run(args: ServeArgs) -> Result<()> {
    telemetry::init_logging(&args.log_format);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("start the async runtime")?;
    runtime.block_on(serve(args))
}

async fn serve(args: ServeArgs) -> Result<()> {
    let state = AppState::new(args.api_key.clone(), telemetry::prometheus());
    let http = HttpConfig {
        max_body_bytes: args.max_body_bytes,
        request_timeout: args.request_timeout(),
        cors_origins: args.cors_origin.clone(),
    };
    let listener = TcpListener::bind((args.host.as_str(), args.port))
        .await
        .with_context(|| format!("cannot listen on {}:{}", args.host, args.port))?;
    let addr: SocketAddr = listener.local_addr()?;
    // Tests and scripts read this line to find a port chosen with --port 0.
    println!("hermes listening on http://{addr}");
    tracing::info!(%addr, bundle = %args.bundle.display(), "listening; loading the bundle");

    let server = {
        let app = app(state.clone(), &http);
        let state = state.clone();
        let grace = Duration::from_secs(args.shutdown_timeout_s);
        tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(shutdown_signal(state, grace))
                .await
        })
    };

    let loader_args = args.clone();
    let model = tokio::task::spawn_blocking(move || {
        Model::load(
            &loader_args.bundle,
            &LoadOptions {
                ort_lib: loader_args.runtime.ort_lib.clone(),
                intra_threads: loader_args.runtime.intra_threads,
                sessions: loader_args.encoder_sessions.max(1),
            },
        )
    })
    .await
    .context("the loader task failed")??;
    let max_tokens = model.manifest.encoder.max_tokens;
    anyhow::ensure!(
        args.max_batch_tokens >= max_tokens,
        "--max-batch-tokens {} is below the bundle's max_tokens {max_tokens}: a long text would not fit any batch",
        args.max_batch_tokens
    );
    let model = Arc::new(model);
    let (batcher, workers) = Batcher::start(
        model.encoder.clone(),
        BatchConfig {
            max_batch_tokens: args.max_batch_tokens,
            max_batch_docs: args.max_batch_docs.max(1),
            max_wait: args.max_wait(),
            max_queue_docs: args.max_queue_docs,
            workers: args.encoder_sessions.max(1),
        },
    );
    let cache = CodeCache::new(
        &CacheConfig {
            id_capacity: args.cache_ids,
            text_capacity: args.cache_texts,
            ttl: args.cache_ttl(),
            idle: args.cache_idle(),
        },
        model.fingerprint(),
    );
    let limits = Limits {
        max_docs: args.max_docs_per_request,
        max_text_chars: args.max_text_chars,
        max_id_chars: args.max_id_chars,
        max_items: args.max_items_per_request,
        stream_concurrency: args.stream_concurrency,
    };
    tracing::info!(
        name = model.name(),
        fingerprint = model.fingerprint(),
        "bundle verified; ready"
    );
    state.set_service(Arc::new(Service {
        model,
        batcher: batcher.clone(),
        cache,
        limits,
    }));

    server
        .await
        .context("the server task failed")?
        .context("serving failed")?;
    batcher.close();
    for w in workers {
        let _ = tokio::task::spawn_blocking(move || w.join()).await;
    }
    tracing::info!("drained; bye");
    Ok(())
}

/// Resolves on SIGTERM or SIGINT after marking the server as draining; arms a hard deadline.
async fn shutdown_signal(state: AppState, grace: Duration) {
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
    tracing::info!(grace_s = grace.as_secs(), "signal received: draining");
    state.start_draining();
    std::thread::spawn(move || {
        std::thread::sleep(grace);
        eprintln!(
            "hermes: draining took longer than {}s; exiting",
            grace.as_secs()
        );
        std::process::exit(1);
    });
}
