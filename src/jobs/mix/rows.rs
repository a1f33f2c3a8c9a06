//! Reading the codes files for a mixture: one visitor call per row with what the rules need
//! (its group prefix, size, quality, and its place in the candidate order), projected to those
//! columns only. Also the order every rule uses (after quality, by the row key,
//! [`crate::quantize::key_hash`]).

use std::fs::File;
use std::path::Path;

use arrow_array::Array;
use arrow_array::cast::AsArray;
use arrow_array::types::{Float32Type, Float64Type, UInt64Type};
use arrow_schema::DataType;
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

/// Rows per record batch read.
const BATCH: usize = 16_384;

/// A row's place in the order of rule 5, as bytes compared left to right: quality descending
/// (when the spec has one), then the row key, then the file (its index in the sorted file
/// list) and the row. Unique per row.
pub type OrderKey = [u8; 28];

/// After every row: a cut at `LAST` takes them all.
pub const LAST: OrderKey = [0xff; 28];

pub fn order_key(quality: Option<f64>, key: u64, file: u32, row: u64) -> OrderKey {
    order_key_bits(quality_bits(quality), key, file, row)
}

/// The first 8 bytes of a row's order key (big-endian): its quality, larger first; 0 without.
pub fn quality_bits(quality: Option<f64>) -> u64 {
    match quality {
        // Larger quality first: the complement of the order-preserving bit pattern.
        Some(q) => {
            let q = if q == 0.0 { 0.0 } else { q };
            let bits = q.to_bits();
            let ascending = if bits >> 63 == 1 {
                !bits
            } else {
                bits | 1 << 63
            };
            !ascending
        }
        None => 0,
    }
}

/// [`order_key`] from the quality's bits ([`quality_bits`]).
pub fn order_key_bits(q: u64, key: u64, file: u32, row: u64) -> OrderKey {
    let mut k = [0u8; 28];
    k[..8].copy_from_slice(&q.to_be_bytes());
    k[8..16].copy_from_slice(&key.to_be_bytes());
    k[16..20].copy_from_slice(&file.to_be_bytes());
    k[20..].copy_from_slice(&row.to_be_bytes());
    k
}

/// What a pass reads of each row.
#[derive(Debug, Clone)]
pub struct Columns {
    /// Levels of the group prefix read (`c1..c{depth}`).
    pub depth: usize,
    /// The size column, or `None` for docs (every row 1).
    pub size: Option<String>,
    pub quality: Option<String>,
    /// Whether the id is needed (for the row key).
    pub id: bool,
    /// Whether `r1..r{depth}` are read (for bucket cards).
    pub residuals: bool,
}

/// One row as a pass sees it.
pub struct RowView<'a> {
    pub row: u64,
    pub id: &'a str,
    /// `c1..c{depth}`.
    pub code: &'a [u16],
    /// `r1..r{depth}` when [`Columns::residuals`], else empty.
    pub residuals: &'a [f32],
    /// `None`: null (or not a finite number >= 0 for a size).
    pub size: Option<f64>,
    pub quality: Option<f64>,
}

