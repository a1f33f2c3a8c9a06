//! What each subcommand does, in terms of the library's parts: each maps its flags and calls
//! the library (`jobs`, `fit`, `eval`, `bundle`, `server`). The flags are in `args`, those
//! several commands share once, in `groups`. Logging is set up here, once, for every command.

pub mod args;
mod consume;
mod describe;
mod embed;
mod eval;
mod fit;
mod fit_mix;
pub mod groups;
mod label;
mod mix;
mod serve;
mod stats;
mod swarm;

use std::future::Future;

use anyhow::{Context, Result};

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
        Command::Swarm(args) => swarm::run(args),
        Command::FitMix(args) => fit_mix::run(args),
        Command::Describe(args) => describe::run(args),
        Command::Serve(args) => serve::run(*args),
        Command::Consume(args) => consume::run(*args),
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
