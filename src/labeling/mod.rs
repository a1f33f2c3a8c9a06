//! The core of hermes, without HTTP: texts → codes.
//!
//! - [`build`] assembles the core once from a [`CoreConfig`] (bundle, tiers, batchers,
//!   caches, id store, calibration): `serve`, `consume`, `label` and `eval` all start there.
//! - [`Labeler`]: texts through the batcher (shared encoder sessions), the transform and the
//!   quantizer, to full codes with truncation flags. The one labeling path: the HTTP
//!   service, `hermes eval`, `hermes label` and the start-up probe check all use it.
//! - [`open`]: loads and verifies a bundle, starts its batcher, checks the probes.
//! - [`Service`]: what the HTTP API does (limits, content cache, id store) on top of a
//!   labeler; it returns its own [`ServiceError`], which `api/` alone maps to statuses.
//! - [`limits`]: request limits and their defaults.

pub mod core;
mod labeler;
pub mod limits;
mod service;

pub use core::{
    Batching, CacheConfig, Calibration, Core, CoreConfig, CoreError, STATIC_BATCH_DOCS,
    StoreConfig, Tiers, build,
};
pub use labeler::{LabelError, Labeled, Labeler, Opened, open};
pub use limits::Limits;
pub use service::{Document, LabeledDoc, Service, ServiceError, TierService};
