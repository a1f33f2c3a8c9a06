//! The output of `hermes label` under `--out`, and reading it back for `hermes stats`.
//!
//! Per input file: `codes/<rel>.parquet` (columns `id`, `row`, `c1`.., `cell`, `truncated`,
//! `bytes`, `r1`.., `tokens` with `--count-tokens`, then the carried fields; zstd, row groups of at most [`ROW_GROUP`] rows) and `done/<rel>.json`. The Parquet file is
//! written under a temporary name and renamed when complete; the done marker is written (also
//! by rename) only after that. A file is done exactly when its marker exists, so a task killed
//! at any point leaves either nothing, a stray temporary, or a complete file without a
//! marker, and a rerun redoes that file from the start: no row is lost or written twice.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::{
    ArrayRef, BooleanArray, Float32Array, Float64Array, RecordBatch, StringArray, UInt16Array,
    UInt32Array, UInt64Array,
};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;
use serde::{Deserialize, Serialize};

use crate::corpus::reader::Carried;
use crate::tier::Tier;

/// Rows per Parquet row group at most (bounds the writer's memory).
pub const ROW_GROUP: usize = 65_536;

/// `codes/<rel>.parquet` and `done/<rel>.json` under `out`.
pub fn paths(out: &Path, rel: &Path) -> (PathBuf, PathBuf) {
    let with = |dir: &str, ext: &str| {
        let mut p = out.join(dir).join(rel).into_os_string();
        p.push(ext);
        PathBuf::from(p)
    };
    (with("codes", ".parquet"), with("done", ".json"))
}

/// What a done marker records.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Done {
    /// The input, relative to its root.
    pub input: String,
    pub rows: u64,
    pub seconds: f64,
    /// The tier that labeled the file: a rerun with another tier is refused, never skipped.
    pub encoder: Tier,
    /// The tier's weights digest where the fingerprint does not cover it (the static table,
    /// see [`crate::keyspace::Namespace::weights`]); absent for minilm.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weights: Option<String>,
    pub bundle: String,
    pub fingerprint: String,
    /// The sha256 of the `--count-tokens` tokenizer file when the codes have a `tokens`
    /// column; absent without one. A rerun with another tokenizer (or none) is refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens_tokenizer: Option<String>,
}

impl Done {
    pub fn read(path: &Path) -> Result<Option<Done>, String> {
        read_marker(path)
    }

    /// Writes the marker by rename, so it is never seen half-written.
    pub fn write(&self, path: &Path) -> std::io::Result<()> {
        write_marker(path, self)
    }
}

/// Removes temporaries of `path` left by a killed task (one task owns an input file at a
/// time, so any temporary found before starting it is stale).
pub(crate) fn clear_stale(path: &Path) {
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        return;
    };
    let prefix = format!("{}.tmp-", name.to_string_lossy());
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.file_name().to_string_lossy().starts_with(&prefix) {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
}

pub(crate) fn tmp_name(path: &Path) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(format!(".tmp-{}", std::process::id()));
    PathBuf::from(p)
}

/// One labeled row.
#[derive(Debug, Clone)]
pub struct CodeRow {
    pub id: String,
    pub row: u64,
    pub code: Vec<u32>,
    /// Full-depth cell (checked to fit u32 by the bundle's levels).
    pub cell: u32,
    pub truncated: bool,
    /// The UTF-8 length of the text.
    pub bytes: u32,
    /// `‖r_d‖` after each level d = 1..L, in the transform's space.
    pub residuals: Vec<f32>,
    /// The whole text's token count (`--count-tokens`); `Some` exactly when the writer has a
    /// `tokens` column.
    pub tokens: Option<u32>,
    /// The `--carry` fields' values, in the writer's `carry` order.
    pub carried: Vec<Carried>,
}

/// The Arrow type of a carried column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CarriedType {
    Float64,
    Utf8,
    Boolean,
}

impl CarriedType {
    /// The type a value asks for; `None` for a null, which fits any.
    pub fn of(v: &Carried) -> Option<Self> {
        match v {
            Carried::Null => None,
            Carried::Number(_) => Some(Self::Float64),
            Carried::Text(_) => Some(Self::Utf8),
            Carried::Bool(_) => Some(Self::Boolean),
        }
    }