/// Refuses a column that is missing or not numeric, naming the file.
pub fn check_numeric(path: &Path, what: &str, column: &str) -> Result<(), String> {
    let file = File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let b = ParquetRecordBatchReaderBuilder::try_new(file)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let schema = b.schema();
    match schema.field_with_name(column) {
        Ok(f) if f.data_type().is_numeric() => Ok(()),
        Ok(f) => Err(format!(
            "{what} = \"{column}\": {} holds it as {}, not a number",
            path.display(),
            f.data_type()
        )),
        Err(_) => Err(format!(
            "{what} = \"{column}\": {} has no such column (carry it with `hermes label --carry {column}`; columns: {})",
            path.display(),
            schema
                .fields()
                .iter()
                .map(|f| f.name().as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )),
    }
}

/// Calls `each` for every row of the codes file at `path`, in row order.
pub fn scan(path: &Path, cols: &Columns, mut each: impl FnMut(RowView<'_>)) -> Result<u64, String> {
    let err = |e: &dyn std::fmt::Display| format!("{}: {e}", path.display());
    let file = File::open(path).map_err(|e| err(&e))?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(file).map_err(|e| err(&e))?;
    let pq = builder.parquet_schema();
    let mut wanted: Vec<String> = vec!["row".into()];
    if cols.id {
        wanted.push("id".into());
    }
    wanted.extend((1..=cols.depth).map(|l| format!("c{l}")));
    if cols.residuals {
        wanted.extend((1..=cols.depth).map(|l| format!("r{l}")));
    }
    wanted.extend(cols.size.iter().cloned());
    wanted.extend(cols.quality.iter().cloned());
    let mut leaves = Vec::new();
    for name in &wanted {
        let i = (0..pq.num_columns())
            .find(|&i| pq.column(i).name() == name)
            .ok_or_else(|| format!("{}: no column `{name}`", path.display()))?;
        leaves.push(i);
    }
    leaves.sort_unstable();
    leaves.dedup();
    let mask = ProjectionMask::leaves(pq, leaves);
    let reader = builder
        .with_projection(mask)
        .with_batch_size(BATCH)
        .build()
        .map_err(|e| err(&e))?;
    let numeric = |batch: &arrow_array::RecordBatch,
                   name: &str|
     -> Result<arrow_array::Float64Array, String> {
        let col = batch
            .column_by_name(name)
            .ok_or_else(|| format!("{}: no column `{name}`", path.display()))?;
        let cast = arrow_cast::cast(col, &DataType::Float64)
            .map_err(|e| format!("{}: column `{name}`: {e}", path.display()))?;
        Ok(cast.as_primitive::<Float64Type>().clone())
    };
    let mut code = vec![0u16; cols.depth];
    let mut r = vec![0f32; if cols.residuals { cols.depth } else { 0 }];
    let mut n = 0u64;
    for batch in reader {
        let batch = batch.map_err(|e| err(&e))?;
        let rows = batch
            .column_by_name("row")
            .and_then(|c| c.as_primitive_opt::<UInt64Type>())
            .ok_or_else(|| format!("{}: column `row` is missing or not u64", path.display()))?;
        let ids = if cols.id {
            Some(
                batch
                    .column_by_name("id")
                    .and_then(|c| c.as_string_opt::<i32>())
                    .ok_or_else(|| {
                        format!("{}: column `id` is missing or not utf8", path.display())
                    })?,
            )
        } else {
            None
        };
        let levels = crate::corpus::codes::level_columns(&batch, cols.depth, path)?;
        let residuals: Vec<_> = if cols.residuals {
            (1..=cols.depth)
                .map(|l| {
                    batch
                        .column_by_name(&format!("r{l}"))
                        .and_then(|c| c.as_primitive_opt::<Float32Type>())
                        .ok_or_else(|| {
                            format!("{}: column r{l} is missing or not f32", path.display())
                        })
                })
                .collect::<Result<_, _>>()?
        } else {
            Vec::new()
        };
        let size = cols
            .size
            .as_deref()
            .map(|s| numeric(&batch, s))
            .transpose()?;
        let quality = cols
            .quality
            .as_deref()
            .map(|q| numeric(&batch, q))
            .transpose()?;
        for i in 0..batch.num_rows() {
            for (l, c) in levels.iter().enumerate() {
                code[l] = c.value(i);
            }
            for (l, c) in residuals.iter().enumerate() {
                r[l] = c.value(i);
            }
            let size = match &size {
                None => Some(1.0),
                Some(a) if a.is_valid(i) => Some(a.value(i)).filter(|x| x.is_finite() && *x >= 0.0),
                Some(_) => None,
            };
            let quality = match &quality {
                None => None,
                Some(a) if a.is_valid(i) => Some(a.value(i)).filter(|x| !x.is_nan()),
                Some(_) => None,
            };
            each(RowView {
                row: rows.value(i),
                id: ids.map_or("", |a| a.value(i)),
                code: &code,
                residuals: &r,
                size,
                quality,
            });
        }
        n += batch.num_rows() as u64;
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn higher_quality_sorts_first_then_the_key() {
        let k = |q: f64, key: u64| order_key(Some(q), key, 0, 0);
        assert!(k(0.9, 5) < k(0.5, 1));
        assert!(k(0.5, 1) < k(0.5, 2));
        assert!(k(-1.0, 0) > k(0.0, 9));
        assert!(k(-1.0, 0) < k(-2.0, 0));
        assert_eq!(k(0.0, 3), k(-0.0, 3));
        assert!(order_key(None, 1, 0, 9) < order_key(None, 1, 1, 0));
    }
}
