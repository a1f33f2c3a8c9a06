//! A model bundle on disk (`manifest.json`, `codebooks.safetensors`, `encoder.onnx`,
//! `tokenizer.json`) and the loaded, verified [`Model`].
//!
//! Loading verifies files, checksums, tensor shapes against the manifest and the fingerprint;
//! a failure names the file and the field. The probes (texts that must still get their
//! recorded codes) are checked by `labeling::open`, through the same path that labels
//! documents. Reading and writing the tensors live in `codebooks`, writing a new bundle in
//! `write`.

mod codebooks;
pub mod manifest;
mod write;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use sha2::{Digest, Sha256};

use crate::cards::Cards;
use crate::encoder::{Embedder, EncoderConfig, EncoderError, MiniLm, StaticEncoder, Tokenizer};
use crate::quantize::CodeSpace;
use crate::tier::Tier;
pub use codebooks::{codebooks_bytes, parse_codebooks};
pub use manifest::{EncoderEntry, FileEntry, FitInfo, Manifest, Probe, TransformEntry};
pub use write::{NewBundle, add_cards, add_static_tier, remove_cards, write_bundle};

pub const MANIFEST: &str = "manifest.json";
pub const CODEBOOKS: &str = "codebooks.safetensors";
pub const CARDS: &str = "cards.json";

#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    /// A file or field of the bundle is wrong; the message names both.
    #[error("bundle {dir}: {file}: {message}")]
    Invalid {
        dir: String,
        file: String,
        message: String,
    },
    #[error(transparent)]
    Encoder(#[from] EncoderError),
    /// The blocking task that loads the bundle panicked or was cancelled.
    #[error("loading the bundle failed: {0}")]
    Task(String),
}

/// Verifies and loads the static tier (its checksum is checked with the bundle's other
/// files): vocabulary and width against the tokenizer and the teacher, tensor shape against
/// the manifest.
fn load_static(
    dir: &Path,
    m: &Manifest,
    entry: &manifest::StaticEntry,
) -> Result<Arc<dyn Embedder>, BundleError> {
    let path = dir.join(&entry.file);
    if entry.dim != m.encoder.dim {
        return Err(invalid(
            dir,
            MANIFEST,
            format!(
                "static.dim {} differs from encoder.dim {}",
                entry.dim, m.encoder.dim
            ),
        ));
    }
    let tokenizer = Tokenizer::from_file(&dir.join(&m.tokenizer.file), entry.max_tokens)?;
    if entry.vocab != tokenizer.vocab_size() {
        return Err(invalid(
            dir,
            MANIFEST,
            format!(
                "static.vocab {} differs from the tokenizer's vocabulary ({} tokens)",
                entry.vocab,
                tokenizer.vocab_size()
            ),
        ));
    }
    let encoder = StaticEncoder::load(&path, tokenizer, entry.vocab, entry.dim)?;
    Ok(Arc::new(encoder))
}

/// Parses the cards (their checksum is checked with the bundle's other files) and checks that
/// they describe this bundle's codes.
fn load_cards(dir: &Path, m: &Manifest, entry: &FileEntry) -> Result<Cards, BundleError> {
    let raw = std::fs::read_to_string(dir.join(&entry.file))
        .map_err(|e| invalid(dir, &entry.file, format!("cannot read (cards.file): {e}")))?;
    parse_cards(&raw, m).map_err(|e| invalid(dir, &entry.file, e))
}

/// Parses `cards.json` and checks that it describes `m`'s codes.
pub fn parse_cards(raw: &str, m: &Manifest) -> Result<Cards, String> {
    let cards: Cards = serde_json::from_str(raw).map_err(|e| format!("not bucket cards: {e}"))?;
    if cards.fingerprint != m.fingerprint {
        return Err(format!(
            "fingerprint {} differs from the bundle's {}: the cards describe other codes",
            cards.fingerprint, m.fingerprint
        ));
    }
    if let Some(c) = cards.cards.iter().find(|c| {
        c.label.split('.').count() != c.depth
            || c.label
                .split('.')
                .zip(&m.levels)
                .any(|(x, &k)| x.parse::<usize>().map_or(true, |x| x >= k))
    }) {
        return Err(format!(
            "card {:?} is not a label of depth {} in levels {:?}",
            c.label, c.depth, m.levels
        ));
    }
    Ok(cards)
}