    fn data_type(self) -> DataType {
        match self {
            Self::Float64 => DataType::Float64,
            Self::Utf8 => DataType::Utf8,
            Self::Boolean => DataType::Boolean,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::Float64 => "float64",
            Self::Utf8 => "utf8",
            Self::Boolean => "bool",
        }
    }
}

/// The column `--count-tokens` adds.
pub const TOKENS_COLUMN: &str = "tokens";

/// The column names hermes itself writes for `levels` levels: a carried field may not take one
/// (nor `tokens` when `--count-tokens` writes it).
pub fn reserved_columns(levels: usize) -> Vec<String> {
    let mut names: Vec<String> = ["id", "row", "cell", "truncated", "bytes"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    for l in 1..=levels {
        names.push(format!("c{l}"));
        names.push(format!("r{l}"));
    }
    names
}

/// Writes one `codes/<rel>.parquet` through a temporary file.
pub struct CodesWriter {
    writer: ArrowWriter<File>,
    schema: SchemaRef,
    levels: usize,
    /// Whether the file has a `tokens` column.
    tokens: bool,
    /// Carried columns: name and type, fixed when the file is created.
    carry: Vec<(String, CarriedType)>,
    tmp: PathBuf,
    path: PathBuf,
    rows: u64,
}

pub fn schema(levels: usize, tokens: bool, carry: &[(String, CarriedType)]) -> SchemaRef {
    let mut fields = vec![
        Field::new("id", DataType::Utf8, false),
        Field::new("row", DataType::UInt64, false),
    ];
    for l in 1..=levels {
        fields.push(Field::new(format!("c{l}"), DataType::UInt16, false));
    }
    fields.push(Field::new("cell", DataType::UInt32, false));
    fields.push(Field::new("truncated", DataType::Boolean, false));
    fields.push(Field::new("bytes", DataType::UInt32, false));
    for l in 1..=levels {
        fields.push(Field::new(format!("r{l}"), DataType::Float32, false));
    }
    if tokens {
        fields.push(Field::new(TOKENS_COLUMN, DataType::UInt32, false));
    }
    for (name, t) in carry {
        fields.push(Field::new(name, t.data_type(), true));
    }
    Arc::new(Schema::new(fields))
}

impl CodesWriter {
    /// A writer for `levels` levels, a `tokens` column when `tokens`, and the carried columns
    /// `carry` (name, type).
    pub fn create(
        path: &Path,
        levels: usize,
        tokens: bool,
        carry: Vec<(String, CarriedType)>,
    ) -> Result<Self, String> {
        let err = |e: &dyn std::fmt::Display| format!("{}: {e}", path.display());
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| err(&e))?;
        }
        clear_stale(path);
        let tmp = tmp_name(path);
        let file = File::create(&tmp).map_err(|e| err(&e))?;
        let props = WriterProperties::builder()
            .set_compression(Compression::ZSTD(
                ZstdLevel::try_new(3).expect("valid level"),
            ))
            .set_max_row_group_size(ROW_GROUP)
            .build();
        let schema = schema(levels, tokens, &carry);
        let writer =
            ArrowWriter::try_new(file, schema.clone(), Some(props)).map_err(|e| err(&e))?;
        Ok(Self {
            writer,
            schema,
            levels,
            tokens,
            carry,
            tmp,
            path: path.to_path_buf(),
            rows: 0,
        })
    }

    pub fn write(&mut self, rows: &[CodeRow]) -> Result<(), String> {
        let name = self.path.display().to_string();
        let mut columns: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from_iter_values(
                rows.iter().map(|r| r.id.as_str()),
            )),
            Arc::new(UInt64Array::from_iter_values(rows.iter().map(|r| r.row))),
        ];
        for l in 0..self.levels {
            let level: Vec<u16> = rows
                .iter()
                .map(|r| {
                    u16::try_from(r.code[l]).map_err(|_| {
                        format!(
                            "{name}: row {}: c{} = {} exceeds u16",
                            r.row,
                            l + 1,
                            r.code[l]
                        )
                    })
                })
                .collect::<Result<_, _>>()?;
            columns.push(Arc::new(UInt16Array::from(level)));
        }
        columns.push(Arc::new(UInt32Array::from_iter_values(
            rows.iter().map(|r| r.cell),
        )));
        columns.push(Arc::new(BooleanArray::from_iter(
            rows.iter().map(|r| Some(r.truncated)),
        )));
        columns.push(Arc::new(UInt32Array::from_iter_values(
            rows.iter().map(|r| r.bytes),
        )));
        for l in 0..self.levels {
            columns.push(Arc::new(Float32Array::from_iter_values(
                rows.iter().map(|r| r.residuals[l]),
            )));
        }
        if self.tokens {
            let tokens = rows
                .iter()
                .map(|r| {
                    r.tokens
                        .ok_or_else(|| format!("{name}: row {}: no token count", r.row))
                })
                .collect::<Result<Vec<u32>, _>>()?;
            columns.push(Arc::new(UInt32Array::from(tokens)));
        }
        for (c, (field, t)) in self.carry.iter().enumerate() {
            let mismatch = |r: &CodeRow| {
                format!(
                    "row {}: carried field `{field}` is not {} as in the rows before it",
                    r.row,
                    t.name()
                )
            };
            let column: ArrayRef = match t {
                CarriedType::Float64 => Arc::new(
                    rows.iter()
                        .map(|r| match &r.carried[c] {
                            Carried::Null => Ok(None),
                            Carried::Number(x) => Ok(Some(*x)),
                            _ => Err(mismatch(r)),
                        })
                        .collect::<Result<Float64Array, _>>()?,
                ),
                CarriedType::Utf8 => Arc::new(
                    rows.iter()
                        .map(|r| match &r.carried[c] {
                            Carried::Null => Ok(None),
                            Carried::Text(s) => Ok(Some(s.as_str())),
                            _ => Err(mismatch(r)),
                        })
                        .collect::<Result<StringArray, _>>()?,
                ),
                CarriedType::Boolean => Arc::new(
                    rows.iter()
                        .map(|r| match &r.carried[c] {
                            Carried::Null => Ok(None),
                            Carried::Bool(b) => Ok(Some(*b)),
                            _ => Err(mismatch(r)),
                        })
                        .collect::<Result<BooleanArray, _>>()?,
                ),
            };
            columns.push(column);
        }
        let batch = RecordBatch::try_new(self.schema.clone(), columns)
            .map_err(|e| format!("{name}: {e}"))?;
        self.writer
            .write(&batch)
            .map_err(|e| format!("{name}: {e}"))?;
        self.rows += rows.len() as u64;
        Ok(())
    }

    /// Closes, syncs and renames the file into place (and syncs its directory, so the
    /// rename survives a crash); returns the rows written.
    pub fn finish(self) -> Result<u64, String> {
        let err = |e: &dyn std::fmt::Display| format!("{}: {e}", self.path.display());
        let file = self.writer.into_inner().map_err(|e| err(&e))?;
        file.sync_all().map_err(|e| err(&e))?;
        std::fs::rename(&self.tmp, &self.path).map_err(|e| err(&e))?;
        sync_dir(&self.path).map_err(|e| err(&e))?;
        Ok(self.rows)
    }

    /// Drops the temporary file (after an error).
    pub fn abort(self) {
        let tmp = self.tmp.clone();
        drop(self);
        let _ = std::fs::remove_file(tmp);
    }
}

