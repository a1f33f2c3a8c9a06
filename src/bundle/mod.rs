//! A model bundle on disk (`manifest.json`, `codebooks.safetensors`, `encoder.onnx`,
//! `tokenizer.json`) and the loaded [`Model`] that turns texts into codes.
//!
//! Loading verifies everything before the model is used: files present, checksums, tensor
//! shapes against the manifest, the fingerprint, and that every probe text still gets its
//! recorded code. A failure names the file and the field.

pub mod manifest;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use safetensors::tensor::{Dtype, TensorView};
use sha2::{Digest, Sha256};

use crate::encoder::{Embedded, Encoder, EncoderConfig, EncoderError};
use crate::quantize::{Code, QuantizeError, ResidualQuantizer, Transform};
pub use manifest::{EncoderEntry, FileEntry, FitInfo, Manifest, Probe, TransformEntry};

pub const MANIFEST: &str = "manifest.json";
pub const CODEBOOKS: &str = "codebooks.safetensors";

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
}

fn invalid(dir: &Path, file: &str, message: impl Into<String>) -> BundleError {
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

/// Options for loading that are not part of the bundle itself.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    pub ort_lib: Option<PathBuf>,
    pub intra_threads: usize,
    pub sessions: usize,
}

/// A verified bundle, ready to code texts and embeddings.
pub struct Model {
    pub dir: PathBuf,
    pub manifest: Manifest,
    /// Shared with the batching workers.
    pub encoder: Arc<Encoder>,
    pub transform: Transform,
    pub quantizer: ResidualQuantizer,
}

