//! What each subcommand does, in terms of the library's parts: each maps its flags and calls
//! the library (`jobs`, `fit`, `eval`, `bundle`, `server`). Logging is set up here, once, for
//! every command.

pub mod args;
mod embed;
mod eval;
mod fit;
mod fit_static;
mod label;
mod mix;
mod serve;
mod stats;

use std::future::Future;
use std::sync::Arc;

use anyhow::{Context, Result};
use futures::StreamExt;
use indicatif::{ProgressBar, ProgressStyle};

use crate::batch::Batcher;
use crate::encoder::Embedder;
use args::{Cli, Command};

pub fn run(cli: Cli) -> Result<()> {
    crate::logging::init(cli.log_format);
    match cli.command {
        Command::Fit(args) => fit::run(args),
        Command::Eval(args) => eval::run(args),
        Command::Embed(args) => embed::run(args),
        Command::Label(args) => label::run(args),
        Command::Stats(args) => stats::run(args),
        Command::Mix(args) => mix::run(args),
        Command::Serve(args) => serve::run(*args),
        Command::Openapi => {
            print!("{}", crate::server::openapi_json());
            Ok(())
        }
    }
}

/// Runs `f` on a multi-threaded tokio runtime (the batcher is async).
pub(crate) fn block_on<F: Future>(f: F) -> Result<F::Output> {
    crate::jobs::block_on(f).context("start the async runtime")
}

/// Documents per request to the batcher while embedding a corpus, and requests in flight.
const CHUNK: usize = 256;
const IN_FLIGHT: usize = 4;

/// Embeds a corpus through the batcher with a progress bar (docs/s and ETA) on stderr;
/// returns `[n, dim]` row-major in input order.
pub(crate) fn embed_corpus(encoder: Arc<dyn Embedder>, texts: &[&str]) -> Result<Vec<f32>> {
    let dim = encoder.dim();
    let (batcher, workers) = Batcher::start(
        encoder,
        crate::jobs::label::offline_batching(1, CHUNK, IN_FLIGHT),
    );
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
        anyhow::Ok(out)
    })??;
    drop(workers);
    bar.finish();
    Ok(out)
}

/// A progress bar with docs/s and ETA (hidden when stderr is not a terminal).
pub(crate) fn progress_bar(len: u64, what: &str) -> ProgressBar {
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