/// Writes a done marker (pretty JSON and a newline) by rename, so it is never seen
/// half-written, and syncs it and its directory, so it is durable once this returns.
pub fn write_marker<M: Serialize>(path: &Path, marker: &M) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    clear_stale(path);
    let tmp = tmp_name(path);
    let mut file = File::create(&tmp)?;
    std::io::Write::write_all(
        &mut file,
        (serde_json::to_string_pretty(marker)? + "\n").as_bytes(),
    )?;
    file.sync_all()?;
    std::fs::rename(&tmp, path)?;
    sync_dir(path)
}

/// Reads a done marker; `None` when there is none.
pub fn read_marker<M: serde::de::DeserializeOwned>(path: &Path) -> Result<Option<M>, String> {
    match std::fs::read_to_string(path) {
        Ok(s) => serde_json::from_str(&s)
            .map(Some)
            .map_err(|e| format!("{}: not a done marker: {e}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("{}: {e}", path.display())),
    }
}

/// Syncs the directory holding `path`, so a rename into it is durable.
pub fn sync_dir(path: &Path) -> std::io::Result<()> {
    match path.parent() {
        Some(dir) => File::open(dir)?.sync_all(),
        None => Ok(()),
    }
}

/// Every `codes/**/*.parquet` under `out`, sorted.
pub fn code_files(out: &Path) -> Result<Vec<PathBuf>, String> {
    fn walk(dir: &Path, files: &mut Vec<PathBuf>) -> std::io::Result<()> {
        for entry in std::fs::read_dir(dir)? {
            let path = entry?.path();
            if path.is_dir() {
                walk(&path, files)?;
            } else if path.extension().is_some_and(|e| e == "parquet") {
                files.push(path);
            }
        }
        Ok(())
    }
    let dir = out.join("codes");
    let mut files = Vec::new();
    walk(&dir, &mut files).map_err(|e| format!("{}: {e}", dir.display()))?;
    files.sort();
    Ok(files)
}

/// One codes file of a labeled corpus, in the sorted list every reader (mix, describe) sees.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CodesFile {
    /// How plans, selections and cards name it: its path under `codes/`, prefixed by the
    /// index of its `--codes` directory when there are several.
    pub name: String,
    #[serde(skip)]
    pub path: PathBuf,
}

/// Every codes file of the `--codes` directories, sorted by name, and the marker all agree
/// on; refuses files without a done marker and codes of different labelers.
pub fn list(dirs: &[PathBuf]) -> Result<(Vec<CodesFile>, Done), String> {
    // Named by the sorted directory list, so the order of `--codes` changes nothing.
    let mut dirs = dirs.to_vec();
    dirs.sort();
    dirs.dedup();
    let dirs = &dirs[..];
    let mut files = Vec::new();
    let mut first: Option<(String, Done)> = None;
    for (d, dir) in dirs.iter().enumerate() {
        let found = code_files(dir)?;
        for path in found {
            let rel = path
                .strip_prefix(dir.join("codes"))
                .expect("code_files lists under codes/")
                .to_path_buf();
            // `codes/<rel>.parquet` ↔ `done/<rel>.json`: exactly one `.parquet` comes off (an
            // input `n.parquet` has codes `n.parquet.parquet` and marker `n.parquet.json`).
            let input = rel.to_string_lossy();
            let input = input.strip_suffix(".parquet").unwrap_or(&input);
            let marker_path = dir.join("done").join(format!("{input}.json"));
            let done = Done::read(&marker_path)?.ok_or_else(|| {
                format!(
                    "{}: no done marker {}: the labeling of this file did not finish",
                    path.display(),
                    marker_path.display()
                )
            })?;
            match &first {
                None => first = Some((path.display().to_string(), done.clone())),
                Some((at, f)) => {
                    if (&f.fingerprint, f.encoder, &f.weights)
                        != (&done.fingerprint, done.encoder, &done.weights)
                    {
                        return Err(format!(
                            "{} was labeled by bundle {} with the {} encoder, {at} by bundle {} with the {} encoder: codes of different labelers are not comparable",
                            path.display(),
                            done.fingerprint,
                            done.encoder,
                            f.fingerprint,
                            f.encoder
                        ));
                    }
                    if f.tokens_tokenizer != done.tokens_tokenizer {
                        let by = |t: &Option<String>| match t {
                            Some(sha) => format!("token counts by tokenizer sha256 {sha}"),
                            None => "no token counts".to_string(),
                        };
                        return Err(format!(
                            "{} has {}, {at} {}: token counts of different tokenizers are not comparable",
                            path.display(),
                            by(&done.tokens_tokenizer),
                            by(&f.tokens_tokenizer)
                        ));
                    }
                }
            }
            let name = if dirs.len() == 1 {
                rel.to_string_lossy().into_owned()
            } else {
                format!("{d}/{}", rel.to_string_lossy())
            };
            files.push(CodesFile { name, path });
        }
    }
    let Some((_, marker)) = first else {
        return Err(format!(
            "no codes/*.parquet under {}",
            dirs.iter()
                .map(|d| d.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ));
    };
    files.sort_by(|a, b| a.name.cmp(&b.name));
    Ok((files, marker))
}

/// The `c1..c{depth}` columns of a record batch of a codes file (`path` names it in errors).
pub fn level_columns<'a>(
    batch: &'a RecordBatch,
    depth: usize,
    path: &Path,
) -> Result<Vec<&'a arrow_array::PrimitiveArray<arrow_array::types::UInt16Type>>, String> {
    use arrow_array::cast::AsArray;
    (1..=depth)
        .map(|l| {
            batch
                .column_by_name(&format!("c{l}"))
                .and_then(|c| c.as_primitive_opt())
                .ok_or_else(|| format!("{}: column c{l} is missing or not u16", path.display()))
        })
        .collect()
}

