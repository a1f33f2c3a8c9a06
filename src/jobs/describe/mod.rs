//! The describe job (docs/cards.md): a labeled corpus and its inputs → `cards.json` and
//! `atlas.html` under `out`. It owns the scans, the task parts and their merge; the cards
//! themselves (sampling, terms, the atlas page) are [`crate::cards`].
//!
//! The codes are small, so every task reads all of them to fix each bucket's sample (the
//! `sample` rows of smallest `hash(seed, id)`) and exemplars (smallest `r_d`): the same rows
//! whatever the number of tasks. The inputs are not small, so their scan shards like `label`
//! (task I of N takes input files I, I+N, …) and each task writes the texts of the rows it
//! found to `out/parts/task-I-of-N.jsonl`; `merge` (or a single task, itself) writes the cards.
//! Memory: buckets × (sample + exemplars) rows, whatever the corpus.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use super::Shard;
use super::mix::rows::{Columns, scan};
use super::progress::Counter;
use super::runner::{self, Found, Outputs, Run, Step};
use crate::cards::{CardConfig, Cards, RowRef, Sampler, TERM_CHARS, atlas};
use crate::corpus::codes::{code_levels, sync_dir, tmp_name};
use crate::corpus::inputs::{InputFile, expand};
use crate::corpus::reader::{Fields, Reader};
use crate::quantize::{MAX_DEPTH, key_hash};

/// What to describe.
#[derive(Debug, Clone)]
pub struct DescribeJob {
    /// A `hermes label` output directory.
    pub codes: PathBuf,
    /// The inputs it was labeled from (files, directories, globs, as for `label`).
    pub inputs: Vec<PathBuf>,
    pub out: PathBuf,
    pub cards: CardConfig,
    /// Text and id fields of the inputs.
    pub fields: Fields,
    pub shard: Shard,
    /// Only merge the tasks' parts into the cards.
    pub merge: bool,
    /// Time between progress lines when stderr is not a terminal.
    pub progress_interval: std::time::Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum DescribeError {
    #[error("{0}")]
    Args(String),
    #[error("{0}")]
    Codes(String),
    #[error("{0}")]
    Inputs(String),
    #[error("{0}")]
    Parts(String),
    #[error("{0}")]
    Write(String),
}

/// What a task did.
#[derive(Debug, Clone, PartialEq)]
pub struct DescribeSummary {
    /// Set when this task wrote the cards.
    pub cards: Option<PathBuf>,
    pub buckets: usize,
    pub docs: u64,
    /// Texts this task found for the cards.
    pub texts: usize,
}

/// What the array tasks were told, kept beside their parts so that `merge` needs only `out`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Recorded {
    pub codes: PathBuf,
    pub depth: usize,
    pub sample: usize,
    pub terms: usize,
    pub exemplars: usize,
    pub seed: u64,
}

impl Recorded {
    fn of(job: &DescribeJob) -> Self {
        let c = job.cards;
        Self {
            codes: job.codes.clone(),
            depth: c.depth,
            sample: c.sample,
            terms: c.terms,
            exemplars: c.exemplars,
            seed: c.seed,
        }
    }

