//! The sentence encoder: text in, L2-normalised mean-pooled embedding out.
//!
//! [`Encoder`] owns a tokenizer and a small pool of ONNX Runtime sessions. It is `Send + Sync`
//! and meant to be shared behind an `Arc`: `ort` sessions need `&mut self` to run, so each call
//! checks a session out of the pool for the duration of one batch instead of holding a global
//! lock across requests. Tokenization ([`Encoder::tokenize`]) is separate from inference
//! ([`Encoder::embed_tokens`]) so that a batcher can group documents by length first.

mod pool;
mod tokenize;

use std::path::{Path, PathBuf};

use ndarray::Array2;
use ort::session::Session;
use ort::session::builder::GraphOptimizationLevel;
use ort::value::TensorRef;

pub use tokenize::{TokenizedText, Tokenizer};

use pool::SessionPool;

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
        }
    }
}

/// Why encoding failed. Messages name the file or the input at fault.
#[derive(Debug, thiserror::Error)]
pub enum EncoderError {
    #[error("{0}")]
    Runtime(String),
    #[error("{file}: {message}")]
    Load { file: PathBuf, message: String },
    #[error("tokenizer: {0}")]
    Tokenize(String),
    #[error("inference failed: {0}")]
    Inference(String),
}

/// Embeddings of a batch, row-major `[n, dim]`, with the truncation flag of each text.
#[derive(Debug, Clone)]
pub struct Embedded {
    pub dim: usize,
    pub vectors: Vec<f32>,
    pub truncated: Vec<bool>,
}

impl Embedded {
    pub fn row(&self, i: usize) -> &[f32] {
        &self.vectors[i * self.dim..(i + 1) * self.dim]
    }
}

/// The loaded encoder; share it with `Arc<Encoder>`.
pub struct Encoder {
    tokenizer: Tokenizer,
    pool: SessionPool,
    dim: usize,
}

impl Encoder {
    /// Loads the tokenizer and `sessions` copies of the model, then checks the output width.
    pub fn load(config: &EncoderConfig) -> Result<Self, EncoderError> {
        let tokenizer = Tokenizer::from_file(&config.tokenizer, config.max_tokens)?;
        let env = crate::runtime::environment(config.ort_lib.as_deref())
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
            // return memory (measured in the bench's overload soak, see README).
            let cpu = ort::ep::CPU::default().with_arena_allocator(false).build();
            let opt = |r: Result<_, ort::Error<_>>| r.map_err(|e| load_err(e.into()));
            let builder = Session::builder(&env).map_err(load_err)?;
            let builder = opt(builder.with_optimization_level(GraphOptimizationLevel::Level3))?;
            let builder = opt(builder.with_intra_threads(config.intra_threads))?;
            let builder = opt(builder.with_memory_pattern(false))?;
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

    /// Embedding width (384 for MiniLM-L6).
    pub fn dim(&self) -> usize {
        self.dim
    }

    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    /// Tokenizes each text on its own (truncated at `max_tokens`, unpadded).
    pub fn tokenize(&self, texts: &[&str]) -> Result<Vec<TokenizedText>, EncoderError> {
        texts.iter().map(|t| self.tokenizer.encode(t)).collect()
    }

    /// Tokenizes and embeds `texts` as one batch.
    pub fn embed(&self, texts: &[&str]) -> Result<Embedded, EncoderError> {
        let tokens = self.tokenize(texts)?;
        let refs: Vec<&TokenizedText> = tokens.iter().collect();
        let vectors = self.embed_tokens(&refs)?;
        Ok(Embedded {
            dim: self.dim,
            vectors,
            truncated: tokens.iter().map(|t| t.truncated).collect(),
        })
    }

    /// Embeds many texts in batches of `batch` texts of similar length (less padding), calling
    /// `progress` with the number of texts done after each batch. Rows come back in input order.
    pub fn embed_many(
        &self,
        texts: &[&str],
        batch: usize,
        mut progress: impl FnMut(usize),
    ) -> Result<Embedded, EncoderError> {
        let tokens = self.tokenize(texts)?;
        let mut order: Vec<usize> = (0..texts.len()).collect();
        order.sort_by_key(|&i| (tokens[i].ids.len(), i));
        let mut vectors = vec![0f32; texts.len() * self.dim];
        let mut done = 0;
        for idx in order.chunks(batch.max(1)) {
            let refs: Vec<&TokenizedText> = idx.iter().map(|&i| &tokens[i]).collect();
            let out = self.embed_tokens(&refs)?;
            for (row, &i) in out.chunks_exact(self.dim).zip(idx) {
                vectors[i * self.dim..(i + 1) * self.dim].copy_from_slice(row);
            }
            done += idx.len();
            progress(done);
        }
        Ok(Embedded {
            dim: self.dim,
            vectors,
            truncated: tokens.iter().map(|t| t.truncated).collect(),
        })
    }

    /// Runs one batch through the model, padded to its longest member. Returns `[n, dim]` row-major.
    pub fn embed_tokens(&self, batch: &[&TokenizedText]) -> Result<Vec<f32>, EncoderError> {
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
