//! The mix job (docs/mix.md): labeled codes + a spec → `plan.json`, `plan.svg` and
//! `selection/<codes path>.parquet` (`id`, `row`, `copies`) with done markers.
//!
//! - [`spec`]: the TOML spec and its checks; [`quota`]: the arithmetic of rules 2 to 4;
//!   [`rows`]: reading the codes, the row key and the candidate order; [`cut`]: the passes
//!   that find each group's cut rows; [`plan`]: all of it put together.
//! - The plan is made once (by `--plan-only`, or by the first task that finds none) and
//!   written by rename; every task reuses it when its spec and codes digests match and
//!   refuses it otherwise. A task then selects its files (I, I+N, …) in one pass each, with
//!   nothing but the plan's per-group cuts in memory, so the selection does not depend on the
//!   number of tasks or the order of the files.

pub mod cut;
pub mod plan;
pub mod quota;
pub mod rows;
pub mod spec;
pub mod spill;
mod svg;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow_array::{ArrayRef, RecordBatch, StringArray, UInt16Array, UInt64Array};
use arrow_schema::{DataType, Field, Schema};
use parquet::arrow::ArrowWriter;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::Shard;
use super::progress::{Counter, Reporter};
use super::runner::{self, Found, Outputs, Run, Step};
use crate::corpus::codes::{Done, clear_stale, code_levels, sync_dir, tmp_name};
use crate::quantize::{MAX_DEPTH, key_hash, pack};
use plan::{CodesFile, GroupCut, Line, Plan, Totals, unhex};
use rows::{Columns, OrderKey, order_key_bits, quality_bits, scan};
pub use spec::Spec;

/// What to mix and where.
#[derive(Debug, Clone)]
pub struct MixJob {
    /// `hermes label` output directories (their `codes/` and `done/`).
    pub codes: Vec<PathBuf>,
    /// The spec file (TOML).
    pub spec: PathBuf,
    pub out: PathBuf,
    /// Write the plan and the plot only.
    pub plan_only: bool,
    /// Select what can be selected when the budget cannot be met, instead of failing.
    pub allow_short: bool,
    pub shard: Shard,
    pub progress_interval: Duration,
    /// Codes files read at once, in the plan's passes and the selection (>= 1).
    pub threads: usize,
}

/// The default of `--threads`: the cores this process may use.
pub fn default_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

#[derive(Debug, thiserror::Error)]
pub enum MixError {
    #[error("{path}: {message}")]
    Spec { path: String, message: String },
    #[error("{0}")]
    Codes(String),
    #[error("{0}")]
    Plan(String),
    /// The budget cannot be met under the epoch cap; `plan.json` says where.
    #[error(
        "the mixture is short by {shortfall} {unit} of the budget {budget} (see {plan}); rerun with --allow-short to select what there is"
    )]
    Short {
        shortfall: f64,
        budget: f64,
        unit: String,
        plan: String,
    },
    #[error("{} codes file(s) failed:\n  {}", .0.len(), .0.join("\n  "))]
    Failed(Vec<String>),
}

/// What a task did.
#[derive(Debug, Clone, PartialEq)]
pub struct MixSummary {
    pub plan: PathBuf,
    /// Whether this task computed the plan (rather than reusing one).
    pub planned: bool,
    pub short: bool,
    pub files: usize,
    pub selected_files: usize,
    pub skipped: usize,
    /// Rows read by this task, over every pass.
    pub rows_read: u64,
    pub seconds: f64,
}

/// A selection file's done marker.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SelectionDone {
    pub codes: String,
    /// Rows read and rows written.
    pub rows: u64,
    pub selected: u64,
    pub copies: u64,
    pub seconds: f64,
    pub spec_digest: String,
    pub codes_digest: String,
}

