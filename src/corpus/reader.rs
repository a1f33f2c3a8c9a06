//! Streaming documents out of one input file, whatever its size.
//!
//! `.jsonl` (plain, `.gz`, `.zst`) is read line by line through a buffered decoder;
//! `.parquet` one record batch at a time with only the id and text columns decoded. Memory is
//! bounded by one line or one batch, never the file. Every error names the file and, where
//! there is one, the row (0-based, as in the output's `row` column).

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;

use arrow_array::{Array, RecordBatch};
use arrow_schema::DataType;
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::{ParquetRecordBatchReader, ParquetRecordBatchReaderBuilder};
use parquet::file::reader::ChunkReader;

/// One document of an input file.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    /// Position in the file: the line (JSONL, blank lines skipped but counted) or the row
    /// (Parquet), from 0.
    pub row: u64,
    /// The id field when present (strings as they are, integers in decimal).
    pub id: Option<String>,
    pub text: String,
    /// The `--carry` fields' values, in [`Fields::carry`] order.
    pub carried: Vec<Carried>,
}

/// One carried field's value in one row (`hermes label --carry`): what the codes files' column
/// of the same name holds.
#[derive(Debug, Clone, PartialEq)]
pub enum Carried {
    /// The row lacks the field, or it is JSON `null` / a Parquet null.
    Null,
    /// JSON numbers and Parquet numeric columns, as float64.
    Number(f64),
    Text(String),
    Bool(bool),
}

/// The default of `--max-line-bytes`: 256 MiB, far above any document `--max-doc-chars` keeps.
pub const DEFAULT_MAX_LINE_BYTES: usize = 256 << 20;

/// Which fields to read, and the longest line read.
#[derive(Debug, Clone)]
pub struct Fields {
    pub text: String,
    pub id: String,
    /// Fields copied into the codes files (`--carry`).
    pub carry: Vec<String>,
    /// A JSONL line longer than this fails its file (`--max-line-bytes`).
    pub max_line_bytes: usize,
}

impl Default for Fields {
    fn default() -> Self {
        Self {
            text: "text".into(),
            id: "id".into(),
            carry: Vec::new(),
            max_line_bytes: DEFAULT_MAX_LINE_BYTES,
        }
    }
}

/// A read failure; the message names the file (and row).
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct ReadError(pub String);

/// An open input file yielding records in order.
pub enum Reader {
    Jsonl(JsonlReader),
    Parquet(ParquetReader),
}

/// How an input file's bytes are laid out, from its name: `.parquet`, `.gz`, `.zst`, or
/// plain JSONL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Jsonl,
    JsonlGzip,
    JsonlZstd,
    Parquet,
}

impl Format {
    pub fn of(path: &Path) -> Self {
        let s = path.to_string_lossy();
        if s.ends_with(".parquet") {
            Format::Parquet
        } else if s.ends_with(".gz") {
            Format::JsonlGzip
        } else if s.ends_with(".zst") {
            Format::JsonlZstd
        } else {
            Format::Jsonl
        }
    }
}

impl Reader {
    /// Opens `path` (format by extension). `name` is how errors call the file.
    pub fn open(path: &Path, name: &str, fields: &Fields) -> Result<Self, ReadError> {
        let file = File::open(path).map_err(|e| ReadError(format!("{name}: cannot open: {e}")))?;
        match Format::of(path) {
            Format::Parquet => ParquetReader::open(file, name, fields).map(Reader::Parquet),
            format => Self::jsonl(format, file, name, fields),
        }
    }

    /// Reads a file already in memory (the fuzz targets' door; also handy in tests).
    pub fn from_bytes(
        format: Format,
        bytes: bytes::Bytes,
        name: &str,
        fields: &Fields,
    ) -> Result<Self, ReadError> {
        match format {
            Format::Parquet => ParquetReader::open(bytes, name, fields).map(Reader::Parquet),
            format => Self::jsonl(format, std::io::Cursor::new(bytes), name, fields),
        }
    }

