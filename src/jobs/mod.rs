//! The corpus-scale jobs, as library calls with typed errors: each `cli/` command maps its
//! flags into one of these configs and calls its `run`.
//!
//! - [`label`]: input files → `codes/` + `done/` (the same labeler as `serve`).
//! - [`mix`]: labeled codes + a spec → `plan.json`, `plan.svg`, `selection/`.
//!
//! [`progress`] reports what a job has done (a bar on a terminal, log lines elsewhere);
//! [`Shard`] says which part of the files a task of an array takes.

pub mod label;
pub mod mix;
pub mod progress;

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
