//! `hermes describe`: maps the flags to a [`DescribeJob`] and says what the task wrote.

use anyhow::{Result, bail};

use super::args::DescribeArgs;
use crate::cards::CardConfig;
use crate::jobs::describe::{DescribeJob, Recorded, run as describe};

pub fn run(args: DescribeArgs) -> Result<()> {
    let shard = args.shard.shard()?;
    let mut cards = CardConfig {
        depth: args.depth,
        sample: args.sample,
        terms: args.terms,
        exemplars: args.exemplars,
        seed: args.seed,
    };
    let codes = match (args.merge, args.codes) {
        (true, codes) => match Recorded::read(&args.out)? {
            Some(r) => {
                if codes.as_ref().is_some_and(|c| c != &r.codes) {
                    bail!(
                        "--codes differs from the {} the tasks recorded",
                        r.codes.display()
                    );
                }
                cards = r.cards();
                r.codes
            }
            None => match codes {
                Some(c) => c,
                None => bail!(
                    "--merge: {} holds no parts/describe.json; give --codes",
                    args.out.display()
                ),
            },
        },
        (false, Some(c)) => c,
        (false, None) => bail!("--codes is required (a `hermes label` output directory)"),
    };
    if !args.merge && args.corpus.input.is_empty() {
        bail!("--input is required: the files the codes were labeled from");
    }
    let job = DescribeJob {
        codes,
        inputs: args.corpus.input.clone(),
        out: args.out,
        cards,
        fields: args.corpus.fields(Vec::new()),
        shard,
        merge: args.merge,
        progress_interval: args.shard.progress_interval(),
    };
    let s = describe(&job)?;
    match s.cards {
        Some(path) => eprintln!(
            "hermes describe: {} cards of {} documents written to {} (and atlas.html)",
            s.buckets,
            s.docs,
            path.display()
        ),
        None => eprintln!(
            "hermes describe: task {} of {}: {} texts written to {}/parts; run `hermes describe --merge --out {}` once every task is done",
            shard.index,
            shard.count,
            s.texts,
            job.out.display(),
            job.out.display()
        ),
    }
    Ok(())
}