impl Model {
    pub fn load(dir: &Path, options: &LoadOptions) -> Result<Self, BundleError> {
        let manifest_path = dir.join(MANIFEST);
        let raw = std::fs::read_to_string(&manifest_path)
            .map_err(|e| invalid(dir, MANIFEST, format!("cannot read: {e}")))?;
        let manifest: Manifest = serde_json::from_str(&raw)
            .map_err(|e| invalid(dir, MANIFEST, format!("invalid: {e}")))?;
        if manifest.format_version != manifest::FORMAT_VERSION {
            return Err(invalid(
                dir,
                MANIFEST,
                format!(
                    "format_version {} is not supported (expected {})",
                    manifest.format_version,
                    manifest::FORMAT_VERSION
                ),
            ));
        }
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
        ] {
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
        let (transform, quantizer) = read_codebooks(dir, &manifest)?;
        let encoder = Encoder::load(&EncoderConfig {
            model: dir.join(&manifest.encoder.file),
            tokenizer: dir.join(&manifest.tokenizer.file),
            max_tokens: manifest.encoder.max_tokens,
            intra_threads: options.intra_threads,
            sessions: options.sessions.max(1),
            ort_lib: options.ort_lib.clone(),
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
        let model = Self {
            dir: dir.to_path_buf(),
            manifest,
            encoder: Arc::new(encoder),
            transform,
            quantizer,
        };
        model.check_probes()?;
        Ok(model)
    }

    fn check_probes(&self) -> Result<(), BundleError> {
        let texts: Vec<&str> = self
            .manifest
            .probes
            .iter()
            .map(|p| p.text.as_str())
            .collect();
        if texts.is_empty() {
            return Ok(());
        }
        let codes = self
            .label(&texts)
            .map_err(|e| invalid(&self.dir, MANIFEST, format!("probes: {e}")))?;
        for (i, (probe, (code, _))) in self.manifest.probes.iter().zip(codes).enumerate() {
            if code.0 != probe.code {
                return Err(invalid(
                    &self.dir,
                    MANIFEST,
                    format!(
                        "probes[{i}].code is {:?} but the bundle now codes {:?} as {:?}",
                        probe.code,
                        preview(&probe.text),
                        code.0
                    ),
                ));
            }
        }
        Ok(())
    }

    pub fn name(&self) -> &str {
        &self.manifest.name
    }

    pub fn fingerprint(&self) -> &str {
        &self.manifest.fingerprint
    }

    pub fn levels(&self) -> &[usize] {
        self.quantizer.levels()
    }

    /// Full codes of encoder embeddings (`[n, encoder dim]`): transform, then quantize.
    pub fn code_embeddings(&self, e: &[f32]) -> Result<Vec<Code>, QuantizeError> {
        let d = self.transform.in_dim;
        if !e.len().is_multiple_of(d) {
            return Err(QuantizeError::Dimension {
                row: e.len() / d,
                got: e.len() % d,
                want: d,
            });
        }
        if let Some(pos) = e.iter().position(|x| !x.is_finite()) {
            return Err(QuantizeError::NonFinite { row: pos / d });
        }
        let z = self.transform.apply(e);
        self.quantizer.encode(&z, self.levels().len())
    }

    /// Embeds `texts` as one batch.
    pub fn embed(&self, texts: &[&str]) -> Result<Embedded, EncoderError> {
        self.encoder.embed(texts)
    }

    /// Full codes of `texts` (one batch) with their truncation flags.
    pub fn label(&self, texts: &[&str]) -> Result<Vec<(Code, bool)>, BundleError> {
        let embedded = self.encoder.embed(texts)?;
        let codes = self.code_embeddings(&embedded.vectors).map_err(|e| {
            invalid(
                &self.dir,
                &self.manifest.encoder.file,
                format!("produced unusable embeddings: {e}"),
            )
        })?;
        Ok(codes.into_iter().zip(embedded.truncated).collect())
    }
}

fn preview(text: &str) -> String {
    let mut s: String = text.chars().take(40).collect();
    if s.len() < text.len() {
        s.push('…');
    }
    s
}

fn tensor_f32(
    dir: &Path,
    tensors: &safetensors::SafeTensors<'_>,
    name: &str,
    shape: &[usize],
    field: &str,
) -> Result<Vec<f32>, BundleError> {
    let t = tensors
        .tensor(name)
        .map_err(|_| invalid(dir, CODEBOOKS, format!("tensor `{name}` is missing")))?;
    if t.dtype() != Dtype::F32 {
        return Err(invalid(
            dir,
            CODEBOOKS,
            format!("tensor `{name}` is {:?}, expected F32", t.dtype()),
        ));
    }
    if t.shape() != shape {
        return Err(invalid(
            dir,
            CODEBOOKS,
            format!(
                "tensor `{name}` has shape {:?} but manifest {field} implies {shape:?}",
                t.shape()
            ),
        ));
    }
    let data: Vec<f32> = t
        .data()
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    if data.iter().any(|x| !x.is_finite()) {
        return Err(invalid(
            dir,
            CODEBOOKS,
            format!("tensor `{name}` contains NaN or infinity"),
        ));
    }
    Ok(data)
}

fn read_codebooks(dir: &Path, m: &Manifest) -> Result<(Transform, ResidualQuantizer), BundleError> {
    let bytes = std::fs::read(dir.join(&m.codebooks.file))
        .map_err(|e| invalid(dir, CODEBOOKS, format!("cannot read: {e}")))?;
    let tensors = safetensors::SafeTensors::deserialize(&bytes)
        .map_err(|e| invalid(dir, CODEBOOKS, format!("not safetensors: {e}")))?;
    let t = &m.transform;
    if t.kind != "pca" {
        return Err(invalid(
            dir,
            MANIFEST,
            format!(
                "transform.kind {:?} is not supported (expected \"pca\")",
                t.kind
            ),
        ));
    }
    if t.in_dim != m.encoder.dim {
        return Err(invalid(
            dir,
            MANIFEST,
            format!(
                "transform.in_dim {} differs from encoder.dim {}",
                t.in_dim, m.encoder.dim
            ),
        ));
    }
    if m.levels.is_empty() || m.levels.iter().any(|&k| k < 2) {
        return Err(invalid(
            dir,
            MANIFEST,
            format!(
                "levels {:?}: need at least one level of size >= 2",
                m.levels
            ),
        ));
    }
    let mean = tensor_f32(
        dir,
        &tensors,
        "transform.mean",
        &[t.in_dim],
        "transform.in_dim",
    )?;
    let matrix = tensor_f32(
        dir,
        &tensors,
        "transform.matrix",
        &[t.out_dim, t.in_dim],
        "transform.out_dim/in_dim",
    )?;
    let mut books = Vec::with_capacity(m.levels.len());
    for (l, &k) in m.levels.iter().enumerate() {
        let name = format!("codebook.{}", l + 1);
        books.push(tensor_f32(
            dir,
            &tensors,
            &name,
            &[k, t.out_dim],
            &format!("levels[{l}]/transform.out_dim"),
        )?);
    }
    if tensors.names().len() != 2 + m.levels.len() {
        return Err(invalid(
            dir,
            CODEBOOKS,
            format!(
                "holds {} tensors, manifest levels imply {}",
                tensors.names().len(),
                2 + m.levels.len()
            ),
        ));
    }
    Ok((
        Transform::new(mean, matrix, t.out_dim),
        ResidualQuantizer::new(t.out_dim, books),
    ))
}

/// Serialises the transform and codebooks to safetensors bytes (deterministic).
pub fn codebooks_bytes(transform: &Transform, quantizer: &ResidualQuantizer) -> Vec<u8> {
    let to_bytes = |v: &[f32]| v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>();
    let mut owned: Vec<(String, Vec<usize>, Vec<u8>)> = vec![
        (
            "transform.mean".into(),
            vec![transform.in_dim],
            to_bytes(&transform.mean),
        ),
        (
            "transform.matrix".into(),
            vec![transform.out_dim, transform.in_dim],
            to_bytes(&transform.matrix),
        ),
    ];
    for (l, &k) in quantizer.levels().iter().enumerate() {
        owned.push((
            format!("codebook.{}", l + 1),
            vec![k, quantizer.dim()],
            to_bytes(quantizer.codebook(l)),
        ));
    }
    let views: Vec<(String, TensorView<'_>)> = owned
        .iter()
        .map(|(name, shape, data)| {
            (
                name.clone(),
                TensorView::new(Dtype::F32, shape.clone(), data).expect("shape matches data"),
            )
        })
        .collect();
    safetensors::serialize(views, None::<HashMap<String, String>>)
        .expect("in-memory serialisation cannot fail")
}

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
    };
    let mut json = serde_json::to_string_pretty(&manifest).expect("manifest serialises");
    json.push('\n');
    std::fs::write(out.join(MANIFEST), json).map_err(|e| io(MANIFEST, e))?;
    Ok(manifest)
}
