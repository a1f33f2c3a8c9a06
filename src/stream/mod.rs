//! The stream consumer (`hermes consume`, docs/streams.md), a long-running service beside
//! `server/`: documents from a Kafka topic or a Redis stream → the same labeler as `serve` → one output record each on the sink, bad
//! records on the dead-letter destination, and the input committed only after both are
//! acknowledged (and, with `--store`, the code is stored): at least once.
//!
//! The flow: a fetcher ([`kafka::Source`] on its own thread, [`redis::Source`] as a task)
//! counts each input into [`InFlight`] and sends it down a channel; [`run`] gathers what has
//! arrived into batches of at most `batch_docs` and labels up to [`BATCHES_AT_ONCE`] batches
//! at a time through [`Service::label`], exactly as `/v1/label` does (content cache, id
//! store); each batch is written, then committed, then its room in [`InFlight`] is freed.
//! When `max_in_flight` inputs are out, the fetcher stops fetching: memory is bounded by the
//! cap, not by the backlog.
//!
//! Errors: a bad record is a dead letter, never an error. A store or Redis that cannot be
//! reached is retried with back-off (the stream stalls, `/readyz` says 503). A Kafka delivery
//! that fails after librdkafka's own retries, or a failure of the encoder, ends the job with
//! an error and without committing what it had not written: a restart reads it again. The
//! inputs of a failed batch (and of every batch after it) are abandoned: a commit stops below
//! them and the drain does not wait for them, so the job ends as soon as the batches already
//! being written are done, with those committed.
//!
//! Shutdown (the `shutdown` future, SIGTERM in the CLI): stop fetching, finish and commit
//! what is in flight, leave the group, return.

pub mod endpoint;
mod inflight;
pub mod kafka;
mod offsets;
pub mod record;
pub mod redis;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio::task::JoinSet;

pub use endpoint::{Endpoint, Role};
use inflight::InFlight;
use record::{Input, RecordRules};

use crate::labeling::{CoreConfig, Service, ServiceError, Tiers};
use crate::ops::health::{self, Readiness};
use record::ModelRef;

/// Batches being labeled and written at once: enough to keep the encoder sessions busy while
/// earlier batches wait for the broker's acknowledgement.
pub const BATCHES_AT_ONCE: usize = 4;

/// What to consume, where to write, and the labeling core (bundle, encoder, runtime,
/// limits, store, caches: the same core `serve` builds).
#[derive(Debug, Clone)]
pub struct ConsumeJob {
    pub source: Endpoint,
    pub sink: Endpoint,
    /// `None`: the source's topic with `.dead-letter` appended, on the source's broker.
    pub dead_letter: Option<Endpoint>,
    /// The labeling core; `core.encoder` is the one tier that runs.
    pub core: CoreConfig,
    pub text_field: String,
    pub id_field: String,
    /// Depth of the codes written (default: the bundle's L).
    pub depth: Option<u32>,
    /// Inputs between fetch and commit at most.
    pub max_in_flight: usize,
    /// Documents per labeling call at most.
    pub batch_docs: usize,
    /// Where `/metrics`, `/healthz` and `/readyz` answer; `None`: nowhere.
    pub metrics: Option<SocketAddr>,
    /// How long a revocation or shutdown waits for in-flight inputs.
    pub drain_timeout: Duration,
    /// Redis: other consumers of the group idle longer than this are removed (`XGROUP
    /// DELCONSUMER`) once their pending entries are claimed.
    pub consumer_idle_timeout: Duration,
}

/// What a run did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ConsumeSummary {
    pub inputs: u64,
    pub labeled: u64,
    pub dead_lettered: u64,
    pub seconds: f64,
}

#[derive(Debug, thiserror::Error)]
pub enum ConsumeError {
    #[error("{0}")]
    Config(String),
    #[error(transparent)]
    Load(#[from] crate::labeling::CoreError),
    #[error("source: {0}")]
    Source(String),
    #[error("sink: {0}")]
    Sink(String),
    #[error("labeling: {0}")]
    Label(String),
    #[error("metrics listener: {0}")]
    Metrics(std::io::Error),
}

/// A record to write: its key (Kafka; Redis ignores it) and its JSON value.
#[derive(Debug, Clone)]
pub struct Outgoing {
    pub key: String,
    pub value: Vec<u8>,
}

enum Source {
    Kafka(kafka::Source),
    Redis(redis::Source),
}

enum Sink {
    Kafka(kafka::Sink),
    Redis(redis::Sink),
}

impl Sink {
    async fn open(e: &Endpoint) -> Result<Self, ConsumeError> {
        Ok(match e {
            Endpoint::Kafka(k) => Sink::Kafka(kafka::Sink::open(k)?),
            Endpoint::Redis(r) => Sink::Redis(redis::Sink::open(r).await?),
        })
    }

