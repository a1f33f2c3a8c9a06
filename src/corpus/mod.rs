//! Reading corpora.
//!
//! - Here: a whole JSONL corpus in memory (for `fit` and `eval`, which need every document at
//!   once) and `.npy` embedding matrices. Errors name the line (JSONL) or the header field
//!   (npy) at fault; nothing is skipped silently.
//! - [`inputs`]: corpus-scale input lists (files, directories, globs) and their sharding.
//! - [`reader`]: streaming documents out of `.jsonl`, `.jsonl.gz`, `.jsonl.zst`, `.parquet`.
//! - [`codes`]: the `hermes label` output (Parquet codes + done markers) and reading it back.

pub mod codes;
pub mod inputs;
pub mod json;
pub mod reader;
pub mod tokens;

use std::io::{BufRead, BufReader, Write};
use std::path::Path;

/// One document of a corpus.
#[derive(Debug, Clone, PartialEq)]
pub struct Doc {
    /// The `id` field when present (string or number), else the 1-based line number.
    pub id: String,
    pub text: String,
    /// The label field's value, for `hermes eval`; `None` when absent.
    pub label: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum CorpusError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}:{line}: {message}")]
    Line {
        path: String,
        line: usize,
        message: String,
    },
    #[error("{path}: {message}")]
    Npy { path: String, message: String },
}

/// Reads a JSONL corpus. Every line must be a JSON object with a string `text_field`; empty
/// lines and non-JSON lines are errors with their line number.
pub fn read_jsonl(
    path: &Path,
    text_field: &str,
    label_field: Option<&str>,
) -> Result<Vec<Doc>, CorpusError> {
    let p = path.display().to_string();
    let file = std::fs::File::open(path).map_err(|source| CorpusError::Io {
        path: p.clone(),
        source,
    })?;
    let mut docs = Vec::new();
    for (i, line) in BufReader::new(file).lines().enumerate() {
        let line_no = i + 1;
        let err = |message: String| CorpusError::Line {
            path: p.clone(),
            line: line_no,
            message,
        };
        let line = line.map_err(|e| err(format!("unreadable line: {e}")))?;
        if line.trim().is_empty() {
            return Err(err("empty line (one JSON object per line expected)".into()));
        }
        let value: serde_json::Value =
            serde_json::from_str(&line).map_err(|e| err(format!("not JSON: {e}")))?;
        let obj = value
            .as_object()
            .ok_or_else(|| err("not a JSON object".into()))?;
        let text = match obj.get(text_field) {
            Some(serde_json::Value::String(s)) => s.clone(),
            Some(_) => return Err(err(format!("field `{text_field}` is not a string"))),
            None => return Err(err(format!("missing text field `{text_field}`"))),
        };
        let id = match obj.get("id") {
            Some(serde_json::Value::String(s)) => s.clone(),
            Some(serde_json::Value::Number(n)) => n.to_string(),
            _ => line_no.to_string(),
        };
        let label = label_field.and_then(|f| match obj.get(f) {
            Some(serde_json::Value::String(s)) => Some(s.clone()),
            Some(serde_json::Value::Number(n)) => Some(n.to_string()),
            _ => None,
        });
        docs.push(Doc { id, text, label });
    }
    Ok(docs)
}

/// Writes a `[rows, cols]` little-endian f32 matrix as `.npy` (format 1.0, C order).
pub fn write_npy(path: &Path, data: &[f32], cols: usize) -> Result<(), CorpusError> {
    let p = path.display().to_string();
    let rows = data.len() / cols.max(1);
    let mut header =
        format!("{{'descr': '<f4', 'fortran_order': False, 'shape': ({rows}, {cols}), }}");
    // Magic (6) + version (2) + length (2) + header + '\n' is padded to a multiple of 64.
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut bytes = Vec::with_capacity(10 + header.len() + data.len() * 4);
    bytes.extend_from_slice(b"\x93NUMPY\x01\x00");
    bytes.extend_from_slice(&(header.len() as u16).to_le_bytes());
    bytes.extend_from_slice(header.as_bytes());
    for v in data {
        bytes.extend_from_slice(&v.to_le_bytes());
    }
    let io = |source| CorpusError::Io {
        path: p.clone(),
        source,
    };
    let mut f = std::fs::File::create(path).map_err(io)?;
    f.write_all(&bytes).map_err(io)
}

