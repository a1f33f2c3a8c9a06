//! `hermes swarm --select`: every variant's `plan.json`, `plan.svg`, `selection/` and `done/`
//! under `variants/<name>/`, exactly as `hermes mix --spec variants/<name>.toml` writes them,
//! with the passes shared: the codes are counted once, by the caller (pass 1 and the quality
//! phase do not depend on stage 1), each later pass feeds every variant's crossing-row
//! searches (sharing their first-pass histograms), and the selection reads each codes file once
//! per 64 variants and writes every variant's selection of it, the files spread over the cores.

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
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
    plan::search_crossings(counted, &mut allotted, counter).map_err(MixError::Plan)?;
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
    // spread over the cores, each read once per chunk of variants by one worker. Chunks keep
    // the open selection files (and their buffers) at workers × CHUNK, so the workers are
    // also as many as the descriptor limit holds at CHUNK + 1 files each (as mix's pass 1).
    let next = AtomicUsize::new(0);
    let stop = AtomicBool::new(false);
    const _: () = assert!(CHUNK <= crate::jobs::mix::spill::PARTS);
    let workers = crate::jobs::mix::spill::readers_within_descriptors(
        std::thread::available_parallelism().map_or(1, |n| n.get()),
    )
    .min(files.len());
    let jobs: Vec<(usize, usize)> = (0..files.len())
        .flat_map(|fi| (0..variants.len()).step_by(CHUNK).map(move |v| (fi, v)))
        .collect();
    let results: Vec<std::thread::Result<Result<(), SwarmError>>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..workers)
            .map(|_| {
                s.spawn(|| -> Result<(), SwarmError> {
                    while !stop.load(Ordering::Relaxed) {
                        let Some(&(fi, v)) = jobs.get(next.fetch_add(1, Ordering::Relaxed)) else {
                            return Ok(());
                        };
                        let end = (v + CHUNK).min(variants.len());
                        let chunk = Chunk {
                            variants: &variants[v..end],
                            plans: &plans[v..end],
                            cuts: &cuts[v..end],
                        };
                        if let Err(e) =
                            select_one(out, base.seed, &cols, &chunk, fi, &files[fi], counter)
                        {
                            stop.store(true, Ordering::Relaxed);
                            return Err(e);
                        }
                    }
                    Ok(())
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join()).collect()
    });
    for r in results {
        match r {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(e),
            Err(panic) => std::panic::resume_unwind(panic),
        }
    }
    Ok(())
}

/// Variants whose selections one read of a codes file writes.
const CHUNK: usize = 64;

/// A run of variants with their plans and cuts.
struct Chunk<'a> {
    variants: &'a [(String, Spec)],
    plans: &'a [Plan],
    cuts: &'a [Cuts],
}

/// One codes file read once → each variant of the chunk's selection of it and its marker.
fn select_one(
    out: &Path,
    seed: u64,
    cols: &Columns,
    chunk: &Chunk<'_>,
    fi: usize,
    f: &CodesFile,
    counter: &Counter,
) -> Result<(), SwarmError> {
    let started = Instant::now();
    let &Chunk {
        variants,
        plans,
        cuts,
    } = chunk;
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
