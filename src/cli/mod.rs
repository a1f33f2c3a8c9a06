//! What each subcommand does, in terms of the library's parts. Only I/O and orchestration
//! live here; the work is in `fit`, `eval`, `bundle` and `encoder`.

mod embed;
mod eval;
mod fit;

use anyhow::Result;
use indicatif::{ProgressBar, ProgressStyle};

use crate::config::{Cli, Command};
use crate::encoder::{Embedded, Encoder};

pub fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Fit(args) => fit::run(args),
        Command::Eval(args) => eval::run(args),
        Command::Embed(args) => embed::run(args),
        Command::Serve(args) => crate::server::run(*args),
        Command::Openapi => {
            print!("{}", crate::api::openapi_json());
            Ok(())
        }
    }
}

/// Embeds a corpus with a progress bar (docs/s and ETA) on stderr.
fn embed_with_progress(encoder: &Encoder, texts: &[&str], batch: usize) -> Result<Embedded> {
    let bar = ProgressBar::new(texts.len() as u64);
    bar.set_style(
        ProgressStyle::with_template("embedding {bar:40} {pos}/{len} docs  {per_sec}  ETA {eta}")
            .expect("static template")
            .progress_chars("=> "),
    );
    let out = encoder.embed_many(texts, batch, |done| bar.set_position(done as u64))?;
    bar.finish();
    Ok(out)
}
