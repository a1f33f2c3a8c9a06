//! `manifest.json`: what a bundle is made of, how it was fitted, and the probes that prove it
//! still codes the way it did when it was written.

use serde::{Deserialize, Serialize};

use crate::kmeans::KMeansStats;
use crate::quantize::stats::LevelStats;

/// Written by this build. Version 2 added the optional `static` encoder entry.
pub const FORMAT_VERSION: u32 = 2;
/// Read by this build: version 1 bundles are version 2 bundles without a static tier.
pub const READABLE_VERSIONS: [u32; 2] = [1, 2];

/// Parses `manifest.json` and refuses format versions this build cannot read.
pub fn parse(raw: &str) -> Result<Manifest, String> {
    let manifest: Manifest = serde_json::from_str(raw).map_err(|e| format!("invalid: {e}"))?;
    if !READABLE_VERSIONS.contains(&manifest.format_version) {
        return Err(format!(
            "format_version {} is not supported (this build reads {READABLE_VERSIONS:?})",
            manifest.format_version
        ));
    }
    Ok(manifest)
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub format_version: u32,
    pub name: String,
    pub encoder: EncoderEntry,
    pub tokenizer: FileEntry,
    pub transform: TransformEntry,
    /// Codebook size per level, coarse first.
    pub levels: Vec<usize>,
    pub codebooks: FileEntry,
    /// Short digest over codebooks, encoder, tokenizer and max_tokens: codes are comparable
    /// only between equal fingerprints.
    pub fingerprint: String,
    pub fit: FitInfo,
    /// Texts with their full codes, re-coded and compared at start-up.
    pub probes: Vec<Probe>,
    /// The optional second encoder tier (docs/pipeline.md, "Encoder tiers"); absent in version 1.
    #[serde(default, rename = "static", skip_serializing_if = "Option::is_none")]
    pub static_encoder: Option<StaticEntry>,
    /// The bucket cards (`cards.json`, docs/cards.md): they describe codes, they
    /// do not define them, so they are pinned here but not part of the fingerprint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cards: Option<FileEntry>,
}

/// The `static` tier: a token table in the teacher's embedding space.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct StaticEntry {
    /// `static.safetensors` holding `static.table [vocab, dim]`.
    pub file: String,
    pub sha256: String,
    /// Rows of the table: the tokenizer's vocabulary size.
    pub vocab: usize,
    /// Width: the teacher's embedding dimension.
    pub dim: usize,
    /// Tokens per text (no special tokens) before truncation.
    pub max_tokens: usize,
    /// How the table was fitted (λ, iterations, held-out agreement).
    pub fit: serde_json::Value,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FileEntry {
    pub file: String,
    pub sha256: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct EncoderEntry {
    pub file: String,
    pub sha256: String,
    /// Embedding width the encoder produces.
    pub dim: usize,
    /// Token budget per text (special tokens included); part of the fingerprint.
    pub max_tokens: usize,
    /// Pooling baked into the graph; only "mean" (L2-normalised) exists.
    pub pooling: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TransformEntry {
    /// "pca": centring + principal rotation, optionally reduced and partially whitened.
    pub kind: String,
    pub in_dim: usize,
    pub out_dim: usize,
    /// Whitening strength α (0 = rotation only).
    pub whiten: f32,
    /// Share of the corpus variance the kept components explain.
    pub explained_variance: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FitInfo {
    /// File name of the corpus (no directories: they would leak a machine's layout).
    pub corpus: String,
    pub n_docs: usize,
    pub seed: u64,
    pub max_iter: usize,
    /// One entry per level: how its k-means run went.
    pub kmeans: Vec<KMeansStats>,
    /// One entry per depth: utilization, perplexity, cells, relative error on the fit corpus.
    pub stats: Vec<LevelStats>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Probe {
    pub text: String,
    pub code: Vec<u32>,
}
