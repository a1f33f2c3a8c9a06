//! `codebooks.safetensors`: the transform and the codebooks, read with their shapes checked
//! against the manifest, and written deterministically.

use std::collections::HashMap;
use std::path::Path;

use safetensors::tensor::{Dtype, TensorView};

use super::{BundleError, CODEBOOKS, MANIFEST, Manifest, invalid};
use crate::quantize::{CodeSpace, ResidualQuantizer, Transform};

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

pub(super) fn read_codebooks(dir: &Path, m: &Manifest) -> Result<CodeSpace, BundleError> {
    let bytes = std::fs::read(dir.join(&m.codebooks.file))
        .map_err(|e| invalid(dir, CODEBOOKS, format!("cannot read: {e}")))?;
    parse_codebooks(dir, m, &bytes)
}

/// The code space in `codebooks.safetensors`' bytes, checked against the manifest's shapes
/// (`dir` only names the bundle in errors).
pub fn parse_codebooks(dir: &Path, m: &Manifest, bytes: &[u8]) -> Result<CodeSpace, BundleError> {
    let tensors = safetensors::SafeTensors::deserialize(bytes)
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
    crate::quantize::check_levels(&m.levels).map_err(|e| invalid(dir, MANIFEST, e))?;
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
    Ok(CodeSpace::new(
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