pub fn run(job: &MixJob) -> Result<MixSummary, MixError> {
    let started = Instant::now();
    let Loaded {
        spec,
        files,
        marker,
    } = load(&job.spec, &job.codes)?;
    let spec_digest = spec_digest(&spec);
    let codes_digest = codes_digest(&files)?;

    let counter = Arc::new(Counter::default());
    let plan_path = job.out.join("plan.json");
    let existing = read_plan(&plan_path)?;
    let (plan, planned) = match existing {
        Some(p) if p.spec_digest == spec_digest && p.codes_digest == codes_digest => (p, false),
        Some(_) => {
            return Err(MixError::Plan(format!(
                "{} was made from another spec or other codes: use another --out",
                plan_path.display()
            )));
        }
        None => {
            let reporter = Reporter::start(
                "mix",
                "rows",
                files.len(),
                counter.clone(),
                job.progress_interval,
            );
            let passes = plan::Passes {
                threads: job.threads.max(1),
                scratch: job.out.clone(),
            };
            let parts = plan::make(&spec, &files, &passes, &counter);
            reporter.finish();
            let parts = parts.map_err(MixError::Plan)?;
            let plan = dress(&spec, parts, &files, &marker, spec_digest, codes_digest);
            write_plan(&job.out, &plan)?;
            (plan, true)
        }
    };
    let mut summary = MixSummary {
        plan: plan_path.clone(),
        planned,
        short: plan.short,
        files: 0,
        selected_files: 0,
        skipped: 0,
        rows_read: 0,
        seconds: 0.0,
    };
    if plan.short && !job.allow_short {
        return Err(MixError::Short {
            shortfall: plan.totals.shortfall,
            budget: plan.totals.budget,
            unit: plan.unit.clone(),
            plan: plan_path.display().to_string(),
        });
    }
    if !job.plan_only {
        select(job, &spec, &plan, &files, &counter, &mut summary)?;
    }
    summary.rows_read = counter.get();
    summary.seconds = started.elapsed().as_secs_f64();
    Ok(summary)
}

/// A spec read and checked against the codes it will mix.
pub struct Loaded {
    pub spec: Spec,
    pub files: Vec<CodesFile>,
    /// The first codes file's done marker (fingerprint and encoder, the same for all).
    pub marker: Done,
}

/// Reads the spec at `path` and lists the codes under `codes`, with every check that can
/// be made before a pass: unknown keys, depths against the codes' levels, numeric columns.
pub fn load(path: &Path, codes: &[PathBuf]) -> Result<Loaded, MixError> {
    let text = std::fs::read_to_string(path).map_err(|e| MixError::Spec {
        path: path.display().to_string(),
        message: e.to_string(),
    })?;
    let spec_err = |message: String| MixError::Spec {
        path: path.display().to_string(),
        message,
    };
    let spec = Spec::parse(&text).map_err(spec_err)?;
    let (files, marker) = crate::corpus::codes::list(codes).map_err(MixError::Codes)?;
    let levels = code_levels(&files[0].path).map_err(MixError::Codes)?;
    spec.check(levels).map_err(spec_err)?;
    if spec.group_depth() > MAX_DEPTH {
        return Err(spec_err(format!(
            "mixtures read at most {} levels",
            MAX_DEPTH
        )));
    }
    for (what, col) in spec.columns() {
        for f in &files {
            rows::check_numeric(&f.path, what, col).map_err(spec_err)?;
        }
    }
    Ok(Loaded {
        spec,
        files,
        marker,
    })
}

/// What identifies a spec in plans and markers: sha256 of its JSON, as read.
pub(crate) fn spec_digest(spec: &Spec) -> String {
    digest(&serde_json::to_vec(spec).expect("a spec serialises"))
}

fn digest(bytes: &[u8]) -> String {
    hex::encode(&Sha256::digest(bytes)[..16])
}

/// What identifies the codes: each file's name, byte length and marker.
pub(crate) fn codes_digest(files: &[CodesFile]) -> Result<String, MixError> {
    let mut h = Sha256::new();
    for f in files {
        let len = std::fs::metadata(&f.path)
            .map_err(|e| MixError::Codes(format!("{}: {e}", f.path.display())))?
            .len();
        h.update(f.name.as_bytes());
        h.update([0]);
        h.update(len.to_le_bytes());
    }
    Ok(hex::encode(&h.finalize()[..16]))
}