    /// What the tasks under `out` recorded, if any.
    pub fn read(out: &Path) -> Result<Option<Recorded>, DescribeError> {
        let path = out.join("parts").join("describe.json");
        match std::fs::read_to_string(&path) {
            Ok(s) => serde_json::from_str(&s)
                .map(Some)
                .map_err(|e| DescribeError::Parts(format!("{}: {e}", path.display()))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(DescribeError::Parts(format!("{}: {e}", path.display()))),
        }
    }

    pub fn cards(&self) -> CardConfig {
        CardConfig {
            depth: self.depth,
            sample: self.sample,
            terms: self.terms,
            exemplars: self.exemplars,
            seed: self.seed,
        }
    }
}

/// One line of a part file: a wanted row's text.
#[derive(Serialize, Deserialize)]
struct PartLine {
    file: String,
    row: u64,
    text: String,
}

pub fn run(job: &DescribeJob) -> Result<DescribeSummary, DescribeError> {
    let c = &job.cards;
    if c.depth == 0 {
        return Err(DescribeError::Args("--depth must be at least 1".into()));
    }
    if c.sample == 0 && c.terms > 0 {
        return Err(DescribeError::Args(
            "--sample 0 leaves no text for --terms".into(),
        ));
    }
    let (files, marker) = crate::corpus::codes::list(std::slice::from_ref(&job.codes))
        .map_err(DescribeError::Codes)?;
    let levels = code_levels(&files[0].path).map_err(DescribeError::Codes)?;
    if c.depth > levels.min(MAX_DEPTH) {
        return Err(DescribeError::Args(format!(
            "--depth {} is outside 1..={}",
            c.depth,
            levels.min(MAX_DEPTH)
        )));
    }
    let mut sampler = Sampler::new(*c);
    let cols = Columns {
        depth: c.depth,
        size: None,
        quality: None,
        id: true,
        residuals: true,
    };
    let counter = std::sync::Arc::new(super::progress::Counter::default());
    let reporter = super::progress::Reporter::start(
        "describe",
        "rows",
        files.len(),
        counter.clone(),
        job.progress_interval,
    );
    for (i, f) in files.iter().enumerate() {
        let n = scan(&f.path, &cols, |r| {
            sampler.add(r.code, r.residuals, r.id, (i as u32, r.row))
        });
        match n {
            Ok(n) => {
                counter.add(n);
                reporter.file_done(i + 1, Path::new(&f.name), Some(n));
            }
            Err(e) => {
                reporter.finish();
                return Err(DescribeError::Codes(e));
            }
        }
    }
    reporter.finish();
    let wanted = sampler.wanted();
    let names: Vec<String> = files.iter().map(|f| f.name.clone()).collect();
    let index: HashMap<&str, u32> = names
        .iter()
        .enumerate()
        .map(|(i, n)| (n.as_str(), i as u32))
        .collect();
    let texts = if job.merge {
        read_parts(&job.out, &index)?
    } else {
        let found = scan_inputs(job, &index, &wanted, sampler.seed())?;
        if job.shard.count > 1 {
            write_part(job, &names, &found)?;
            return Ok(DescribeSummary {
                cards: None,
                buckets: 0,
                docs: 0,
                texts: found.len(),
            });
        }
        found
    };
    let n_texts = texts.len();
    let name = |f: u32| names.get(f as usize).cloned().unwrap_or_default();
    let cards = sampler
        .cards(&texts, &marker.fingerprint, marker.encoder, &name)
        .map_err(DescribeError::Inputs)?;
    let path = write_cards(&job.out, &cards)?;
    Ok(DescribeSummary {
        cards: Some(path),
        buckets: cards.cards.len(),
        docs: cards.docs,
        texts: n_texts,
    })
}

/// Writes `cards.json` and `atlas.html` under `out` (by rename); returns the cards' path.
pub fn write_cards(out: &Path, cards: &Cards) -> Result<PathBuf, DescribeError> {
    let err =
        |p: &Path, e: &dyn std::fmt::Display| DescribeError::Write(format!("{}: {e}", p.display()));
    std::fs::create_dir_all(out).map_err(|e| err(out, &e))?;
    let json = serde_json::to_string_pretty(cards).expect("cards serialise") + "\n";
    let atlas = atlas::page(cards);
    for (name, body) in [("cards.json", json), ("atlas.html", atlas)] {
        let path = out.join(name);
        let tmp = tmp_name(&path);
        std::fs::write(&tmp, body).map_err(|e| err(&tmp, &e))?;
        std::fs::rename(&tmp, &path).map_err(|e| err(&path, &e))?;
    }
    let path = out.join("cards.json");
    sync_dir(&path).map_err(|e| err(&path, &e))?;
    Ok(path)
}

/// This task's input files, read for the wanted rows' texts.
fn scan_inputs(
    job: &DescribeJob,
    index: &HashMap<&str, u32>,
    wanted: &HashMap<u32, HashMap<u64, u64>>,
    seed: u64,
) -> Result<HashMap<RowRef, String>, DescribeError> {
    let all = expand(&job.inputs).map_err(|e| DescribeError::Inputs(e.to_string()))?;
    let step = ScanStep {
        job,
        index,
        wanted,
        seed,
        fields: Fields {
            carry: Vec::new(),
            ..job.fields.clone()
        },
        texts: Mutex::new(HashMap::new()),
    };
    let run = Run {
        job: "describe",
        unit: "rows",
        shard: job.shard,
        progress_interval: job.progress_interval,
    };
    let ran = super::block_on(runner::run(&run, &step, &all))
        .map_err(|e| DescribeError::Inputs(format!("start the async runtime: {e}")))?
        .map_err(DescribeError::Inputs)?;
    if !ran.failed.is_empty() {
        return Err(DescribeError::Inputs(format!(
            "{} input file(s) failed:\n  {}",
            ran.failed.len(),
            ran.failed.join("\n  ")
        )));
    }
    Ok(step.texts.into_inner().expect("not poisoned"))
}

/// One input file → the texts of its rows that the cards want, each joined to its codes
/// row by file and row and checked by id.
struct ScanStep<'a> {
    job: &'a DescribeJob,
    index: &'a HashMap<&'a str, u32>,
    wanted: &'a HashMap<u32, HashMap<u64, u64>>,
    seed: u64,
    fields: Fields,
    texts: Mutex<HashMap<RowRef, String>>,
}

