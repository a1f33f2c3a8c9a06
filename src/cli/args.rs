//! The command line: one clap struct per subcommand, every flag also read from `HERMES_<FLAG>`.
//! Each maps to the library's own configuration (`ServeArgs` → [`ServeConfig`]).

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::bundle::RuntimeConfig;
use crate::labeling::limits::defaults;
use crate::logging::LogFormat;
use crate::server::{Batching, CacheConfig, ServeConfig, StoreConfig};
use crate::tier::Tier;

/// Default bundle, relative to the working directory (the repository root for `make serve`).
pub const DEFAULT_BUNDLE: &str = "models/minilm-wiki";

#[derive(Debug, Parser)]
#[command(
    name = "hermes",
    version,
    about = "Coarse-to-fine document codes for pre-training data mixtures"
)]
pub struct Cli {
    /// Log format (stderr): text, or JSON lines.
    #[arg(long, global = true, env = "HERMES_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the HTTP API (see DESIGN.md) for one bundle.
    Serve(Box<ServeArgs>),
    /// Print the OpenAPI document the server publishes at /openapi.json.
    Openapi,
    /// Fit a bundle (transform + residual codebooks) on a JSONL corpus.
    Fit(FitArgs),
    /// Measure a bundle on a labeled JSONL corpus (markdown on stdout, optional JSON).
    Eval(EvalArgs),
    /// Embed texts with the bundle's encoder and print the first dimensions (a smoke test).
    Embed(EmbedArgs),
    /// Label a corpus shard: input files → codes/*.parquet and done/*.json under --out.
    Label(LabelArgs),
    /// Bucket sizes, entropy and perplexity per depth of a `hermes label` output.
    Stats(StatsArgs),
    /// Build a training mixture from labeled codes: plan.json, plan.svg and selection/.
    Mix(MixArgs),
    /// Bucket cards (terms, exemplars, shares) of a labeled corpus: cards.json and atlas.html.
    Describe(DescribeArgs),
    /// Label a Kafka topic or a Redis stream into another, at least once (DESIGN.md "Streams").
    Consume(Box<ConsumeArgs>),
}

