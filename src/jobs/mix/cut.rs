//! Finding, for each group, the row of the candidate order where a running total first
//! reaches a target (rule 5's crossing row, and the top-q quality cut), in passes over the
//! rows with memory bounded by the number of groups: each pass histograms the next byte of
//! the order key (256 bins) among the rows still in range, and once a range holds at most
//! [`COLLECT`] rows the next pass keeps those rows and resolves the cut exactly.
//!
//! A [`Search`] is read-only during a pass; what a pass collects lives in an [`Acc`] that the
//! pass's reader owns (so threads can search different groups at once), and accumulators of
//! the same search merge (histograms add). Each bin also keeps
//! which of the next 8 key bytes all its rows share, so a range whose rows agree on several
//! bytes (one quality value, a group's common quality exponent) skips them in one step instead
//! of spending a pass per byte: that is what kept the number of passes growing with the rows
//! of a group.

use super::quota::EPS;
use super::rows::{LAST, OrderKey};

/// Rows of a range kept to resolve a cut exactly.
pub const COLLECT: u64 = 64;

/// Where a search ended: the crossing row's key (every row at or before it is in), and the
/// count and size of the rows up to and including it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Cut {
    pub key: OrderKey,
    pub count: u64,
    pub size: f64,
}

#[derive(Clone, Copy, Default)]
struct Total {
    count: u64,
    size: f64,
}

/// A histogram bin: its rows' count and size, and the 8 key bytes after the bin's byte of one
/// of its rows (`first`) with the bits in which any other row differs (`diff`).
#[derive(Clone, Copy, Default)]
pub struct Bin {
    count: u64,
    size: f64,
    first: u64,
    diff: u64,
}

impl Bin {
    fn merge(&mut self, o: &Bin) {
        if o.count == 0 {
            return;
        }
        if self.count == 0 {
            *self = *o;
            return;
        }
        self.diff |= o.diff | (o.first ^ self.first);
        self.count += o.count;
        self.size += o.size;
    }
}

/// What one pass collected for one search (or for several sharing a first pass).
#[derive(Default, Clone)]
pub enum Acc {
    /// No row yet (histograms are allocated at their first row).
    #[default]
    Empty,
    Histogram(Box<[Bin; 256]>),
    Rows(Vec<(OrderKey, f64)>),
}

impl Acc {
    /// Adds what `other` (the same search's accumulator over later files) collected.
    pub fn merge(&mut self, other: Acc) {
        match (self, other) {
            (_, Acc::Empty) => {}
            (s @ Acc::Empty, o) => *s = o,
            (Acc::Histogram(a), Acc::Histogram(b)) => {
                for (x, y) in a.iter_mut().zip(b.iter()) {
                    x.merge(y);
                }
            }
            (Acc::Rows(a), Acc::Rows(b)) => a.extend(b),
            // One search is in one mode during a pass.
            _ => debug_assert!(false, "accumulators of different modes"),
        }
    }
}

#[derive(Clone, Copy)]
enum Mode {
    Histogram,
    Collect,
    Done(Cut),
}

/// One group's search for the first row where the running total of `weight` reaches
/// `target` (weight: 1 per row when `by_count`, else the row's size).
#[derive(Clone)]
pub struct Search {
    target: f64,
    by_count: bool,
    /// How many bytes of the order key are fixed so far: the range is the keys that start
    /// with them...
    plen: usize,
    /// ...which are these words' first `plen` bytes (the rest zeros).
    pwords: Words,
    /// Rows before the range: their count and size.
    before: Total,
    mode: Mode,
    /// Whether a pass has ended.
    started: bool,
}

/// An order key as four big-endian words (bytes 0..8, 8..16, 16..24, and 24..28 followed by
/// zeros): compared as arrays of numbers they compare as the keys' bytes do, and a pass tests
/// a prefix and picks a byte with a few shifts instead of byte slices.
pub type Words = [u64; 4];

pub fn words(key: &OrderKey) -> Words {
    let mut b = [0u8; 32];
    b[..28].copy_from_slice(key);
    std::array::from_fn(|i| u64::from_be_bytes(b[i * 8..i * 8 + 8].try_into().expect("8 bytes")))
}

pub fn key_of(w: &Words) -> OrderKey {
    let mut b = [0u8; 32];
    for (i, x) in w.iter().enumerate() {
        b[i * 8..i * 8 + 8].copy_from_slice(&x.to_be_bytes());
    }
    b[..28].try_into().expect("28 bytes")
}

/// The 8 key bytes from byte `at` (zeros past the end), as a big-endian number.
#[inline]
fn next8(w: &Words, at: usize) -> u64 {
    let (i, b) = (at / 8, (at % 8) * 8);
    if i >= 4 {
        return 0;
    }
    if b == 0 {
        return w[i];
    }
    let low = if i + 1 < 4 { w[i + 1] >> (64 - b) } else { 0 };
    (w[i] << b) | low
}