    fn jsonl(
        format: Format,
        input: impl Read + Send + 'static,
        name: &str,
        fields: &Fields,
    ) -> Result<Self, ReadError> {
        let lines: Box<dyn BufRead + Send> = match format {
            Format::JsonlGzip => Box::new(BufReader::new(flate2::read::MultiGzDecoder::new(input))),
            Format::JsonlZstd => {
                let dec = zstd::stream::read::Decoder::new(input)
                    .map_err(|e| ReadError(format!("{name}: not zstd: {e}")))?;
                Box::new(BufReader::new(dec))
            }
            _ => Box::new(BufReader::new(input)),
        };
        Ok(Reader::Jsonl(JsonlReader {
            lines,
            name: name.to_string(),
            fields: fields.clone(),
            row: 0,
            buf: Vec::new(),
        }))
    }
}

impl Iterator for Reader {
    type Item = Result<Record, ReadError>;

    fn next(&mut self) -> Option<Self::Item> {
        match self {
            Reader::Jsonl(r) => r.next(),
            Reader::Parquet(r) => r.next(),
        }
    }
}

pub struct JsonlReader {
    lines: Box<dyn BufRead + Send>,
    /// The file as errors name it.
    name: String,
    fields: Fields,
    /// The next line's index.
    row: u64,
    /// The current line's bytes (reused).
    buf: Vec<u8>,
}

impl JsonlReader {
    fn next(&mut self) -> Option<Result<Record, ReadError>> {
        loop {
            self.buf.clear();
            let row = self.row;
            let limit = self.fields.max_line_bytes as u64;
            match (&mut self.lines)
                .take(limit + 1)
                .read_until(b'\n', &mut self.buf)
            {
                Ok(0) => return None,
                Ok(n) if n as u64 > limit && self.buf.last() != Some(&b'\n') => {
                    return Some(Err(ReadError(format!(
                        "{}: row {row}: the line is longer than {limit} bytes (--max-line-bytes)",
                        self.name
                    ))));
                }
                Ok(_) => self.row += 1,
                Err(e) => {
                    return Some(Err(ReadError(format!(
                        "{}: row {row}: cannot read (corrupt or truncated file?): {e}",
                        self.name
                    ))));
                }
            }
            if self.buf.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            return Some(self.parse(row));
        }
    }

    fn parse(&self, row: u64) -> Result<Record, ReadError> {
        let err = |m: String| ReadError(format!("{}: row {row}: {m}", self.name));
        let bytes = match self.buf.strip_prefix(super::json::BOM) {
            Some(rest) if row == 0 => rest,
            _ => &self.buf[..],
        };
        let line = std::str::from_utf8(bytes).map_err(|e| err(format!("not UTF-8 ({e})")))?;
        let value = super::json::parse_line(line).map_err(err)?;
        let obj = value
            .as_object()
            .ok_or_else(|| err("not a JSON object".into()))?;
        let text = match obj.get(&self.fields.text) {
            Some(serde_json::Value::String(s)) => s.clone(),
            Some(other) => {
                return Err(err(format!(
                    "field `{}` is {}, not a string",
                    self.fields.text,
                    json_kind(other)
                )));
            }
            None => return Err(err(format!("missing text field `{}`", self.fields.text))),
        };
        let id = match obj.get(&self.fields.id) {
            None | Some(serde_json::Value::Null) => None,
            Some(serde_json::Value::String(s)) => Some(s.clone()),
            Some(serde_json::Value::Number(n)) => Some(n.to_string()),
            Some(other) => {
                return Err(err(format!(
                    "id field `{}` is {}, not a string or number",
                    self.fields.id,
                    json_kind(other)
                )));
            }
        };
        let carried = self
            .fields
            .carry
            .iter()
            .map(|f| match obj.get(f) {
                None | Some(serde_json::Value::Null) => Ok(Carried::Null),
                Some(serde_json::Value::Number(n)) => {
                    Ok(Carried::Number(n.as_f64().unwrap_or(f64::NAN)))
                }
                Some(serde_json::Value::String(s)) => Ok(Carried::Text(s.clone())),
                Some(serde_json::Value::Bool(b)) => Ok(Carried::Bool(*b)),
                Some(other) => Err(err(format!(
                    "carried field `{f}` is {}, not a number, string or boolean",
                    json_kind(other)
                ))),
            })
            .collect::<Result<_, _>>()?;
        Ok(Record {
            row,
            id,
            text,
            carried,
        })
    }
}

