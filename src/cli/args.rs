//! The command line: one clap struct per subcommand, every flag also read from `HERMES_<FLAG>`.
//! Flags that several commands take are defined once, in the groups of [`super::groups`];
//! each group converts itself into the library's configuration (`ServeArgs` → [`ServeConfig`]).

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use super::groups::{
    CacheArgs, CorpusArgs, DEFAULT_BUNDLE, FieldArgs, JsonlCorpusArgs, LabelerArgs, LimitArgs,
    ModelArgs, RuntimeArgs, ShardArgs, ShutdownArgs, StoreArgs, TextCacheArgs, TextLimitArgs,
    TierArgs,
};
use crate::labeling::Tiers;
use crate::labeling::limits::defaults;
use crate::logging::LogFormat;
use crate::server::ServeConfig;

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
    /// Serve the HTTP API (docs/http-api.md) for one bundle.
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
    /// A swarm of mixtures around a base spec, in Olmix's files (docs/search.md).
    Swarm(SwarmArgs),
    /// Fit the mixing law to a swarm's metrics and propose weights: optimal.toml (docs/search.md).
    FitMix(FitMixArgs),
    /// Bucket cards (terms, exemplars, shares) of a labeled corpus: cards.json and atlas.html.
    Describe(DescribeArgs),
    /// Label a Kafka topic or a Redis stream into another, at least once (docs/streams.md).
    Consume(Box<ConsumeArgs>),
}

/// Everything `hermes serve` can be told (see [`ServeConfig`]).
#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub labeler: LabelerArgs,
    /// Address to listen on (0.0.0.0 in a container).
    #[arg(long, env = "HERMES_HOST", default_value = "127.0.0.1")]
    pub host: String,
    /// Port; 0 picks a free one (the chosen address is printed on stdout).
    #[arg(long, env = "HERMES_PORT", default_value_t = 8080)]
    pub port: u16,

    /// Padded tokens per encoder batch at most (must be at least the bundle's max_tokens).
    #[arg(long, env = "HERMES_MAX_BATCH_TOKENS", default_value_t = 8192)]
    pub max_batch_tokens: usize,
    /// Milliseconds a free encoder waits for a batch to fill after its first document
    /// arrived. 0 (the default): it takes what is queued at once, and batches form from what
    /// arrives while the encoders are busy (continuous batching). Batching gains a few percent
    /// on CPUs, waiting costs more: see docs/performance.md for figures.
    #[arg(long, env = "HERMES_MAX_WAIT_MS", default_value_t = 0)]
    pub max_wait_ms: u64,
    /// Documents waiting for the encoder at most; beyond that requests get 503 overloaded.
    /// Must be at least --max-docs-per-request; the default is 4 full-size requests, so a
    /// request that fits is refused only when several others are ahead of it.
    #[arg(long, env = "HERMES_MAX_QUEUE_DOCS", default_value_t = 4 * defaults::MAX_DOCS_PER_REQUEST)]
    pub max_queue_docs: usize,

    #[command(flatten)]
    pub limits: LimitArgs,
    /// Request body bytes at most (after decompression); larger bodies get 413.
    #[arg(long, env = "HERMES_MAX_BODY_BYTES", default_value_t = 8 * 1024 * 1024)]
    pub max_body_bytes: usize,
    /// Seconds a request may take before it is answered 503 (the NDJSON stream's body is exempt).
    #[arg(long, env = "HERMES_REQUEST_TIMEOUT_S", default_value_t = 60)]
    pub request_timeout_s: u64,
    /// Seconds a request body may send nothing before it is answered 408 request_timeout and
    /// its connection closed.
    #[arg(long, env = "HERMES_BODY_TIMEOUT_S", default_value_t = 30)]
    pub body_timeout_s: u64,
    /// Seconds a connection may take to send a complete request head (from its accept, or from
    /// the first byte of a later request) before it is closed.
    #[arg(long, env = "HERMES_HEADER_TIMEOUT_S", default_value_t = 10)]
    pub header_timeout_s: u64,
    /// Seconds a keep-alive connection may sit idle (no request in flight, no bytes) before
    /// it is closed.
    #[arg(long, env = "HERMES_IDLE_TIMEOUT_S", default_value_t = 60)]
    pub idle_timeout_s: u64,
    /// Connections open at most. At the cap a new connection closes the one idle longest
    /// (no request in flight), or is itself closed when none is idle.
    #[arg(long, env = "HERMES_MAX_CONNECTIONS", default_value_t = 10_000)]
    pub max_connections: usize,

    #[command(flatten)]
    pub store: StoreArgs,
    #[command(flatten)]
    pub cache: CacheArgs,

    /// Bearer token required on /v1/* (health, readiness, metrics and docs stay open).
    #[arg(long, env = "HERMES_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    /// Origins allowed by CORS (repeat or comma-separate; "*" for any). Default: CORS off.
    #[arg(long, env = "HERMES_CORS_ORIGIN", value_delimiter = ',')]
    pub cors_origin: Vec<String>,
    #[command(flatten)]
    pub shutdown: ShutdownArgs,
}