impl Search {
    /// `rows` is the number of rows the search runs over (for its first mode); a target at
    /// or below 0 is reached before any row, a target above the total after the last.
    pub fn new(target: f64, by_count: bool, rows: u64) -> Search {
        Search {
            target,
            by_count,
            plen: 0,
            pwords: [0; 4],
            before: Total::default(),
            mode: if rows <= COLLECT {
                Mode::Collect
            } else {
                Mode::Histogram
            },
            started: false,
        }
    }

    /// Starts the search at `prefix`: bytes every row it runs over is known to share.
    pub fn with_prefix(mut self, prefix: &[u8]) -> Search {
        for &b in prefix.iter().take(28) {
            self.push(b);
        }
        self
    }

    /// Fixes one more byte of the range.
    fn push(&mut self, byte: u8) {
        let (i, b) = (self.plen / 8, (self.plen % 8) * 8);
        self.pwords[i] |= u64::from(byte) << (56 - b);
        self.plen += 1;
    }

    /// Whether a key lies in the range.
    #[inline]
    fn in_range(&self, w: &Words) -> bool {
        let (i, b) = (self.plen / 8, (self.plen % 8) * 8);
        if w[..i] != self.pwords[..i] {
            return false;
        }
        b == 0 || (w[i] ^ self.pwords[i]) >> (64 - b) == 0
    }

    pub fn done(&self) -> Option<Cut> {
        match self.mode {
            Mode::Done(c) => Some(c),
            _ => None,
        }
    }

    fn weight(&self, b: Total) -> f64 {
        if self.by_count {
            b.count as f64
        } else {
            b.size
        }
    }

    fn reached(&self, total: f64) -> bool {
        total >= self.target - EPS * self.target.max(1.0)
    }

    /// One row of this pass that the search runs over, into its accumulator.
    #[inline]
    pub fn add(&self, acc: &mut Acc, key: &Words, size: f64) {
        if !self.in_range(key) {
            return;
        }
        let p = self.plen;
        match self.mode {
            Mode::Histogram => {
                if matches!(acc, Acc::Empty) {
                    *acc = Acc::Histogram(Box::new([Bin::default(); 256]));
                }
                let Acc::Histogram(bins) = acc else {
                    return;
                };
                let byte = (key[p / 8] >> (56 - (p % 8) * 8)) & 0xff;
                let b = &mut bins[byte as usize];
                let next = next8(key, p + 1);
                if b.count == 0 {
                    b.first = next;
                } else {
                    b.diff |= next ^ b.first;
                }
                b.count += 1;
                b.size += size;
            }
            Mode::Collect => match acc {
                Acc::Rows(rows) => rows.push((key_of(key), size)),
                _ => *acc = Acc::Rows(vec![(key_of(key), size)]),
            },
            Mode::Done(_) => {}
        }
    }

    /// Ends a pass with what it collected: narrows the range or resolves the cut. Returns
    /// whether it is done.
    pub fn end_pass(&mut self, acc: Acc) -> bool {
        self.started = true;
        match self.mode {
            Mode::Done(_) => {}
            Mode::Collect => {
                let mut rows = match acc {
                    Acc::Rows(r) => r,
                    _ => Vec::new(),
                };
                rows.sort_by_key(|a| a.0);
                let mut total = self.before;
                let mut cut = None;
                for (key, size) in rows {
                    total.count += 1;
                    total.size += size;
                    if self.reached(self.weight(total)) {
                        cut = Some(Cut {
                            key,
                            count: total.count,
                            size: total.size,
                        });
                        break;
                    }
                }
                self.mode = Mode::Done(cut.unwrap_or(Cut {
                    key: LAST,
                    count: total.count,
                    size: total.size,
                }));
            }
            Mode::Histogram => {
                let bins = match acc {
                    Acc::Histogram(b) => b,
                    _ => Box::new([Bin::default(); 256]),
                };
                let mut chosen = None;
                let mut total = self.before;
                for (byte, bin) in bins.iter().enumerate() {
                    if bin.count == 0 {
                        continue;
                    }
                    let with = Total {
                        count: total.count + bin.count,
                        size: total.size + bin.size,
                    };
                    if self.reached(self.weight(with)) {
                        chosen = Some((byte as u8, *bin));
                        break;
                    }
                    total = with;
                }
                match chosen {
                    None => {
                        self.mode = Mode::Done(Cut {
                            key: LAST,
                            count: total.count,
                            size: total.size,
                        })
                    }
                    Some((byte, bin)) => {
                        self.before = total;
                        self.push(byte);
                        // The bytes every row of the bin shares come for free.
                        let room = LAST.len() - self.plen;
                        let shared = ((bin.diff.leading_zeros() / 8) as usize).min(room);
                        for &b in &bin.first.to_be_bytes()[..shared] {
                            self.push(b);
                        }
                        self.mode = if bin.count <= COLLECT {
                            Mode::Collect
                        } else if self.plen == LAST.len() {
                            // A whole key shared by many rows cannot happen (keys are
                            // unique); collect rather than histogram past the end.
                            Mode::Collect
                        } else {
                            Mode::Histogram
                        };
                    }
                }
            }
        }
        matches!(self.mode, Mode::Done(_))
    }

