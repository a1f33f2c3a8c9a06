//! [`ServeConfig`]: everything `hermes serve` can be told, as plain library types. The CLI
//! builds it from its flags (`From<ServeArgs>`); tests build it directly from
//! [`ServeConfig::new`] and change the fields they care about.

use std::path::PathBuf;
use std::time::Duration;

use crate::api::HttpConfig;
use crate::bundle::RuntimeConfig;
use crate::labeling::Limits;
use crate::labeling::limits::defaults;
use crate::tier::Tier;

/// The server's one configuration struct.
#[derive(Debug, Clone, PartialEq)]
pub struct ServeConfig {
    /// The bundle directory to serve.
    pub bundle: PathBuf,
    /// The tier answers use when a request names none; the bundle's other tier is served too.
    pub encoder: Tier,
    /// ONNX Runtime library, threads and spinning.
    pub runtime: RuntimeConfig,
    /// Encoder sessions, one batching worker each; 0: one per core.
    pub encoder_sessions: usize,
    /// Batching of the minilm tier.
    pub batching: Batching,
    /// What one request may ask for.
    pub limits: Limits,
    /// Body size, request timeout and CORS.
    pub http: HttpConfig,
    /// The shared id store (`--store`); `None` keeps ids in the process only.
    pub store: Option<StoreConfig>,
    /// The moka caches: the text cache, and the id cache (the L1 in front of the store).
    pub cache: CacheConfig,
    /// Bearer token required on `/v1/*`.
    pub api_key: Option<String>,
}

/// How the minilm tier's documents are grouped into encoder batches.
#[derive(Debug, Clone, PartialEq)]
pub struct Batching {
    /// Padded tokens per batch at most (at least the bundle's max_tokens).
    pub max_batch_tokens: usize,
    /// Documents per batch at most; `None` measures the fastest size at start-up.
    pub max_batch_docs: Option<usize>,
    /// How long a free encoder waits for a batch to fill (0: continuous batching).
    pub max_wait: Duration,
    /// Documents waiting at most; beyond that requests get 503 overloaded.
    pub max_queue_docs: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub struct StoreConfig {
    /// `redis://host:port/db`.
    pub url: String,
    /// Expiry of written codes; `None` keeps them.
    pub ttl: Option<Duration>,
    /// How long a connection attempt or command may take before the request gets 503.
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

impl ServeConfig {
    /// The defaults of `hermes serve` for `bundle` (a test checks that the flags' defaults
    /// give the same config).
    pub fn new(bundle: impl Into<PathBuf>) -> Self {
        Self {
            bundle: bundle.into(),
            encoder: Tier::Minilm,
            runtime: RuntimeConfig::default(),
            encoder_sessions: 0,
            batching: Batching {
                max_batch_tokens: 8192,
                max_batch_docs: None,
                max_wait: Duration::ZERO,
                max_queue_docs: 4 * defaults::MAX_DOCS_PER_REQUEST,
            },
            limits: Limits {
                max_docs: defaults::MAX_DOCS_PER_REQUEST,
                max_text_chars: defaults::MAX_TEXT_CHARS,
                max_id_chars: defaults::MAX_ID_CHARS,
                max_items: defaults::MAX_ITEMS_PER_REQUEST,
                stream_concurrency: 64,
            },
            http: HttpConfig {
                max_body_bytes: 8 * 1024 * 1024,
                request_timeout: Duration::from_secs(60),
                cors_origins: Vec::new(),
            },
            store: None,
            cache: CacheConfig {
                ids: 1_000_000,
                texts: 100_000,
                ttl: None,
                idle: None,
            },
            api_key: None,
        }
    }
}
