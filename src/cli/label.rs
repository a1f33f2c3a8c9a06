//! `hermes label`: a shard of a corpus → `codes/*.parquet` + `done/*.json` under `--out`.
//!
//! Each input file is streamed (see `corpus::reader`) in chunks of `--chunk-docs` documents;
//! `IN_FLIGHT` chunks at a time go through the same labeler as `hermes serve` (batcher,
//! encoder sessions, code space), so codes equal the service's, and results are written in
//! input order. A failing file is reported with its name and row, its partial output is
//! removed, and the task goes on with its other files, then exits non-zero.

use std::io::IsTerminal;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use futures::StreamExt;

use super::args::LabelArgs;
use crate::corpus::codes::{CodeRow, CodesWriter, Done, paths};
use crate::corpus::inputs::{InputFile, expand, resolve_shard, shard};
use crate::corpus::reader::{Fields, ReadError, Reader, Record};
use crate::labeling::{Labeler, open};

/// Chunks labeled at once: enough to keep every encoder session fed while one is written.
const IN_FLIGHT: usize = 4;

enum Outcome {
    Labeled { rows: u64 },
    AlreadyDone,
}

/// Documents labeled so far, for progress reports.
#[derive(Default)]
struct Progress {
    docs: AtomicU64,
}

pub fn run(args: LabelArgs) -> Result<()> {
    let (index, count) = resolve_shard(args.shard_index, args.shard_count, |k| {
        std::env::var(k).ok()
    })
    .map_err(anyhow::Error::msg)?;
    let all = expand(&args.input).map_err(anyhow::Error::msg)?;
    let total_files = all.len();
    let mine = shard(all, index, count);
    eprintln!(
        "hermes label: task {index} of {count}: {} of {total_files} input files",
        mine.len()
    );
    let chunk = args.chunk_docs.max(1);
    let options = args.runtime.load_options(args.encoder_sessions, true);
    let batching = super::offline_batching(args.encoder_sessions, chunk, IN_FLIGHT);
    let started = Instant::now();
    let progress = Arc::new(Progress::default());
    let (done, skipped, failed) = super::block_on(async {
        let opened = open(&args.bundle, &options, batching.clone()).await?;
        // The static tier gets its own batcher; the minilm one stays idle.
        let (labeler, _static_workers) = if args.encoder == "static" {
            let mut batch = batching;
            batch.max_batch_docs = 256;
            batch.max_batch_tokens = usize::MAX;
            match opened.labeler.tier("static", batch) {
                Some((l, w)) => (l, Some(w)),
                None => bail!(
                    "--encoder static: the bundle {} has no static tier (fit one with `hermes fit --static`)",
                    args.bundle.display()
                ),
            }
        } else {
            (opened.labeler.clone(), None)
        };
        if args.encoder == "static" {
            // A sum of table rows: any batch size costs the same per document.
        } else if args.max_batch_docs == 0 {
            calibrate(&labeler, &mine, &args)?;
        } else {
            labeler.batcher().set_max_batch_docs(args.max_batch_docs);
        }
        let reporter = report_progress(progress.clone(), mine.len(), args.progress_interval_s);
        let (mut done, mut skipped, mut failed) = (0u64, 0usize, Vec::new());
        for (i, file) in mine.iter().enumerate() {
            match label_file(&labeler, file, &args, chunk, &progress).await {
                Ok(Outcome::Labeled { rows }) => {
                    done += rows;
                    reporter.file_done(i + 1, &file.rel, Some(rows));
                }
                Ok(Outcome::AlreadyDone) => {
                    skipped += 1;
                    reporter.file_done(i + 1, &file.rel, None);
                }
                Err(e) => {
                    reporter.println(&format!("hermes label: FAILED {e}"));
                    failed.push(e);
                }
            }
        }
        reporter.finish();
        anyhow::Ok((done, skipped, failed))
    })??;
    let secs = started.elapsed().as_secs_f64();
    eprintln!(
        "hermes label: task {index} of {count} finished in {secs:.1}s: {} files labeled ({done} documents, {:.1} docs/s), {skipped} already done, {} failed",
        mine.len() - skipped - failed.len(),
        done as f64 / secs.max(1e-9),
        failed.len()
    );
    if !failed.is_empty() {
        bail!(
            "{} input file(s) failed:\n  {}",
            failed.len(),
            failed.join("\n  ")
        );
    }
    Ok(())
}

/// Documents of the shard's first readable input used to measure the best batch size.
const CALIBRATION_DOCS: usize = 32;