/// Everything `hermes consume` can be told (see [`crate::jobs::consume::ConsumeJob`]).
#[derive(Debug, Clone, Args)]
pub struct ConsumeArgs {
    /// Where documents come from: kafka://HOST:PORT/TOPIC?group=G or
    /// redis://HOST:PORT/DB/STREAM?group=G (&consumer=NAME&claim-idle-ms=N for Redis;
    /// librdkafka properties such as session.timeout.ms=6000 for Kafka).
    #[arg(long, env = "HERMES_SOURCE")]
    pub source: String,
    /// Where outputs go: kafka://HOST:PORT/TOPIC or redis://HOST:PORT/DB/STREAM.
    #[arg(long, env = "HERMES_SINK")]
    pub sink: String,
    /// Where bad records go (default: the source's topic + ".dead-letter", same broker).
    #[arg(long, env = "HERMES_DEAD_LETTER")]
    pub dead_letter: Option<String>,
    #[arg(long, env = "HERMES_BUNDLE", default_value = DEFAULT_BUNDLE)]
    pub bundle: PathBuf,
    /// Encoder tier: minilm (the reference) or static (the bundle's fitted token table).
    #[arg(long, env = "HERMES_ENCODER", value_enum, default_value_t = Tier::Minilm)]
    pub encoder: Tier,
    /// Field of the input JSON holding the text.
    #[arg(long, env = "HERMES_TEXT_FIELD", default_value = "text")]
    pub text_field: String,
    /// Field holding the document id (a string or an integer); records without one get
    /// `topic:partition:offset`.
    #[arg(long, env = "HERMES_ID_FIELD", default_value = "id")]
    pub id_field: String,
    /// Depth of the written codes (default: the bundle's number of levels).
    #[arg(long, env = "HERMES_DEPTH")]
    pub depth: Option<u32>,
    /// Inputs between fetch and commit at most; fetching pauses at the cap.
    #[arg(long, env = "HERMES_MAX_IN_FLIGHT", default_value_t = 1024)]
    pub max_in_flight: usize,
    /// Documents per labeling call at most (4 such batches run at once).
    #[arg(long, env = "HERMES_BATCH_DOCS", default_value_t = 256)]
    pub batch_docs: usize,
    /// Port for /metrics, /healthz and /readyz (default: none).
    #[arg(long, env = "HERMES_METRICS_PORT")]
    pub metrics_port: Option<u16>,
    /// Address the metrics port binds (0.0.0.0 in a container, for the scraper).
    #[arg(long, env = "HERMES_METRICS_HOST", default_value = "127.0.0.1")]
    pub metrics_host: String,
    /// Characters per text at most; longer texts are dead letters.
    #[arg(long, env = "HERMES_MAX_TEXT_CHARS", default_value_t = defaults::MAX_TEXT_CHARS)]
    pub max_text_chars: usize,
    /// Characters per document id at most; longer ids are dead letters.
    #[arg(long, env = "HERMES_MAX_ID_CHARS", default_value_t = defaults::MAX_ID_CHARS)]
    pub max_id_chars: usize,
    /// Shared id store (`redis://host:port/db`): every consumed id's code is stored there
    /// before its input is committed, so every `serve` replica answers GET /v1/codes/{id}.
    #[arg(long, env = "HERMES_STORE")]
    pub store: Option<String>,
    /// Seconds a code lives in the shared store (0: forever).
    #[arg(long, env = "HERMES_STORE_TTL_S", default_value_t = 0)]
    pub store_ttl_s: u64,
    /// Milliseconds a store command may take before it is retried.
    #[arg(long, env = "HERMES_STORE_TIMEOUT_MS", default_value_t = 1000)]
    pub store_timeout_ms: u64,
    /// Entries in the text → code cache (a redelivered or repeated text is not encoded again).
    #[arg(long, env = "HERMES_CACHE_TEXTS", default_value_t = 100_000)]
    pub cache_texts: u64,
    /// Encoder sessions; 0: one per core.
    #[arg(long, env = "HERMES_ENCODER_SESSIONS", default_value_t = 0)]
    pub encoder_sessions: usize,
    /// Documents per encoder batch at most; 0 measures the fastest size at start-up.
    #[arg(long, env = "HERMES_MAX_BATCH_DOCS", default_value_t = 0)]
    pub max_batch_docs: usize,
    /// Seconds a revocation or SIGTERM waits for in-flight inputs before giving them up (they
    /// are read again), and then to finish before exiting anyway.
    #[arg(long, env = "HERMES_SHUTDOWN_TIMEOUT_S", default_value_t = 30)]
    pub shutdown_timeout_s: u64,
    #[command(flatten)]
    pub runtime: RuntimeArgs,
}

#[derive(Debug, Args)]
pub struct DescribeArgs {
    /// A `hermes label` output directory (with --merge: default, what the tasks recorded).
    #[arg(long, env = "HERMES_CODES")]
    pub codes: Option<PathBuf>,
    /// The inputs the codes were labeled from (files, directories, globs, as for label).
    #[arg(long, env = "HERMES_INPUT", num_args = 1..)]
    pub input: Vec<PathBuf>,
    /// Output directory: cards.json and atlas.html (array tasks: parts/).
    #[arg(long, env = "HERMES_OUT")]
    pub out: PathBuf,
    /// Cards for depths 1..=D.
    #[arg(long, env = "HERMES_DEPTH", default_value_t = 2)]
    pub depth: usize,
    /// Rows per bucket whose texts are read for its terms (smallest hash(seed, id)).
    #[arg(long, env = "HERMES_SAMPLE", default_value_t = 256)]
    pub sample: usize,
    /// Terms per card.
    #[arg(long, env = "HERMES_TERMS", default_value_t = 12)]
    pub terms: usize,
    /// Exemplar documents per card (those nearest the bucket's centre).
    #[arg(long, env = "HERMES_EXEMPLARS", default_value_t = 3)]
    pub exemplars: usize,
    /// Seed of the sample.
    #[arg(long, env = "HERMES_SEED", default_value_t = 0)]
    pub seed: u64,
    /// Field (JSONL) or column (Parquet) holding the text.
    #[arg(long, env = "HERMES_TEXT_FIELD", default_value = "text")]
    pub text_field: String,
    /// Field or column holding the document id.
    #[arg(long, env = "HERMES_ID_FIELD", default_value = "id")]
    pub id_field: String,
    /// This task's index (default: from Slurm or JOB_COMPLETION_INDEX, else 0).
    #[arg(long, env = "HERMES_SHARD_INDEX")]
    pub shard_index: Option<usize>,
    /// Number of tasks (default: from Slurm, else 1).
    #[arg(long, env = "HERMES_SHARD_COUNT")]
    pub shard_count: Option<usize>,
    /// Merge the array tasks' parts under --out into the cards.
    #[arg(long, env = "HERMES_MERGE")]
    pub merge: bool,
    /// Seconds between progress lines when stderr is not a terminal.
    #[arg(long, env = "HERMES_PROGRESS_INTERVAL_S", default_value_t = 10)]
    pub progress_interval_s: u64,
}

