//! The plan's scratch files: pass 1 reads each codes file once (Parquet decoding, the row key's
//! sha256) and writes one fixed-size record per candidate-eligible row; every later pass (the
//! quality cuts, the crossing rows) reads those records back instead of the Parquet file, with
//! a bounded buffer. Disk grows with the rows (36 bytes a row); memory does not. The files
//! live in a directory of their own under `--out` and are removed when the plan's count
//! ([`super::plan::Counted`]) is dropped.
//!
//! Each codes file's records are split over [`PARTS`] files by their stage-1 bucket, so that a
//! search pass reads one part at a time and touches only the histograms of that part's groups
//! (they stay in the CPU caches, where a pass in file order jumps among every group's
//! histograms and waits on memory at each row), and threads take whole parts (a group, and a
//! merged thin pool, lies in one part: they never share a histogram).
//!
//! A record, little-endian: the row's group slot in its file's table (u32, see
//! [`FileCount::codes`]), its size (f64), its quality bits ([`super::rows::quality_bits`], u64),
//! its row key ([`crate::quantize::key_hash`], u64) and its row (u64).

use std::collections::HashMap;
use std::fs::File;
use std::hash::{BuildHasherDefault, Hasher};
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use super::rows::{Columns, quality_bits, scan};
use crate::quantize::{key_hash, pack};

/// Bytes of one record.
pub const RECORD: usize = 36;
/// Records read at a time (a 288 KiB buffer).
const CHUNK: usize = 8192;
/// Parts of each codes file's records.
pub const PARTS: usize = 64;
/// Each part's write buffer in pass 1 (64 parts: 4 MiB per file being read).
const PART_BUFFER: usize = 64 << 10;

/// The part of a row whose stage-1 bucket (its prefix at the spec's `depth`) is `bucket`.
pub fn part(bucket: &[u16]) -> usize {
    (pack(bucket) % PARTS as u128) as usize
}

/// One eligible row as the later passes see it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Record {
    pub slot: u32,
    pub size: f64,
    pub quality: u64,
    pub key: u64,
    pub row: u64,
}

impl Record {
    fn write(&self, out: &mut [u8]) {
        out[..4].copy_from_slice(&self.slot.to_le_bytes());
        out[4..12].copy_from_slice(&self.size.to_le_bytes());
        out[12..20].copy_from_slice(&self.quality.to_le_bytes());
        out[20..28].copy_from_slice(&self.key.to_le_bytes());
        out[28..36].copy_from_slice(&self.row.to_le_bytes());
    }

    #[inline]
    fn read(b: &[u8]) -> Record {
        let u64_at = |i: usize| u64::from_le_bytes(b[i..i + 8].try_into().expect("8 bytes"));
        Record {
            slot: u32::from_le_bytes(b[..4].try_into().expect("4 bytes")),
            size: f64::from_bits(u64_at(4)),
            quality: u64_at(12),
            key: u64_at(20),
            row: u64_at(28),
        }
    }
}

/// The hasher of the per-file prefix table: one multiply per packed prefix (SipHash was a
/// tenth of pass 1; the keys are a file's own codes, not input an attacker picks).
#[derive(Default)]
pub struct PrefixHasher(u64);

impl Hasher for PrefixHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }

    fn write_u128(&mut self, x: u128) {
        let folded = (x as u64) ^ ((x >> 64) as u64).rotate_left(29);
        self.0 = (self.0 ^ folded).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        self.0 ^= self.0 >> 29;
    }
}

/// A slot's counts in one codes file: every row with its prefix.
#[derive(Debug, Clone, Default)]
pub struct SlotCount {
    pub rows: u64,
    pub excluded: u64,
    pub eligible: u64,
    pub eligible_size: f64,
    /// The quality bits of one eligible row, and the bits in which any other differs (the
    /// bytes all share start every search of the group).
    pub quality_first: u64,
    pub quality_diff: u64,
}

impl SlotCount {
    /// Adds a later file's counts of the same prefix.
    pub fn merge(&mut self, o: &SlotCount) {
        if o.eligible > 0 {
            if self.eligible == 0 {
                self.quality_first = o.quality_first;
                self.quality_diff = o.quality_diff;
            } else {
                self.quality_diff |= o.quality_diff | (o.quality_first ^ self.quality_first);
            }
        }
        self.rows += o.rows;
        self.excluded += o.excluded;
        self.eligible += o.eligible;
        self.eligible_size += o.eligible_size;
    }
}

/// Pass 1 of one codes file: its prefixes (slot order) and their counts, and its scratch file.
pub struct FileCount {
    /// Each slot's prefix (`c1..c{depth}`).
    pub codes: Vec<Vec<u16>>,
    pub counts: Vec<SlotCount>,
    /// Rows read, and records written per part.
    pub rows: u64,
    pub records: Vec<u64>,
}