fn read_plan(path: &Path) -> Result<Option<Plan>, MixError> {
    match std::fs::read_to_string(path) {
        Ok(s) => serde_json::from_str(&s)
            .map(Some)
            .map_err(|e| MixError::Plan(format!("{}: not a plan: {e}", path.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(MixError::Plan(format!("{}: {e}", path.display()))),
    }
}

/// Writes `plan.json` and `plan.svg` by rename.
pub(crate) fn write_plan(out: &Path, plan: &Plan) -> Result<(), MixError> {
    let io = |p: &Path, e: std::io::Error| MixError::Plan(format!("{}: {e}", p.display()));
    std::fs::create_dir_all(out).map_err(|e| io(out, e))?;
    let svg_path = out.join("plan.svg");
    let tmp = tmp_name(&svg_path);
    svg::plot(plan, &tmp).map_err(MixError::Plan)?;
    std::fs::rename(&tmp, &svg_path).map_err(|e| io(&svg_path, e))?;
    let path = out.join("plan.json");
    let tmp = tmp_name(&path);
    let body = serde_json::to_vec_pretty(plan).expect("a plan serialises");
    std::fs::write(&tmp, body).map_err(|e| io(&tmp, e))?;
    std::fs::rename(&tmp, &path).map_err(|e| io(&path, e))?;
    sync_dir(&path).map_err(|e| io(&path, e))
}

/// The plan with its shares and totals filled in.
pub(crate) fn dress(
    spec: &Spec,
    parts: plan::PlanParts,
    files: &[CodesFile],
    marker: &Done,
    spec_digest: String,
    codes_digest: String,
) -> Plan {
    let selected: f64 = parts.groups.iter().map(|g| g.line.selected_size).sum();
    let share = |x: f64| if selected > 0.0 { x / selected } else { 0.0 };
    let budget = spec.budget;
    let mut buckets: Vec<Line> = Vec::new();
    let mut groups = Vec::with_capacity(parts.groups.len());
    for g in parts.groups {
        if buckets.last().is_none_or(|b| b.label != g.bucket) {
            let i = buckets.len();
            buckets.push(Line {
                label: g.bucket.clone(),
                rows: 0,
                excluded: 0,
                candidates: 0,
                size: 0.0,
                target_share: parts.bucket_shares[i],
                quota: parts.bucket_quotas[i],
                selected_size: 0.0,
                selected_share: 0.0,
                largest_copies: 0,
            });
        }
        let b = buckets.last_mut().expect("pushed above");
        b.rows += g.line.rows;
        b.excluded += g.line.excluded;
        b.candidates += g.line.candidates;
        b.size += g.line.size;
        b.selected_size += g.line.selected_size;
        b.largest_copies = b.largest_copies.max(g.line.largest_copies);
        let mut line = g.line;
        line.target_share = if budget > 0.0 {
            line.quota / budget
        } else {
            0.0
        };
        line.selected_share = share(line.selected_size);
        groups.push(GroupCut {
            line,
            bucket: g.bucket,
            members: g.members,
            base_copies: g.base_copies,
            quality_cut: g.quality_cut.as_ref().map(plan::hex),
            extra_cut: g.extra_cut.as_ref().map(plan::hex),
        });
    }
    for b in &mut buckets {
        b.selected_share = share(b.selected_size);
    }
    let totals = Totals {
        rows: buckets.iter().map(|b| b.rows).sum(),
        excluded: buckets.iter().map(|b| b.excluded).sum(),
        candidates: buckets.iter().map(|b| b.candidates).sum(),
        size: buckets.iter().map(|b| b.size).sum(),
        budget,
        quota: parts.bucket_quotas.iter().sum(),
        selected_size: selected,
        shortfall: parts.shortfall,
        overshoot: (selected - parts.bucket_quotas.iter().sum::<f64>()).max(0.0),
    };
    if totals.overshoot > 0.0 {
        tracing::warn!(
            budget,
            selected,
            overshoot = totals.overshoot,
            "the selection exceeds the quotas: each group keeps the row that crosses its quota (see plan.json totals.overshoot)"
        );
    }
    Plan {
        spec: spec.clone(),
        spec_digest,
        codes_digest,
        fingerprint: marker.fingerprint.clone(),
        encoder: marker.encoder,
        unit: spec.size.clone(),
        files: files.iter().map(|f| f.name.clone()).collect(),
        totals,
        short: parts.short,
        buckets,
        groups,
    }
}

/// A group's cuts as the selection pass needs them.
#[derive(Clone)]
struct Selecting {
    base: u16,
    quality: Option<rows::OrderKey>,
    extra: Option<rows::OrderKey>,
}

/// The row prefixes a plan's group holds: its label's code, or a merged thin pool's
/// (`<bucket>.*`) members'.
fn group_codes(g: &GroupCut) -> Result<Vec<Vec<u16>>, MixError> {
    let parse = |l: &str| -> Result<Vec<u16>, MixError> {
        l.split('.')
            .map(|c| {
                c.parse()
                    .map_err(|_| MixError::Plan(format!("bad label {l}")))
            })
            .collect()
    };
    if g.members.is_empty() {
        Ok(vec![parse(&g.line.label)?])
    } else {
        g.members.iter().map(|m| parse(m)).collect()
    }
}

/// A plan's cuts as the selection pass needs them: every row prefix → its group's cuts.
pub struct Cuts {
    index: std::collections::HashMap<u128, usize>,
    cuts: Vec<Selecting>,
}

impl Cuts {
    pub fn of(plan: &Plan) -> Result<Cuts, MixError> {
        let mut index = std::collections::HashMap::new();
        let mut cuts = Vec::with_capacity(plan.groups.len());
        for g in &plan.groups {
            for code in group_codes(g)? {
                index.insert(pack(&code), cuts.len());
            }
            cuts.push(Selecting {
                base: u16::try_from(g.base_copies)
                    .map_err(|_| MixError::Plan("copies over u16".into()))?,
                quality: g
                    .quality_cut
                    .as_deref()
                    .map(unhex)
                    .transpose()
                    .map_err(MixError::Plan)?,
                extra: g
                    .extra_cut
                    .as_deref()
                    .map(unhex)
                    .transpose()
                    .map_err(MixError::Plan)?,
            });
        }
        Ok(Cuts { index, cuts })
    }
}

impl Selecting {
    /// Whether any row of the group can be selected.
    fn takes_any(&self) -> bool {
        self.base > 0 || self.extra.is_some()
    }

    /// The copies of a candidate row with quality bits `q` and order key `key()` (0: not
    /// selected). The key (a sha256) is computed only when the quality bits alone do not
    /// place the row against a cut.
    fn copies(&self, q: u64, key: &mut dyn FnMut() -> OrderKey) -> u16 {
        if !self.takes_any() || self.quality.is_some_and(|c| !at_or_before(q, &c, key)) {
            return 0;
        }
        self.base + u16::from(self.extra.is_some_and(|e| at_or_before(q, &e, key)))
    }
}

/// Whether the row with quality bits `q` and order key `key()` is at or before `cut`.
fn at_or_before(q: u64, cut: &OrderKey, key: &mut dyn FnMut() -> OrderKey) -> bool {
    let head = u64::from_be_bytes(cut[..8].try_into().expect("8 bytes"));
    match q.cmp(&head) {
        std::cmp::Ordering::Less => true,
        std::cmp::Ordering::Greater => false,
        std::cmp::Ordering::Equal => key() <= *cut,
    }
}

/// The columns the selection pass reads.
pub fn selection_columns(spec: &Spec) -> Columns {
    Columns {
        depth: spec.group_depth(),
        size: (!spec.by_docs()).then(|| spec.size.clone()),
        quality: spec.quality().map(|(q, _)| q.to_string()),
        id: true,
        residuals: false,
    }
}

/// This task's share of the files: one pass each, rows with copies ≥ 1 written in row order.
fn select(
    job: &MixJob,
    spec: &Spec,
    plan: &Plan,
    files: &[CodesFile],
    counter: &Arc<Counter>,
    summary: &mut MixSummary,
) -> Result<(), MixError> {
    let cuts = Cuts::of(plan)?;
    let cols = selection_columns(spec);
    let step = SelectStep {
        out: &job.out,
        plan,
        seed: spec.seed,
        cols,
        cuts,
    };
    // `threads` workers split this task's files as tasks split the whole list: worker j of T
    // in task I of N is task I + j·N of N·T (files I + j·N, I + (j + T)·N, …), so each file is
    // still selected exactly once, by one reader, whatever the threads.
    let threads = job.threads.max(1);
    let (index, count) = (job.shard.index, job.shard.count.max(1));
    let ran: Vec<Result<runner::Ran, String>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|j| {
                let step = &step;
                s.spawn(move || {
                    let run = Run {
                        job: "mix",
                        unit: "rows",
                        shard: super::Shard {
                            index: index + j * count,
                            count: count * threads,
                        },
                        progress_interval: job.progress_interval,
                    };
                    super::block_on(runner::run(&run, step, files))
                        .map_err(|e| format!("start the async runtime: {e}"))?
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err("a selection thread panicked".into()))
            })
            .collect()
    });
    let mut failed = Vec::new();
    for r in ran {
        let ran = r.map_err(MixError::Plan)?;
        counter.add(ran.rows);
        summary.files += ran.files;
        summary.skipped += ran.skipped;
        summary.selected_files += ran.processed;
        failed.extend(ran.failed);
    }
    if !failed.is_empty() {
        return Err(MixError::Failed(failed));
    }
    Ok(())
}

/// One codes file → its selection, by the plan's cuts.
struct SelectStep<'a> {
    out: &'a Path,
    plan: &'a Plan,
    seed: u64,
    cols: Columns,
    cuts: Cuts,
}