impl From<ServeArgs> for ServeConfig {
    fn from(a: ServeArgs) -> Self {
        let mut core = a.labeler.core(Tiers::All);
        core.batching.max_batch_tokens = a.max_batch_tokens;
        core.batching.max_wait = Duration::from_millis(a.max_wait_ms);
        core.batching.max_queue_docs = a.max_queue_docs;
        core.limits = a.limits.limits();
        core.store = a.store.config();
        core.cache = a.cache.config();
        ServeConfig {
            core,
            http: crate::api::HttpConfig {
                max_body_bytes: a.max_body_bytes,
                request_timeout: Duration::from_secs(a.request_timeout_s),
                body_timeout: Duration::from_secs(a.body_timeout_s),
                cors_origins: a.cors_origin,
            },
            conn: crate::server::ConnLimits {
                header_timeout: Duration::from_secs(a.header_timeout_s),
                idle_timeout: Duration::from_secs(a.idle_timeout_s),
                max_connections: a.max_connections,
            },
            api_key: a.api_key,
        }
    }
}

/// Everything `hermes consume` can be told (see [`crate::stream::ConsumeJob`]).
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
    #[command(flatten)]
    pub labeler: LabelerArgs,
    #[command(flatten)]
    pub fields: FieldArgs,
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
    /// Redis sources: another consumer of the group idle longer than this (gone for good)
    /// has its pending entries claimed and processed here, and is then removed from the
    /// group (XGROUP DELCONSUMER).
    #[arg(long, env = "HERMES_CONSUMER_IDLE_TIMEOUT_S", default_value_t = 3600,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub consumer_idle_timeout_s: u64,
    #[command(flatten)]
    pub limits: TextLimitArgs,
    #[command(flatten)]
    pub store: StoreArgs,
    #[command(flatten)]
    pub cache: TextCacheArgs,
    #[command(flatten)]
    pub shutdown: ShutdownArgs,
}

