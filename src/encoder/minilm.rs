//! MiniLM through ONNX Runtime: the reference [`Embedder`] (`--encoder minilm`).
//!
//! [`MiniLm`] owns a tokenizer and a small pool of ONNX Runtime sessions. `ort` sessions need
//! `&mut self` to run, so each batch checks a session out of the pool instead of holding a
//! global lock across requests.

use std::path::{Path, PathBuf};

use ndarray::Array2;
use ort::session::Session;
use ort::session::builder::GraphOptimizationLevel;
use ort::value::TensorRef;

use super::pool::SessionPool;
use super::{Embedder, EncoderError, Tier, TokenizedText, Tokenizer};

/// Everything the encoder needs to start.
#[derive(Debug, Clone)]
pub struct EncoderConfig {
    /// `encoder.onnx`: inputs `input_ids`, `attention_mask`, `token_type_ids`, output `sentence_embedding`.
    pub model: PathBuf,
    /// HuggingFace `tokenizer.json` that matches the model.
    pub tokenizer: PathBuf,
    /// Token budget per text, special tokens included; longer texts are truncated and flagged.
    pub max_tokens: usize,
    /// ONNX Runtime intra-op threads per session (0 lets ONNX Runtime choose).
    pub intra_threads: usize,
    /// Sessions in the pool: how many batches may run at the same time.
    pub sessions: usize,
    /// Explicit ONNX Runtime library (`--ort-lib`); `None` searches the set-up cache, then the system.
    pub ort_lib: Option<PathBuf>,
    /// ONNX Runtime's CPU arena and memory pattern. Off for hermes (see [`MiniLm::load`]);
    /// `make bench` turns them on to check that the ceiling it reports is not beaten by them.
    pub arena: bool,
    /// ONNX Runtime's intra-op threads spin between parallel sections: faster when nothing
    /// else needs the cores (batch jobs), slower when something does (the server's HTTP and
    /// tokenizer threads). See `--ort-spinning`.
    pub spinning: bool,
}

impl EncoderConfig {
    /// Defaults for a bundle directory holding `encoder.onnx` and `tokenizer.json`.
    pub fn for_dir(dir: &Path) -> Self {
        Self {
            model: dir.join("encoder.onnx"),
            tokenizer: dir.join("tokenizer.json"),
            max_tokens: 256,
            intra_threads: 0,
            sessions: 1,
            ort_lib: None,
            arena: false,
            spinning: true,
        }
    }
}

/// The loaded ONNX encoder; share it with `Arc<MiniLm>` or as `Arc<dyn Embedder>`.
pub struct MiniLm {
    /// Truncates at the bundle's `max_tokens` and flags what it cut.
    tokenizer: Tokenizer,
    /// Sessions checked out one batch at a time.
    pool: SessionPool,
    /// Width of `sentence_embedding`, read from the graph.
    dim: usize,
}