/// Sets the batcher's batch size to the one measured fastest on this CPU, on real documents
/// of this shard (a few seconds, once per task).
fn calibrate(labeler: &Labeler, files: &[InputFile], args: &LabelArgs) -> Result<()> {
    let fields = Fields {
        text: args.text_field.clone(),
        id: args.id_field.clone(),
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
    let best = rates
        .iter()
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .map_or(1, |r| r.0);
    let table: Vec<String> = rates.iter().map(|(b, r)| format!("{b}: {r:.1}")).collect();
    eprintln!(
        "hermes label: batch size {best} measured fastest here (docs/s by size: {})",
        table.join(", ")
    );
    Ok(())
}

async fn label_file(
    labeler: &Labeler,
    file: &InputFile,
    args: &LabelArgs,
    chunk: usize,
    progress: &Progress,
) -> Result<Outcome, String> {
    let model = labeler.model();
    let name = file.rel.display().to_string();
    let (codes_path, done_path) = paths(&args.out, &file.rel);
    if let Some(done) = Done::read(&done_path)? {
        if done.fingerprint != model.fingerprint() || done.encoder != model.encoder.kind() {
            return Err(format!(
                "{name}: {} was written by bundle {} ({} encoder), not {} ({}): use another --out",
                done_path.display(),
                done.fingerprint,
                done.encoder,
                model.fingerprint(),
                model.encoder.kind()
            ));
        }
        if codes_path.is_file() {
            return Ok(Outcome::AlreadyDone);
        }
        // The codes file went missing after it was done: label the input again.
        let _ = std::fs::remove_file(&done_path);
    }
    let started = Instant::now();
    let fields = Fields {
        text: args.text_field.clone(),
        id: args.id_field.clone(),
    };
    let chunks = read_chunks(file.path.clone(), name.clone(), fields, chunk);
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
                        .collect();
                    let labels = labeler
                        .label(texts)
                        .await
                        .map_err(|e| format!("{name}: rows {}..: {e}", records[0].row))?;
                    Ok::<_, String>((records, labels))
                }
            })
            .buffered(IN_FLIGHT)
    );
    let mut writer = CodesWriter::create(&codes_path, levels.len())?;
    while let Some(item) = labeled.next().await {
        let written = item.and_then(|(records, labels)| {
            let rows: Vec<CodeRow> = records
                .into_iter()
                .zip(labels)
                .map(|(r, l)| CodeRow {
                    id: r.id.unwrap_or_else(|| format!("{name}:{}", r.row)),
                    row: r.row,
                    cell: l.code.cell(&levels) as u32,
                    code: l.code.0,
                    truncated: l.truncated,
                })
                .collect();
            writer.write(&rows)?;
            Ok(rows.len())
        });
        match written {
            Ok(n) => {
                progress.docs.fetch_add(n as u64, Ordering::Relaxed);
            }
            Err(e) => {
                writer.abort();
                return Err(e);
            }
        }
    }
    let rows = writer.finish()?;
    Done {
        input: name.clone(),
        rows,
        seconds: started.elapsed().as_secs_f64(),
        encoder: model.encoder.kind().to_string(),
        bundle: model.name().to_string(),
        fingerprint: model.fingerprint().to_string(),
    }
    .write(&done_path)
    .map_err(|e| format!("{}: {e}", done_path.display()))?;
    Ok(Outcome::Labeled { rows })
}

/// Reads `path` on a blocking thread and yields chunks of records; an error ends the stream.
fn read_chunks(
    path: std::path::PathBuf,
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

/// Progress on stderr: an indicatif bar on a terminal, else a log line every `interval_s`.
struct Reporter {
    bar: Option<indicatif::ProgressBar>,
    ticker: Option<tokio::task::JoinHandle<()>>,
}

fn report_progress(progress: Arc<Progress>, files: usize, interval_s: u64) -> Reporter {
    if std::io::stderr().is_terminal() {
        let bar = super::progress_bar(files as u64, "files");
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{bar:40} {pos}/{len} files  {msg}  elapsed {elapsed}  ETA {eta}",
            )
            .expect("static template"),
        );
        let b = bar.clone();
        let started = Instant::now();
        let ticker = tokio::spawn(async move {
            loop {
                let docs = progress.docs.load(Ordering::Relaxed);
                let rate = docs as f64 / started.elapsed().as_secs_f64().max(1e-9);
                b.set_message(format!("{docs} docs, {rate:.1} docs/s"));
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        });
        return Reporter {
            bar: Some(bar),
            ticker: Some(ticker),
        };
    }
    let started = Instant::now();
    let ticker = tokio::spawn(async move {
        let interval = Duration::from_secs(interval_s.max(1));
        loop {
            tokio::time::sleep(interval).await;
            let docs = progress.docs.load(Ordering::Relaxed);
            let secs = started.elapsed().as_secs_f64();
            eprintln!(
                "hermes label: {docs} documents in {secs:.0}s ({:.1} docs/s)",
                docs as f64 / secs
            );
        }
    });
    Reporter {
        bar: None,
        ticker: Some(ticker),
    }
}

impl Reporter {
    fn file_done(&self, n: usize, rel: &Path, rows: Option<u64>) {
        match &self.bar {
            Some(bar) => bar.set_position(n as u64),
            None => match rows {
                Some(rows) => eprintln!("hermes label: done {} ({rows} rows)", rel.display()),
                None => eprintln!("hermes label: skipped {} (already done)", rel.display()),
            },
        }
    }

    fn println(&self, line: &str) {
        match &self.bar {
            Some(bar) => bar.println(line),
            None => eprintln!("{line}"),
        }
    }

    fn finish(mut self) {
        if let Some(t) = self.ticker.take() {
            t.abort();
        }
        if let Some(bar) = &self.bar {
            bar.finish();
        }
    }
}