fn json_kind(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

/// Runs a call into the parquet crate, turning a panic into an error: on corrupt input,
/// parquet 57 can panic (an `unwrap` in its metadata decoder, found by the `corpus_file` fuzz
/// target). Unchecked, the panic ended the reading thread, so the file looked finished with
/// fewer rows; now the file fails with a message like any other corrupt file.
pub fn contained<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).map_err(|p| {
        let what = p
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| p.downcast_ref::<String>().cloned())
            .unwrap_or_default();
        format!("corrupt file (the Parquet decoder failed: {what})")
    })
}

/// Rows per record batch read from Parquet (bounds memory per batch).
const PARQUET_BATCH: usize = 1024;

pub struct ParquetReader {
    batches: ParquetRecordBatchReader,
    name: String,
    fields: Fields,
    /// The current batch's texts and ids, drained front to back.
    pending: std::collections::VecDeque<Result<Record, ReadError>>,
    /// The next row's index.
    row: u64,
    /// Set after an error: nothing more is read.
    failed: bool,
}

impl ParquetReader {
    fn open<T: ChunkReader + 'static>(
        input: T,
        name: &str,
        fields: &Fields,
    ) -> Result<Self, ReadError> {
        let err = |m: String| ReadError(format!("{name}: {m}"));
        let builder = contained(|| ParquetRecordBatchReaderBuilder::try_new(input))
            .map_err(|e| err(format!("not a readable Parquet file: {e}")))?
            .map_err(|e| err(format!("not a readable Parquet file: {e}")))?;
        let schema = builder.parquet_schema();
        let root = schema.root_schema();
        let leaf = |field: &str| {
            (0..schema.num_columns()).find(|&i| {
                let c = schema.column(i);
                c.path().parts().len() == 1 && c.name() == field
            })
        };
        let text = leaf(&fields.text).ok_or_else(|| {
            err(format!(
                "no text column `{}` (columns: {})",
                fields.text,
                root.get_fields()
                    .iter()
                    .map(|f| f.name().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        })?;
        let mut leaves = vec![text];
        leaves.extend(leaf(&fields.id));
        leaves.extend(fields.carry.iter().filter_map(|f| leaf(f)));
        leaves.sort_unstable();
        leaves.dedup();
        let mask = ProjectionMask::leaves(schema, leaves);
        let batches = builder
            .with_projection(mask)
            .with_batch_size(PARQUET_BATCH)
            .build()
            .map_err(|e| err(format!("cannot read: {e}")))?;
        Ok(Self {
            batches,
            name: name.to_string(),
            fields: fields.clone(),
            pending: Default::default(),
            row: 0,
            failed: false,
        })
    }

    fn next(&mut self) -> Option<Result<Record, ReadError>> {
        while self.pending.is_empty() {
            if self.failed {
                return None;
            }
            let next = contained(|| self.batches.next())
                .unwrap_or_else(|e| Some(Err(arrow_schema::ArrowError::ExternalError(e.into()))));
            match next? {
                Ok(batch) => self.decode(&batch),
                Err(e) => {
                    self.failed = true;
                    return Some(Err(ReadError(format!(
                        "{}: rows from {}: cannot decode (corrupt file?): {e}",
                        self.name, self.row
                    ))));
                }
            }
        }
        let next = self.pending.pop_front()?;
        if next.is_err() {
            self.failed = true;
            self.pending.clear();
        }
        Some(next)
    }

    fn decode(&mut self, batch: &RecordBatch) {
        let name = &self.name;
        let start = self.row;
        self.row += batch.num_rows() as u64;
        let err = |row: u64, m: String| ReadError(format!("{name}: row {row}: {m}"));
        let text = match strings(batch, &self.fields.text, false) {
            Ok(Some(t)) => t,
            Ok(None) => unreachable!("the text column is projected"),
            Err(m) => {
                self.pending.push_back(Err(err(start, m)));
                return;
            }
        };
        let ids = match strings(batch, &self.fields.id, true) {
            Ok(ids) => ids,
            Err(m) => {
                self.pending.push_back(Err(err(start, m)));
                return;
            }
        };
        let carried = match self
            .fields
            .carry
            .iter()
            .map(|f| carried_column(batch, f))
            .collect::<Result<Vec<_>, _>>()
        {
            Ok(c) => c,
            Err(m) => {
                self.pending.push_back(Err(err(start, m)));
                return;
            }
        };
        for (i, t) in text.into_iter().enumerate() {
            let row = start + i as u64;
            self.pending.push_back(match t {
                Some(text) => Ok(Record {
                    row,
                    id: ids.as_ref().and_then(|ids| ids[i].clone()),
                    text,
                    carried: carried.iter().map(|c| c[i].clone()).collect(),
                }),
                None => Err(err(
                    row,
                    format!("text column `{}` is null", self.fields.text),
                )),
            });
        }
    }
}

/// A carried column's values: numeric columns as float64, strings, booleans; a missing
/// column is all nulls (as a JSON row without the field).
fn carried_column(batch: &RecordBatch, column: &str) -> Result<Vec<Carried>, String> {
    use arrow_array::cast::AsArray;
    let n = batch.num_rows();
    let Some(col) = batch.column_by_name(column) else {
        return Ok(vec![Carried::Null; n]);
    };
    let valid = |i: usize| col.is_valid(i);
    Ok(match col.data_type() {
        DataType::Boolean => {
            let a = col.as_boolean();
            (0..n)
                .map(|i| {
                    if valid(i) {
                        Carried::Bool(a.value(i))
                    } else {
                        Carried::Null
                    }
                })
                .collect()
        }
        t if t.is_numeric() => {
            let a = arrow_cast::cast(col, &DataType::Float64)
                .map_err(|e| format!("carried column `{column}`: {e}"))?;
            let a = a.as_primitive::<arrow_array::types::Float64Type>();
            (0..n)
                .map(|i| {
                    if valid(i) {
                        Carried::Number(a.value(i))
                    } else {
                        Carried::Null
                    }
                })
                .collect()
        }
        _ => match strings(batch, column, false) {
            Ok(Some(v)) => v
                .into_iter()
                .map(|s| s.map_or(Carried::Null, Carried::Text))
                .collect(),
            Ok(None) => vec![Carried::Null; n],
            Err(_) => {
                return Err(format!(
                    "carried column `{column}` is {}, not numeric, string or boolean",
                    col.data_type()
                ));
            }
        },
    })
}

/// A string column (or, when `integers` is set, also an integer one) as optional strings;
/// `Ok(None)` when absent.
fn strings(
    batch: &RecordBatch,
    column: &str,
    integers: bool,
) -> Result<Option<Vec<Option<String>>>, String> {
    use arrow_array::cast::AsArray;
    use arrow_array::types::{Int32Type, Int64Type, UInt32Type, UInt64Type};
    let Some(col) = batch.column_by_name(column) else {
        return Ok(None);
    };
    fn collect<'a>(n: usize, get: impl Fn(usize) -> Option<String> + 'a) -> Vec<Option<String>> {
        (0..n).map(get).collect()
    }
    let n = col.len();
    let valid = |i: usize| col.is_valid(i);
    let out = match col.data_type() {
        DataType::Utf8 => {
            let a = col.as_string::<i32>();
            collect(n, |i| valid(i).then(|| a.value(i).to_string()))
        }
        DataType::LargeUtf8 => {
            let a = col.as_string::<i64>();
            collect(n, |i| valid(i).then(|| a.value(i).to_string()))
        }
        DataType::Utf8View => {
            let a = col.as_string_view();
            collect(n, |i| valid(i).then(|| a.value(i).to_string()))
        }
        DataType::Int64 | DataType::Int32 | DataType::UInt64 | DataType::UInt32 if !integers => {
            return Err(format!(
                "column `{column}` is {}, not a string column",
                col.data_type()
            ));
        }
        DataType::Int64 => {
            let a = col.as_primitive::<Int64Type>();
            collect(n, |i| valid(i).then(|| a.value(i).to_string()))
        }
        DataType::Int32 => {
            let a = col.as_primitive::<Int32Type>();
            collect(n, |i| valid(i).then(|| a.value(i).to_string()))
        }
        DataType::UInt64 => {
            let a = col.as_primitive::<UInt64Type>();
            collect(n, |i| valid(i).then(|| a.value(i).to_string()))
        }
        DataType::UInt32 => {
            let a = col.as_primitive::<UInt32Type>();
            collect(n, |i| valid(i).then(|| a.value(i).to_string()))
        }
        other => return Err(format!("column `{column}` is {other}, not a string column")),
    };
    Ok(Some(out))
}
