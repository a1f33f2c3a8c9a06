//! The flags several commands share, each defined once, in one group (`#[command(flatten)]`),
//! with one help text and one conversion into the library's configuration.
//!
//! Where only part of a group fits a command, the group nests the part that does: `consume`
//! takes [`FieldArgs`], `label` and `describe` the [`CorpusArgs`] around it; `consume` takes
//! [`TextLimitArgs`] and [`TextCacheArgs`], `serve` the [`LimitArgs`] and [`CacheArgs`] around
//! them; `embed` takes [`ModelArgs`], `eval` the [`TierArgs`] around it, and `serve`, `consume`
//! and `label` the [`LabelerArgs`] around that. A command whose default or `required` differs
//! from the group's says so on its own struct (`#[command(mut_arg(...))]`).

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use crate::bundle::RuntimeConfig;
use crate::corpus::reader::{DEFAULT_MAX_LINE_BYTES, Fields};
use crate::jobs::Shard;
use crate::labeling::limits::defaults;
use crate::labeling::{CacheConfig, CoreConfig, Limits, StoreConfig, Tiers};
use crate::tier::Tier;

/// Default bundle, relative to the working directory (the repository root for `make serve`).
pub const DEFAULT_BUNDLE: &str = "models/minilm-wiki";

/// `0` → `None`: the flags that say "no limit" or "forever" with 0.
fn seconds(s: u64) -> Option<Duration> {
    (s > 0).then(|| Duration::from_secs(s))
}

/// How ONNX Runtime runs: every command that runs the encoder (`fit` takes only this).
#[derive(Debug, Clone, Args)]
pub struct RuntimeArgs {
    /// ONNX Runtime shared library; default: the set-up cache (.cache/ort), then the system.
    #[arg(long, env = "ORT_DYLIB_PATH")]
    pub ort_lib: Option<PathBuf>,
    /// ONNX Runtime intra-op threads per session (0: ONNX Runtime decides, one per core).
    #[arg(long, env = "HERMES_INTRA_THREADS", default_value_t = 0)]
    pub intra_threads: usize,
    /// Whether ONNX Runtime's intra-op threads spin while waiting for work. Default: off for
    /// `serve` and `consume`, whose HTTP, tokenizer and I/O threads need the cores a spinning
    /// thread holds; on for `label`, `fit`, `eval` and `embed`, which have nothing else to run.
    #[arg(long, env = "HERMES_ORT_SPINNING")]
    pub ort_spinning: Option<bool>,
}

impl From<&RuntimeArgs> for RuntimeConfig {
    fn from(a: &RuntimeArgs) -> Self {
        RuntimeConfig {
            ort_lib: a.ort_lib.clone(),
            intra_threads: a.intra_threads,
            spinning: a.ort_spinning,
        }
    }
}

/// A bundle and how ONNX Runtime runs its encoder (`embed`; within [`TierArgs`]).
#[derive(Debug, Clone, Args)]
pub struct ModelArgs {
    /// Bundle directory: encoder, tokenizer, codebooks (docs/bundle.md).
    #[arg(long, env = "HERMES_BUNDLE", default_value = DEFAULT_BUNDLE)]
    pub bundle: PathBuf,
    #[command(flatten)]
    pub runtime: RuntimeArgs,
}

/// One tier of a bundle (`eval`; within [`LabelerArgs`]).
#[derive(Debug, Clone, Args)]
pub struct TierArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Encoder tier: minilm (the reference) or static (the bundle's fitted token table).
    /// `serve` answers with it when a request names none, and serves the bundle's other tier
    /// (if any) too, on request.
    #[arg(long, env = "HERMES_ENCODER", value_enum, default_value_t = Tier::Minilm)]
    pub encoder: Tier,
}

impl TierArgs {
    /// `serve`'s labeling core ([`CoreConfig::serving`]) for this bundle, tier and runtime,
    /// starting `tiers`.
    pub fn core(&self, tiers: Tiers) -> CoreConfig {
        let mut core = CoreConfig::serving(&self.model.bundle);
        core.encoder = self.encoder;
        core.tiers = tiers;
        core.runtime = RuntimeConfig::from(&self.model.runtime);
        core
    }
}

