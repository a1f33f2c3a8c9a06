//! The per-file loop every corpus job shares, written once (as datatrove's executor does for
//! its steps): take this task's share of the files (task I of N takes files I, I+N, …), skip
//! the files whose done marker this very writer left, process the others one by one, write
//! each marker only after the file's output is complete (temporary file, rename, fsync of the
//! file and its directory), report progress, and collect failures: a failing file stops only
//! itself, and the task fails at the end naming every failed file.
//!
//! A job is a [`Step`]: how it names a file, where its output and marker go, which markers it
//! accepts as its own, and its processing function. `label`, `mix`'s selection and
//! `describe`'s scan of the inputs are steps.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::Shard;
use super::progress::{Counter, Reporter};
use crate::corpus::codes::{read_marker, write_marker};

/// Where one file's results go: its output (written by the step, complete when `process`
/// returns) and its done marker (written here, after it).
#[derive(Debug, Clone, PartialEq)]
pub struct Outputs {
    pub data: PathBuf,
    pub marker: PathBuf,
}

/// What a marker found on disk means for this run.
#[derive(Debug, Clone, PartialEq)]
pub enum Found {
    /// Written by this very writer: the file is done.
    Ours,
    /// Written by an earlier writer that this one replaces: process the file again.
    Stale,
    /// Written by another writer whose output must not be mixed with ours: the whole task is
    /// refused before any work, with this message.
    Foreign(String),
}

/// One per-file job.
pub trait Step {
    /// A file to process (an input file, a codes file).
    type File;
    /// The done marker's contents, including the writer's identity.
    type Marker: Serialize + DeserializeOwned;

    /// How progress lines and errors name the file.
    fn name(&self, file: &Self::File) -> String;

    /// Where the file's output and marker go; `None` for a step that writes no per-file
    /// output (it is then processed on every run).
    fn outputs(&self, file: &Self::File) -> Option<Outputs>;

    /// Whether a marker found for a file was written by this writer.
    fn found(&self, marker: &Self::Marker) -> Found;

    /// Processes one file (`index`: its place in the whole sorted list, the same in every
    /// task): writes its output completely, adds the rows it read to `counter`, and returns
    /// its marker (`None` without [`Step::outputs`]) and the count shown in progress lines.
    fn process(
        &self,
        index: usize,
        file: &Self::File,
        counter: &Counter,
    ) -> impl std::future::Future<Output = Result<(Option<Self::Marker>, u64), String>>;
}

/// How the loop reports and which files are this task's.
#[derive(Debug, Clone)]
pub struct Run {
    /// The job's name in log lines ("label", "mix").
    pub job: &'static str,
    /// What the counter counts ("docs", "rows").
    pub unit: &'static str,
    pub shard: Shard,
    /// Time between progress lines when stderr is not a terminal.
    pub progress_interval: Duration,
}

/// What the loop did.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Ran {
    /// This task's files.
    pub files: usize,
    pub processed: usize,
    pub skipped: usize,
    /// The sum of the processed files' counts.
    pub count: u64,
    /// Rows read, as the steps counted them.
    pub rows: u64,
    /// One line per failed file.
    pub failed: Vec<String>,
}

/// Runs `step` over this task's share of `files` (all of them, sorted the same way in every
/// task). `Err` only when a marker of another writer refuses the task before any work.
pub async fn run<S: Step>(run: &Run, step: &S, files: &[S::File]) -> Result<Ran, String> {
    let mine: Vec<(usize, &S::File)> = files
        .iter()
        .enumerate()
        .filter(|(i, _)| run.shard.owns(*i))
        .collect();
    // Every marker first: an output another writer made is refused before anything is done.
    let mut done = vec![false; mine.len()];
    for (k, (_, file)) in mine.iter().enumerate() {
        let Some(out) = step.outputs(file) else {
            continue;
        };
        let Some(marker) = read_marker::<S::Marker>(&out.marker)? else {
            continue;
        };
        match step.found(&marker) {
            Found::Ours => done[k] = out.data.is_file(),
            Found::Stale => {}
            Found::Foreign(why) => return Err(why),
        }
    }
    let counter = Arc::new(Counter::default());
    let reporter = Reporter::start(
        run.job,
        run.unit,
        mine.len(),
        counter.clone(),
        run.progress_interval,
    );
    let mut ran = Ran {
        files: mine.len(),
        ..Ran::default()
    };
    for (k, (i, file)) in mine.iter().enumerate() {
        let name = step.name(file);
        if done[k] {
            ran.skipped += 1;
            reporter.file_done(k + 1, name.as_ref(), None);
            continue;
        }
        let outputs = step.outputs(file);
        if let Some(out) = &outputs {
            // Redone from the start: a marker left without its output goes first.
            let _ = std::fs::remove_file(&out.marker);
        }
        let result = step
            .process(*i, file, &counter)
            .await
            .and_then(|(marker, n)| match (&outputs, marker) {
                (Some(out), Some(marker)) => write_marker(&out.marker, &marker)
                    .map(|()| n)
                    .map_err(|e| format!("{}: {e}", out.marker.display())),
                (Some(_), None) => Err(format!("{name}: the step returned no done marker")),
                (None, _) => Ok(n),
            });
        match result {
            Ok(n) => {
                ran.processed += 1;
                ran.count += n;
                reporter.file_done(k + 1, name.as_ref(), Some(n));
            }
            Err(e) => {
                reporter.failed(&e);
                ran.failed.push(e);
            }
        }
    }
    reporter.finish();
    ran.rows = counter.get();
    Ok(ran)
}