impl MiniLm {
    /// Loads the tokenizer and `sessions` copies of the model, then checks the output width.
    pub fn load(config: &EncoderConfig) -> Result<Self, EncoderError> {
        let tokenizer = Tokenizer::from_file(&config.tokenizer, config.max_tokens)?;
        let env = super::ort_runtime::environment(config.ort_lib.as_deref())
            .map_err(EncoderError::Runtime)?;
        let bytes = std::fs::read(&config.model).map_err(|e| EncoderError::Load {
            file: config.model.clone(),
            message: format!("cannot read: {e}"),
        })?;
        let load_err = |e: ort::Error| EncoderError::Load {
            file: config.model.clone(),
            message: format!("not a usable ONNX model: {e}"),
        };
        let mut sessions = Vec::with_capacity(config.sessions.max(1));
        for _ in 0..config.sessions.max(1) {
            // No CPU arena and no memory pattern: with dynamic batch and sequence shapes the
            // arena fragments and a long-running server's RSS creeps up; plain allocations
            // return memory (measured in the bench's overload soak, docs/performance.md).
            let cpu = ort::ep::CPU::default()
                .with_arena_allocator(config.arena)
                .build();
            let opt = |r: Result<_, ort::Error<_>>| r.map_err(|e| load_err(e.into()));
            let builder = Session::builder(&env).map_err(load_err)?;
            let builder = opt(builder.with_optimization_level(GraphOptimizationLevel::Level3))?;
            let builder = opt(builder.with_intra_threads(config.intra_threads))?;
            let builder = opt(builder.with_memory_pattern(config.arena))?;
            let builder = opt(builder.with_intra_op_spinning(config.spinning))?;
            let mut builder = opt(builder.with_execution_providers([cpu]))?;
            sessions.push(builder.commit_from_memory(&bytes).map_err(load_err)?);
        }
        let dim = output_dim(&sessions[0]).ok_or_else(|| EncoderError::Load {
            file: config.model.clone(),
            message: "has no `sentence_embedding` output of shape [batch, dim]".into(),
        })?;
        let encoder = Self {
            tokenizer,
            pool: SessionPool::new(sessions),
            dim,
        };
        // A real run catches graphs that load but cannot execute (wrong input names or types).
        encoder.embed(&["hermes"]).map_err(|e| EncoderError::Load {
            file: config.model.clone(),
            message: format!("test inference failed: {e}"),
        })?;
        Ok(encoder)
    }

    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }
}

impl Embedder for MiniLm {
    fn tier(&self) -> Tier {
        Tier::Minilm
    }

    fn dim(&self) -> usize {
        self.dim
    }

    fn max_tokens(&self) -> usize {
        self.tokenizer.max_tokens()
    }

    fn tokenize(&self, text: &str) -> Result<TokenizedText, EncoderError> {
        self.tokenizer.encode(text, true)
    }

    /// Runs one batch through the model, padded to its longest member. Returns `[n, dim]` row-major.
    fn embed_tokens(&self, batch: &[&TokenizedText]) -> Result<Vec<f32>, EncoderError> {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        let n = batch.len();
        let seq = batch.iter().map(|t| t.ids.len()).max().unwrap_or(0).max(1);
        let mut ids = Array2::<i64>::zeros((n, seq));
        let mut mask = Array2::<i64>::zeros((n, seq));
        let types = Array2::<i64>::zeros((n, seq));
        for (row, text) in batch.iter().enumerate() {
            for (col, &id) in text.ids.iter().enumerate() {
                ids[[row, col]] = i64::from(id);
                mask[[row, col]] = 1;
            }
        }
        let infer = |e: ort::Error| EncoderError::Inference(e.to_string());
        let mut session = self.pool.checkout();
        let outputs = session
            .run(ort::inputs![
                "input_ids" => TensorRef::from_array_view(&ids).map_err(infer)?,
                "attention_mask" => TensorRef::from_array_view(&mask).map_err(infer)?,
                "token_type_ids" => TensorRef::from_array_view(&types).map_err(infer)?,
            ])
            .map_err(infer)?;
        let (shape, data) = outputs["sentence_embedding"]
            .try_extract_tensor::<f32>()
            .map_err(infer)?;
        if shape.len() != 2 || shape[0] as usize != n || shape[1] as usize != self.dim {
            return Err(EncoderError::Inference(format!(
                "unexpected output shape {shape:?}"
            )));
        }
        Ok(data.to_vec())
    }
}

/// Width of the `sentence_embedding` output, if the graph declares one as `[batch, dim]`.
fn output_dim(session: &Session) -> Option<usize> {
    let out = session
        .outputs()
        .iter()
        .find(|o| o.name() == "sentence_embedding")?;
    let shape = out.dtype().tensor_shape()?;
    match shape.len() {
        2 if shape[1] > 0 => Some(shape[1] as usize),
        _ => None,
    }
}
