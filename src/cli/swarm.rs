//! `hermes swarm`: maps the flags to a [`SwarmJob`] and says what it wrote.

use std::time::Duration;

use anyhow::Result;

use super::args::SwarmArgs;
use crate::jobs::swarm::{SwarmJob, run as swarm};

pub fn run(args: SwarmArgs) -> Result<()> {
    let job = SwarmJob {
        codes: args.codes,
        spec: args.spec,
        variants: args.variants,
        out: args.out,
        seed: args.seed,
        min_strength: args.min_strength,
        max_strength: args.max_strength,
        minimum_weight: args.minimum_weight,
        pin: args.pin,
        select: args.select,
        progress_interval: Duration::from_secs(args.progress_interval_s),
    };
    let s = swarm(&job)?;
    eprintln!(
        "hermes swarm: {} variants over {} buckets at depth {} in {}{}; {} rows read in {:.1}s",
        s.variants,
        s.buckets,
        s.depth,
        job.out.display(),
        if job.select {
            " (with every variant's selection)"
        } else {
            ""
        },
        s.rows_read,
        s.seconds
    );
    Ok(())
}