impl Step for SelectStep<'_> {
    type File = CodesFile;
    type Marker = SelectionDone;

    fn name(&self, f: &CodesFile) -> String {
        f.name.clone()
    }

    fn outputs(&self, f: &CodesFile) -> Option<Outputs> {
        Some(Outputs {
            data: self.out.join("selection").join(&f.name),
            marker: self.out.join("done").join(format!("{}.json", f.name)),
        })
    }

    /// A selection is ours when it was made by this plan (spec and codes); `plan.json` has
    /// already refused another plan, so an older marker is only redone.
    fn found(&self, d: &SelectionDone) -> Found {
        if d.spec_digest == self.plan.spec_digest && d.codes_digest == self.plan.codes_digest {
            Found::Ours
        } else {
            Found::Stale
        }
    }

    async fn process(
        &self,
        index: usize,
        f: &CodesFile,
        counter: &Counter,
    ) -> Result<(Option<SelectionDone>, u64), String> {
        let started = Instant::now();
        let out = self.out.join("selection").join(&f.name);
        let (rows, written) = select_file(
            f,
            index as u32,
            self.seed,
            &self.cols,
            &[(&self.cuts, out.as_path())],
        )?;
        let (selected, copies) = written[0];
        counter.add(rows);
        let marker = SelectionDone {
            codes: f.name.clone(),
            rows,
            selected,
            copies,
            seconds: started.elapsed().as_secs_f64(),
            spec_digest: self.plan.spec_digest.clone(),
            codes_digest: self.plan.codes_digest.clone(),
        };
        Ok((Some(marker), selected))
    }
}

