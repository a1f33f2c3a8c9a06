//! [`ServeConfig`]: everything `hermes serve` can be told, as plain library types: the
//! labeling core's [`CoreConfig`] plus what only HTTP needs. The CLI builds it from its flags
//! (`From<ServeArgs>`); tests build it from [`ServeConfig::new`] and change the fields they
//! care about.

use std::path::PathBuf;
use std::time::Duration;

use crate::api::HttpConfig;
use crate::bundle::RuntimeConfig;
use crate::labeling::limits::defaults;
use crate::labeling::{Batching, CacheConfig, Calibration, CoreConfig, Limits, Tiers};
use crate::tier::Tier;

/// The server's one configuration struct.
#[derive(Debug, Clone, PartialEq)]
pub struct ServeConfig {
    /// The labeling core: bundle, tiers, batching, limits, store, caches.
    pub core: CoreConfig,
    /// Body size, request and body timeouts, CORS.
    pub http: HttpConfig,
    /// What a connection may hold: header and idle timeouts, the connection cap.
    pub conn: ConnLimits,
    /// Bearer token required on `/v1/*`.
    pub api_key: Option<String>,
}

/// The limits on connections (`server::conn`), against clients that open sockets and then
/// send nothing, or a request head byte by byte.
#[derive(Debug, Clone, PartialEq)]
pub struct ConnLimits {
    /// Time from a connection's accept, or from the first byte of a later request, to the end
    /// of its request head; past it the connection is closed.
    pub header_timeout: Duration,
    /// Time a keep-alive connection may sit with no request in flight and no bytes; past it
    /// the connection is closed.
    pub idle_timeout: Duration,
    /// Connections open at most; at the cap, the one idle longest makes room (none idle: the
    /// new one is closed).
    pub max_connections: usize,
}

/// Documents a worker sorts together when that many are queued (see `BatchConfig`): the
/// in-process ceiling sorts chunks of 256, and sorting them under the queue lock takes
/// microseconds.
pub const SERVE_WINDOW_DOCS: usize = 256;

impl CoreConfig {
    /// The defaults of `hermes serve` (and `hermes consume`) for `bundle`: every tier, one
    /// encoder session per core, the batch size measured on the bundle's probes.
    pub fn serving(bundle: impl Into<PathBuf>) -> Self {
        Self {
            bundle: bundle.into(),
            encoder: Tier::Minilm,
            tiers: Tiers::All,
            runtime: RuntimeConfig::default(),
            encoder_sessions: 0,
            batching: Batching {
                max_batch_tokens: 8192,
                max_batch_docs: None,
                max_wait: Duration::ZERO,
                max_queue_docs: 4 * defaults::MAX_DOCS_PER_REQUEST,
                min_window_docs: SERVE_WINDOW_DOCS,
            },
            calibration: Calibration::Probes,
            limits: Limits {
                max_docs: defaults::MAX_DOCS_PER_REQUEST,
                max_text_chars: defaults::MAX_TEXT_CHARS,
                max_id_chars: defaults::MAX_ID_CHARS,
                max_items: defaults::MAX_ITEMS_PER_REQUEST,
                stream_concurrency: 64,
            },
            store: None,
            cache: CacheConfig {
                ids: 1_000_000,
                texts: 100_000,
                ttl: None,
                idle: None,
            },
        }
    }
}

impl ServeConfig {
    /// The defaults of `hermes serve` for `bundle` (a test checks that the flags' defaults
    /// give the same config).
    pub fn new(bundle: impl Into<PathBuf>) -> Self {
        Self {
            core: CoreConfig::serving(bundle),
            http: HttpConfig {
                max_body_bytes: 8 * 1024 * 1024,
                request_timeout: Duration::from_secs(60),
                body_timeout: Duration::from_secs(30),
                cors_origins: Vec::new(),
            },
            conn: ConnLimits {
                header_timeout: Duration::from_secs(10),
                idle_timeout: Duration::from_secs(60),
                max_connections: 10_000,
            },
            api_key: None,
        }
    }
}
