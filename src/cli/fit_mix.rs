//! `hermes fit-mix`: maps the flags to a [`FitMixJob`] and says what it proposed.

use anyhow::Result;

use super::args::FitMixArgs;
use crate::jobs::fit_mix::{FitMixJob, run as fit_mix};

pub fn run(args: FitMixArgs) -> Result<()> {
    let job = FitMixJob {
        swarm: args.swarm,
        metrics: args.metrics,
        out: args.out,
        kl: args.kl,
        holdout: args.holdout,
        objective: args.objective,
    };
    let s = fit_mix(&job)?;
    eprintln!(
        "hermes fit-mix: {} metrics fitted on {} runs; objective {:.6} at the proposal, {:.6} at the prior; wrote {}",
        s.metrics,
        s.runs,
        s.objective,
        s.prior_objective,
        job.out.join("optimal.toml").display()
    );
    Ok(())
}
