//! `hermes swarm --select`: every variant's `plan.json`, `plan.svg`, `selection/` and `done/`
//! under `variants/<name>/`, exactly as `hermes mix --spec variants/<name>.toml` writes them,
//! with the passes shared: the codes are counted once, by the caller (pass 1 and the quality
//! phase do not depend on stage 1), each later pass feeds every variant's crossing-row searches, and the
//! selection reads each codes file once and writes every variant's selection of it (the
//! files spread over the cores).

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use super::SwarmError;
use crate::corpus::codes::{Done, write_marker};
use crate::jobs::mix::plan::{self, CodesFile, Plan};
use crate::jobs::mix::rows::Columns;
use crate::jobs::mix::{
    Cuts, MixError, SelectionDone, Spec, codes_digest, dress, select_file, selection_columns,
    spec_digest, write_plan,
};
use crate::jobs::progress::Counter;

/// Writes every variant's plan and selection; `variants` are (name, spec as `hermes mix`
/// reads it), all equal to `base` but for stage 1.
pub fn select_all(
    out: &Path,
    base: &Spec,
    counted: &plan::Counted,
    variants: &[(String, Spec)],
    files: &[CodesFile],
    marker: &Done,
    counter: &Counter,
) -> Result<(), SwarmError> {
    let mut allotted = variants
        .iter()
        .map(|(_, spec)| plan::allot(spec, counted))
        .collect::<Result<Vec<_>, _>>()
        .map_err(MixError::Plan)?;
    plan::search_crossings(files, base.seed, counted, &mut allotted, counter)
        .map_err(MixError::Plan)?;
    let codes = codes_digest(files)?;
    let mut plans = Vec::with_capacity(variants.len());
    for ((name, spec), a) in variants.iter().zip(allotted) {
        let parts = plan::finish(spec, counted, a);
        let plan = dress(spec, parts, files, marker, spec_digest(spec), codes.clone());
        write_plan(&out.join(name), &plan)?;
        if plan.short {
            // The caps keep every variant whole; a short one would be a bug, not bad input.
            return Err(SwarmError::Io(format!(
                "{}: variant {name} is short by {} (see its plan.json)",
                out.display(),
                plan.totals.shortfall
            )));
        }
        plans.push(plan);
    }
    let cuts = plans.iter().map(Cuts::of).collect::<Result<Vec<_>, _>>()?;
    let cols = selection_columns(base);
    // Writing N selections is most of the work (the plan passes are shared): the files are
    // spread over the cores, each read once by one worker.
    let next = AtomicUsize::new(0);
    let workers = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(files.len());
    let failures: Vec<SwarmError> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..workers)
            .map(|_| {
                s.spawn(|| -> Result<(), SwarmError> {
                    loop {
                        let fi = next.fetch_add(1, Ordering::Relaxed);
                        let Some(f) = files.get(fi) else {
                            return Ok(());
                        };
                        select_one(
                            out, base.seed, &cols, variants, &plans, &cuts, fi, f, counter,
                        )?;
                    }
                })
            })
            .collect();
        handles
            .into_iter()
            .filter_map(|h| h.join().expect("a selection worker panicked").err())
            .collect()
    });
    if let Some(e) = failures.into_iter().next() {
        return Err(e);
    }
    Ok(())
}

/// One codes file read once → every variant's selection of it and its done marker.
#[allow(clippy::too_many_arguments)]
fn select_one(
    out: &Path,
    seed: u64,
    cols: &Columns,
    variants: &[(String, Spec)],
    plans: &[Plan],
    cuts: &[Cuts],
    fi: usize,
    f: &CodesFile,
    counter: &Counter,
) -> Result<(), SwarmError> {
    let started = Instant::now();
    let paths: Vec<_> = variants
        .iter()
        .map(|(name, _)| out.join(name).join("selection").join(&f.name))
        .collect();
    let targets: Vec<(&Cuts, &Path)> = cuts
        .iter()
        .zip(&paths)
        .map(|(c, p)| (c, p.as_path()))
        .collect();
    let fi = u32::try_from(fi).map_err(|_| SwarmError::Io("more than 2^32 codes files".into()))?;
    let (rows, written) = select_file(f, fi, seed, cols, &targets).map_err(SwarmError::Io)?;
    counter.add(rows);
    let seconds = started.elapsed().as_secs_f64();
    for (((name, _), plan), (selected, copies)) in variants.iter().zip(plans).zip(written) {
        let path = out.join(name).join("done").join(format!("{}.json", f.name));
        let done = SelectionDone {
            codes: f.name.clone(),
            rows,
            selected,
            copies,
            seconds,
            spec_digest: plan.spec_digest.clone(),
            codes_digest: plan.codes_digest.clone(),
        };
        write_marker(&path, &done)
            .map_err(|e| SwarmError::Io(format!("{}: {e}", path.display())))?;
    }
    Ok(())
}
