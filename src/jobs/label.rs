//! The label job: a shard of a corpus → `codes/*.parquet` + `done/*.json` under `out`.
//!
//! Each input file is streamed (see `corpus::reader`) in chunks of `chunk_docs` documents;
//! [`IN_FLIGHT`] chunks at a time go through the same labeler as `hermes serve` (batcher,
//! encoder sessions, code space), so codes equal the service's, and results are written in
//! input order. A failing file is reported with its name and row, its partial output is
//! removed, and the task goes on with its other files, then fails.
//!
//! Resume: a file whose done marker exists is skipped, but only when the marker was written
//! by this very labeler (bundle fingerprint, tier and, for static, the table's digest). All
//! markers of the task are checked before anything is labeled: an `out` written by another
//! labeler stops the task at once, naming both, so one output never mixes two code spaces.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use sha2::Digest;

use super::progress::{Counter, Reporter};
use super::{Shard, block_on};
use crate::batch::BatchConfig;
use crate::bundle::{BundleError, RuntimeConfig};
use crate::corpus::codes::{CarriedType, CodeRow, CodesWriter, Done, paths, reserved_columns};
use crate::corpus::inputs::{InputFile, expand, shard};
use crate::corpus::reader::{Fields, ReadError, Reader, Record};
use crate::encoder::EncoderError;
use crate::labeling::{Labeler, open};
use crate::tier::Tier;

/// Chunks labeled at once: enough to keep every encoder session fed while one is written.
pub const IN_FLIGHT: usize = 4;

/// What to label and how.
#[derive(Debug, Clone)]
pub struct LabelJob {
    pub bundle: PathBuf,
    /// Files, directories or globs (see `corpus::inputs`).
    pub inputs: Vec<PathBuf>,
    pub out: PathBuf,
    pub tier: Tier,
    /// Text, id and carried fields.
    pub fields: Fields,
    pub shard: Shard,
    pub runtime: RuntimeConfig,
    /// Encoder sessions (batches that run at once).
    pub encoder_sessions: usize,
    /// Documents per encoder batch; `None` measures the fastest size on this CPU (minilm).
    pub max_batch_docs: Option<usize>,
    /// Documents read and labeled per chunk (memory: `IN_FLIGHT` chunks).
    pub chunk_docs: usize,
    /// Time between progress lines when stderr is not a terminal.
    pub progress_interval: Duration,
}

/// What a finished task did.
#[derive(Debug, Clone, PartialEq)]
pub struct LabelSummary {
    pub shard: Shard,
    /// Input files of this task.
    pub files: usize,
    pub labeled: usize,
    pub skipped: usize,
    /// Documents labeled (skipped files not counted).
    pub docs: u64,
    pub seconds: f64,
}

#[derive(Debug, thiserror::Error)]
pub enum LabelJobError {
    #[error("{0}")]
    Shard(String),
    #[error("{0}")]
    Inputs(String),
    #[error("--carry {field}: {why}")]
    Carry { field: String, why: String },
    #[error(transparent)]
    Bundle(#[from] BundleError),
    #[error(
        "--encoder {tier}: the bundle {bundle} has no {tier} tier (fit one with `hermes fit --static`)"
    )]
    NoTier { tier: Tier, bundle: String },
    /// A done marker of this task was written by another bundle, tier or table.
    #[error(
        "{marker} was written by {found}, not by this run's {ours}: use another --out (codes of two labelers must not mix in one output)"
    )]
    OtherLabeler {
        marker: String,
        found: String,
        ours: String,
    },
    #[error("{0}")]
    Marker(String),
    #[error("measuring the batch size: {0}")]
    Calibrate(#[from] EncoderError),
    #[error("start the async runtime: {0}")]
    Runtime(#[from] std::io::Error),
    #[error("{} input file(s) failed:\n  {}", .0.len(), .0.join("\n  "))]
    Failed(Vec<String>),
}

/// Who wrote a set of codes: what a done marker must match to be skipped.
#[derive(Debug, Clone, PartialEq)]
struct Writer {
    fingerprint: String,
    tier: Tier,
    weights: Option<String>,
}

impl Writer {
    fn of(done: &Done) -> Self {
        Self {
            fingerprint: done.fingerprint.clone(),
            tier: done.encoder,
            weights: done.weights.clone(),
        }
    }
}

impl std::fmt::Display for Writer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "bundle {} with the {} encoder",
            self.fingerprint, self.tier
        )?;
        if let Some(w) = &self.weights {
            write!(f, " (table {w})")?;
        }
        Ok(())
    }
}

