//! The labeling core, assembled once: [`build`] turns one plain [`CoreConfig`] (no HTTP in
//! it) into a [`Core`]: the verified bundle, a batcher per tier that will run, the content
//! and id caches, the shared id store, and the batch shape measured for this CPU. `serve`,
//! `consume`, `label` and `eval` all start here, so a code means the same everywhere.
//!
//! Two choices live here and nowhere else:
//! - **Which tiers run.** `serve` answers for every tier of the bundle (a request picks one);
//!   the other commands run one ([`Tiers::One`]) and start, and measure, nothing else.
//! - **Workers.** minilm gets one batching worker per encoder session; by default one
//!   single-threaded session per core (parallel batches rather than parallel operators: with
//!   one two-thread session, any other thread that runs stalls both ONNX Runtime threads at
//!   their next barrier; a single-threaded session only loses the time taken). The static
//!   tier gets one worker per core in every command.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use sha2::Digest;

use super::{Labeler, Limits, Service, TierService, open};
use crate::batch::{BatchConfig, Workers};
use crate::bundle::{BundleError, LoadOptions, RuntimeConfig};
use crate::cache::TextCache;
use crate::encoder::EncoderError;
use crate::store::{IdStore, MemoryStore, Namespace, RedisStore, TieredStore};
use crate::tier::Tier;

/// Everything the labeling core can be told.
#[derive(Debug, Clone, PartialEq)]
pub struct CoreConfig {
    /// The bundle directory.
    pub bundle: PathBuf,
    /// The tier used when a caller names none (and with [`Tiers::One`], the only one).
    pub encoder: Tier,
    pub tiers: Tiers,
    /// ONNX Runtime library, threads and spinning.
    pub runtime: RuntimeConfig,
    /// Encoder sessions, one batching worker each, per tier; 0: one per core.
    pub encoder_sessions: usize,
    /// How documents are grouped into encoder batches.
    pub batching: Batching,
    /// Texts the minilm batch size is measured on when `batching.max_batch_docs` is `None`.
    pub calibration: Calibration,
    /// What one call may ask for.
    pub limits: Limits,
    /// The shared id store (`--store`); `None` keeps ids in the process only.
    pub store: Option<StoreConfig>,
    /// The moka caches: the text cache, and the id cache (the L1 in front of the store).
    pub cache: CacheConfig,
}

/// Which of the bundle's tiers are started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tiers {
    /// Every tier the bundle has (`serve`: a request may pick any).
    All,
    /// Only [`CoreConfig::encoder`] (`label`, `consume`, `eval`).
    One,
}

/// How the minilm tier's documents are grouped into encoder batches (the static tier sums
/// table rows: any batch costs the same per document, so it takes batches of
/// [`STATIC_BATCH_DOCS`] with the same wait and queue).
#[derive(Debug, Clone, PartialEq)]
pub struct Batching {
    /// Padded tokens per batch at most (at least the bundle's max_tokens).
    pub max_batch_tokens: usize,
    /// Documents per batch at most; `None` measures the fastest size at start-up.
    pub max_batch_docs: Option<usize>,
    /// How long a free encoder waits for a batch to fill (0: continuous batching).
    pub max_wait: Duration,
    /// Documents waiting at most; beyond that callers get "overloaded".
    pub max_queue_docs: usize,
    /// Documents a worker sorts by length together when that many are queued (see
    /// [`BatchConfig::min_window_docs`]).
    pub min_window_docs: usize,
}

impl Batching {
    /// For a corpus read in chunks of `chunk` documents, `in_flight` chunks at a time: no
    /// waiting for stragglers, a queue that holds every chunk in flight, a chunk sorted whole.
    pub fn offline(chunk: usize, in_flight: usize) -> Self {
        Self {
            max_batch_tokens: 8192,
            max_batch_docs: None,
            max_wait: Duration::from_millis(2),
            max_queue_docs: chunk * in_flight,
            min_window_docs: chunk,
        }
    }
}

