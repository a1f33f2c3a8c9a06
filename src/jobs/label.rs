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
//! With `--count-tokens` the marker also records the tokenizer's sha256, and a marker of
//! another tokenizer (or of a run without token counts, or with them where this run has none)
//! stops the task the same way: one output never mixes two kinds of `tokens`.
//!
//! Token counts: each record's whole text is counted before `--max-doc-chars` cuts it. A text
//! longer than the cut is counted at once on the reader thread, alone, and cut right after, so
//! no whole long text waits in a chunk; the others are counted per chunk on the rayon pool
//! while earlier chunks are labeled.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use rayon::prelude::*;

use super::progress::Counter;
use super::runner::{self, Found, Outputs, Ran, Run, Step};
use super::{Shard, block_on};
use crate::bundle::RuntimeConfig;
use crate::corpus::codes::{
    CarriedType, CodeRow, CodesWriter, Done, TOKENS_COLUMN, paths, reserved_columns,
};
use crate::corpus::inputs::{InputFile, InputsError, expand};
use crate::corpus::reader::{Carried, Fields, ReadError, Reader, Record};
use crate::corpus::tokens::TokenCounter;
use crate::labeling::{Batching, Calibration, CoreConfig, CoreError, Labeler, Tiers, build};
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
    /// Characters of a document labeled at most: a longer text is cut before tokenization
    /// (and its row marked `truncated`), so one huge document costs bounded memory.
    pub max_doc_chars: usize,
    /// A `tokenizer.json`: adds the column `tokens`, the ids it gives each whole text (no
    /// special tokens, no truncation).
    pub count_tokens: Option<PathBuf>,
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
    #[error(transparent)]
    Inputs(#[from] InputsError),
    #[error("--carry {field}: {why}")]
    Carry { field: String, why: String },
    /// `--count-tokens`: the tokenizer file is missing or not a tokenizer (names the file).
    #[error("{0}")]
    Tokenizer(String),
    #[error(transparent)]
    Core(#[from] CoreError),
    /// A done marker of this task was written by another bundle, tier or table (or cannot
    /// be read).
    #[error("{0}")]
    Marker(String),
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
    /// The `--count-tokens` tokenizer's sha256.
    tokens: Option<String>,
}

impl Writer {
    fn of(done: &Done) -> Self {
        Self {
            fingerprint: done.fingerprint.clone(),
            tier: done.encoder,
            weights: done.weights.clone(),
            tokens: done.tokens_tokenizer.clone(),
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
        match &self.tokens {
            Some(sha) => write!(f, ", token counts by tokenizer sha256 {sha}"),
            None => write!(f, ", no token counts"),
        }
    }
}

/// Labels this task's files; fails if any file failed (the others are done).
pub fn run(job: &LabelJob) -> Result<LabelSummary, LabelJobError> {
    let Shard { index, count } = job.shard;
    // The tokenizer before anything else (inputs, model): a bad flag fails at once.
    if job.count_tokens.is_some() && job.fields.carry.iter().any(|f| f == TOKENS_COLUMN) {
        return Err(LabelJobError::Carry {
            field: TOKENS_COLUMN.into(),
            why: "--count-tokens writes the column `tokens`: give one of --carry tokens and --count-tokens, not both".into(),
        });
    }
    let counter = match &job.count_tokens {
        Some(path) => Some(Arc::new(
            TokenCounter::load(path).map_err(LabelJobError::Tokenizer)?,
        )),
        None => None,
    };
    let all = expand(&job.inputs)?;
    let mine: Vec<&InputFile> = (0..all.len())
        .filter(|&i| job.shard.owns(i))
        .map(|i| &all[i])
        .collect();
    tracing::info!(
        "hermes label: task {index} of {count}: {} of {} input files",
        mine.len(),
        all.len()
    );
    let chunk = job.chunk_docs.max(1);
    let started = Instant::now();
    let core = core_config(job, &mine, chunk);
    let ran = block_on(async {
        let core = build(&core).await?;
        let labeler = core.labeler().clone();
        check_carry(&job.fields.carry, labeler.model().levels().len())?;
        let step = LabelStep {
            ours: Writer {
                fingerprint: labeler.model().fingerprint().to_string(),
                tier: labeler.tier(),
                weights: labeler.weights_digest(),
                tokens: counter.as_ref().map(|c| c.sha256().to_string()),
            },
            labeler,
            job,
            chunk,
            counter,
        };
        let run = Run {
            job: "label",
            unit: "docs",
            shard: job.shard,
            progress_interval: job.progress_interval,
        };
        runner::run(&run, &step, &all)
            .await
            .map_err(LabelJobError::Marker)
    })??;
    let Ran {
        processed: labeled,
        skipped,
        count: docs,
        failed,
        ..
    } = ran;
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

/// The labeling core for this task: the one tier asked for, batches shaped for chunks of
/// `chunk` documents, and (minilm, no `--max-batch-docs`) the batch size measured on the
/// shard's first documents, remembered in `out/calibration/` for the array's other tasks.
fn core_config(job: &LabelJob, files: &[&InputFile], chunk: usize) -> CoreConfig {
    let measure = job.tier == Tier::Minilm && job.max_batch_docs.is_none();
    let texts = if measure {
        let fields = Fields {
            carry: Vec::new(),
            ..job.fields.clone()
        };
        files
            .iter()
            .filter_map(|f| Reader::open(&f.path, "calibration", &fields).ok())
            .flat_map(|r| r.map_while(Result::ok).map(|r| r.text))
            .take(CALIBRATION_DOCS)
            .collect()
    } else {
        Vec::new()
    };
    let mut runtime = job.runtime.clone();
    // A corpus job has nothing else to run: ONNX Runtime's threads may spin.
    runtime.spinning = runtime.spinning.or(Some(true));
    let mut core = CoreConfig::serving(&job.bundle);
    core.encoder = job.tier;
    core.tiers = Tiers::One;
    core.runtime = runtime;
    core.encoder_sessions = job.encoder_sessions.max(1);
    core.batching = Batching {
        max_batch_docs: job.max_batch_docs,
        ..Batching::offline(chunk, IN_FLIGHT)
    };
    core.calibration = Calibration::Texts {
        texts,
        remember: Some(job.out.join("calibration")),
    };
    // Nothing is looked up by content or id: no caches.
    core.cache.texts = 0;
    core.cache.ids = 0;
    core
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

/// Documents of the shard's first readable input used to measure the best batch size.
const CALIBRATION_DOCS: usize = 32;

/// One input file → its codes file, through the labeling core.
struct LabelStep<'a> {
    labeler: Labeler,
    ours: Writer,
    job: &'a LabelJob,
    chunk: usize,
    counter: Option<Arc<TokenCounter>>,
}

impl Step for LabelStep<'_> {
    type File = InputFile;
    type Marker = Done;

    fn name(&self, file: &InputFile) -> String {
        file.rel.display().to_string()
    }

    fn outputs(&self, file: &InputFile) -> Option<Outputs> {
        let (data, marker) = paths(&self.job.out, &file.rel);
        Some(Outputs { data, marker })
    }

    fn found(&self, done: &Done) -> Found {
        let found = Writer::of(done);
        let marker = format!("{}/done/{}.json", self.job.out.display(), done.input);
        if found == self.ours {
            Found::Ours
        } else if (&found.fingerprint, found.tier, &found.weights)
            == (&self.ours.fingerprint, self.ours.tier, &self.ours.weights)
        {
            // The same codes, other token counts.
            let by = |t: &Option<String>| match t {
                Some(sha) => format!("token counts by tokenizer sha256 {sha}"),
                None => "no token counts (no --count-tokens)".to_string(),
            };
            Found::Foreign(format!(
                "{marker} has {}, this run {}: use another --out, or the --count-tokens of that output (one output holds the counts of one tokenizer)",
                by(&found.tokens),
                by(&self.ours.tokens)
            ))
        } else {
            Found::Foreign(format!(
                "{marker} was written by {found}, not by this run's {}: use another --out (codes of two labelers must not mix in one output)",
                self.ours
            ))
        }
    }

    async fn process(
        &self,
        _index: usize,
        file: &InputFile,
        counter: &Counter,
    ) -> Result<(Option<Done>, u64), String> {
        let done = label_file(
            &self.labeler,
            &self.ours,
            file,
            self.job,
            self.chunk,
            self.counter.clone(),
            counter,
        )
        .await?;
        let rows = done.rows;
        Ok((Some(done), rows))
    }
}

async fn label_file(
    labeler: &Labeler,
    ours: &Writer,
    file: &InputFile,
    job: &LabelJob,
    chunk: usize,
    tokens: Option<Arc<TokenCounter>>,
    counter: &Counter,
) -> Result<Done, String> {
    let model = labeler.model();
    let name = file.rel.display().to_string();
    let (codes_path, _) = paths(&job.out, &file.rel);
    let started = Instant::now();
    let chunks = read_chunks(
        file.path.clone(),
        name.clone(),
        job.fields.clone(),
        chunk,
        job.max_doc_chars,
        tokens.clone(),
    );
    let with_tokens = tokens.is_some();
    let levels = model.levels().to_vec();
    let mut labeled = std::pin::pin!(
        chunks
            .map(|c| {
                let labeler = labeler.clone();
                let name = name.clone();
                async move {
                    let (mut records, sizes): (Vec<Record>, Vec<Size>) =
                        c.map_err(|e| e.to_string())?.into_iter().unzip();
                    let texts = records
                        .iter_mut()
                        .map(|r| std::mem::take(&mut r.text))
                        .collect::<Vec<_>>();
                    let mut labels = labeler
                        .label(texts)
                        .await
                        .map_err(|e| format!("{name}: rows {}..: {e}", records[0].row))?;
                    for (l, s) in labels.iter_mut().zip(&sizes) {
                        l.truncated |= s.cut;
                    }
                    Ok::<_, String>((records, sizes, labels))
                }
            })
            .buffered(IN_FLIGHT)
    );
    let mut writer: Option<CodesWriter> = None;
    let mut present = vec![false; job.fields.carry.len()];
    while let Some(item) = labeled.next().await {
        let written = item.and_then(|(records, sizes, labels)| {
            if writer.is_none() {
                let carry = carried_types(&job.fields.carry, &records);
                writer = Some(CodesWriter::create(
                    &codes_path,
                    levels.len(),
                    with_tokens,
                    carry,
                )?);
            }
            let rows = records
                .into_iter()
                .zip(sizes)
                .zip(labels)
                .map(|((r, size), l)| {
                    let cell = u32::try_from(l.code.cell(&levels))
                        .map_err(|_| format!("{name}: row {}: cell exceeds u32", r.row))?;
                    let bytes = u32::try_from(size.bytes)
                        .map_err(|_| format!("{name}: row {}: text over 4 GiB", r.row))?;
                    Ok(CodeRow {
                        id: r.id.unwrap_or_else(|| format!("{name}:{}", r.row)),
                        row: r.row,
                        cell,
                        code: l.code.0,
                        truncated: l.truncated,
                        bytes,
                        residuals: l.residuals,
                        tokens: size.tokens,
                        carried: r.carried,
                    })
                })
                .collect::<Result<Vec<_>, String>>()?;
            for r in &rows {
                for (seen, value) in present.iter_mut().zip(&r.carried) {
                    *seen |= !matches!(value, Carried::Null);
                }
            }
            // Errors of a row name the input it came from, not the output being written.
            writer
                .as_mut()
                .expect("created above")
                .write(&rows)
                .map_err(|e| format!("{}: {e}", file.path.display()))?;
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
            with_tokens,
            carried_types(&job.fields.carry, &[]),
        )?,
    };
    let rows = writer.finish()?;
    // A carried field no row has is most likely a misspelt --carry: its column is all null.
    for (field, seen) in job.fields.carry.iter().zip(&present) {
        if rows > 0 && !seen {
            tracing::warn!(
                "{}: no row has the carried field `{field}`: its column is all null (is --carry spelt as in the input?)",
                file.path.display()
            );
        }
    }
    Ok(Done {
        input: name.clone(),
        rows,
        seconds: started.elapsed().as_secs_f64(),
        encoder: ours.tier,
        weights: ours.weights.clone(),
        bundle: model.name().to_string(),
        fingerprint: ours.fingerprint.clone(),
        tokens_tokenizer: ours.tokens.clone(),
    })
}

/// Cuts `text` to at most `max` characters, on a character boundary; true when it did.
fn cut_chars(text: &mut String, max: usize) -> bool {
    if text.len() <= max {
        return false;
    }
    match text.char_indices().nth(max) {
        Some((at, _)) => {
            text.truncate(at);
            text.shrink_to_fit();
            true
        }
        None => false,
    }
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

/// What was measured of a record's whole text as it was read.
struct Size {
    /// Its UTF-8 length.
    bytes: usize,
    /// Whether `--max-doc-chars` cut it.
    cut: bool,
    /// Its token count (`--count-tokens`).
    tokens: Option<u32>,
}

/// A record as read (its text perhaps cut), with what was measured of its whole text.
type Sized = (Record, Size);

/// Reads `path` on a blocking thread and yields chunks of records, each text cut to
/// `max_chars` as it is read (so a chunk never holds more than that per document); an error
/// ends the stream. With `tokens`, every whole text is counted: one that is cut is counted
/// before its cut, alone, on this thread; the others per chunk, on the rayon pool.
fn read_chunks(
    path: PathBuf,
    name: String,
    fields: Fields,
    chunk: usize,
    max_chars: usize,
    tokens: Option<Arc<TokenCounter>>,
) -> impl futures::Stream<Item = Result<Vec<Sized>, ReadError>> {
    let (tx, rx) = tokio::sync::mpsc::channel(IN_FLIGHT);
    tokio::task::spawn_blocking(move || {
        let reader = match Reader::open(&path, &name, &fields) {
            Ok(r) => r,
            Err(e) => {
                let _ = tx.blocking_send(Err(e));
                return;
            }
        };
        let count = |r: &Record| -> Result<u32, ReadError> {
            let c = tokens.as_ref().expect("counting");
            c.count(&r.text)
                .map_err(|e| ReadError(format!("{name}: row {}: {e}", r.row)))
        };
        // Counts what was not counted as it was read, then sends; false when it must stop.
        let send = |mut batch: Vec<Sized>| -> bool {
            if tokens.is_some() {
                let counted = batch
                    .par_iter_mut()
                    .filter(|(_, s)| s.tokens.is_none())
                    .try_for_each(|(r, s)| {
                        s.tokens = Some(count(r)?);
                        Ok(())
                    });
                if let Err(e) = counted {
                    let _ = tx.blocking_send(Err(e));
                    return false;
                }
            }
            tx.blocking_send(Ok(batch)).is_ok()
        };
        let mut batch = Vec::with_capacity(chunk);
        for record in reader {
            match record {
                Ok(mut r) => {
                    let bytes = r.text.len();
                    // A text that may be cut is counted whole now, before the cut.
                    let counted = if tokens.is_some() && bytes > max_chars {
                        match count(&r) {
                            Ok(n) => Some(n),
                            Err(e) => {
                                let _ = tx.blocking_send(Err(e));
                                return;
                            }
                        }
                    } else {
                        None
                    };
                    let cut = cut_chars(&mut r.text, max_chars);
                    batch.push((
                        r,
                        Size {
                            bytes,
                            cut,
                            tokens: counted,
                        },
                    ));
                    if batch.len() == chunk && !send(std::mem::take(&mut batch)) {
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
            send(batch);
        }
    });
    futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|c| (c, rx)) })
}
