//! Progress of a job over files: an indicatif bar on a terminal, else a log line every
//! interval and one per file.

use std::io::IsTerminal;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Rows done so far, shared with the reporter's ticker.
#[derive(Default)]
pub struct Counter {
    rows: AtomicU64,
}

impl Counter {
    pub fn add(&self, n: u64) {
        self.rows.fetch_add(n, Ordering::Relaxed);
    }

    pub fn get(&self) -> u64 {
        self.rows.load(Ordering::Relaxed)
    }
}

/// Reports a job's progress until [`Reporter::finish`].
pub struct Reporter {
    job: &'static str,
    bar: Option<indicatif::ProgressBar>,
    ticker: Option<std::thread::JoinHandle<()>>,
    stop: Arc<std::sync::atomic::AtomicBool>,
}

impl Reporter {
    /// `job` names the job in log lines ("label", "mix"); `unit` the rows ("docs", "rows").
    pub fn start(
        job: &'static str,
        unit: &'static str,
        files: usize,
        counter: Arc<Counter>,
        interval: Duration,
    ) -> Reporter {
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let started = Instant::now();
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = indicatif::ProgressBar::new(files as u64);
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "{bar:40} {pos}/{len} files  {msg}  elapsed {elapsed}  ETA {eta}",
                )
                .expect("static template"),
            );
            bar
        });
        let ticker = {
            let (bar, stop) = (bar.clone(), stop.clone());
            std::thread::spawn(move || {
                let tick = if bar.is_some() {
                    Duration::from_millis(500)
                } else {
                    interval.max(Duration::from_secs(1))
                };
                let mut last = Instant::now();
                while !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(100));
                    if last.elapsed() < tick {
                        continue;
                    }
                    last = Instant::now();
                    let rows = counter.get();
                    let secs = started.elapsed().as_secs_f64().max(1e-9);
                    let rate = rows as f64 / secs;
                    match &bar {
                        Some(bar) => bar.set_message(format!("{rows} {unit}, {rate:.1} {unit}/s")),
                        None => tracing::info!(
                            "hermes {job}: {rows} {unit} in {secs:.0}s ({rate:.1} {unit}/s)"
                        ),
                    }
                }
            })
        };
        Reporter {
            job,
            bar,
            ticker: Some(ticker),
            stop,
        }
    }

    /// File `n` (1-based) is finished; `rows` is `None` when it was skipped as done.
    pub fn file_done(&self, n: usize, rel: &Path, rows: Option<u64>) {
        match &self.bar {
            Some(bar) => bar.set_position(n as u64),
            None => match rows {
                Some(rows) => {
                    tracing::info!("hermes {}: done {} ({rows} rows)", self.job, rel.display())
                }
                None => tracing::info!(
                    "hermes {}: skipped {} (already done)",
                    self.job,
                    rel.display()
                ),
            },
        }
    }

    /// A failure, printed above the bar (or logged).
    pub fn failed(&self, message: &str) {
        match &self.bar {
            Some(bar) => bar.println(format!("hermes {}: FAILED {message}", self.job)),
            None => tracing::error!("hermes {}: FAILED {message}", self.job),
        }
    }

    pub fn finish(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.ticker.take() {
            let _ = t.join();
        }
        if let Some(bar) = &self.bar {
            bar.finish();
        }
    }
}