/// What the batch size is measured on (only when the minilm tier runs and no size is given).
#[derive(Debug, Clone, PartialEq)]
pub enum Calibration {
    /// The bundle's probe texts (real texts of its fitting corpus), repeated.
    Probes,
    /// The caller's texts (the first documents of a corpus); the measurement is kept in
    /// `remember` (a directory), keyed by the kind of machine, so that the other tasks of an
    /// array on the same kind of machine reuse it instead of paying for it.
    Texts {
        texts: Vec<String>,
        remember: Option<PathBuf>,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct StoreConfig {
    /// `redis://host:port/db`.
    pub url: String,
    /// Expiry of written codes; `None` keeps them.
    pub ttl: Option<Duration>,
    /// How long a connection attempt or command may take before the call fails "unavailable".
    pub timeout: Duration,
}

#[derive(Debug, Clone, PartialEq)]
pub struct CacheConfig {
    /// Entries in the id → code cache.
    pub ids: u64,
    /// Entries in the text → code cache.
    pub texts: u64,
    /// Lifetime after a write; `None`: no limit.
    pub ttl: Option<Duration>,
    /// Lifetime without a read; `None`: no limit.
    pub idle: Option<Duration>,
}

/// Why the core could not be assembled.
#[derive(Debug, thiserror::Error)]
pub enum CoreError {
    #[error(transparent)]
    Bundle(#[from] BundleError),
    /// A setting that can never work with this bundle (named by its flag).
    #[error("{0}")]
    Config(String),
    #[error("measuring the batch size: {0}")]
    Calibrate(#[from] EncoderError),
    #[error("{0}")]
    Store(String),
    #[error("{0}")]
    Task(String),
}

/// Documents per static-tier batch.
pub const STATIC_BATCH_DOCS: usize = 256;

/// Largest batch size tried when measuring.
const CALIBRATION_MAX: usize = 32;

/// The assembled core: the service (tiers with their caches and store, and the limits) and
/// the batching workers behind it.
pub struct Core {
    pub service: Service,
    workers: Vec<Workers>,
}

impl Core {
    /// The labeler of the default tier.
    pub fn labeler(&self) -> &Labeler {
        &self.service.tiers[self.service.default_tier].labeler
    }

    /// Closes the batching queues and joins the workers once they finished what is queued
    /// (blocking: call it off the async runtime's threads, or at the end of a job).
    pub fn shutdown(self) -> Service {
        for w in self.workers {
            w.shutdown();
        }
        self.service
    }

    /// Splits the core into the service and its workers (the server shares the service and
    /// shuts the workers down after draining).
    pub fn into_parts(self) -> (Service, Vec<Workers>) {
        (self.service, self.workers)
    }
}

/// Loads and verifies the bundle and assembles the core around it.
pub async fn build(config: &CoreConfig) -> Result<Core, CoreError> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let sessions = match config.encoder_sessions {
        0 => cores,
        n => n,
    };
    let runs = |tier: Tier| config.tiers == Tiers::All || config.encoder == tier;
    // The bundle's probes are checked through the minilm tier, so it is always opened; when
    // it will not run (static alone) one session answers the probes and then idles.
    let minilm_sessions = if runs(Tier::Minilm) { sessions } else { 1 };
    let options = config.runtime.load_options(minilm_sessions, false);
    let b = &config.batching;
    let minilm_batch = BatchConfig {
        max_batch_tokens: b.max_batch_tokens,
        max_batch_docs: b.max_batch_docs.unwrap_or(CALIBRATION_MAX),
        max_wait: b.max_wait,
        max_queue_docs: b.max_queue_docs,
        workers: minilm_sessions,
        min_window_docs: b.min_window_docs,
    };
    // The static tier has no sessions to share: a worker is a thread summing table rows.
    let static_batch = BatchConfig {
        max_batch_tokens: usize::MAX,
        max_batch_docs: STATIC_BATCH_DOCS,
        workers: cores,
        min_window_docs: 0,
        ..minilm_batch.clone()
    };
    let opened = open(&config.bundle, &options, minilm_batch).await?;
    let model = opened.labeler.model().clone();
    let max_tokens = model.encoder.max_tokens();
    if b.max_batch_tokens < max_tokens {
        return Err(CoreError::Config(format!(
            "--max-batch-tokens {} is below the bundle's max_tokens {max_tokens}: a long text would not fit any batch",
            b.max_batch_tokens
        )));
    }
    if runs(Tier::Minilm) && b.max_batch_docs.is_none() {
        calibrate(&opened.labeler, &config.calibration, &options).await?;
        release_freed_memory();
    }
    let mut labelers = Vec::new();
    let mut workers = vec![opened.workers];
    if runs(Tier::Minilm) {
        labelers.push(opened.labeler.clone());
    }
    if runs(Tier::Static)
        && let Some((labeler, w)) = opened.labeler.for_tier(Tier::Static, static_batch)
    {
        labelers.push(labeler);
        workers.push(w);
    }
    let mut tiers = Vec::new();
    for labeler in labelers {
        let namespace = Namespace {
            fingerprint: model.fingerprint().to_string(),
            encoder: labeler.tier(),
            weights: labeler.weights_digest(),
        };
        let c = &config.cache;
        tiers.push(TierService {
            texts: TextCache::new(namespace.clone(), c.texts, c.ttl, c.idle),
            ids: id_store(config, namespace)?,
            labeler,
        });
    }
    let default_tier = tiers
        .iter()
        .position(|t| t.labeler.tier() == config.encoder)
        .ok_or_else(|| {
            CoreError::Config(format!(
                "--encoder {}: the bundle {} has no {} tier (fit one with `hermes fit --static`)",
                config.encoder,
                config.bundle.display(),
                config.encoder
            ))
        })?;
    let service = Service {
        tiers,
        default_tier,
        limits: config.limits.clone(),
        atlas: model
            .cards
            .as_ref()
            .map(|c| bytes::Bytes::from(crate::cards::atlas::page(c))),
    };
    tracing::info!(
        name = model.name(),
        fingerprint = model.fingerprint(),
        encoder = %config.encoder,
        "bundle verified; ready"
    );
    Ok(Core { service, workers })
}

/// The moka id cache, in front of Redis when a store is configured.
fn id_store(config: &CoreConfig, namespace: Namespace) -> Result<Arc<dyn IdStore>, CoreError> {
    let c = &config.cache;
    let l1: Arc<dyn IdStore> = Arc::new(MemoryStore::new(namespace.clone(), c.ids, c.ttl, c.idle));
    let Some(store) = &config.store else {
        return Ok(l1);
    };
    let shared = RedisStore::new(&store.url, namespace, store.ttl, store.timeout)
        .map_err(|e| CoreError::Store(e.to_string()))?;
    Ok(Arc::new(TieredStore {
        l1,
        shared: Arc::new(shared),
    }))
}

/// A batch shape measured for one kind of machine, kept so that other processes on the same
/// kind of machine reuse it.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq)]
struct Measured {
    /// What the measurement depends on: CPU model, cores, sessions, threads, bundle.
    machine: String,
    best: usize,
    padding: f64,
}

/// The kind of machine a measurement holds for.
fn machine_key(labeler: &Labeler, options: &LoadOptions) -> String {
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

/// Caps the minilm batches at the size measured fastest here (3 rounds of a few batches of
/// up to [`CALIBRATION_MAX`] documents: seconds on a fast CPU, tens on a slow one), or at the
/// size remembered for this kind of machine.
async fn calibrate(
    labeler: &Labeler,
    calibration: &Calibration,
    options: &LoadOptions,
) -> Result<(), CoreError> {
    let (texts, remember) = match calibration {
        Calibration::Probes => (
            labeler
                .model()
                .manifest
                .probes
                .iter()
                .map(|p| p.text.clone())
                .collect::<Vec<_>>(),
            None,
        ),
        Calibration::Texts { texts, remember } => (texts.clone(), remember.clone()),
    };
    if texts.is_empty() {
        return Ok(());
    }
    let machine = machine_key(labeler, options);
    let path = remember.map(|dir| {
        let digest = hex::encode(&sha2::Sha256::digest(machine.as_bytes())[..8]);
        dir.join(format!("{digest}.json"))
    });
    let known = path
        .as_ref()
        .and_then(|p| std::fs::read_to_string(p).ok())
        .and_then(|s| serde_json::from_str::<Measured>(&s).ok())
        .filter(|m| m.machine == machine);
    if let Some(m) = known {
        tracing::info!(
            best = m.best,
            padding = m.padding,
            "batch shape measured earlier on this kind of machine"
        );
        labeler.batcher().set_batch_shape(m.best, m.padding);
        return Ok(());
    }
    let measured = labeler.clone();
    let rates = tokio::task::spawn_blocking(move || {
        let texts: Vec<&str> = texts
            .iter()
            .cycle()
            .take(CALIBRATION_MAX)
            .map(String::as_str)
            .collect();
        measured.calibrate(&texts, CALIBRATION_MAX)
    })
    .await
    .map_err(|e| CoreError::Task(format!("the calibration task failed: {e}")))??;
    let Some(path) = path else {
        return Ok(());
    };
    let (best, padding) = crate::encoder::batch_shape(&rates);
    let m = Measured {
        machine,
        best,
        padding,
    };
    // Best effort: a process that cannot write it has still measured for itself.
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

/// Hands the heap that the batch-size measurement freed back to the system. glibc keeps
/// what a burst of large batches freed, so idle RSS moved with the measurement's largest
/// batch (402 to 727 MiB over four starts); a trim once, after it, costs nothing later.
fn release_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns free heap pages to the kernel; it has no
    // preconditions and touches no live allocation.
    unsafe {
        libc::malloc_trim(0);
    }
}
