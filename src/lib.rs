//! hermes: coarse-to-fine document codes `(c1, c2, c3)` for pre-training data mixtures.
//!
//! The pipeline (see `DESIGN.md` in the shared folder and the README):
//! text → [`encoder`] (MiniLM via ONNX Runtime) → learned transform → residual quantizer → code.

pub mod cli;
pub mod config;
pub mod encoder;
pub mod runtime;
