//! `hermes label`: maps the flags to a [`LabelJob`] and prints the task's summary.

use anyhow::Result;

use super::args::LabelArgs;
use crate::bundle::RuntimeConfig;
use crate::jobs::label::{LabelJob, run as label};

pub fn run(args: LabelArgs) -> Result<()> {
    let labeler = &args.labeler;
    let job = LabelJob {
        bundle: labeler.tier.model.bundle.clone(),
        inputs: args.corpus.input.clone(),
        out: args.out,
        tier: labeler.tier.encoder,
        fields: args.corpus.fields(args.carry),
        shard: args.shard.shard()?,
        runtime: RuntimeConfig::from(&labeler.tier.model.runtime),
        encoder_sessions: labeler.encoder_sessions,
        max_batch_docs: labeler.max_batch_docs(),
        chunk_docs: args.chunk_docs,
        max_doc_chars: args.max_doc_chars.max(1),
        count_tokens: args.count_tokens,
        progress_interval: args.shard.progress_interval(),
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
