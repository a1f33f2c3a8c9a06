//! `hermes consume`: maps the flags to a [`ConsumeJob`], runs it until SIGTERM/SIGINT, and
//! prints what it did.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, Result};

use super::args::ConsumeArgs;
use crate::bundle::RuntimeConfig;
use crate::jobs::consume::{ConsumeJob, Endpoint, Role, run as consume};
use crate::server::{ServeConfig, StoreConfig, signal_then_deadline};

pub fn run(args: ConsumeArgs) -> Result<()> {
    let grace = Duration::from_secs(args.shutdown_timeout_s);
    let endpoint = |flag: &str, url: &str, role| {
        Endpoint::parse(url, role).map_err(|e| anyhow::anyhow!("{flag}: {e}"))
    };
    let metrics = match args.metrics_port {
        Some(port) => Some(
            format!("{}:{port}", args.metrics_host)
                .parse::<SocketAddr>()
                .with_context(|| {
                    format!(
                        "--metrics-host {:?} is not an IP address",
                        args.metrics_host
                    )
                })?,
        ),
        None => None,
    };
    let mut labeler = ServeConfig::new(args.bundle);
    labeler.encoder = args.encoder;
    labeler.runtime = RuntimeConfig::from(&args.runtime);
    labeler.encoder_sessions = args.encoder_sessions;
    labeler.batching.max_batch_docs = (args.max_batch_docs > 0).then_some(args.max_batch_docs);
    labeler.limits.max_text_chars = args.max_text_chars;
    labeler.limits.max_id_chars = args.max_id_chars;
    labeler.cache.texts = args.cache_texts;
    labeler.store = args.store.map(|url| StoreConfig {
        url,
        ttl: (args.store_ttl_s > 0).then(|| Duration::from_secs(args.store_ttl_s)),
        timeout: Duration::from_millis(args.store_timeout_ms.max(1)),
    });
    let job = ConsumeJob {
        source: endpoint("--source", &args.source, Role::Source)?,
        sink: endpoint("--sink", &args.sink, Role::Sink)?,
        dead_letter: args
            .dead_letter
            .as_deref()
            .map(|u| endpoint("--dead-letter", u, Role::Sink))
            .transpose()?,
        labeler,
        text_field: args.text_field,
        id_field: args.id_field,
        depth: args.depth,
        max_in_flight: args.max_in_flight,
        batch_docs: args.batch_docs,
        metrics,
        drain_timeout: grace,
    };
    let s = super::block_on(consume(job, signal_then_deadline(grace + grace)))??;
    eprintln!(
        "hermes consume: {} inputs in {:.1}s: {} labeled, {} dead letters",
        s.inputs, s.seconds, s.labeled, s.dead_lettered
    );
    Ok(())
}