impl Step for ScanStep<'_> {
    type File = InputFile;
    type Marker = ();

    fn name(&self, input: &InputFile) -> String {
        input.rel.display().to_string()
    }

    /// The scan writes one part per task, not one output per file.
    fn outputs(&self, _: &InputFile) -> Option<Outputs> {
        None
    }

    fn found(&self, _: &()) -> Found {
        Found::Stale
    }

    async fn process(
        &self,
        _: usize,
        input: &InputFile,
        counter: &Counter,
    ) -> Result<(Option<()>, u64), String> {
        let name = format!("{}.parquet", input.rel.display());
        let Some(&f) = self.index.get(name.as_str()) else {
            return Err(format!(
                "{}: not in the codes at {} (was it labeled into another --out?)",
                input.path.display(),
                self.job.codes.display()
            ));
        };
        let Some(rows) = self.wanted.get(&f) else {
            return Ok((None, 0));
        };
        let reader = Reader::open(&input.path, &input.rel.display().to_string(), &self.fields)
            .map_err(|e| e.to_string())?;
        let mut read = 0;
        let mut found = Vec::new();
        for record in reader {
            let record = record.map_err(|e| e.to_string())?;
            read += 1;
            let Some(&want) = rows.get(&record.row) else {
                continue;
            };
            // The join is by file and row; the id proves it is the row that was labeled
            // (label names a row without an id `<file>:<row>`).
            let id = record
                .id
                .clone()
                .unwrap_or_else(|| format!("{}:{}", input.rel.display(), record.row));
            if key_hash(self.seed, &id) != want {
                return Err(format!(
                    "{}: row {} has id {id:?}, which is not the id the codes hold for that row of codes/{name}: these are not the inputs {} was labeled from (files swapped or changed?)",
                    input.path.display(),
                    record.row,
                    self.job.codes.display()
                ));
            }
            let text: String = record.text.chars().take(TERM_CHARS).collect();
            found.push(((f, record.row), text));
        }
        counter.add(read);
        self.texts.lock().expect("not poisoned").extend(found);
        Ok((None, read))
    }
}

fn part_name(shard: Shard) -> String {
    format!("task-{}-of-{}.jsonl", shard.index, shard.count)
}