    async fn send(&self, records: &[Outgoing], stop: &AtomicBool) -> Result<(), ConsumeError> {
        match self {
            Sink::Kafka(k) => k.send(records).await,
            Sink::Redis(r) => r.send(records, stop).await,
        }
    }
}

/// Counters the summary is made of.
#[derive(Default)]
struct Counts {
    inputs: AtomicU64,
    labeled: AtomicU64,
    dead: AtomicU64,
}

/// Everything a batch needs, shared by the batch tasks.
struct Pipeline {
    service: Arc<Service>,
    tier: usize,
    depth: usize,
    model: ModelRef,
    rules: RecordRules,
    source: Source,
    sink: Sink,
    dead: Sink,
    in_flight: Arc<InFlight>,
    stop: Arc<AtomicBool>,
    counts: Counts,
}

/// Runs the job until `shutdown` resolves (then drains) or a fatal error.
pub async fn run(
    job: ConsumeJob,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<ConsumeSummary, ConsumeError> {
    let started = Instant::now();
    let dead_letter = job
        .dead_letter
        .clone()
        .unwrap_or_else(|| job.source.dead_letter());
    check_endpoints(&job, &dead_letter)?;
    let readiness = Readiness::default();
    let _metrics = match job.metrics {
        Some(addr) => Some(
            health::serve(addr, readiness.clone())
                .await
                .map_err(ConsumeError::Metrics)?,
        ),
        None => None,
    };

    // The sinks first: a broker that refuses them stops the job before the model loads and
    // before it joins the group.
    // Errors name the flag (the default dead letter inherits the source's properties).
    let named = |flag: &str, e: &Endpoint, err: ConsumeError| {
        let inner = match err {
            ConsumeError::Sink(m) | ConsumeError::Source(m) => m,
            other => other.to_string(),
        };
        ConsumeError::Config(format!("{flag} {e}: {inner}"))
    };
    let sink = Sink::open(&job.sink)
        .await
        .map_err(|err| named("--sink", &job.sink, err))?;
    let dead_flag = if job.dead_letter.is_some() {
        "--dead-letter"
    } else {
        "--dead-letter (default, from --source)"
    };
    let dead = Sink::open(&dead_letter)
        .await
        .map_err(|err| named(dead_flag, &dead_letter, err))?;

    let mut core = job.core.clone();
    core.tiers = Tiers::One;
    core.limits.max_docs = job.batch_docs.max(1);
    core.batching.max_queue_docs = core
        .batching
        .max_queue_docs
        .max(job.max_in_flight + job.batch_docs);
    let (service, workers) = crate::labeling::build(&core).await?.into_parts();
    let service = Arc::new(service);
    let tier = service.default_tier;
    let depth = service
        .depth(job.depth)
        .map_err(|e| ConsumeError::Config(format!("--depth: {e}")))?;

    let stop = Arc::new(AtomicBool::new(false));
    {
        let (stop, readiness) = (stop.clone(), readiness.clone());
        tokio::spawn(async move {
            shutdown.await;
            tracing::info!("shutdown requested: draining");
            readiness.not_ready("draining");
            stop.store(true, Ordering::Release);
        });
    }
    let in_flight = Arc::new(InFlight::new(job.max_in_flight));
    let (tx, rx) = mpsc::channel(job.max_in_flight.max(1));
    let source = match &job.source {
        Endpoint::Kafka(k) => Source::Kafka(kafka::Source::start(
            k,
            kafka::Fetch {
                tx,
                in_flight: in_flight.clone(),
                stop: stop.clone(),
                drain: job.drain_timeout,
                readiness: readiness.clone(),
            },
        )?),
        Endpoint::Redis(r) => Source::Redis(
            redis::Source::start(
                r,
                redis::Fetch {
                    tx,
                    in_flight: in_flight.clone(),
                    stop: stop.clone(),
                    batch: job.batch_docs.max(1),
                    readiness: readiness.clone(),
                    consumer_idle: job.consumer_idle_timeout,
                },
            )
            .await?,
        ),
    };
    let pipeline = Arc::new(Pipeline {
        model: ModelRef::of(&service.tiers[tier]),
        service,
        tier,
        depth,
        rules: RecordRules {
            text_field: job.text_field.clone(),
            id_field: job.id_field.clone(),
            max_text_chars: core.limits.max_text_chars,
            max_id_chars: core.limits.max_id_chars,
        },
        source,
        sink,
        dead,
        in_flight,
        stop: stop.clone(),
        counts: Counts::default(),
    });
    if !stop.load(Ordering::Acquire) {
        readiness.ready();
    }
    tracing::info!(source = %job.source, sink = %job.sink, dead_letter = %dead_letter,
        encoder = %pipeline.model.encoder, depth, "consuming");

    let failure = pump(&pipeline, rx, job.batch_docs.max(1)).await;
    readiness.not_ready("draining");
    stop.store(true, Ordering::Release);
    let pipeline = Arc::into_inner(pipeline).expect("every batch task has ended");
    let finished = match pipeline.source {
        Source::Kafka(k) => k.finish().await,
        Source::Redis(r) => r.finish().await,
    };
    tokio::task::spawn_blocking(move || workers.into_iter().for_each(|w| w.shutdown()))
        .await
        .map_err(|e| ConsumeError::Label(format!("stopping the encoder workers: {e}")))?;
    if let Some(e) = failure {
        return Err(e);
    }
    finished?;
    let c = &pipeline.counts;
    Ok(ConsumeSummary {
        inputs: c.inputs.load(Ordering::Relaxed),
        labeled: c.labeled.load(Ordering::Relaxed),
        dead_lettered: c.dead.load(Ordering::Relaxed),
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// An output or dead letter written back into the source would be consumed again, forever.
fn check_endpoints(job: &ConsumeJob, dead_letter: &Endpoint) -> Result<(), ConsumeError> {
    for (flag, e) in [("--sink", &job.sink), ("--dead-letter", dead_letter)] {
        if same_place(e, &job.source) {
            return Err(ConsumeError::Config(format!(
                "{flag} {e} is the source itself: its records would be consumed again"
            )));
        }
    }
    if job.max_in_flight == 0 || job.batch_docs == 0 {
        return Err(ConsumeError::Config(
            "--max-in-flight and --batch-docs must be at least 1".into(),
        ));
    }
    Ok(())
}

/// Whether two endpoints are one topic or stream, whatever names their servers go by.
fn same_place(a: &Endpoint, b: &Endpoint) -> bool {
    match (a, b) {
        (Endpoint::Kafka(a), Endpoint::Kafka(b)) => {
            a.topic == b.topic && endpoint::same_servers(&a.brokers, &b.brokers)
        }
        (Endpoint::Redis(a), Endpoint::Redis(b)) => {
            let ((ha, da), (hb, db)) = (a.address(), b.address());
            let port = |h: &str| {
                if h.contains(':') {
                    h.to_string()
                } else {
                    format!("{h}:6379")
                }
            };
            a.stream == b.stream && da == db && endpoint::same_servers(&port(ha), &port(hb))
        }
        _ => false,
    }
}

/// Gathers inputs into batches and runs them, [`BATCHES_AT_ONCE`] at a time, until the
/// fetcher closes the channel; returns the first fatal error (after which it stops the
/// fetcher and lets the other batches finish).
async fn pump(
    pipeline: &Arc<Pipeline>,
    mut rx: mpsc::Receiver<Input>,
    batch_docs: usize,
) -> Option<ConsumeError> {
    let mut tasks = JoinSet::new();
    let mut failure = None;
    let note = |r: Result<Result<(), ConsumeError>, tokio::task::JoinError>,
                failure: &mut Option<ConsumeError>| {
        let e = match r {
            Ok(Ok(())) => return,
            Ok(Err(e)) => e,
            Err(e) => ConsumeError::Label(format!("a batch task failed: {e}")),
        };
        tracing::error!(error = %e, "stopping: a batch could not be written");
        pipeline.stop.store(true, Ordering::Release);
        failure.get_or_insert(e);
    };
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        while batch.len() < batch_docs {
            match rx.try_recv() {
                Ok(i) => batch.push(i),
                Err(_) => break,
            }
        }
        if failure.is_some() {
            // Not written, not committed: read again after a restart.
            pipeline.abandon(&batch);
            continue;
        }
        while tasks.len() >= BATCHES_AT_ONCE {
            if let Some(r) = tasks.join_next().await {
                note(r, &mut failure);
            }
        }
        while let Some(r) = tasks.try_join_next() {
            note(r, &mut failure);
        }
        if failure.is_some() {
            // A batch failed while this one waited for room: not written either.
            pipeline.abandon(&batch);
            continue;
        }
        let p = pipeline.clone();
        tasks.spawn(async move {
            let result = p.batch(&batch).await;
            if result.is_err() {
                p.abandon(&batch);
            }
            result
        });
    }
    while let Some(r) = tasks.join_next().await {
        note(r, &mut failure);
    }
    failure
}

impl Pipeline {
    /// Gives up on inputs that will not be written (the job is stopping on a fatal error):
    /// they stay uncommitted, nothing waits for them, and their room is freed.
    fn abandon(&self, batch: &[Input]) {
        if let Source::Kafka(k) = &self.source {
            k.abandon(batch.iter().map(|i| &i.coords));
        }
        self.in_flight.give(batch.len());
    }

    /// Labels, writes and commits one batch.
    async fn batch(&self, batch: &[Input]) -> Result<(), ConsumeError> {
        let mut docs = Vec::new();
        let mut good = Vec::new();
        let mut dead = Vec::new();
        for (i, input) in batch.iter().enumerate() {
            match record::parse(input, &self.rules) {
                Ok(doc) => {
                    docs.push(doc);
                    good.push(i);
                }
                Err(bad) => {
                    tracing::debug!(source = %input.coords, error = %bad.message, "dead letter");
                    dead.push(Outgoing {
                        key: input.coords.to_string(),
                        value: record::dead_letter(input, &bad),
                    });
                }
            }
        }
        let outputs = if docs.is_empty() {
            Vec::new()
        } else {
            let labeled = self.label(docs).await?;
            let levels = self.service.model().levels();
            labeled
                .iter()
                .zip(&good)
                .map(|(d, &i)| {
                    let id = d.id.as_deref().unwrap_or_default();
                    Outgoing {
                        key: id.to_string(),
                        value: record::output(
                            id,
                            &d.code,
                            self.depth,
                            levels,
                            &self.model,
                            &batch[i].coords,
                        ),
                    }
                })
                .collect()
        };
        let (written, lettered) = tokio::join!(
            self.sink.send(&outputs, &self.stop),
            self.dead.send(&dead, &self.stop)
        );
        written?;
        lettered?;
        let coords: Vec<_> = batch.iter().map(|i| i.coords.clone()).collect();
        match &self.source {
            Source::Kafka(k) => k.done(&coords),
            Source::Redis(r) => r.done(&coords, &self.stop).await?,
        }
        let now = Instant::now();
        for input in batch {
            metrics::histogram!("hermes_consume_latency_seconds")
                .record((now - input.fetched).as_secs_f64());
        }
        self.in_flight.give(batch.len());
        let (n, ok, bad) = (batch.len() as u64, outputs.len() as u64, dead.len() as u64);
        self.counts.inputs.fetch_add(n, Ordering::Relaxed);
        self.counts.labeled.fetch_add(ok, Ordering::Relaxed);
        self.counts.dead.fetch_add(bad, Ordering::Relaxed);
        metrics::counter!("hermes_consume_inputs_total").increment(n);
        metrics::counter!("hermes_consume_outputs_total").increment(ok);
        metrics::counter!("hermes_consume_dead_letters_total").increment(bad);
        Ok(())
    }

    /// Labels through the service; waits out an unreachable store or a full queue (retried
    /// with back-off until it answers or the job stops), fails on anything else.
    async fn label(
        &self,
        docs: Vec<crate::labeling::Document>,
    ) -> Result<Vec<crate::labeling::LabeledDoc>, ConsumeError> {
        let tier = &self.service.tiers[self.tier];
        let mut wait = Duration::from_millis(100);
        loop {
            match self.service.label(tier, docs.clone()).await {
                Ok(done) => return Ok(done),
                Err(e @ (ServiceError::Unavailable(_) | ServiceError::Overloaded { .. }))
                    if !self.stop.load(Ordering::Acquire) =>
                {
                    tracing::warn!(error = %e, retry_in_ms = wait.as_millis() as u64, "labeling");
                    metrics::counter!("hermes_consume_retries_total", "what" => "label")
                        .increment(1);
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(Duration::from_secs(5));
                }
                Err(e) => return Err(ConsumeError::Label(e.to_string())),
            }
        }
    }
}