#[derive(Debug, Args)]
pub struct MixArgs {
    /// `hermes label` output directories (their codes/ and done/ are read).
    #[arg(long, env = "HERMES_CODES", required = true, num_args = 1..)]
    pub codes: Vec<PathBuf>,
    /// The mixture spec (TOML; see DESIGN.md "Mixtures").
    #[arg(long, env = "HERMES_SPEC")]
    pub spec: PathBuf,
    /// Output directory: plan.json, plan.svg, selection/ and done/.
    #[arg(long, env = "HERMES_OUT")]
    pub out: PathBuf,
    /// Write the plan and the plot only (a preview).
    #[arg(long, env = "HERMES_PLAN_ONLY")]
    pub plan_only: bool,
    /// Select what there is when the budget cannot be met (otherwise exit 2).
    #[arg(long, env = "HERMES_ALLOW_SHORT")]
    pub allow_short: bool,
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

#[derive(Debug, Args)]
pub struct LabelArgs {
    #[arg(long, env = "HERMES_BUNDLE", default_value = DEFAULT_BUNDLE)]
    pub bundle: PathBuf,
    /// Input files, directories (searched recursively) or globs of .jsonl, .jsonl.gz,
    /// .jsonl.zst and .parquet; the sorted list is split across tasks.
    #[arg(long, env = "HERMES_INPUT", required = true, num_args = 1..)]
    pub input: Vec<PathBuf>,
    /// Output directory: codes/<input>.parquet and done/<input>.json.
    #[arg(long, env = "HERMES_OUT")]
    pub out: PathBuf,
    /// Encoder tier: minilm (the reference) or static (the bundle's fitted token table).
    #[arg(long, env = "HERMES_ENCODER", value_enum, default_value_t = Tier::Minilm)]
    pub encoder: Tier,
    /// Field (JSONL) or column (Parquet) holding the text.
    #[arg(long, env = "HERMES_TEXT_FIELD", default_value = "text")]
    pub text_field: String,
    /// Field or column holding the document id; rows without one get `<file>:<row>`.
    #[arg(long, env = "HERMES_ID_FIELD", default_value = "id")]
    pub id_field: String,
    /// Input fields copied into the codes files as columns of the same name (numbers as
    /// float64, strings as utf8, booleans as bool; null where a row lacks the field): how a
    /// quality score or a token count reaches `hermes mix`.
    #[arg(long, env = "HERMES_CARRY", num_args = 1.., value_delimiter = ',')]
    pub carry: Vec<String>,
    /// This task's index (default: from Slurm or JOB_COMPLETION_INDEX, else 0).
    #[arg(long, env = "HERMES_SHARD_INDEX")]
    pub shard_index: Option<usize>,
    /// Number of tasks (default: from Slurm, else 1).
    #[arg(long, env = "HERMES_SHARD_COUNT")]
    pub shard_count: Option<usize>,
    /// Encoder sessions (batches that run at once).
    #[arg(long, env = "HERMES_ENCODER_SESSIONS", default_value_t = 1)]
    pub encoder_sessions: usize,
    /// Documents per encoder batch at most; 0 measures the fastest size on this CPU at
    /// start-up (a few seconds on the shard's first documents).
    #[arg(long, env = "HERMES_MAX_BATCH_DOCS", default_value_t = 0)]
    pub max_batch_docs: usize,
    /// Documents read and labeled per chunk (bounds memory with 4 chunks in flight).
    #[arg(long, env = "HERMES_CHUNK_DOCS", default_value_t = 256)]
    pub chunk_docs: usize,
    /// Seconds between progress lines when stderr is not a terminal.
    #[arg(long, env = "HERMES_PROGRESS_INTERVAL_S", default_value_t = 10)]
    pub progress_interval_s: u64,
    #[command(flatten)]
    pub runtime: RuntimeArgs,
}

#[derive(Debug, Args)]
pub struct StatsArgs {
    /// A `hermes label` output directory (its codes/ are read).
    #[arg(long, env = "HERMES_INPUT")]
    pub input: PathBuf,
    /// Report depths 1..=D (default: every level in the files).
    #[arg(long, env = "HERMES_DEPTH")]
    pub depth: Option<usize>,
    /// Output format on stdout.
    #[arg(long, env = "HERMES_FORMAT", default_value = "json", value_parser = ["json", "csv"])]
    pub format: String,
    /// Also draw the sorted bucket sizes per depth (log scale) as SVG here.
    #[arg(long, env = "HERMES_PLOT")]
    pub plot: Option<PathBuf>,
}

/// Options every command that runs the encoder shares.
#[derive(Debug, Clone, Args)]
pub struct RuntimeArgs {
    /// ONNX Runtime shared library; default: the set-up cache (.cache/ort), then the system.
    #[arg(long, env = "ORT_DYLIB_PATH")]
    pub ort_lib: Option<PathBuf>,
    /// ONNX Runtime intra-op threads per session (0: ONNX Runtime decides, one per core).
    #[arg(long, env = "HERMES_INTRA_THREADS", default_value_t = 0)]
    pub intra_threads: usize,
    /// Whether ONNX Runtime's intra-op threads spin while waiting for work. Default: off for
    /// `serve`, whose HTTP and tokenizer threads need the cores a spinning thread holds; on
    /// for `label`, `fit` and `eval`, which have nothing else to run.
    #[arg(long, env = "HERMES_ORT_SPINNING")]
    pub ort_spinning: Option<bool>,
}

impl RuntimeArgs {
    /// See [`RuntimeConfig::load_options`].
    pub fn load_options(
        &self,
        sessions: usize,
        spinning_by_default: bool,
    ) -> crate::bundle::LoadOptions {
        RuntimeConfig::from(self).load_options(sessions, spinning_by_default)
    }
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

#[derive(Debug, Args)]
pub struct FitArgs {
    /// Corpus: JSONL, one object a line with a string text field.
    #[arg(long, env = "HERMES_INPUT")]
    pub input: PathBuf,
    /// Output bundle directory (created; encoder and tokenizer are copied into it).
    #[arg(long, env = "HERMES_OUT")]
    pub out: PathBuf,
    /// Codebook sizes per level, coarse first.
    #[arg(
        long,
        env = "HERMES_LEVELS",
        value_delimiter = ',',
        default_value = "64,64,32"
    )]
    pub levels: Vec<usize>,
    /// JSON field holding the text.
    #[arg(long, env = "HERMES_TEXT_FIELD", default_value = "text")]
    pub text_field: String,
    /// Seed for k-means++ seeding: same seed, same corpus, same machine → same bytes.
    #[arg(long, env = "HERMES_SEED", default_value_t = 0)]
    pub seed: u64,
    /// Lloyd iterations per level at most.
    #[arg(long, env = "HERMES_MAX_ITER", default_value_t = 100)]
    pub max_iter: usize,
    /// Transform output dimension: the top principal components kept (0 keeps all). 128 is
    /// the measured default (README: same L1 AMI as 384, a third of the quantizer's work).
    #[arg(long, env = "HERMES_DIM", default_value_t = 128)]
    pub dim: usize,
    /// Whitening strength in [0, 1] (0: rotation only; 1: full whitening).
    #[arg(long, env = "HERMES_WHITEN", default_value_t = 0.0)]
    pub whiten: f32,
    /// Precomputed embeddings (.npy, float32 [documents, dim], rows in corpus order): skips encoding.
    #[arg(long, env = "HERMES_EMBEDDINGS")]
    pub embeddings: Option<PathBuf>,
    /// Also write the corpus embeddings to this .npy file (to reuse with --embeddings).
    #[arg(long, env = "HERMES_SAVE_EMBEDDINGS")]
    pub save_embeddings: Option<PathBuf>,
    /// Bundle name in the manifest; default: the output directory's name.
    #[arg(long, env = "HERMES_NAME")]
    pub name: Option<String>,
    /// Bundle whose encoder.onnx and tokenizer.json the new bundle uses.
    #[arg(long, env = "HERMES_ENCODER_FROM", default_value = DEFAULT_BUNDLE)]
    pub encoder_from: PathBuf,
    /// Token budget per text.
    #[arg(long, env = "HERMES_MAX_TOKENS", default_value_t = 256)]
    pub max_tokens: usize,
    /// Probe texts recorded in the manifest and checked at every start-up.
    #[arg(long, env = "HERMES_PROBES", default_value_t = 6)]
    pub probes: usize,
    /// Texts per encoder batch while embedding the corpus.
    #[arg(long, env = "HERMES_BATCH", default_value_t = 32)]
    pub batch: usize,
    /// Also fit the static tier (a token table that reproduces the encoder's embeddings) on
    /// the same corpus; needs at least 1,000 documents.
    #[arg(long = "static", env = "HERMES_STATIC")]
    pub static_tier: bool,
    /// Only (re)fit the static tier of the existing bundle at --out, keeping its codebooks
    /// (and so its fingerprint and every minilm code).
    #[arg(long, env = "HERMES_STATIC_ONLY")]
    pub static_only: bool,
    /// Only (re)write the bucket cards (cards.json) of the existing bundle at --out from this
    /// corpus, keeping its codebooks and fingerprint.
    #[arg(long, env = "HERMES_CARDS_ONLY")]
    pub cards_only: bool,
    /// Ridge strength λ pulling the table towards the vocabulary pass T0.
    #[arg(long, env = "HERMES_STATIC_LAMBDA", default_value_t = 0.01)]
    pub static_lambda: f32,
    /// Conjugate-gradient iterations.
    #[arg(long, env = "HERMES_STATIC_ITERATIONS", default_value_t = 100)]
    pub static_iterations: usize,
    /// Tokens per text for the static tier (no special tokens).
    #[arg(long, env = "HERMES_STATIC_MAX_TOKENS", default_value_t = 512)]
    pub static_max_tokens: usize,
    #[command(flatten)]
    pub runtime: RuntimeArgs,
}

