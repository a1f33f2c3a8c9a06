//! `hermes label`: maps the flags to a [`LabelJob`] and prints the task's summary.

use std::time::Duration;

use anyhow::Result;

use super::args::LabelArgs;
use crate::bundle::RuntimeConfig;
use crate::corpus::reader::Fields;
use crate::jobs::Shard;
use crate::jobs::label::{LabelJob, run as label};

pub fn run(args: LabelArgs) -> Result<()> {
    let shard = Shard::resolve(args.shard_index, args.shard_count).map_err(anyhow::Error::msg)?;
    let job = LabelJob {
        bundle: args.bundle,
        inputs: args.input,
        out: args.out,
        tier: args.encoder,
        fields: Fields {
            text: args.text_field,
            id: args.id_field,
            carry: args.carry,
        },
        shard,
        runtime: RuntimeConfig::from(&args.runtime),
        encoder_sessions: args.encoder_sessions,
        max_batch_docs: (args.max_batch_docs > 0).then_some(args.max_batch_docs),
        chunk_docs: args.chunk_docs,
        progress_interval: Duration::from_secs(args.progress_interval_s),
    };
    let s = label(&job)?;
    eprintln!(
        "hermes label: task {} of {} finished in {:.1}s: {} files labeled ({} documents, {:.1} docs/s), {} already done, 0 failed",
        s.shard.index,
        s.shard.count,
        s.seconds,
        s.labeled,
        s.docs,
        s.docs as f64 / s.seconds.max(1e-9),
        s.skipped
    );
    Ok(())
}