/// Rows of the selection buffered before a write.
const WRITE_BATCH: usize = 65_536;

/// One selection file being written.
struct Writing {
    out: PathBuf,
    tmp: PathBuf,
    writer: ArrowWriter<std::fs::File>,
    ids: Vec<String>,
    rows: Vec<u64>,
    copies: Vec<u16>,
    selected: u64,
    total_copies: u64,
}

impl Writing {
    fn start(out: &Path, schema: &Arc<Schema>) -> Result<Writing, String> {
        let err = |e: &dyn std::fmt::Display| format!("{}: {e}", out.display());
        if let Some(dir) = out.parent() {
            std::fs::create_dir_all(dir).map_err(|e| err(&e))?;
        }
        clear_stale(out);
        let tmp = tmp_name(out);
        let props = parquet::file::properties::WriterProperties::builder()
            .set_compression(parquet::basic::Compression::ZSTD(
                parquet::basic::ZstdLevel::try_new(3).expect("valid level"),
            ))
            .build();
        let file = std::fs::File::create(&tmp).map_err(|e| err(&e))?;
        let writer =
            ArrowWriter::try_new(file, schema.clone(), Some(props)).map_err(|e| err(&e))?;
        Ok(Writing {
            out: out.to_path_buf(),
            tmp,
            writer,
            ids: Vec::new(),
            rows: Vec::new(),
            copies: Vec::new(),
            selected: 0,
            total_copies: 0,
        })
    }

    fn push(&mut self, id: &str, row: u64, n: u16, schema: &Arc<Schema>) -> Result<(), String> {
        self.ids.push(id.to_string());
        self.rows.push(row);
        self.copies.push(n);
        self.selected += 1;
        self.total_copies += u64::from(n);
        if self.ids.len() >= WRITE_BATCH {
            self.flush(schema)?;
        }
        Ok(())
    }