/// The labeler: a tier, its encoder sessions and batch size (`serve`, `consume`, `label`;
/// `label`'s --encoder-sessions defaults to 1).
#[derive(Debug, Clone, Args)]
pub struct LabelerArgs {
    #[command(flatten)]
    pub tier: TierArgs,
    /// Encoder sessions, each served by one batching worker (batches that run at once). 0
    /// (`serve`, `consume`): one per core, each with one ONNX Runtime thread unless
    /// --intra-threads says otherwise.
    #[arg(long, env = "HERMES_ENCODER_SESSIONS", default_value_t = 0)]
    pub encoder_sessions: usize,
    /// Documents per encoder batch at most; 0 (the default) measures the fastest size (1 to
    /// 32) on this CPU at start-up, on the bundle's probe texts (`label`: on the shard's first
    /// documents, a few seconds). Whether a batch is cheaper per document than one text alone
    /// depends on the CPU, so it is measured, not assumed.
    #[arg(long, env = "HERMES_MAX_BATCH_DOCS", default_value_t = 0)]
    pub max_batch_docs: usize,
}

impl LabelerArgs {
    /// --max-batch-docs; `None` (0): measured at start-up.
    pub fn max_batch_docs(&self) -> Option<usize> {
        (self.max_batch_docs > 0).then_some(self.max_batch_docs)
    }

    /// [`TierArgs::core`] with these sessions and this batch size.
    pub fn core(&self, tiers: Tiers) -> CoreConfig {
        let mut core = self.tier.core(tiers);
        core.encoder_sessions = self.encoder_sessions;
        core.batching.max_batch_docs = self.max_batch_docs();
        core
    }
}

/// The field holding the text (`fit`, `eval`; within [`FieldArgs`]).
#[derive(Debug, Clone, Args)]
pub struct TextFieldArgs {
    /// Field (JSON) or column (Parquet) holding the text.
    #[arg(long, env = "HERMES_TEXT_FIELD", default_value = "text")]
    pub text_field: String,
}

/// The fields holding the text and the id (`consume`; within [`CorpusArgs`]).
#[derive(Debug, Clone, Args)]
pub struct FieldArgs {
    #[command(flatten)]
    pub text: TextFieldArgs,
    /// Field (JSON) or column (Parquet) holding the document id (a string or an integer);
    /// records without one get `<file>:<row>` (`consume`: `topic:partition:offset`).
    #[arg(long, env = "HERMES_ID_FIELD", default_value = "id")]
    pub id_field: String,
}

impl FieldArgs {
    /// The reader's [`Fields`], copying `carry` into the output.
    pub fn fields(self, carry: Vec<String>) -> Fields {
        Fields {
            text: self.text.text_field,
            id: self.id_field,
            carry,
            ..Fields::default()
        }
    }
}

/// A corpus of files, split across tasks (`label`, where --input is required; `describe`).
#[derive(Debug, Clone, Args)]
pub struct CorpusArgs {
    /// Input files, directories (searched recursively) or globs of .jsonl, .jsonl.gz,
    /// .jsonl.zst and .parquet; the sorted list is split across tasks. For `describe`: the
    /// inputs the codes were labeled from.
    #[arg(long, env = "HERMES_INPUT", num_args = 1..)]
    pub input: Vec<PathBuf>,
    #[command(flatten)]
    pub fields: FieldArgs,
    /// Bytes of one JSONL line read at most: a longer line fails its file with its row named,
    /// so one line without a newline cannot take all memory.
    #[arg(long, env = "HERMES_MAX_LINE_BYTES", default_value_t = DEFAULT_MAX_LINE_BYTES)]
    pub max_line_bytes: usize,
}