/// Reads codes file `path` (`cols` with the id) and writes its eligible rows to its parts
/// (`scratch(part)`), each row by its prefix's first `depth` levels. `quality`: whether the
/// spec has one (a row without a quality value is then not eligible).
pub fn count_file(
    path: &Path,
    cols: &Columns,
    seed: u64,
    quality: bool,
    depth: usize,
    scratch: &dyn Fn(usize) -> PathBuf,
) -> Result<FileCount, String> {
    let mut outs: Vec<Option<BufWriter<File>>> = (0..PARTS).map(|_| None).collect();
    let mut slots: HashMap<u128, u32, BuildHasherDefault<PrefixHasher>> = HashMap::default();
    // Each slot's part.
    let mut parts: Vec<usize> = Vec::new();
    let mut fc = FileCount {
        codes: Vec::new(),
        counts: Vec::new(),
        rows: 0,
        records: vec![0; PARTS],
    };
    // The last row's prefix and slot: neighbouring rows often share it.
    let mut last: Option<(u128, u32)> = None;
    let mut buf = [0u8; RECORD];
    let mut failed: Option<String> = None;
    let rows = scan(path, cols, |r| {
        let packed = pack(r.code);
        let slot = match last {
            Some((p, s)) if p == packed => s,
            _ => {
                let s = *slots.entry(packed).or_insert_with(|| {
                    fc.codes.push(r.code.to_vec());
                    fc.counts.push(SlotCount::default());
                    parts.push(part(&r.code[..depth.min(r.code.len())]));
                    (fc.codes.len() - 1) as u32
                });
                last = Some((packed, s));
                s
            }
        };
        let c = &mut fc.counts[slot as usize];
        c.rows += 1;
        let size = match (r.size, quality, r.quality) {
            (Some(s), false, _) | (Some(s), true, Some(_)) => s,
            _ => {
                c.excluded += 1;
                return;
            }
        };
        let q = quality_bits(r.quality);
        if c.eligible == 0 {
            c.quality_first = q;
        } else {
            c.quality_diff |= q ^ c.quality_first;
        }
        c.eligible += 1;
        c.eligible_size += size;
        Record {
            slot,
            size,
            quality: q,
            key: key_hash(seed, r.id),
            row: r.row,
        }
        .write(&mut buf);
        if failed.is_some() {
            return;
        }
        let p = parts[slot as usize];
        fc.records[p] += 1;
        let out = match &mut outs[p] {
            Some(o) => o,
            o @ None => {
                let path = scratch(p);
                match File::create(&path) {
                    Ok(f) => o.insert(BufWriter::with_capacity(PART_BUFFER, f)),
                    Err(e) => {
                        failed = Some(format!("{}: {e}", path.display()));
                        return;
                    }
                }
            }
        };
        if let Err(e) = out.write_all(&buf) {
            failed = Some(format!("{}: {e}", scratch(p).display()));
        }
    })?;
    if let Some(e) = failed {
        return Err(e);
    }
    for (p, out) in outs.iter_mut().enumerate() {
        if let Some(o) = out {
            o.flush()
                .map_err(|e| format!("{}: {e}", scratch(p).display()))?;
        }
    }
    fc.rows = rows;
    Ok(fc)
}

/// Calls `each` for every record of a scratch file holding `records` of them, in order.
pub fn read_file(
    scratch: &Path,
    records: u64,
    mut each: impl FnMut(&Record),
) -> Result<(), String> {
    let io = |e: std::io::Error| format!("{}: {e}", scratch.display());
    let mut f = File::open(scratch).map_err(io)?;
    let mut buf = vec![0u8; CHUNK * RECORD];
    let mut left = records;
    while left > 0 {
        let n = left.min(CHUNK as u64) as usize;
        f.read_exact(&mut buf[..n * RECORD]).map_err(io)?;
        for b in buf[..n * RECORD].chunks_exact(RECORD) {
            each(&Record::read(b));
        }
        left -= n as u64;
    }
    Ok(())
}

/// How many codes files may be read at once by readers that each hold the file and up to
/// [`PARTS`] more (pass 1's scratch files, swarm's selection writers): `threads`, or fewer
/// when the descriptor limit (raised to the hard limit first) cannot hold them with 256
/// descriptors to spare (a soft limit of 1,024 allows 11).
pub fn readers_within_descriptors(threads: usize) -> usize {
    const SPARE: u64 = 256;
    let per_reader = PARTS as u64 + 1;
    let limit = crate::descriptors::raise_soft_limit().unwrap_or(1024);
    let room = (limit.saturating_sub(SPARE) / per_reader).max(1);
    threads
        .min(usize::try_from(room).unwrap_or(usize::MAX))
        .max(1)
}

/// The scratch directory of one plan, removed (with its files) when dropped.
pub struct Scratch {
    dir: PathBuf,
}

impl Scratch {
    /// A new directory under `parent` (created if needed), named after this process.
    pub fn create(parent: &Path) -> Result<Scratch, String> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        std::fs::create_dir_all(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
        // `create_dir`, not `_all`: a name another task (another host sharing `--out`) took
        // already is an error here, and the next name is tried.
        for attempt in 0u32.. {
            let dir = parent.join(format!(".scratch-{}-{nanos}-{attempt}", std::process::id()));
            match std::fs::create_dir(&dir) {
                Ok(()) => return Ok(Scratch { dir }),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && attempt < 1000 => {}
                Err(e) => return Err(format!("{}: {e}", dir.display())),
            }
        }
        unreachable!("the loop returns")
    }

    /// Codes file `i`'s scratch file of part `part`.
    pub fn file(&self, i: usize, part: usize) -> PathBuf {
        self.dir.join(format!("{i}.{part}.rows"))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_read_back_as_written() {
        let r = Record {
            slot: 7,
            size: 12.5,
            quality: 0x4000_1234_5678_9abc,
            key: u64::MAX - 3,
            row: 1 << 40,
        };
        let mut b = [0u8; RECORD];
        r.write(&mut b);
        assert_eq!(Record::read(&b), r);
    }

    #[test]
    fn scratch_directory_goes_when_dropped() {
        let parent = std::env::temp_dir().join(format!("hermes-spill-{}", std::process::id()));
        let s = Scratch::create(&parent).unwrap();
        std::fs::write(s.file(0, 3), b"x").unwrap();
        let dir = s.dir.clone();
        assert!(dir.is_dir());
        drop(s);
        assert!(!dir.exists());
        let _ = std::fs::remove_dir_all(&parent);
    }
}
