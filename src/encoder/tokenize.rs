//! Tokenization: a HuggingFace `tokenizer.json` with hermes' own truncation and no padding.
//!
//! The packaged MiniLM `tokenizer.json` pads and truncates to a fixed 128 tokens. hermes turns
//! its padding off (the encoder pads each batch to its own longest member, so short texts do
//! not pay for long ones) and truncates at the configured `max_tokens`, recording per text
//! whether anything was cut.
//!
//! A `tokenizer.json` of the BERT WordPiece shape (the bundles' MiniLM one) is encoded by
//! hermes' own [`WordPiece`] (same ids, several times faster: no offsets, no per-token
//! strings); any other shape by HF `tokenizers`. Both give the same ids and truncation flag
//! (tests/wordpiece.rs checks them token for token against Python `tokenizers`).

use std::path::Path;
use std::sync::Arc;

use tokenizers::{TruncationDirection, TruncationParams, TruncationStrategy};

use super::EncoderError;
use super::wordpiece::WordPiece;

/// One text as the model sees it: token ids including `[CLS]` and `[SEP]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenizedText {
    pub ids: Vec<u32>,
    /// True when the text had more than `max_tokens` tokens and was cut.
    pub truncated: bool,
}

/// A thread-safe tokenizer configured for hermes.
#[derive(Clone)]
pub struct Tokenizer {
    /// The HuggingFace tokenizer with padding off and hermes' truncation on.
    inner: tokenizers::Tokenizer,
    /// hermes' own encoder of the same file, when it has the BERT WordPiece shape.
    fast: Option<Arc<WordPiece>>,
    /// Token budget per text, special tokens included.
    max_tokens: usize,
}

impl Tokenizer {
    pub fn from_file(path: &Path, max_tokens: usize) -> Result<Self, EncoderError> {
        let load_err = |message: String| EncoderError::Load {
            file: path.to_path_buf(),
            message,
        };
        if max_tokens < 2 {
            return Err(load_err(format!(
                "max_tokens must be at least 2 (got {max_tokens})"
            )));
        }
        let json = std::fs::read_to_string(path).map_err(|e| load_err(e.to_string()))?;
        let mut inner = tokenizers::Tokenizer::from_bytes(json.as_bytes())
            .map_err(|e| load_err(e.to_string()))?;
        let fast = WordPiece::from_json(&json).map(Arc::new);
        inner.with_padding(None);
        inner
            .with_truncation(Some(TruncationParams {
                max_length: max_tokens,
                strategy: TruncationStrategy::LongestFirst,
                stride: 0,
                direction: TruncationDirection::Right,
            }))
            .map_err(|e| load_err(e.to_string()))?;
        Ok(Self {
            inner,
            fast,
            max_tokens,
        })
    }

    pub fn max_tokens(&self) -> usize {
        self.max_tokens
    }

    /// The id of a token of the vocabulary (e.g. `[CLS]`).
    pub fn token_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    /// Token ids run from 0 to this, exclusive (added tokens included).
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// Tokenizes one text, with `[CLS]`/`[SEP]` when `special` is set. Any Rust string is
    /// accepted: control characters (NUL included) are dropped by BERT's normaliser and an
    /// empty text becomes `[CLS] [SEP]`.
    pub fn encode(&self, text: &str, special: bool) -> Result<TokenizedText, EncoderError> {
        match &self.fast {
            Some(fast) => {
                let enc = fast.encode(text, special, self.max_tokens);
                Ok(TokenizedText {
                    ids: enc.ids,
                    truncated: enc.truncated,
                })
            }
            None => self.encode_hf(text, special),
        }
    }

    /// Whether [`Tokenizer::encode`] runs hermes' own WordPiece (else HF `tokenizers`).
    pub fn is_wordpiece(&self) -> bool {
        self.fast.is_some()
    }

    /// [`Tokenizer::encode`] by HF `tokenizers` whatever the file's shape: the reference the
    /// benches measure hermes' WordPiece against.
    pub fn encode_hf(&self, text: &str, special: bool) -> Result<TokenizedText, EncoderError> {
        let enc = self
            .inner
            .encode_fast(text, special)
            .map_err(|e| EncoderError::Tokenize(e.to_string()))?;
        Ok(TokenizedText {
            ids: enc.get_ids().to_vec(),
            truncated: !enc.get_overflowing().is_empty(),
        })
    }
}