impl CorpusArgs {
    /// The reader's [`Fields`] for these inputs, copying `carry` into the output.
    pub fn fields(&self, carry: Vec<String>) -> Fields {
        Fields {
            max_line_bytes: self.max_line_bytes.max(1),
            ..self.fields.clone().fields(carry)
        }
    }
}

/// A JSONL corpus read whole, or its embeddings (`fit`, `eval`).
#[derive(Debug, Clone, Args)]
pub struct JsonlCorpusArgs {
    /// Corpus: JSONL, one object a line with a string text field (for `eval`, and a label
    /// field).
    #[arg(long, env = "HERMES_INPUT")]
    pub input: PathBuf,
    #[command(flatten)]
    pub text: TextFieldArgs,
    /// Precomputed embeddings (.npy, float32 [documents, dim], rows in corpus order): skips
    /// encoding.
    #[arg(long, env = "HERMES_EMBEDDINGS")]
    pub embeddings: Option<PathBuf>,
    /// Texts per encoder batch while embedding the corpus.
    #[arg(long, env = "HERMES_BATCH", default_value_t = 32)]
    pub batch: usize,
}

/// Which array task this is, and how it reports progress (`label`, `describe`, `mix`).
#[derive(Debug, Clone, Args)]
pub struct ShardArgs {
    /// This task's index (default: from Slurm or JOB_COMPLETION_INDEX, else 0).
    #[arg(long, env = "HERMES_SHARD_INDEX")]
    pub shard_index: Option<usize>,
    /// Number of tasks (default: from Slurm, else 1).
    #[arg(long, env = "HERMES_SHARD_COUNT")]
    pub shard_count: Option<usize>,
    /// Seconds between progress lines when stderr is not a terminal.
    #[arg(long, env = "HERMES_PROGRESS_INTERVAL_S", default_value_t = 10)]
    pub progress_interval_s: u64,
}

impl ShardArgs {
    /// This task: the flags, else the scheduler's environment ([`Shard::resolve`]).
    pub fn shard(&self) -> anyhow::Result<Shard> {
        Shard::resolve(self.shard_index, self.shard_count).map_err(anyhow::Error::msg)
    }

    pub fn progress_interval(&self) -> Duration {
        Duration::from_secs(self.progress_interval_s)
    }
}

/// What one text may hold (`consume`; within [`LimitArgs`]).
#[derive(Debug, Clone, Args)]
pub struct TextLimitArgs {
    /// Characters per text at most; a longer text is refused (`serve`: 422; `consume`: a dead
    /// letter). Texts are truncated only at the model's max_tokens.
    #[arg(long, env = "HERMES_MAX_TEXT_CHARS", default_value_t = defaults::MAX_TEXT_CHARS)]
    pub max_text_chars: usize,
    /// Characters per document id at most; a longer id is refused like a longer text.
    #[arg(long, env = "HERMES_MAX_ID_CHARS", default_value_t = defaults::MAX_ID_CHARS)]
    pub max_id_chars: usize,
}

impl TextLimitArgs {
    /// Sets these limits in `limits`, leaving the others.
    pub fn apply(&self, limits: &mut Limits) {
        limits.max_text_chars = self.max_text_chars;
        limits.max_id_chars = self.max_id_chars;
    }
}

/// What one call may ask for (`serve`).
#[derive(Debug, Clone, Args)]
pub struct LimitArgs {
    /// Documents per /v1/label request (texts per /v1/embed, embeddings per /v1/quantize) at
    /// most.
    #[arg(long, env = "HERMES_MAX_DOCS_PER_REQUEST", default_value_t = defaults::MAX_DOCS_PER_REQUEST)]
    pub max_docs_per_request: usize,
    #[command(flatten)]
    pub text: TextLimitArgs,
    /// Ids per /v1/codes/lookup request at most.
    #[arg(long, env = "HERMES_MAX_ITEMS_PER_REQUEST", default_value_t = defaults::MAX_ITEMS_PER_REQUEST)]
    pub max_items_per_request: usize,
    /// Lines of one NDJSON stream being labeled at once (bounds the stream's memory).
    #[arg(long, env = "HERMES_STREAM_CONCURRENCY", default_value_t = 64)]
    pub stream_concurrency: usize,
}

