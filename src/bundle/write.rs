//! Writing a freshly fitted bundle: codebooks, encoder and tokenizer (linked or copied), and
//! a manifest whose checksums and fingerprint describe exactly those files.

use std::path::Path;

use super::codebooks::codebooks_bytes;
use super::manifest::{self, EncoderEntry, FileEntry, FitInfo, Manifest, Probe, TransformEntry};
use super::{BundleError, CODEBOOKS, MANIFEST, fingerprint, invalid, sha256_file};
use crate::quantize::{ResidualQuantizer, Transform};

/// What a freshly fitted bundle is made of, before it is written.
pub struct NewBundle<'a> {
    pub name: String,
    /// Directory holding the encoder.onnx and tokenizer.json to use (copied unless it is `out`).
    pub encoder_from: &'a Path,
    pub encoder_dim: usize,
    pub max_tokens: usize,
    pub transform: &'a Transform,
    pub whiten: f32,
    pub explained_variance: f64,
    pub quantizer: &'a ResidualQuantizer,
    pub fit: FitInfo,
    pub probes: Vec<Probe>,
}

/// Writes a bundle directory: codebooks, encoder and tokenizer (copied when needed), manifest.
pub fn write_bundle(out: &Path, b: NewBundle<'_>) -> Result<Manifest, BundleError> {
    let io = |file: &str, e: std::io::Error| invalid(out, file, format!("cannot write: {e}"));
    std::fs::create_dir_all(out).map_err(|e| io(".", e))?;
    let same_dir = out.canonicalize().ok() == b.encoder_from.canonicalize().ok();
    for file in ["encoder.onnx", "tokenizer.json"] {
        if !same_dir {
            let target = out.join(file);
            let _ = std::fs::remove_file(&target);
            // A hard link saves 90 MB per bundle; copy across file systems.
            if std::fs::hard_link(b.encoder_from.join(file), &target).is_err() {
                std::fs::copy(b.encoder_from.join(file), &target).map_err(|e| io(file, e))?;
            }
        }
    }
    std::fs::write(
        out.join(CODEBOOKS),
        codebooks_bytes(b.transform, b.quantizer),
    )
    .map_err(|e| io(CODEBOOKS, e))?;
    let sha = |file: &str| {
        sha256_file(&out.join(file)).map_err(|e| invalid(out, file, format!("cannot read: {e}")))
    };
    let (enc_sha, tok_sha, cb_sha) = (
        sha("encoder.onnx")?,
        sha("tokenizer.json")?,
        sha(CODEBOOKS)?,
    );
    let manifest = Manifest {
        format_version: manifest::FORMAT_VERSION,
        name: b.name,
        fingerprint: fingerprint(&cb_sha, &enc_sha, &tok_sha, b.max_tokens),
        encoder: EncoderEntry {
            file: "encoder.onnx".into(),
            sha256: enc_sha,
            dim: b.encoder_dim,
            max_tokens: b.max_tokens,
            pooling: "mean".into(),
        },
        tokenizer: FileEntry {
            file: "tokenizer.json".into(),
            sha256: tok_sha,
        },
        transform: TransformEntry {
            kind: "pca".into(),
            in_dim: b.transform.in_dim,
            out_dim: b.transform.out_dim,
            whiten: b.whiten,
            explained_variance: b.explained_variance,
        },
        levels: b.quantizer.levels().to_vec(),
        codebooks: FileEntry {
            file: CODEBOOKS.into(),
            sha256: cb_sha,
        },
        fit: b.fit,
        probes: b.probes,
        static_encoder: None,
        cards: None,
    };
    let mut json = serde_json::to_string_pretty(&manifest).expect("manifest serialises");
    json.push('\n');
    std::fs::write(out.join(MANIFEST), json).map_err(|e| io(MANIFEST, e))?;
    Ok(manifest)
}

/// Adds (or replaces) the static tier of the bundle at `out`: writes its table, then the
/// manifest with the `static` entry and its checksum. Codebooks and fingerprint stay as they
/// are, so minilm codes do not change.
pub fn add_static_tier(
    out: &Path,
    table: &[u8],
    mut entry: manifest::StaticEntry,
) -> Result<manifest::StaticEntry, BundleError> {
    let io =
        |file: &str, e: &dyn std::fmt::Display| invalid(out, file, format!("cannot write: {e}"));
    let raw = std::fs::read_to_string(out.join(MANIFEST)).map_err(|e| io(MANIFEST, &e))?;
    let mut m: Manifest =
        serde_json::from_str(&raw).map_err(|e| invalid(out, MANIFEST, format!("invalid: {e}")))?;
    std::fs::write(out.join(&entry.file), table).map_err(|e| io(&entry.file, &e))?;
    entry.sha256 = sha256_file(&out.join(&entry.file)).map_err(|e| io(&entry.file, &e))?;
    m.format_version = manifest::FORMAT_VERSION;
    m.static_encoder = Some(entry.clone());
    let mut json = serde_json::to_string_pretty(&m).expect("manifest serialises");
    json.push('\n');
    std::fs::write(out.join(MANIFEST), json).map_err(|e| io(MANIFEST, &e))?;
    Ok(entry)
}

/// Adds (or replaces) the bundle's bucket cards: writes `cards.json`, then the manifest with
/// its checksum. Codebooks and fingerprint stay as they are.
pub fn add_cards(out: &Path, cards: &crate::cards::Cards) -> Result<FileEntry, BundleError> {
    let io =
        |file: &str, e: &dyn std::fmt::Display| invalid(out, file, format!("cannot write: {e}"));
    let raw = std::fs::read_to_string(out.join(MANIFEST)).map_err(|e| io(MANIFEST, &e))?;
    let mut m: Manifest =
        serde_json::from_str(&raw).map_err(|e| invalid(out, MANIFEST, format!("invalid: {e}")))?;
    let file = super::CARDS;
    let body = serde_json::to_string_pretty(cards).expect("cards serialise") + "\n";
    std::fs::write(out.join(file), body).map_err(|e| io(file, &e))?;
    let entry = FileEntry {
        file: file.to_string(),
        sha256: sha256_file(&out.join(file)).map_err(|e| io(file, &e))?,
    };
    m.cards = Some(entry.clone());
    let mut json = serde_json::to_string_pretty(&m).expect("manifest serialises");
    json.push('\n');
    std::fs::write(out.join(MANIFEST), json).map_err(|e| io(MANIFEST, &e))?;
    Ok(entry)
}

/// Drops the cards entry from the manifest of the bundle at `out` (before they are rewritten).
pub fn remove_cards(out: &Path) -> Result<(), BundleError> {
    let raw = std::fs::read_to_string(out.join(MANIFEST))
        .map_err(|e| invalid(out, MANIFEST, format!("cannot read: {e}")))?;
    let mut m: Manifest =
        serde_json::from_str(&raw).map_err(|e| invalid(out, MANIFEST, format!("invalid: {e}")))?;
    if m.cards.take().is_none() {
        return Ok(());
    }
    let mut json = serde_json::to_string_pretty(&m).expect("manifest serialises");
    json.push('\n');
    std::fs::write(out.join(MANIFEST), json)
        .map_err(|e| invalid(out, MANIFEST, format!("cannot write: {e}")))
}