    fn flush(&mut self, schema: &Arc<Schema>) -> Result<(), String> {
        if self.ids.is_empty() {
            return Ok(());
        }
        let err = |e: &dyn std::fmt::Display| format!("{}: {e}", self.out.display());
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(StringArray::from(std::mem::take(&mut self.ids))) as ArrayRef,
                Arc::new(UInt64Array::from(std::mem::take(&mut self.rows))),
                Arc::new(UInt16Array::from(std::mem::take(&mut self.copies))),
            ],
        )
        .map_err(|e| err(&e))?;
        self.writer.write(&batch).map_err(|e| err(&e))
    }

    /// Flushes, syncs and renames into place: (selected rows, copies). On failure the
    /// temporary file is removed.
    fn finish(mut self, schema: &Arc<Schema>) -> Result<(u64, u64), String> {
        let (out, tmp) = (self.out.clone(), self.tmp.clone());
        let err = |e: &dyn std::fmt::Display| format!("{}: {e}", out.display());
        let done = self.flush(schema).and_then(|()| {
            let file = self.writer.into_inner().map_err(|e| err(&e))?;
            file.sync_all().map_err(|e| err(&e))?;
            std::fs::rename(&tmp, &out).map_err(|e| err(&e))?;
            sync_dir(&out).map_err(|e| err(&e))
        });
        match done {
            Ok(()) => Ok((self.selected, self.total_copies)),
            Err(e) => {
                let _ = std::fs::remove_file(&tmp);
                Err(e)
            }
        }
    }
}

/// One read of codes file `f` (index `fi` in the sorted list) → the selection of it by each
/// of `targets` (a plan's cuts and the output path; the plans share seed and columns).
/// Returns the rows read and, per target, (selected rows, copies).
pub fn select_file(
    f: &CodesFile,
    fi: u32,
    seed: u64,
    cols: &Columns,
    targets: &[(&Cuts, &Path)],
) -> Result<(u64, Vec<(u64, u64)>), String> {
    if targets.is_empty() {
        return Ok((0, Vec::new()));
    }
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Utf8, false),
        Field::new("row", DataType::UInt64, false),
        Field::new("copies", DataType::UInt16, false),
    ]));
    let mut writing = Vec::with_capacity(targets.len());
    let mut failed: Option<String> = None;
    for (_, out) in targets {
        match Writing::start(out, &schema) {
            Ok(w) => writing.push(w),
            Err(e) => {
                failed = Some(e);
                break;
            }
        }
    }
    // The plans share their groups (one plan, or a swarm's variants of one count): a row's
    // group is looked up once, and its cuts in every plan lie side by side.
    let index = &targets[0].0.index;
    if targets
        .iter()
        .any(|(c, _)| c.cuts.len() != targets[0].0.cuts.len())
    {
        failed = Some("the plans of one selection pass must have the same groups".into());
    }
    let n = targets.len();
    let groups = targets[0].0.cuts.len();
    let mut table = Vec::with_capacity(groups * n);
    if failed.is_none() {
        for g in 0..groups {
            table.extend(targets.iter().map(|(c, _)| c.cuts[g].clone()));
        }
    }
    let takes: Vec<bool> = table
        .chunks(n.max(1))
        .map(|row| row.iter().any(Selecting::takes_any))
        .collect();
    let quality = cols.quality.is_some();
    let read = match failed.take() {
        Some(e) => Err(e),
        None => scan(&f.path, cols, |r| {
            if failed.is_some() {
                return;
            }
            let Some(&g) = index.get(&pack(r.code)) else {
                return;
            };
            if !takes[g] {
                return;
            }
            let (Some(_), true) = (r.size, !quality || r.quality.is_some()) else {
                return;
            };
            let q = quality_bits(r.quality);
            let mut known: Option<OrderKey> = None;
            let mut key =
                || *known.get_or_insert_with(|| order_key_bits(q, key_hash(seed, r.id), fi, r.row));
            for (c, w) in table[g * n..(g + 1) * n].iter().zip(writing.iter_mut()) {
                let k = c.copies(q, &mut key);
                if k > 0
                    && let Err(e) = w.push(r.id, r.row, k, &schema)
                {
                    failed = Some(e);
                    return;
                }
            }
        }),
    };
    let result = read.and_then(|n| {
        if let Some(e) = failed.take() {
            return Err(e);
        }
        Ok(n)
    });
    match result {
        Ok(n) => {
            let mut written = Vec::with_capacity(writing.len());
            let mut writing = writing.into_iter();
            for w in writing.by_ref() {
                match w.finish(&schema) {
                    Ok(x) => written.push(x),
                    Err(e) => {
                        for w in writing {
                            let _ = std::fs::remove_file(&w.tmp);
                        }
                        return Err(e);
                    }
                }
            }
            Ok((n, written))
        }
        Err(e) => {
            for w in writing {
                let _ = std::fs::remove_file(&w.tmp);
            }
            Err(e)
        }
    }
}