enum Outcome {
    Labeled { rows: u64 },
    AlreadyDone,
}

/// Labels this task's files; fails if any file failed (the others are done).
pub fn run(job: &LabelJob) -> Result<LabelSummary, LabelJobError> {
    let Shard { index, count } = job.shard;
    let all = expand(&job.inputs).map_err(LabelJobError::Inputs)?;
    let total_files = all.len();
    let mine = shard(all, index, count);
    tracing::info!(
        "hermes label: task {index} of {count}: {} of {total_files} input files",
        mine.len()
    );
    let chunk = job.chunk_docs.max(1);
    let options = job.runtime.load_options(job.encoder_sessions, true);
    let batching = offline_batching(job.encoder_sessions, chunk, IN_FLIGHT);
    let started = Instant::now();
    let counter = Arc::new(Counter::default());
    let (labeled, skipped, docs, failed) = block_on(async {
        let opened = open(&job.bundle, &options, batching.clone()).await?;
        check_carry(&job.fields.carry, opened.labeler.model().levels().len())?;
        // The static tier gets its own batcher; the minilm one stays idle.
        let (labeler, _static_workers) =
            match job.tier {
                Tier::Minilm => (opened.labeler.clone(), None),
                tier => {
                    let mut batch = batching;
                    batch.max_batch_docs = 256;
                    batch.max_batch_tokens = usize::MAX;
                    let (l, w) = opened.labeler.for_tier(tier, batch).ok_or_else(|| {
                        LabelJobError::NoTier {
                            tier,
                            bundle: job.bundle.display().to_string(),
                        }
                    })?;
                    (l, Some(w))
                }
            };
        let ours = Writer {
            fingerprint: labeler.model().fingerprint().to_string(),
            tier: labeler.tier(),
            weights: labeler.weights_digest(),
        };
        check_markers(&job.out, &mine, &ours)?;
        match (labeler.tier(), job.max_batch_docs) {
            // A sum of table rows: any batch size costs the same per document.
            (Tier::Static, _) => {}
            (Tier::Minilm, Some(n)) => labeler.batcher().set_max_batch_docs(n),
            (Tier::Minilm, None) => calibrate(&labeler, &mine, job, &options)?,
        }
        let reporter = Reporter::start(
            "label",
            "docs",
            mine.len(),
            counter.clone(),
            job.progress_interval,
        );
        let (mut labeled, mut skipped, mut docs, mut failed) = (0, 0, 0u64, Vec::new());
        for (i, file) in mine.iter().enumerate() {
            match label_file(&labeler, &ours, file, job, chunk, &counter).await {
                Ok(Outcome::Labeled { rows }) => {
                    labeled += 1;
                    docs += rows;
                    reporter.file_done(i + 1, &file.rel, Some(rows));
                }
                Ok(Outcome::AlreadyDone) => {
                    skipped += 1;
                    reporter.file_done(i + 1, &file.rel, None);
                }
                Err(e) => {
                    reporter.failed(&e);
                    failed.push(e);
                }
            }
        }
        reporter.finish();
        Ok::<_, LabelJobError>((labeled, skipped, docs, failed))
    })??;
    if !failed.is_empty() {
        return Err(LabelJobError::Failed(failed));
    }
    Ok(LabelSummary {
        shard: job.shard,
        files: mine.len(),
        labeled,
        skipped,
        docs,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// Batching for offline jobs: no waiting for stragglers, a queue that holds every chunk in
/// flight.
pub fn offline_batching(sessions: usize, chunk: usize, in_flight: usize) -> BatchConfig {
    BatchConfig {
        max_batch_tokens: 8192,
        max_batch_docs: 32,
        max_wait: Duration::from_millis(2),
        max_queue_docs: chunk * in_flight,
        workers: sessions.max(1),
        min_window_docs: chunk,
    }
}

/// A carried field must not take a column name hermes writes, nor appear twice.
fn check_carry(carry: &[String], levels: usize) -> Result<(), LabelJobError> {
    let reserved = reserved_columns(levels);
    for (i, field) in carry.iter().enumerate() {
        let why = if reserved.contains(field) {
            Some("collides with a column hermes writes; rename the field".to_string())
        } else if carry[..i].contains(field) {
            Some("given twice".to_string())
        } else if field.is_empty() {
            Some("an empty name".to_string())
        } else {
            None
        };
        if let Some(why) = why {
            return Err(LabelJobError::Carry {
                field: field.clone(),
                why,
            });
        }
    }
    Ok(())
}

/// Refuses, before any work, an `out` whose markers for these files another labeler wrote.
fn check_markers(out: &Path, files: &[InputFile], ours: &Writer) -> Result<(), LabelJobError> {
    for file in files {
        let (_, done_path) = paths(out, &file.rel);
        if let Some(done) = Done::read(&done_path).map_err(LabelJobError::Marker)? {
            let found = Writer::of(&done);
            if &found != ours {
                return Err(LabelJobError::OtherLabeler {
                    marker: done_path.display().to_string(),
                    found: found.to_string(),
                    ours: ours.to_string(),
                });
            }
        }
    }
    Ok(())
}

/// Documents of the shard's first readable input used to measure the best batch size.
const CALIBRATION_DOCS: usize = 32;

/// A batch shape measured for one kind of machine, kept in `out/calibration/` so that the
/// other tasks of an array on the same kind of machine reuse it instead of paying the
/// measurement (seconds to tens of seconds) each.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq)]
struct Measured {
    /// What the measurement depends on: CPU model, cores, sessions, threads, bundle.
    machine: String,
    best: usize,
    padding: f64,
}

/// The kind of machine a measurement holds for.
fn machine_key(labeler: &Labeler, options: &crate::bundle::LoadOptions) -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_else(|| std::env::consts::ARCH.to_string());
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    format!(
        "{cpu}; {cores} cores; {} sessions x {} threads; bundle {}",
        options.sessions,
        options.intra_threads,
        labeler.model().fingerprint()
    )
}

/// Sets the batcher's batch shape to the one measured fastest on this kind of machine: from
/// `out/calibration/` when another task measured it, else on real documents of this shard.
fn calibrate(
    labeler: &Labeler,
    files: &[InputFile],
    job: &LabelJob,
    options: &crate::bundle::LoadOptions,
) -> Result<(), LabelJobError> {
    let machine = machine_key(labeler, options);
    let digest = hex::encode(&sha2::Sha256::digest(machine.as_bytes())[..8]);
    let path = job.out.join("calibration").join(format!("{digest}.json"));
    let known = std::fs::read_to_string(&path)
        .ok()
        .and_then(|s| serde_json::from_str::<Measured>(&s).ok())
        .filter(|m| m.machine == machine);
    if let Some(m) = known {
        tracing::info!(best = m.best, padding = m.padding, file = %path.display(), "batch shape measured earlier on this kind of machine");
        labeler.batcher().set_batch_shape(m.best, m.padding);
        return Ok(());
    }
    let fields = Fields {
        carry: Vec::new(),
        ..job.fields.clone()
    };
    let texts: Vec<String> = files
        .iter()
        .filter_map(|f| Reader::open(&f.path, "calibration", &fields).ok())
        .flat_map(|r| r.map_while(Result::ok).map(|r| r.text))
        .take(CALIBRATION_DOCS)
        .collect();
    if texts.is_empty() {
        return Ok(());
    }
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let rates = labeler.calibrate(&refs, 32)?;
    let (best, padding) = crate::encoder::batch_shape(&rates);
    let m = Measured {
        machine,
        best,
        padding,
    };
    // Best effort: a task that cannot write it has still measured for itself.
    let write = || -> std::io::Result<()> {
        std::fs::create_dir_all(path.parent().expect("has a parent"))?;
        let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
        std::fs::write(&tmp, serde_json::to_vec_pretty(&m)?)?;
        std::fs::rename(&tmp, &path)
    };
    if let Err(e) = write() {
        tracing::warn!(file = %path.display(), error = %e, "could not keep the measured batch shape");
    }
    Ok(())
}

async fn label_file(
    labeler: &Labeler,
    ours: &Writer,
    file: &InputFile,
    job: &LabelJob,
    chunk: usize,
    counter: &Counter,
) -> Result<Outcome, String> {
    let model = labeler.model();
    let name = file.rel.display().to_string();
    let (codes_path, done_path) = paths(&job.out, &file.rel);
    if Done::read(&done_path)?.is_some() {
        // `check_markers` has verified who wrote it.
        if codes_path.is_file() {
            return Ok(Outcome::AlreadyDone);
        }
        // The codes file went missing after it was done: label the input again.
        let _ = std::fs::remove_file(&done_path);
    }
    let started = Instant::now();
    let chunks = read_chunks(file.path.clone(), name.clone(), job.fields.clone(), chunk);
    let levels = model.levels().to_vec();
    let mut labeled = std::pin::pin!(
        chunks
            .map(|c| {
                let labeler = labeler.clone();
                let name = name.clone();
                async move {
                    let mut records = c.map_err(|e| e.to_string())?;
                    let texts = records
                        .iter_mut()
                        .map(|r| std::mem::take(&mut r.text))
                        .collect::<Vec<_>>();
                    let bytes: Vec<usize> = texts.iter().map(String::len).collect();
                    let labels = labeler
                        .label(texts)
                        .await
                        .map_err(|e| format!("{name}: rows {}..: {e}", records[0].row))?;
                    Ok::<_, String>((records, bytes, labels))
                }
            })
            .buffered(IN_FLIGHT)
    );
    let mut writer: Option<CodesWriter> = None;
    while let Some(item) = labeled.next().await {
        let written = item.and_then(|(records, bytes, labels)| {
            if writer.is_none() {
                let carry = carried_types(&job.fields.carry, &records);
                writer = Some(CodesWriter::create(&codes_path, levels.len(), carry)?);
            }
            let rows = records
                .into_iter()
                .zip(bytes)
                .zip(labels)
                .map(|((r, bytes), l)| {
                    let cell = u32::try_from(l.code.cell(&levels))
                        .map_err(|_| format!("{name}: row {}: cell exceeds u32", r.row))?;
                    let bytes = u32::try_from(bytes)
                        .map_err(|_| format!("{name}: row {}: text over 4 GiB", r.row))?;
                    Ok(CodeRow {
                        id: r.id.unwrap_or_else(|| format!("{name}:{}", r.row)),
                        row: r.row,
                        cell,
                        code: l.code.0,
                        truncated: l.truncated,
                        bytes,
                        residuals: l.residuals,
                        carried: r.carried,
                    })
                })
                .collect::<Result<Vec<_>, String>>()?;
            writer.as_mut().expect("created above").write(&rows)?;
            Ok(rows.len())
        });
        match written {
            Ok(n) => counter.add(n as u64),
            Err(e) => {
                if let Some(w) = writer {
                    w.abort();
                }
                return Err(e);
            }
        }
    }
    let writer = match writer {
        Some(w) => w,
        // An empty input still gets its (empty) codes file.
        None => CodesWriter::create(
            &codes_path,
            levels.len(),
            carried_types(&job.fields.carry, &[]),
        )?,
    };
    let rows = writer.finish()?;
    Done {
        input: name.clone(),
        rows,
        seconds: started.elapsed().as_secs_f64(),
        encoder: ours.tier,
        weights: ours.weights.clone(),
        bundle: model.name().to_string(),
        fingerprint: ours.fingerprint.clone(),
    }
    .write(&done_path)
    .map_err(|e| format!("{}: {e}", done_path.display()))?;
    Ok(Outcome::Labeled { rows })
}

/// Each carried column's type: that of its first non-null value in `records`, else float64
/// (scores and token counts, what carried fields are for). A later row of another type is
/// an error naming it.
fn carried_types(carry: &[String], records: &[Record]) -> Vec<(String, CarriedType)> {
    carry
        .iter()
        .enumerate()
        .map(|(i, name)| {
            let t = records
                .iter()
                .find_map(|r| CarriedType::of(&r.carried[i]))
                .unwrap_or(CarriedType::Float64);
            (name.clone(), t)
        })
        .collect()
}

/// Reads `path` on a blocking thread and yields chunks of records; an error ends the stream.
fn read_chunks(
    path: PathBuf,
    name: String,
    fields: Fields,
    chunk: usize,
) -> impl futures::Stream<Item = Result<Vec<Record>, ReadError>> {
    let (tx, rx) = tokio::sync::mpsc::channel(IN_FLIGHT);
    tokio::task::spawn_blocking(move || {
        let reader = match Reader::open(&path, &name, &fields) {
            Ok(r) => r,
            Err(e) => {
                let _ = tx.blocking_send(Err(e));
                return;
            }
        };
        let mut batch = Vec::with_capacity(chunk);
        for record in reader {
            match record {
                Ok(r) => {
                    batch.push(r);
                    if batch.len() == chunk
                        && tx.blocking_send(Ok(std::mem::take(&mut batch))).is_err()
                    {
                        return;
                    }
                }
                Err(e) => {
                    let _ = tx.blocking_send(Err(e));
                    return;
                }
            }
        }
        if !batch.is_empty() {
            let _ = tx.blocking_send(Ok(batch));
        }
    });
    futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|c| (c, rx)) })
}