impl LimitArgs {
    pub fn limits(&self) -> Limits {
        Limits {
            max_docs: self.max_docs_per_request,
            max_text_chars: self.text.max_text_chars,
            max_id_chars: self.text.max_id_chars,
            max_items: self.max_items_per_request,
            stream_concurrency: self.stream_concurrency,
        }
    }
}

/// The shared id store (`serve`, `consume`).
#[derive(Debug, Clone, Args)]
pub struct StoreArgs {
    /// Shared id store (`redis://host:port/db`): every labeled id's code is written there
    /// before it is answered (`serve`) or its input committed (`consume`), and `serve`'s
    /// `/v1/codes/*` fall back to it, so every replica answers for every id and codes survive
    /// restarts (docs/store.md). Default: none (ids live in the process's cache).
    #[arg(long, env = "HERMES_STORE")]
    pub store: Option<String>,
    /// Seconds a code lives in the shared store (0: forever).
    #[arg(long, env = "HERMES_STORE_TTL_S", default_value_t = 0)]
    pub store_ttl_s: u64,
    /// Milliseconds a store connection attempt or command may take before it fails
    /// (`serve`: the request that needs it gets 503 unavailable; `consume`: the batch is
    /// retried).
    #[arg(long, env = "HERMES_STORE_TIMEOUT_MS", default_value_t = 1000)]
    pub store_timeout_ms: u64,
}

impl StoreArgs {
    /// `None` without --store.
    pub fn config(&self) -> Option<StoreConfig> {
        self.store.clone().map(|url| StoreConfig {
            url,
            ttl: seconds(self.store_ttl_s),
            timeout: Duration::from_millis(self.store_timeout_ms.max(1)),
        })
    }
}

/// The text → code cache (`consume`; within [`CacheArgs`]).
#[derive(Debug, Clone, Args)]
pub struct TextCacheArgs {
    /// Entries in the text → code cache (a repeated or redelivered text is not encoded again).
    #[arg(long, env = "HERMES_CACHE_TEXTS", default_value_t = 100_000)]
    pub cache_texts: u64,
}

/// The caches (`serve`).
#[derive(Debug, Clone, Args)]
pub struct CacheArgs {
    /// Entries in the id → code cache (the L1 in front of --store).
    #[arg(long, env = "HERMES_CACHE_IDS", default_value_t = 1_000_000)]
    pub cache_ids: u64,
    #[command(flatten)]
    pub texts: TextCacheArgs,
    /// Seconds a cache entry lives after it is written (0: no limit).
    #[arg(long, env = "HERMES_CACHE_TTL_S", default_value_t = 0)]
    pub cache_ttl_s: u64,
    /// Seconds a cache entry lives without being read (0: no limit).
    #[arg(long, env = "HERMES_CACHE_IDLE_S", default_value_t = 0)]
    pub cache_idle_s: u64,
}

impl CacheArgs {
    pub fn config(&self) -> CacheConfig {
        CacheConfig {
            ids: self.cache_ids,
            texts: self.texts.cache_texts,
            ttl: seconds(self.cache_ttl_s),
            idle: seconds(self.cache_idle_s),
        }
    }
}

/// How long a stop may take (`serve`, `consume`).
#[derive(Debug, Clone, Args)]
pub struct ShutdownArgs {
    /// Seconds in-flight work may take to finish after SIGTERM/SIGINT before exiting anyway.
    /// `consume` first waits this long for in-flight inputs (also on a partition revocation),
    /// gives up the rest (they are read again), then waits as long again to finish.
    #[arg(long, env = "HERMES_SHUTDOWN_TIMEOUT_S", default_value_t = 30)]
    pub shutdown_timeout_s: u64,
}

impl ShutdownArgs {
    pub fn grace(&self) -> Duration {
        Duration::from_secs(self.shutdown_timeout_s)
    }
}
