//! The corpus-scale jobs, as library calls with typed errors: each `cli/` command maps its
//! flags into one of these configs and calls its `run`.
//!
//! - [`label`]: input files → `codes/` + `done/` (the same labeler as `serve`).
//! - [`mix`]: labeled codes + a spec → `plan.json`, `plan.svg`, `selection/`.
//! - [`fit`] (with [`fit_static`]): a corpus → a verified bundle.
//! - [`swarm`]: labeled codes + a base spec → a swarm of mixtures (Olmix's files), and
//!   optionally every variant's selection.
//! - [`fit_mix`]: a swarm + its metrics → the fitted mixing law and proposed weights.
//! - [`describe`]: labeled codes + their inputs → bucket cards and the atlas page.
//!
//! [`runner`] is the per-file loop they share (shard, skip what is done, markers, failures);
//! [`progress`] reports what a job has done (a bar on a terminal, log lines elsewhere);
//! [`Shard`] says which part of the files a task of an array takes.

pub mod describe;
pub mod fit;
pub mod fit_mix;
pub mod fit_static;
pub mod label;
pub mod mix;
pub mod progress;
pub mod runner;
pub mod swarm;

use std::sync::Arc;

use futures::StreamExt;
use indicatif::{ProgressBar, ProgressStyle};

use crate::batch::Batcher;
use crate::encoder::Embedder;

use crate::corpus::inputs::resolve_shard;

/// Which task of an array this is (`--shard-index/--shard-count`, else Slurm, else an
/// Indexed Job, else 0 of 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    pub index: usize,
    pub count: usize,
}

impl Shard {
    /// The whole job in one task.
    pub const ALL: Shard = Shard { index: 0, count: 1 };

    /// Whether file `i` of the sorted list is this task's (as datatrove splits: task I of N
    /// takes files I, I+N, I+2N, …).
    pub fn owns(&self, i: usize) -> bool {
        i % self.count.max(1) == self.index
    }

    /// From the flags, else the scheduler's environment.
    pub fn resolve(index: Option<usize>, count: Option<usize>) -> Result<Shard, String> {
        let (index, count) = resolve_shard(index, count, |k| std::env::var(k).ok())?;
        Ok(Shard { index, count })
    }
}

/// Runs `f` on a multi-threaded tokio runtime (the batcher is async).
pub(crate) fn block_on<F: std::future::Future>(f: F) -> std::io::Result<F::Output> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    Ok(rt.block_on(f))
}

/// Documents per request to the batcher while embedding a corpus, and requests in flight.
const CHUNK: usize = 256;
const IN_FLIGHT: usize = 4;

/// Embeds a corpus through the batcher with a progress bar (docs/s and ETA) on stderr;
/// returns `[n, dim]` row-major in input order.
pub fn embed_corpus(
    encoder: Arc<dyn Embedder>,
    texts: &[&str],
) -> std::io::Result<Result<Vec<f32>, crate::batch::BatchError>> {
    let (batcher, workers) = Batcher::start(
        encoder,
        crate::batch::BatchConfig::offline(1, CHUNK, IN_FLIGHT),
    );
    let out = embed_with(&batcher, texts);
    drop(workers);
    out
}

/// [`embed_corpus`] through a batcher that is already running (the labeling core's).
pub fn embed_with(
    batcher: &Batcher,
    texts: &[&str],
) -> std::io::Result<Result<Vec<f32>, crate::batch::BatchError>> {
    let dim = batcher.encoder().dim();
    let bar = progress_bar(texts.len() as u64, "embedding");
    let out = block_on(async {
        let mut out = Vec::with_capacity(texts.len() * dim);
        let mut results = futures::stream::iter(texts.chunks(CHUNK))
            .map(|chunk| {
                let batcher = batcher.clone();
                let owned: Vec<String> = chunk.iter().map(|t| t.to_string()).collect();
                async move { batcher.embed(owned).await }
            })
            .buffered(IN_FLIGHT);
        while let Some(chunk) = results.next().await {
            let chunk = chunk?;
            bar.inc(chunk.len() as u64);
            out.extend(chunk.into_iter().flat_map(|e| e.vector));
        }
        Ok(out)
    })?;
    bar.finish();
    Ok(out)
}

/// A progress bar with docs/s and ETA (hidden when stderr is not a terminal).
pub fn progress_bar(len: u64, what: &str) -> ProgressBar {
    let bar = ProgressBar::new(len);
    bar.set_style(
        ProgressStyle::with_template(&format!(
            "{what} {{bar:40}} {{pos}}/{{len}} docs  {{per_sec}}  ETA {{eta}}"
        ))
        .expect("static template")
        .progress_chars("=> "),
    );
    bar
}

#[cfg(test)]
mod tests {
    use super::Shard;

    #[test]
    fn shards_partition_the_sorted_list() {
        let tasks = |i| Shard { index: i, count: 3 };
        let mut all: Vec<usize> = (0..3)
            .flat_map(|t| (0..10).filter(move |&i| tasks(t).owns(i)))
            .collect();
        all.sort();
        assert_eq!(all, (0..10).collect::<Vec<_>>());
        let first: Vec<usize> = (0..10).filter(|&i| tasks(1).owns(i)).collect();
        assert_eq!(first, [1, 4, 7]);
        assert!((0..5).all(|i| Shard::ALL.owns(i)));
    }
}