#[derive(Debug, Args)]
pub struct EvalArgs {
    #[arg(long, env = "HERMES_BUNDLE", default_value = DEFAULT_BUNDLE)]
    pub bundle: PathBuf,
    /// Labeled corpus: JSONL with a text field and a label field.
    #[arg(long, env = "HERMES_INPUT")]
    pub input: PathBuf,
    /// JSON field holding the reference label ("Uncategorized" and empty labels are not scored).
    #[arg(long, env = "HERMES_LABEL_FIELD", default_value = "label")]
    pub label_field: String,
    #[arg(long, env = "HERMES_TEXT_FIELD", default_value = "text")]
    pub text_field: String,
    /// Precomputed embeddings (.npy), rows in corpus order: skips encoding.
    #[arg(long, env = "HERMES_EMBEDDINGS")]
    pub embeddings: Option<PathBuf>,
    /// Write the report as JSON here too.
    #[arg(long, env = "HERMES_JSON")]
    pub json: Option<PathBuf>,
    /// Encoder tier whose codes are measured: minilm or static.
    #[arg(long, env = "HERMES_ENCODER", value_enum, default_value_t = Tier::Minilm)]
    pub encoder: Tier,
    /// Seed of the flat k-means baseline.
    #[arg(long, env = "HERMES_SEED", default_value_t = 0)]
    pub seed: u64,
    #[arg(long, env = "HERMES_BATCH", default_value_t = 32)]
    pub batch: usize,
    #[command(flatten)]
    pub runtime: RuntimeArgs,
}