/// Reads a 2-D little-endian f32 `.npy` file. Returns the data and the number of columns.
pub fn read_npy(path: &Path) -> Result<(Vec<f32>, usize), CorpusError> {
    let p = path.display().to_string();
    let bad = |message: &str| CorpusError::Npy {
        path: p.clone(),
        message: message.to_string(),
    };
    let bytes = std::fs::read(path).map_err(|source| CorpusError::Io {
        path: p.clone(),
        source,
    })?;
    if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" {
        return Err(bad("not an .npy file (bad magic)"));
    }
    let (header_len, start) = match bytes[6] {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        2 | 3 if bytes.len() >= 12 => (
            u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
            12,
        ),
        _ => return Err(bad("unsupported .npy version")),
    };
    let header = bytes
        .get(start..start + header_len)
        .and_then(|h| std::str::from_utf8(h).ok())
        .ok_or_else(|| bad("truncated header"))?;
    if !header.contains("'descr': '<f4'") {
        return Err(bad(
            "descr: only little-endian float32 ('<f4') is supported",
        ));
    }
    if header.contains("'fortran_order': True") {
        return Err(bad("fortran_order: only C order is supported"));
    }
    let shape = header
        .split("'shape':")
        .nth(1)
        .and_then(|s| s.split(')').next())
        .map(|s| s.trim().trim_start_matches('('))
        .ok_or_else(|| bad("shape: missing"))?;
    let dims: Vec<usize> = shape
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().map_err(|_| bad("shape: not integers")))
        .collect::<Result<_, _>>()?;
    let [rows, cols] = dims[..] else {
        return Err(bad("shape: a 2-D [documents, dim] matrix is expected"));
    };
    let body = &bytes[start + header_len..];
    if body.len() != rows * cols * 4 {
        return Err(bad("data length does not match shape"));
    }
    let data = body
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    Ok((data, cols))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn npy_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.npy");
        let data: Vec<f32> = (0..12).map(|i| i as f32 * 0.5).collect();
        write_npy(&path, &data, 4).unwrap();
        assert_eq!(read_npy(&path).unwrap(), (data, 4));
    }

    #[test]
    fn jsonl_errors_name_the_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.jsonl");
        for (body, want) in [
            ("{\"text\":\"a\"}\n\n{\"text\":\"b\"}\n", ":2: empty line"),
            ("{\"text\":\"a\"}\nnope\n", ":2: not JSON"),
            (
                "{\"text\":\"a\"}\n{\"text\":\"b\"}\n{\"body\":\"c\"}\n",
                ":3: missing text field `text`",
            ),
            ("{\"text\":5}\n", ":1: field `text` is not a string"),
            ("[1,2]\n", ":1: not a JSON object"),
        ] {
            std::fs::write(&path, body).unwrap();
            let err = read_jsonl(&path, "text", None).unwrap_err().to_string();
            assert!(err.contains(want), "{err} lacks {want}");
        }
        std::fs::write(
            &path,
            "{\"id\":7,\"text\":\"a\",\"label\":\"x\"}\n{\"text\":\"b\"}\n",
        )
        .unwrap();
        let docs = read_jsonl(&path, "text", Some("label")).unwrap();
        assert_eq!(
            docs[0],
            Doc {
                id: "7".into(),
                text: "a".into(),
                label: Some("x".into())
            }
        );
        assert_eq!(docs[1].id, "2");
    }
}