/// Everything `hermes label` can be told (see [`crate::jobs::label::LabelJob`]).
#[derive(Debug, Args)]
#[command(
    mut_arg("encoder_sessions", |a| a.default_value("1")),
    mut_arg("input", |a| a.required(true))
)]
pub struct LabelArgs {
    #[command(flatten)]
    pub labeler: LabelerArgs,
    #[command(flatten)]
    pub corpus: CorpusArgs,
    /// Output directory: codes/<input>.parquet and done/<input>.json.
    #[arg(long, env = "HERMES_OUT")]
    pub out: PathBuf,
    /// Input fields copied into the codes files as columns of the same name (numbers as
    /// float64, strings as utf8, booleans as bool; null where a row lacks the field): how a
    /// quality score or a token count reaches `hermes mix`.
    #[arg(long, env = "HERMES_CARRY", num_args = 1.., value_delimiter = ',')]
    pub carry: Vec<String>,
    #[command(flatten)]
    pub shard: ShardArgs,
    /// Documents read and labeled per chunk (bounds memory with 4 chunks in flight).
    #[arg(long, env = "HERMES_CHUNK_DOCS", default_value_t = 256)]
    pub chunk_docs: usize,
    /// Characters of a document labeled at most: a longer text is cut as it is read, before
    /// tokenization (its row is marked truncated; `bytes` keeps the whole length). The
    /// encoders read at most 256–512 tokens, so only pathological texts change code.
    #[arg(long, env = "HERMES_MAX_DOC_CHARS", default_value_t = 100_000)]
    pub max_doc_chars: usize,
    /// A Hugging Face tokenizer.json (BPE, WordPiece, Unigram): adds the column `tokens`, the
    /// ids it gives each document's whole text (before --max-doc-chars), with no special
    /// tokens and no truncation or padding, whatever the file says. The done markers record
    /// its sha256; not with --carry tokens.
    #[arg(long, env = "HERMES_COUNT_TOKENS", value_name = "TOKENIZER_JSON")]
    pub count_tokens: Option<PathBuf>,
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

#[derive(Debug, Args)]
pub struct MixArgs {
    /// `hermes label` output directories (their codes/ and done/ are read).
    #[arg(long, env = "HERMES_CODES", required = true, num_args = 1..)]
    pub codes: Vec<PathBuf>,
    /// The mixture spec (TOML; see docs/mix.md).
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
    #[command(flatten)]
    pub shard: ShardArgs,
}

#[derive(Debug, Args)]
pub struct SwarmArgs {
    /// `hermes label` output directories (their codes/ and done/ are read).
    #[arg(long, env = "HERMES_CODES", required = true, num_args = 1..)]
    pub codes: Vec<PathBuf>,
    /// The base mixture spec (TOML, as for `hermes mix`); its [stage1] is drawn per variant.
    #[arg(long, env = "HERMES_SPEC")]
    pub spec: PathBuf,
    /// How many variants to draw.
    #[arg(long, env = "HERMES_VARIANTS")]
    pub variants: usize,
    /// Output directory: priors.json, ratios.csv, swarm.json and variants/.
    #[arg(long, env = "HERMES_OUT")]
    pub out: PathBuf,
    /// Seed of the draws (variant i uses a generator seeded by (seed, i)).
    #[arg(long, env = "HERMES_SEED", default_value_t = 0)]
    pub seed: u64,
    /// Smallest Dirichlet strength (drawn log-uniformly per variant; small: far from the prior).
    #[arg(long, env = "HERMES_MIN_STRENGTH", default_value_t = 0.1)]
    pub min_strength: f64,
    /// Largest Dirichlet strength (large: close to the prior).
    #[arg(long, env = "HERMES_MAX_STRENGTH", default_value_t = 5.0)]
    pub max_strength: f64,
    /// Weights below this become 0 (the rest renormalised).
    #[arg(long, env = "HERMES_MINIMUM_WEIGHT", default_value_t = 0.002)]
    pub minimum_weight: f64,
    /// Keep these prefix totals (TOML `weights = { "17" = 0.1, ... }` at a shallower depth) and
    /// draw only the split inside each.
    #[arg(long, env = "HERMES_PIN")]
    pub pin: Option<PathBuf>,
    /// Also write every variant's plan and selection under variants/<name>/, as `hermes mix`
    /// would, with the codes read once for all variants.
    #[arg(long, env = "HERMES_SELECT")]
    pub select: bool,
    /// Seconds between progress lines when stderr is not a terminal.
    #[arg(long, env = "HERMES_PROGRESS_INTERVAL_S", default_value_t = 10)]
    pub progress_interval_s: u64,
}

#[derive(Debug, Args)]
pub struct FitMixArgs {
    /// A `hermes swarm` output directory.
    #[arg(long, env = "HERMES_SWARM")]
    pub swarm: PathBuf,
    /// CSV with a `run` column and one column per metric (a loss: lower is better).
    #[arg(long, env = "HERMES_METRICS")]
    pub metrics: PathBuf,
    /// Output directory: fit.json, optimal.toml, optimal.json and fit.svg.
    #[arg(long, env = "HERMES_OUT")]
    pub out: PathBuf,
    /// Weight of the pull toward the prior: objective + kl · KL(w ‖ p).
    #[arg(long, env = "HERMES_KL", default_value_t = 0.1)]
    pub kl: f64,
    /// Keep the last K runs (by index) out of the fit and report how well it predicts them.
    #[arg(long, env = "HERMES_HOLDOUT", default_value_t = 0)]
    pub holdout: usize,
    /// TOML table of metric weights (`metric = weight`); default: every metric weighs 1.
    #[arg(long, env = "HERMES_OBJECTIVE")]
    pub objective: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct DescribeArgs {
    /// A `hermes label` output directory (with --merge: default, what the tasks recorded).
    #[arg(long, env = "HERMES_CODES")]
    pub codes: Option<PathBuf>,
    #[command(flatten)]
    pub corpus: CorpusArgs,
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
    #[command(flatten)]
    pub shard: ShardArgs,
    /// Merge the array tasks' parts under --out into the cards.
    #[arg(long, env = "HERMES_MERGE")]
    pub merge: bool,
}

#[derive(Debug, Args)]
pub struct FitArgs {
    #[command(flatten)]
    pub corpus: JsonlCorpusArgs,
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
    /// Seed for k-means++ seeding: same seed, same corpus, same machine → same bytes.
    #[arg(long, env = "HERMES_SEED", default_value_t = 0)]
    pub seed: u64,
    /// Lloyd iterations per level at most.
    #[arg(long, env = "HERMES_MAX_ITER", default_value_t = 100)]
    pub max_iter: usize,
    /// Transform output dimension: the top principal components kept (0 keeps all). 128 is
    /// the measured default (docs/bundle.md: same L1 AMI as 384, a third of the quantizer's work).
    #[arg(long, env = "HERMES_DIM", default_value_t = 128)]
    pub dim: usize,
    /// Whitening strength in [0, 1] (0: rotation only; 1: full whitening).
    #[arg(long, env = "HERMES_WHITEN", default_value_t = 0.0)]
    pub whiten: f32,
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
    #[command(flatten)]
    pub tier: TierArgs,
    #[command(flatten)]
    pub corpus: JsonlCorpusArgs,
    /// JSON field holding the reference label ("Uncategorized" and empty labels are not scored).
    #[arg(long, env = "HERMES_LABEL_FIELD", default_value = "label")]
    pub label_field: String,
    /// Write the report as JSON here too.
    #[arg(long, env = "HERMES_JSON")]
    pub json: Option<PathBuf>,
    /// Seed of the flat k-means baseline.
    #[arg(long, env = "HERMES_SEED", default_value_t = 0)]
    pub seed: u64,
}

#[derive(Debug, Args)]
pub struct EmbedArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Token budget per text; longer texts are truncated. Default: the bundle's max_tokens.
    #[arg(long, env = "HERMES_MAX_TOKENS")]
    pub max_tokens: Option<usize>,
    /// Texts to embed.
    #[arg(required = true)]
    pub texts: Vec<String>,
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use clap::{CommandFactory, Parser};