/// The number of levels (`c1`.. columns) of a codes file, from its footer alone.
pub fn code_levels(path: &Path) -> Result<usize, String> {
    let err = |e: &dyn std::fmt::Display| format!("{}: {e}", path.display());
    let file = File::open(path).map_err(|e| err(&e))?;
    let reader = parquet::file::reader::SerializedFileReader::new(file).map_err(|e| err(&e))?;
    let schema = parquet::file::reader::FileReader::metadata(&reader)
        .file_metadata()
        .schema_descr_ptr();
    let levels = (0..schema.num_columns())
        .filter(|&i| is_level_column(schema.column(i).name()))
        .count();
    if levels == 0 {
        return Err(format!("{}: no c1.. columns", path.display()));
    }
    Ok(levels)
}

fn is_level_column(n: &str) -> bool {
    n.len() > 1 && n.starts_with('c') && n[1..].chars().all(|c| c.is_ascii_digit())
}

/// Reads the `c1`.. columns of a codes file, calling `each` with one code per row.
pub fn read_codes(path: &Path, mut each: impl FnMut(&[u16])) -> Result<usize, String> {
    read_codes_with(path, false, |code, _| each(code))
}

/// [`read_codes`] with each row's `tokens` (`--count-tokens`) when `tokens`, else 0; a file
/// without the column is an error naming it.
pub fn read_codes_with(
    path: &Path,
    tokens: bool,
    mut each: impl FnMut(&[u16], u32),
) -> Result<usize, String> {
    use arrow_array::cast::AsArray;
    use parquet::arrow::ProjectionMask;
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    let err = |e: &dyn std::fmt::Display| format!("{}: {e}", path.display());
    let file = File::open(path).map_err(|e| err(&e))?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(file).map_err(|e| err(&e))?;
    let schema = builder.parquet_schema();
    let mut leaves: Vec<usize> = (0..schema.num_columns())
        .filter(|&i| is_level_column(schema.column(i).name()))
        .collect();
    if leaves.is_empty() {
        return Err(format!("{}: no c1.. columns", path.display()));
    }
    let depth = leaves.len();
    if tokens {
        let at = (0..schema.num_columns())
            .find(|&i| schema.column(i).name() == TOKENS_COLUMN)
            .ok_or_else(|| format!("{}: no {TOKENS_COLUMN} column", path.display()))?;
        leaves.push(at);
    }
    let mask = ProjectionMask::leaves(schema, leaves);
    let reader = builder
        .with_projection(mask)
        .with_batch_size(8192)
        .build()
        .map_err(|e| err(&e))?;
    let mut code = vec![0u16; depth];
    let mut rows = 0;
    for batch in reader {
        let batch = batch.map_err(|e| err(&e))?;
        let cols = level_columns(&batch, depth, path)?;
        let counts = if tokens {
            Some(
                batch
                    .column_by_name(TOKENS_COLUMN)
                    .and_then(|c| c.as_primitive_opt::<arrow_array::types::UInt32Type>())
                    .ok_or_else(|| {
                        format!("{}: column {TOKENS_COLUMN} is not u32", path.display())
                    })?,
            )
        } else {
            None
        };
        for i in 0..batch.num_rows() {
            for (l, c) in cols.iter().enumerate() {
                code[l] = c.value(i);
            }
            each(&code, counts.map_or(0, |t| t.value(i)));
        }
        rows += batch.num_rows();
    }
    Ok(rows)
}