pub(crate) fn invalid(dir: &Path, file: &str, message: impl Into<String>) -> BundleError {
    BundleError::Invalid {
        dir: dir.display().to_string(),
        file: file.to_string(),
        message: message.into(),
    }
}

pub fn sha256_file(path: &Path) -> std::io::Result<String> {
    let mut hasher = Sha256::new();
    let mut file = std::fs::File::open(path)?;
    std::io::copy(&mut file, &mut hasher)?;
    Ok(hex::encode(hasher.finalize()))
}

/// Short hex digest identifying what a code means: codebooks, encoder, tokenizer, max_tokens.
pub fn fingerprint(
    codebooks_sha: &str,
    encoder_sha: &str,
    tokenizer_sha: &str,
    max_tokens: usize,
) -> String {
    let mut h = Sha256::new();
    for part in [
        codebooks_sha,
        encoder_sha,
        tokenizer_sha,
        &max_tokens.to_string(),
    ] {
        h.update(part.as_bytes());
        h.update([0]);
    }
    hex::encode(h.finalize())[..16].to_string()
}

/// How the ONNX Runtime is found and run, whatever the command (`--ort-lib`,
/// `--intra-threads`, `--ort-spinning`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RuntimeConfig {
    /// `None` searches the set-up cache, then the system.
    pub ort_lib: Option<PathBuf>,
    /// Intra-op threads per session (0: split the cores between the sessions).
    pub intra_threads: usize,
    /// Whether ONNX Runtime's threads spin; `None`: the command's own default.
    pub spinning: Option<bool>,
}

impl RuntimeConfig {
    /// The load options for `sessions` encoder sessions and the command's spinning default.
    /// With several sessions and no explicit thread count, the cores are split between them
    /// rather than each session taking all of them.
    pub fn load_options(&self, sessions: usize, spinning_by_default: bool) -> LoadOptions {
        let sessions = sessions.max(1);
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let intra_threads = match self.intra_threads {
            0 if sessions > 1 => (cores / sessions).max(1),
            n => n,
        };
        LoadOptions {
            ort_lib: self.ort_lib.clone(),
            intra_threads,
            sessions,
            spinning: self.spinning.unwrap_or(spinning_by_default),
        }
    }

    /// The encoder settings for one MiniLM session of the encoder files in `dir`.
    pub fn encoder_config(&self, dir: &Path, max_tokens: usize) -> EncoderConfig {
        let mut cfg = EncoderConfig::for_dir(dir);
        cfg.max_tokens = max_tokens;
        cfg.intra_threads = self.intra_threads;
        cfg.ort_lib = self.ort_lib.clone();
        cfg.spinning = self.spinning.unwrap_or(true);
        cfg
    }
}

/// Options for loading that are not part of the bundle itself.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// `--ort-lib`; `None` searches the set-up cache, then the system.
    pub ort_lib: Option<PathBuf>,
    /// ONNX Runtime intra-op threads per session (0: one per core).
    pub intra_threads: usize,
    /// Encoder sessions: batches that may run at once.
    pub sessions: usize,
    /// `--ort-spinning`: ONNX Runtime's threads spin between parallel sections.
    pub spinning: bool,
}

impl Default for LoadOptions {
    fn default() -> Self {
        Self {
            ort_lib: None,
            intra_threads: 0,
            sessions: 1,
            spinning: true,
        }
    }
}

/// A verified bundle (probes aside: see the module doc).
pub struct Model {
    /// Where it was loaded from; named in every error.
    pub dir: PathBuf,
    pub manifest: Manifest,
    /// The bundle's encoder, shared with the batching workers.
    pub encoder: Arc<dyn Embedder>,
    /// Transform + codebooks: embeddings to codes.
    pub space: CodeSpace,
    /// The optional `static` tier, in the same embedding space as `encoder`.
    pub static_encoder: Option<Arc<dyn Embedder>>,
    /// The optional bucket cards (`/v1/buckets`, `/atlas`).
    pub cards: Option<Arc<Cards>>,
}

