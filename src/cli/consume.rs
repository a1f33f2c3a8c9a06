//! `hermes consume`: maps the flags to a [`ConsumeJob`], runs it until SIGTERM/SIGINT, and
//! prints what it did.

use std::net::SocketAddr;

use anyhow::{Context, Result};

use super::args::ConsumeArgs;
use crate::labeling::Tiers;
use crate::ops::signal_then_deadline;
use crate::stream::{ConsumeJob, Endpoint, Role, run as consume};

pub fn run(args: ConsumeArgs) -> Result<()> {
    let grace = args.shutdown.grace();
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
    let mut core = args.labeler.core(Tiers::One);
    args.limits.apply(&mut core.limits);
    core.cache.texts = args.cache.cache_texts;
    // No in-process id → code cache: `consume` never answers a look-up by id (that is
    // `serve`'s, from --store), so serve's L1 of a million ids only held every id labeled, for
    // hours: it was most of consume's slow RSS rise (docs/testing.md, "Soak"). With --store
    // the codes still go to Redis.
    core.cache.ids = 0;
    core.store = args.store.config();
    let job = ConsumeJob {
        source: endpoint("--source", &args.source, Role::Source)?,
        sink: endpoint("--sink", &args.sink, Role::Sink)?,
        dead_letter: args
            .dead_letter
            .as_deref()
            .map(|u| endpoint("--dead-letter", u, Role::Sink))
            .transpose()?,
        core,
        text_field: args.fields.text.text_field,
        id_field: args.fields.id_field,
        depth: args.depth,
        max_in_flight: args.max_in_flight,
        batch_docs: args.batch_docs,
        metrics,
        drain_timeout: grace,
        consumer_idle_timeout: std::time::Duration::from_secs(args.consumer_idle_timeout_s),
    };
    let s = super::block_on(consume(job, signal_then_deadline(grace + grace)))??;
    eprintln!(
        "hermes consume: {} inputs in {:.1}s: {} labeled, {} dead letters",
        s.inputs, s.seconds, s.labeled, s.dead_lettered
    );
    Ok(())
}
