//! hermes: coarse-to-fine document codes `(c1, c2, c3)` for pre-training data mixtures.
//!
//! The pipeline (see `DESIGN.md` in the shared folder and the README):
//! text → [`encoder`] (an [`encoder::Embedder`]: MiniLM via ONNX Runtime) →
//! [`quantize::CodeSpace`] (transform + residual quantizer) → code.
//!
//! - [`fit`] learns the transform and codebooks ([`kmeans`]); [`eval`] measures them;
//!   [`bundle`] stores and verifies them.
//! - [`labeling`] is the core without HTTP: the one labeling path (texts through the
//!   [`batch`]er to codes) and the service the API calls, with its content [`cache`] and
//!   id [`store`].
//! - [`api`] is HTTP alone (routes, schemas, error statuses); [`server`] is the process
//!   around it (bind, load, drain). [`cli`] holds the commands; [`corpus`] reads corpora.

pub mod api;
pub mod batch;
pub mod bundle;
pub mod cache;
pub mod cli;
pub mod corpus;
pub mod encoder;
pub mod eval;
pub mod fit;
pub mod jobs;
pub mod keyspace;
pub mod kmeans;
pub mod labeling;
pub mod linalg;
pub mod logging;
pub mod quantize;
pub mod server;
pub mod store;
pub mod tier;