    /// Whether the search is in its first pass with a histogram: every search over the same
    /// rows with the same starting prefix is then collecting the same histogram, whatever its
    /// target.
    pub fn first_histogram(&self) -> bool {
        !self.started && matches!(self.mode, Mode::Histogram)
    }

    /// A search whose target is reached before any row: nothing is in.
    pub fn nothing() -> Cut {
        Cut {
            key: [0; 28],
            count: 0,
            size: 0.0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::rows::order_key;
    use super::*;

    /// Runs a search to the end over `rows` (key, size), as passes would.
    fn run(target: f64, by_count: bool, rows: &[(OrderKey, f64)]) -> Cut {
        let mut s = Search::new(target, by_count, rows.len() as u64);
        for _ in 0..40 {
            // Two accumulators merged, as two files read apart would be.
            let (mut a, mut b) = (Acc::Empty, Acc::Empty);
            let half = rows.len() / 3;
            for (k, w) in &rows[..half] {
                s.add(&mut a, &words(k), *w);
            }
            for (k, w) in &rows[half..] {
                s.add(&mut b, &words(k), *w);
            }
            a.merge(b);
            if s.end_pass(a) {
                return s.done().unwrap();
            }
        }
        panic!("did not converge");
    }

    #[test]
    fn finds_the_crossing_row_of_a_sorted_order() {
        // 5,000 rows with pseudo-random keys and sizes 1..=3: compare with a sort.
        let rows: Vec<(OrderKey, f64)> = (0..5000u64)
            .map(|i| {
                let key = i.wrapping_mul(0x9E37_79B9_7F4A_7C15);
                (order_key(None, key, 0, i), (i % 3 + 1) as f64)
            })
            .collect();
        let mut sorted = rows.clone();
        sorted.sort_by_key(|a| a.0);
        // The sizes sum to 9,999.
        for target in [1.0, 2.0, 777.0, 5000.0, 9998.5, 9999.0] {
            let cut = run(target, false, &rows);
            let mut total = 0.0;
            let want = sorted
                .iter()
                .position(|r| {
                    total += r.1;
                    total >= target
                })
                .unwrap();
            assert_eq!(cut.key, sorted[want].0, "target {target}");
            assert_eq!(cut.count, want as u64 + 1);
        }
        let cut = run(1234.0, true, &rows);
        assert_eq!(cut.key, sorted[1233].0);
        assert_eq!(run(1e9, true, &rows).key, LAST);
        assert_eq!(run(10_000.0, false, &rows).key, LAST);
    }

    #[test]
    fn ties_of_quality_fall_back_to_the_key() {
        // Every row has the same quality: the order is the key's.
        let rows: Vec<(OrderKey, f64)> = (0..1000u64)
            .map(|i| (order_key(Some(0.5), 1000 - i, 0, i), 1.0))
            .collect();
        let cut = run(10.0, true, &rows);
        assert_eq!(cut.key, order_key(Some(0.5), 10, 0, 990));
    }

    #[test]
    fn words_compare_as_the_key_bytes() {
        let a = order_key(Some(0.25), 7, 3, 1 << 33);
        let b = order_key(Some(0.25), 7, 3, (1 << 33) + 1);
        assert_eq!(key_of(&words(&a)), a);
        assert!(words(&a) < words(&b));
        assert_eq!(
            next8(&words(&a), 20),
            u64::from_be_bytes(a[20..28].try_into().unwrap())
        );
        assert_eq!(
            next8(&words(&a), 24),
            u64::from(u32::from_be_bytes(a[24..28].try_into().unwrap())) << 32
        );
    }

    #[test]
    fn bytes_shared_by_a_range_cost_no_pass() {
        // 3,000 rows of three quality values: the rows of one value share its 8 quality bytes,
        // so the search needs a pass for the value, one for the key's first byte and one to
        // collect, not one per shared byte.
        let rows: Vec<(OrderKey, f64)> = (0..3000u64)
            .map(|i| {
                let key = i.wrapping_mul(0x9E37_79B9_7F4A_7C15);
                (
                    order_key(Some([0.9, 0.5, 0.1][(i % 3) as usize]), key, 0, i),
                    1.0,
                )
            })
            .collect();
        let mut sorted = rows.clone();
        sorted.sort_by_key(|a| a.0);
        let mut s = Search::new(1500.0, true, rows.len() as u64);
        let mut passes = 0;
        loop {
            passes += 1;
            let mut acc = Acc::Empty;
            for (k, w) in &rows {
                s.add(&mut acc, &words(k), *w);
            }
            if s.end_pass(acc) {
                break;
            }
        }
        assert_eq!(s.done().unwrap().key, sorted[1499].0);
        assert!(passes <= 4, "{passes} passes");
    }
}
