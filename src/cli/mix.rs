//! `hermes mix`: maps the flags to a [`MixJob`] and prints what the task did.

use anyhow::Result;

use super::args::MixArgs;
use crate::jobs::mix::{MixJob, run as mix};

pub fn run(args: MixArgs) -> Result<()> {
    let shard = args.shard.shard()?;
    let job = MixJob {
        codes: args.codes,
        spec: args.spec,
        out: args.out,
        plan_only: args.plan_only,
        allow_short: args.allow_short,
        shard,
        progress_interval: args.shard.progress_interval(),
        threads: args
            .threads
            .map_or_else(crate::jobs::mix::default_threads, |t| t as usize),
    };
    let s = mix(&job)?;
    let plan = if s.planned {
        "planned"
    } else {
        "reused the plan"
    };
    eprintln!(
        "hermes mix: task {} of {}: {plan} ({}{}); {} files selected, {} already done; {} rows read in {:.1}s",
        shard.index,
        shard.count,
        s.plan.display(),
        if s.short { ", short" } else { "" },
        s.selected_files,
        s.skipped,
        s.rows_read,
        s.seconds
    );
    Ok(())
}
