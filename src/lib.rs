//! hermes: coarse-to-fine document codes `(c1, c2, c3)` for pre-training data mixtures.
//!
//! The pipeline (docs/pipeline.md):
//! text → [`encoder`] (an [`encoder::Embedder`]: MiniLM via ONNX Runtime) →
//! [`quantize::CodeSpace`] (transform + residual quantizer) → code.
//!
//! - [`fit`] learns the transform and codebooks ([`kmeans`]); [`eval`] measures them;
//!   [`bundle`] stores and verifies them. [`quantize`] also owns what everyone shares about
//!   codes: labels, packed prefixes and the documented row key.
//! - [`cards`] says what each bucket holds (terms, exemplars, shares) and renders the atlas
//!   page: written by the describe and fit jobs, stored in the bundle, served by the API.
//! - [`labeling`] is the core without HTTP, assembled once by [`labeling::build`]: the one
//!   labeling path (texts through the [`batch`]er to codes) and the service on top, with its
//!   content [`cache`] and id [`store`].
//! - Two long-running services stand side by side on that core and never import each other:
//!   [`server`] (the process around [`api`], which is HTTP alone) and [`stream`] (the
//!   Kafka / Redis Streams consumer). What both need (signals, the metrics recorder, health
//!   routes) is in [`ops`], below them.
//! - [`jobs`] are the corpus-scale batch jobs (label, mix, describe, fit) over [`corpus`]
//!   files; [`cli`] maps flags to all of the above.

pub mod api;
pub mod batch;
pub mod bundle;
pub mod cache;
pub mod cards;
pub mod cli;
pub mod corpus;
pub mod descriptors;
pub mod encoder;
pub mod eval;
pub mod fit;
#[doc(hidden)]
pub mod fuzzing;
pub mod jobs;
pub mod keyspace;
pub mod kmeans;
pub mod labeling;
pub mod linalg;
pub mod logging;
pub mod ops;
pub mod quantize;
pub mod server;
pub mod store;
pub mod stream;
pub mod tier;