    use super::*;
    use crate::labeling::CoreConfig;

    fn parse(args: &[&str]) -> Command {
        Cli::try_parse_from(std::iter::once("hermes").chain(args.iter().copied()))
            .unwrap_or_else(|e| panic!("{args:?}: {e}"))
            .command
    }

    #[test]
    fn the_command_line_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn the_flags_defaults_are_the_library_defaults() {
        let Command::Serve(args) = Cli::parse_from(["hermes", "serve"]).command else {
            unreachable!()
        };
        let mut config = ServeConfig::from(*args);
        // ORT_DYLIB_PATH is a common variable of its own (the set-up exports it).
        config.core.runtime.ort_lib = None;
        assert_eq!(config, ServeConfig::new(DEFAULT_BUNDLE));
    }

    /// The defaults a command's group carries, or the command's own where it differs.
    #[test]
    fn each_command_keeps_its_defaults() {
        let Command::Consume(c) = parse(&["consume", "--source", "s", "--sink", "k"]) else {
            unreachable!()
        };
        let mut core = c.labeler.core(Tiers::One);
        core.runtime.ort_lib = None;
        let mut expected = CoreConfig::serving(DEFAULT_BUNDLE);
        expected.tiers = Tiers::One;
        assert_eq!(core, expected);
        assert_eq!(
            (c.cache.cache_texts, c.shutdown.shutdown_timeout_s),
            (100_000, 30)
        );
        let limits = (c.limits.max_text_chars, c.limits.max_id_chars);
        assert_eq!(limits, (defaults::MAX_TEXT_CHARS, defaults::MAX_ID_CHARS));
        assert_eq!(c.store.config(), None);
        let fields = c.fields.fields(Vec::new());
        assert_eq!((fields.text.as_str(), fields.id.as_str()), ("text", "id"));

        let Command::Label(l) = parse(&["label", "--input", "i", "--out", "o"]) else {
            unreachable!()
        };
        assert_eq!(
            l.labeler.encoder_sessions, 1,
            "label runs one session by default"
        );
        assert_eq!(l.labeler.max_batch_docs(), None);
        assert_eq!(l.labeler.tier.model.bundle, PathBuf::from(DEFAULT_BUNDLE));
        assert_eq!(l.corpus.input, [PathBuf::from("i")]);
        assert_eq!(l.shard.progress_interval(), Duration::from_secs(10));
        assert_eq!((l.shard.shard_index, l.shard.shard_count), (None, None));

        let Command::Describe(d) = parse(&["describe", "--out", "o"]) else {
            unreachable!()
        };
        assert!(
            d.corpus.input.is_empty(),
            "describe --merge needs no --input"
        );
        assert_eq!(d.corpus.fields.id_field, "id");

        let Command::Eval(e) = parse(&["eval", "--input", "l.jsonl"]) else {
            unreachable!()
        };
        assert_eq!(e.corpus.batch, 32);
        assert_eq!(e.corpus.text.text_field, "text");
        assert_eq!(e.tier.core(Tiers::One).encoder, crate::tier::Tier::Minilm);

        let Command::Fit(f) = parse(&["fit", "--input", "c.jsonl", "--out", "b"]) else {
            unreachable!()
        };
        assert_eq!((f.corpus.batch, f.corpus.embeddings), (32, None));

        let Command::Embed(m) = parse(&["embed", "t"]) else {
            unreachable!()
        };
        assert_eq!(m.model.bundle, PathBuf::from(DEFAULT_BUNDLE));
        assert_eq!(m.model.runtime.intra_threads, 0);
    }

