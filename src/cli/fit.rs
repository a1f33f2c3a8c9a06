//! `hermes fit`: maps the flags to a [`FitJob`] and prints the bundle's statistics.

use anyhow::Result;

use super::args::FitArgs;
use crate::bundle::RuntimeConfig;
use crate::jobs::fit::{FitJob, run as fit};
use crate::jobs::fit_static::StaticFit;

pub fn run(args: FitArgs) -> Result<()> {
    let job = FitJob {
        runtime: RuntimeConfig::from(&args.runtime),
        input: args.corpus.input,
        out: args.out,
        levels: args.levels,
        text_field: args.corpus.text.text_field,
        seed: args.seed,
        max_iter: args.max_iter,
        dim: args.dim,
        whiten: args.whiten,
        embeddings: args.corpus.embeddings,
        save_embeddings: args.save_embeddings,
        name: args.name,
        encoder_from: args.encoder_from,
        max_tokens: args.max_tokens,
        probes: args.probes,
        static_tier: args.static_tier,
        static_only: args.static_only,
        cards_only: args.cards_only,
        static_fit: StaticFit {
            seed: args.seed,
            lambda: args.static_lambda,
            iterations: args.static_iterations,
            max_tokens: args.static_max_tokens,
        },
    };
    let summary = fit(&job)?;
    let Some(manifest) = summary.manifest else {
        let what = if job.cards_only {
            "bucket cards"
        } else {
            "static tier"
        };
        println!("bundle {}: {what} rewritten", job.out.display());
        return Ok(());
    };
    println!(
        "bundle {} (fingerprint {})",
        job.out.display(),
        manifest.fingerprint
    );
    println!("| depth | k | utilization | perplexity | cells used | relative error |");
    println!("|---|---|---|---|---|---|");
    for s in &summary.stats {
        println!(
            "| {} | {} | {:.3} | {:.1} | {} | {:.4} |",
            s.depth, s.k, s.utilization, s.perplexity, s.cells_used, s.relative_error
        );
    }
    Ok(())
}
