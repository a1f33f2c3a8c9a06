//! `hermes label --count-tokens TOKENIZER_JSON`: the number of ids a training tokenizer gives a
//! document's whole text, the `tokens` column of the codes files.
//!
//! The count is exactly Python's
//! `len(Tokenizer.from_file(p).encode(text, add_special_tokens=False).ids)` with truncation and
//! padding off: whatever `truncation`/`padding` the JSON holds are dropped when it is loaded
//! (a count is of the whole text, never of a model's window).

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use tokenizers::Tokenizer;

/// A loaded `tokenizer.json` and its sha256 (what the done markers record).
pub struct TokenCounter {
    tokenizer: Tokenizer,
    sha256: String,
    path: PathBuf,
}

impl std::fmt::Debug for TokenCounter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenCounter")
            .field("path", &self.path)
            .field("sha256", &self.sha256)
            .finish()
    }
}

impl TokenCounter {
    /// Loads `path` (any Hugging Face `tokenizer.json`: BPE, WordPiece, Unigram, ...); the
    /// error names the file.
    pub fn load(path: &Path) -> Result<Self, String> {
        let err = |e: &dyn std::fmt::Display| format!("--count-tokens {}: {e}", path.display());
        let bytes = std::fs::read(path).map_err(|e| err(&e))?;
        let mut tokenizer = Tokenizer::from_bytes(&bytes)
            .map_err(|e| err(&format_args!("not a Hugging Face tokenizer.json: {e}")))?;
        tokenizer.with_truncation(None).map_err(|e| err(&e))?;
        tokenizer.with_padding(None);
        Ok(Self {
            tokenizer,
            sha256: hex::encode(Sha256::digest(&bytes)),
            path: path.to_path_buf(),
        })
    }

    /// The sha256 of the tokenizer file, hex.
    pub fn sha256(&self) -> &str {
        &self.sha256
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The ids of `text`, no special tokens, no truncation. Offsets are not computed (they do
    /// not change the ids); the encoding is dropped before this returns.
    pub fn count(&self, text: &str) -> Result<u32, String> {
        let ids = self
            .tokenizer
            .encode_fast(text, false)
            .map_err(|e| format!("count tokens: {e}"))?
            .len();
        u32::try_from(ids).map_err(|_| format!("count tokens: {ids} tokens exceed u32"))
    }
}