#[derive(Debug, Args)]
pub struct EmbedArgs {
    /// Bundle directory holding encoder.onnx and tokenizer.json.
    #[arg(long, env = "HERMES_BUNDLE", default_value = DEFAULT_BUNDLE)]
    pub bundle: PathBuf,
    /// Token budget per text; longer texts are truncated. Default: the bundle's max_tokens.
    #[arg(long, env = "HERMES_MAX_TOKENS")]
    pub max_tokens: Option<usize>,
    #[command(flatten)]
    pub runtime: RuntimeArgs,
    /// Texts to embed.
    #[arg(required = true)]
    pub texts: Vec<String>,
}

/// Everything `hermes serve` can be told (see [`ServeConfig`]).
#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Bundle directory to serve.
    #[arg(long, env = "HERMES_BUNDLE", default_value = DEFAULT_BUNDLE)]
    pub bundle: PathBuf,
    #[arg(long, env = "HERMES_HOST", default_value = "127.0.0.1")]
    pub host: String,
    /// Port; 0 picks a free one (the chosen address is printed on stdout).
    #[arg(long, env = "HERMES_PORT", default_value_t = 8080)]
    pub port: u16,
    #[command(flatten)]
    pub runtime: RuntimeArgs,
    /// Encoder sessions, each served by one batching worker (batches that run at once); 0:
    /// one per core, each with one ONNX Runtime thread unless --intra-threads says otherwise.
    #[arg(long, env = "HERMES_ENCODER_SESSIONS", default_value_t = 0)]
    pub encoder_sessions: usize,
    /// The encoder tier answers use when a request names none; the bundle's other tier (if
    /// any) is served too, on request.
    #[arg(long, env = "HERMES_ENCODER", value_enum, default_value_t = Tier::Minilm)]
    pub encoder: Tier,

    /// Padded tokens per encoder batch at most (must be at least the bundle's max_tokens).
    #[arg(long, env = "HERMES_MAX_BATCH_TOKENS", default_value_t = 8192)]
    pub max_batch_tokens: usize,
    /// Documents per encoder batch at most; 0 (the default) measures the fastest size (1 to
    /// 32) on this CPU at start-up, on the bundle's probe texts. Whether a batch is cheaper per
    /// document than one text alone depends on the CPU, so it is measured, not assumed.
    #[arg(long, env = "HERMES_MAX_BATCH_DOCS", default_value_t = 0)]
    pub max_batch_docs: usize,
    /// Milliseconds a free encoder waits for a batch to fill after its first document
    /// arrived. 0 (the default): it takes what is queued at once, and batches form from what
    /// arrives while the encoders are busy (continuous batching). Batching gains a few percent
    /// on CPUs, waiting costs more: see the README's "Performance" for figures.
    #[arg(long, env = "HERMES_MAX_WAIT_MS", default_value_t = 0)]
    pub max_wait_ms: u64,
    /// Documents waiting for the encoder at most; beyond that requests get 503 overloaded.
    /// Must be at least --max-docs-per-request; the default is 4 full-size requests, so a
    /// request that fits is refused only when several others are ahead of it.
    #[arg(long, env = "HERMES_MAX_QUEUE_DOCS", default_value_t = 4 * defaults::MAX_DOCS_PER_REQUEST)]
    pub max_queue_docs: usize,

    /// Documents per /v1/label request (texts per /v1/embed, embeddings per /v1/quantize) at most.
    #[arg(long, env = "HERMES_MAX_DOCS_PER_REQUEST", default_value_t = defaults::MAX_DOCS_PER_REQUEST)]
    pub max_docs_per_request: usize,
    /// Characters per text at most; longer texts are refused with 422 (texts are truncated
    /// only at the model's max_tokens).
    #[arg(long, env = "HERMES_MAX_TEXT_CHARS", default_value_t = defaults::MAX_TEXT_CHARS)]
    pub max_text_chars: usize,
    /// Characters per document id at most.
    #[arg(long, env = "HERMES_MAX_ID_CHARS", default_value_t = defaults::MAX_ID_CHARS)]
    pub max_id_chars: usize,
    /// Ids per /v1/codes/lookup request at most.
    #[arg(long, env = "HERMES_MAX_ITEMS_PER_REQUEST", default_value_t = defaults::MAX_ITEMS_PER_REQUEST)]
    pub max_items_per_request: usize,
    /// Request body bytes at most (after decompression); larger bodies get 413.
    #[arg(long, env = "HERMES_MAX_BODY_BYTES", default_value_t = 8 * 1024 * 1024)]
    pub max_body_bytes: usize,
    /// Seconds a request may take before it is answered 503 (the NDJSON stream's body is exempt).
    #[arg(long, env = "HERMES_REQUEST_TIMEOUT_S", default_value_t = 60)]
    pub request_timeout_s: u64,
    /// Lines of one NDJSON stream being labeled at once (bounds the stream's memory).
    #[arg(long, env = "HERMES_STREAM_CONCURRENCY", default_value_t = 64)]
    pub stream_concurrency: usize,

    /// Shared id store (`redis://host:port/db`): every labeled id's code is written there
    /// before the answer returns, and `/v1/codes/*` fall back to it, so every replica answers
    /// for every id and codes survive restarts. Default: none (ids live in the moka cache).
    #[arg(long, env = "HERMES_STORE")]
    pub store: Option<String>,
    /// Seconds a code lives in the shared store (0: forever).
    #[arg(long, env = "HERMES_STORE_TTL_S", default_value_t = 0)]
    pub store_ttl_s: u64,
    /// Milliseconds a store connection attempt or command may take before the request that
    /// needs it gets 503 unavailable.
    #[arg(long, env = "HERMES_STORE_TIMEOUT_MS", default_value_t = 1000)]
    pub store_timeout_ms: u64,

    /// Entries in the id → code cache (the L1 in front of --store).
    #[arg(long, env = "HERMES_CACHE_IDS", default_value_t = 1_000_000)]
    pub cache_ids: u64,
    /// Entries in the text → code cache.
    #[arg(long, env = "HERMES_CACHE_TEXTS", default_value_t = 100_000)]
    pub cache_texts: u64,
    /// Seconds a cache entry lives after it is written (0: no limit).
    #[arg(long, env = "HERMES_CACHE_TTL_S", default_value_t = 0)]
    pub cache_ttl_s: u64,
    /// Seconds a cache entry lives without being read (0: no limit).
    #[arg(long, env = "HERMES_CACHE_IDLE_S", default_value_t = 0)]
    pub cache_idle_s: u64,

    /// Bearer token required on /v1/* (health, readiness, metrics and docs stay open).
    #[arg(long, env = "HERMES_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    /// Origins allowed by CORS (repeat or comma-separate; "*" for any). Default: CORS off.
    #[arg(long, env = "HERMES_CORS_ORIGIN", value_delimiter = ',')]
    pub cors_origin: Vec<String>,
    /// Seconds to finish in-flight requests after SIGTERM/SIGINT before exiting anyway.
    #[arg(long, env = "HERMES_SHUTDOWN_TIMEOUT_S", default_value_t = 30)]
    pub shutdown_timeout_s: u64,
}