fn write_part(
    job: &DescribeJob,
    names: &[String],
    texts: &HashMap<RowRef, String>,
) -> Result<(), DescribeError> {
    let dir = job.out.join("parts");
    let err = |e: &dyn std::fmt::Display| DescribeError::Write(format!("{}: {e}", dir.display()));
    std::fs::create_dir_all(&dir).map_err(|e| err(&e))?;
    let recorded = Recorded::of(job);
    match Recorded::read(&job.out)? {
        Some(r) if r != recorded => {
            return Err(DescribeError::Parts(format!(
                "{}: other tasks ran with other settings ({r:?}); use another --out",
                dir.display()
            )));
        }
        Some(_) => {}
        None => {
            let path = dir.join("describe.json");
            let tmp = tmp_name(&path);
            std::fs::write(
                &tmp,
                serde_json::to_vec_pretty(&recorded).expect("serialises"),
            )
            .map_err(|e| err(&e))?;
            std::fs::rename(&tmp, &path).map_err(|e| err(&e))?;
        }
    }
    let path = dir.join(part_name(job.shard));
    let tmp = tmp_name(&path);
    let mut w = std::io::BufWriter::new(File::create(&tmp).map_err(|e| err(&e))?);
    let mut rows: Vec<(&RowRef, &String)> = texts.iter().collect();
    rows.sort();
    for ((f, row), text) in rows {
        let line = PartLine {
            file: names[*f as usize].clone(),
            row: *row,
            text: text.clone(),
        };
        serde_json::to_writer(&mut w, &line).map_err(|e| err(&e))?;
        w.write_all(b"\n").map_err(|e| err(&e))?;
    }
    let file = w.into_inner().map_err(|e| err(&e))?;
    file.sync_all().map_err(|e| err(&e))?;
    std::fs::rename(&tmp, &path).map_err(|e| err(&e))?;
    sync_dir(&path).map_err(|e| err(&e))
}

/// Every task's part: all of `task-I-of-N.jsonl` for one N, or an error naming what is missing.
fn read_parts(
    out: &Path,
    index: &HashMap<&str, u32>,
) -> Result<HashMap<RowRef, String>, DescribeError> {
    let dir = out.join("parts");
    let entries = std::fs::read_dir(&dir).map_err(|e| {
        DescribeError::Parts(format!(
            "{}: {e} (run the array tasks first)",
            dir.display()
        ))
    })?;
    let mut parts: Vec<(usize, usize, PathBuf)> = Vec::new();
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(rest) = name
            .strip_prefix("task-")
            .and_then(|r| r.strip_suffix(".jsonl"))
        else {
            continue;
        };
        let mut it = rest.split("-of-");
        if let (Some(i), Some(n)) = (
            it.next().and_then(|x| x.parse().ok()),
            it.next().and_then(|x| x.parse().ok()),
        ) {
            parts.push((i, n, e.path()));
        }
    }
    let counts: HashSet<usize> = parts.iter().map(|p| p.1).collect();
    let [n] = counts.iter().copied().collect::<Vec<_>>()[..] else {
        return Err(DescribeError::Parts(format!(
            "{}: parts of {} different task counts; remove the stale ones",
            dir.display(),
            counts.len()
        )));
    };
    let have: HashSet<usize> = parts.iter().map(|p| p.0).collect();
    let missing: Vec<usize> = (0..n).filter(|i| !have.contains(i)).collect();
    if !missing.is_empty() {
        return Err(DescribeError::Parts(format!(
            "{}: tasks {missing:?} of {n} have not written their part",
            dir.display()
        )));
    }
    let mut texts = HashMap::new();
    for (_, _, path) in parts {
        let file = File::open(&path)
            .map_err(|e| DescribeError::Parts(format!("{}: {e}", path.display())))?;
        for (k, line) in BufReader::new(file).lines().enumerate() {
            let bad = |e: &dyn std::fmt::Display| {
                DescribeError::Parts(format!("{}:{}: {e}", path.display(), k + 1))
            };
            let line = line.map_err(|e| bad(&e))?;
            let p: PartLine = serde_json::from_str(&line).map_err(|e| bad(&e))?;
            let f = *index
                .get(p.file.as_str())
                .ok_or_else(|| bad(&format!("unknown codes file {}", p.file)))?;
            texts.insert((f, p.row), p.text);
        }
    }
    Ok(texts)
}
