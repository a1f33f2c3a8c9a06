//! The command line: one clap struct per subcommand, every flag also read from `HERMES_<FLAG>`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Default bundle, relative to the working directory (the repository root for `make serve`).
pub const DEFAULT_BUNDLE: &str = "models/minilm-wiki";

#[derive(Debug, Parser)]
#[command(
    name = "hermes",
    version,
    about = "Coarse-to-fine document codes for pre-training data mixtures"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Embed texts with the bundle's encoder and print the vectors (a smoke test of the stack).
    Embed(EmbedArgs),
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
}

#[derive(Debug, Args)]
pub struct EmbedArgs {
    /// Bundle directory holding encoder.onnx and tokenizer.json.
    #[arg(long, env = "HERMES_BUNDLE", default_value = DEFAULT_BUNDLE)]
    pub bundle: PathBuf,
    /// Token budget per text; longer texts are truncated.
    #[arg(long, env = "HERMES_MAX_TOKENS", default_value_t = 256)]
    pub max_tokens: usize,
    #[command(flatten)]
    pub runtime: RuntimeArgs,
    /// Texts to embed.
    #[arg(required = true)]
    pub texts: Vec<String>,
}
