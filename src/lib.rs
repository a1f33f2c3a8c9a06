//! hermes: coarse-to-fine document codes `(c1, c2, c3)` for pre-training data mixtures.
//!
//! The pipeline (see `DESIGN.md` in the shared folder and the README):
//! text → [`encoder`] (MiniLM via ONNX Runtime) → [`quantize::Transform`] →
//! [`quantize::ResidualQuantizer`] → code. [`fit`] learns the transform and codebooks,
//! [`eval`] measures them, [`bundle`] stores and verifies them; [`server`] serves them over
//! HTTP ([`api`]) with dynamic batching ([`batch`]) and caches ([`cache`]).

pub mod api;
pub mod batch;
pub mod bundle;
pub mod cache;
pub mod cli;
pub mod config;
pub mod corpus;
pub mod encoder;
pub mod eval;
pub mod fit;
pub mod linalg;
pub mod quantize;
pub mod runtime;
pub mod server;
pub mod service;