impl From<ServeArgs> for ServeConfig {
    fn from(a: ServeArgs) -> Self {
        let seconds = |s: u64| (s > 0).then(|| Duration::from_secs(s));
        ServeConfig {
            bundle: a.bundle,
            encoder: a.encoder,
            runtime: RuntimeConfig::from(&a.runtime),
            encoder_sessions: a.encoder_sessions,
            batching: Batching {
                max_batch_tokens: a.max_batch_tokens,
                max_batch_docs: (a.max_batch_docs > 0).then_some(a.max_batch_docs),
                max_wait: Duration::from_millis(a.max_wait_ms),
                max_queue_docs: a.max_queue_docs,
            },
            limits: crate::labeling::Limits {
                max_docs: a.max_docs_per_request,
                max_text_chars: a.max_text_chars,
                max_id_chars: a.max_id_chars,
                max_items: a.max_items_per_request,
                stream_concurrency: a.stream_concurrency,
            },
            http: crate::api::HttpConfig {
                max_body_bytes: a.max_body_bytes,
                request_timeout: Duration::from_secs(a.request_timeout_s),
                cors_origins: a.cors_origin,
            },
            store: a.store.map(|url| StoreConfig {
                url,
                ttl: seconds(a.store_ttl_s),
                timeout: Duration::from_millis(a.store_timeout_ms.max(1)),
            }),
            cache: CacheConfig {
                ids: a.cache_ids,
                texts: a.cache_texts,
                ttl: seconds(a.cache_ttl_s),
                idle: seconds(a.cache_idle_s),
            },
            api_key: a.api_key,
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[test]
    fn the_flags_defaults_are_the_library_defaults() {
        let Command::Serve(args) = Cli::parse_from(["hermes", "serve"]).command else {
            unreachable!()
        };
        let mut config = ServeConfig::from(*args);
        // ORT_DYLIB_PATH is a common variable of its own (the set-up exports it).
        config.runtime.ort_lib = None;
        assert_eq!(config, ServeConfig::new(DEFAULT_BUNDLE));
    }
}
