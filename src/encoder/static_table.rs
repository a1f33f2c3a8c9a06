//! The `static` tier: a token table in the teacher's embedding space (docs/pipeline.md, "Encoder
//! tiers"). A document's embedding is the L2-normalised mean of the table rows of its tokens
//! (the bundle's `tokenizer.json`, no special tokens, truncated at `max_tokens`). No model
//! runs: it is tokenization plus a sum of rows, orders of magnitude faster than MiniLM, and
//! its table is fitted (`hermes fit --static`) to reproduce MiniLM's embeddings.
//!
//! The table is stored as f16 (`static.table [vocab, dim]` in `static.safetensors`) and held
//! as f16 too, converted exactly to f32 as rows are summed (`gather`); a table given in f32
//! (fitting) is held as f32. A text with no tokens embeds to the zero vector (it still gets a code: the code of
//! the corpus mean).

use std::path::Path;

use safetensors::tensor::Dtype;

use super::gather::Table;
use super::{Embedder, EncoderError, Tier, TokenizedText, Tokenizer};

/// The tensor's name in `static.safetensors`.
pub const TABLE: &str = "static.table";

pub struct StaticEncoder {
    /// The bundle's tokenizer, truncating at the static tier's own `max_tokens`.
    tokenizer: Tokenizer,
    /// `[vocab, dim]` row-major.
    table: Table,
    vocab: usize,
    dim: usize,
}

impl StaticEncoder {
    /// Builds the encoder from a table in memory (`[vocab, dim]` row-major).
    pub fn new(tokenizer: Tokenizer, table: Vec<f32>, dim: usize) -> Self {
        Self::with_table(tokenizer, Table::F32(table), dim)
    }

    fn with_table(tokenizer: Tokenizer, table: Table, dim: usize) -> Self {
        let vocab = table.len() / dim.max(1);
        Self {
            tokenizer,
            table,
            vocab,
            dim,
        }
    }

    /// Loads `static.safetensors`; errors name the file and what is wrong with it.
    pub fn load(
        path: &Path,
        tokenizer: Tokenizer,
        vocab: usize,
        dim: usize,
    ) -> Result<Self, EncoderError> {
        let err = |message: String| EncoderError::Load {
            file: path.to_path_buf(),
            message,
        };
        let bytes = std::fs::read(path).map_err(|e| err(format!("cannot read: {e}")))?;
        let tensors = safetensors::SafeTensors::deserialize(&bytes)
            .map_err(|e| err(format!("not safetensors: {e}")))?;
        let t = tensors
            .tensor(TABLE)
            .map_err(|_| err(format!("tensor `{TABLE}` is missing")))?;
        if t.shape() != [vocab, dim] {
            return Err(err(format!(
                "tensor `{TABLE}` has shape {:?} but manifest static.vocab/static.dim imply [{vocab}, {dim}]",
                t.shape()
            )));
        }
        let table = match t.dtype() {
            Dtype::F16 => {
                let bits: Vec<u16> = t
                    .data()
                    .chunks_exact(2)
                    .map(|c| u16::from_le_bytes([c[0], c[1]]))
                    .collect();
                // f16 with every exponent bit set is an infinity or a NaN.
                if bits.iter().any(|b| b & 0x7c00 == 0x7c00) {
                    return Err(err(format!("tensor `{TABLE}` contains NaN or infinity")));
                }
                Table::F16(bits)
            }
            Dtype::F32 => {
                let table: Vec<f32> = t
                    .data()
                    .chunks_exact(4)
                    .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                    .collect();
                if table.iter().any(|x| !x.is_finite()) {
                    return Err(err(format!("tensor `{TABLE}` contains NaN or infinity")));
                }
                Table::F32(table)
            }
            other => {
                return Err(err(format!(
                    "tensor `{TABLE}` is {other:?}, expected F16 or F32"
                )));
            }
        };
        Ok(Self::with_table(tokenizer, table, dim))
    }

    pub fn vocab(&self) -> usize {
        self.vocab
    }
}

/// Serialises a table as f16 safetensors (deterministic).
pub fn table_bytes(table: &[f32], vocab: usize, dim: usize) -> Vec<u8> {
    let data: Vec<u8> = table
        .iter()
        .flat_map(|&x| half::f16::from_f32(x).to_le_bytes())
        .collect();
    let view = safetensors::tensor::TensorView::new(Dtype::F16, vec![vocab, dim], &data)
        .expect("shape matches data");
    safetensors::serialize(
        [(TABLE.to_string(), view)],
        None::<std::collections::HashMap<String, String>>,
    )
    .expect("in-memory serialisation cannot fail")
}

impl Embedder for StaticEncoder {
    fn tier(&self) -> Tier {
        Tier::Static
    }

    fn dim(&self) -> usize {
        self.dim
    }

    fn max_tokens(&self) -> usize {
        self.tokenizer.max_tokens()
    }

    fn tokenize(&self, text: &str) -> Result<TokenizedText, EncoderError> {
        self.tokenizer.encode(text, false)
    }

    fn embed_tokens(&self, batch: &[&TokenizedText]) -> Result<Vec<f32>, EncoderError> {
        let d = self.dim;
        let mut out = vec![0f32; batch.len() * d];
        for (row, text) in out.chunks_exact_mut(d).zip(batch) {
            if let Some(&id) = text.ids.iter().find(|&&id| id as usize >= self.vocab) {
                return Err(EncoderError::Inference(format!(
                    "token id {id} is outside the static table ({} rows)",
                    self.vocab
                )));
            }
            self.table.sum_rows(&text.ids, row);
            // Kept as it was (a sequential f32 sum): the norm's rounding decides codes.
            let norm = row.iter().map(|x| x * x).sum::<f32>().sqrt();
            if norm > 0.0 {
                row.iter_mut().for_each(|x| *x /= norm);
            }
        }
        Ok(out)
    }
}