    #[test]
    fn label_needs_an_input_and_describe_does_not() {
        let label = Cli::try_parse_from(["hermes", "label", "--out", "o"]);
        assert!(label.is_err_and(|e| e.kind() == clap::error::ErrorKind::MissingRequiredArgument));
        assert!(Cli::try_parse_from(["hermes", "describe", "--out", "o"]).is_ok());
    }

    /// Each flag reads `HERMES_<FLAG>` (`--ort-lib`: ONNX Runtime's own `ORT_DYLIB_PATH`), as
    /// docs/cli.md says, and explains itself.
    #[test]
    fn every_flag_has_its_variable_and_a_help_text() {
        for cmd in Cli::command().get_subcommands() {
            for arg in cmd.get_arguments().filter(|a| !a.is_positional()) {
                let long = arg.get_long().unwrap();
                let env = match long {
                    "ort-lib" => "ORT_DYLIB_PATH".to_string(),
                    _ => format!("HERMES_{}", long.to_uppercase().replace('-', "_")),
                };
                let name = cmd.get_name();
                assert_eq!(arg.get_env(), Some(env.as_ref()), "{name} --{long}");
                assert!(arg.get_help().is_some(), "{name} --{long} has no help");
            }
        }
    }

    /// A flag that several commands take is one flag with one help text; the names below are
    /// different flags that happen to share a name (what --out holds, what --depth counts, what
    /// --seed seeds depends on the command).
    #[test]
    fn a_flag_name_has_one_help_text() {
        // `spec`: a mixture for mix, the base of the variants for swarm.
        const HOMONYMS: [&str; 7] = [
            "out",
            "depth",
            "seed",
            "input",
            "codes",
            "max-tokens",
            "spec",
        ];
        let mut helps: BTreeMap<String, BTreeMap<String, Vec<String>>> = BTreeMap::new();
        for cmd in Cli::command().get_subcommands() {
            for arg in cmd.get_arguments().filter(|a| !a.is_positional()) {
                let long = arg.get_long().unwrap().to_string();
                let help = arg.get_help().map(|h| h.to_string()).unwrap_or_default();
                let commands = helps.entry(long).or_default().entry(help).or_default();
                commands.push(cmd.get_name().to_string());
            }
        }
        for (long, texts) in helps {
            if texts.len() > 1 && !HOMONYMS.contains(&long.as_str()) {
                panic!("--{long} has {} help texts: {texts:#?}", texts.len());
            }
        }
    }
}