impl Model {
    pub fn load(dir: &Path, options: &LoadOptions) -> Result<Self, BundleError> {
        let manifest_path = dir.join(MANIFEST);
        let raw = std::fs::read_to_string(&manifest_path)
            .map_err(|e| invalid(dir, MANIFEST, format!("cannot read: {e}")))?;
        let manifest = manifest::parse(&raw).map_err(|e| invalid(dir, MANIFEST, e))?;

        for (field, entry) in [
            (
                "encoder",
                FileEntry {
                    file: manifest.encoder.file.clone(),
                    sha256: manifest.encoder.sha256.clone(),
                },
            ),
            ("tokenizer", manifest.tokenizer.clone()),
            ("codebooks", manifest.codebooks.clone()),
        ]
        .into_iter()
        .chain(manifest.static_encoder.as_ref().map(|s| {
            (
                "static",
                FileEntry {
                    file: s.file.clone(),
                    sha256: s.sha256.clone(),
                },
            )
        }))
        .chain(manifest.cards.clone().map(|c| ("cards", c)))
        {
            let path = dir.join(&entry.file);
            let got = sha256_file(&path).map_err(|e| {
                let hint = if field == "encoder" {
                    " (run `make setup` to build it)"
                } else {
                    ""
                };
                invalid(
                    dir,
                    &entry.file,
                    format!("cannot read ({field}.file): {e}{hint}"),
                )
            })?;
            if got != entry.sha256 {
                return Err(invalid(
                    dir,
                    &entry.file,
                    format!(
                        "sha256 {got} differs from manifest {field}.sha256 {}",
                        entry.sha256
                    ),
                ));
            }
        }
        let expected = fingerprint(
            &manifest.codebooks.sha256,
            &manifest.encoder.sha256,
            &manifest.tokenizer.sha256,
            manifest.encoder.max_tokens,
        );
        if manifest.fingerprint != expected {
            return Err(invalid(
                dir,
                MANIFEST,
                format!(
                    "fingerprint {} does not match its files ({expected})",
                    manifest.fingerprint
                ),
            ));
        }
        let space = codebooks::read_codebooks(dir, &manifest)?;
        let encoder = MiniLm::load(&EncoderConfig {
            model: dir.join(&manifest.encoder.file),
            tokenizer: dir.join(&manifest.tokenizer.file),
            max_tokens: manifest.encoder.max_tokens,
            intra_threads: options.intra_threads,
            sessions: options.sessions.max(1),
            ort_lib: options.ort_lib.clone(),
            arena: false,
            spinning: options.spinning,
        })?;
        if encoder.dim() != manifest.encoder.dim {
            return Err(invalid(
                dir,
                &manifest.encoder.file,
                format!(
                    "produces dim {}, manifest encoder.dim is {}",
                    encoder.dim(),
                    manifest.encoder.dim
                ),
            ));
        }
        let static_encoder = match &manifest.static_encoder {
            Some(entry) => Some(load_static(dir, &manifest, entry)?),
            None => None,
        };
        let cards = match &manifest.cards {
            Some(entry) => Some(Arc::new(load_cards(dir, &manifest, entry)?)),
            None => None,
        };
        Ok(Self {
            dir: dir.to_path_buf(),
            manifest,
            encoder: Arc::new(encoder),
            space,
            static_encoder,
            cards,
        })
    }

    /// The encoder of a tier, if the bundle has it.
    pub fn embedder(&self, tier: Tier) -> Option<Arc<dyn Embedder>> {
        match tier {
            Tier::Minilm => Some(self.encoder.clone()),
            Tier::Static => self.static_encoder.clone(),
        }
    }

    /// A short digest of a tier's weights where the fingerprint does not cover them (the
    /// static table: see [`crate::keyspace::Namespace::weights`]); `None` for minilm.
    pub fn weights_digest(&self, tier: Tier) -> Option<String> {
        match tier {
            Tier::Static => self
                .manifest
                .static_encoder
                .as_ref()
                .map(|s| s.sha256.chars().take(16).collect()),
            Tier::Minilm => None,
        }
    }

    pub fn name(&self) -> &str {
        &self.manifest.name
    }

    pub fn fingerprint(&self) -> &str {
        &self.manifest.fingerprint
    }

    pub fn levels(&self) -> &[usize] {
        self.space.levels()
    }
}
