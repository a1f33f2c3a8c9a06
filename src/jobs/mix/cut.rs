//! Finding, for each group, the row of the candidate order where a running total first
//! reaches a target (rule 5's crossing row, and the top-q quality cut), in passes over the
//! codes with memory bounded by the number of groups: each pass histograms the next byte of
//! the order key (256 bins) among the rows still in range, and once a range holds at most
//! [`COLLECT`] rows the next pass keeps those rows and resolves the cut exactly.

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
struct Bin {
    count: u64,
    size: f64,
}

enum State {
    /// Allocated at the first row: a search that shares another's first pass never needs it.
    Histogram(Option<Box<[Bin; 256]>>),
    Collect(Vec<(OrderKey, f64)>),
    Done(Cut),
}

/// One group's search for the first row where the running total of `weight` reaches
/// `target` (weight: 1 per row when `by_count`, else the row's size).
pub struct Search {
    target: f64,
    by_count: bool,
    /// Bytes of the order key fixed so far: the range is the keys that start with them.
    prefix: Vec<u8>,
    /// Rows before the range: their count and size.
    before: Bin,
    state: State,
}

impl Search {
    /// `rows` is the number of rows the search runs over (for its first mode); a target at
    /// or below 0 is reached before any row, a target above the total after the last.
    pub fn new(target: f64, by_count: bool, rows: u64) -> Search {
        let state = if rows <= COLLECT {
            State::Collect(Vec::new())
        } else {
            State::Histogram(None)
        };
        Search {
            target,
            by_count,
            prefix: Vec::new(),
            before: Bin::default(),
            state,
        }
    }

    pub fn done(&self) -> Option<Cut> {
        match self.state {
            State::Done(c) => Some(c),
            _ => None,
        }
    }

    fn weight(&self, b: Bin) -> f64 {
        if self.by_count {
            b.count as f64
        } else {
            b.size
        }
    }

    fn reached(&self, total: f64) -> bool {
        total >= self.target - EPS * self.target.max(1.0)
    }

    /// One row of this pass that the search runs over.
    #[inline]
    pub fn add(&mut self, key: &OrderKey, size: f64) {
        let p = self.prefix.len();
        if key[..p] != self.prefix[..] {
            return;
        }
        match &mut self.state {
            State::Histogram(bins) => {
                let bins = bins.get_or_insert_with(|| Box::new([Bin::default(); 256]));
                let b = &mut bins[key[p] as usize];
                b.count += 1;
                b.size += size;
            }
            State::Collect(rows) => rows.push((*key, size)),
            State::Done(_) => {}
        }
    }

    /// Ends a pass: narrows the range or resolves the cut. Returns whether it is done.
    pub fn end_pass(&mut self) -> bool {
        match std::mem::replace(&mut self.state, State::Collect(Vec::new())) {
            State::Done(c) => self.state = State::Done(c),
            State::Collect(mut rows) => {
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
                self.state = State::Done(cut.unwrap_or(Cut {
                    key: LAST,
                    count: total.count,
                    size: total.size,
                }));
            }
            State::Histogram(bins) => {
                let bins = bins.unwrap_or_else(|| Box::new([Bin::default(); 256]));
                let mut chosen = None;
                let mut total = self.before;
                for (byte, bin) in bins.iter().enumerate() {
                    if bin.count == 0 {
                        continue;
                    }
                    let with = Bin {
                        count: total.count + bin.count,
                        size: total.size + bin.size,
                    };
                    if self.reached(self.weight(with)) {
                        chosen = Some((byte as u8, bin.count));
                        break;
                    }
                    total = with;
                }
                match chosen {
                    None => {
                        self.state = State::Done(Cut {
                            key: LAST,
                            count: total.count,
                            size: total.size,
                        })
                    }
                    Some((byte, rows)) => {
                        self.before = total;
                        self.prefix.push(byte);
                        self.state = if rows <= COLLECT {
                            State::Collect(Vec::with_capacity(rows as usize))
                        } else {
                            State::Histogram(None)
                        };
                    }
                }
            }
        }
        matches!(self.state, State::Done(_))
    }

    /// Whether the search is in its first pass with a histogram: every search over the same
    /// rows is then collecting the same histogram, whatever its target.
    pub fn first_histogram(&self) -> bool {
        self.prefix.is_empty() && matches!(self.state, State::Histogram(_))
    }

    /// Ends the first pass with the histogram `leader` (a search over the same rows, in its
    /// first pass too, not yet ended) collected, instead of one of its own.
    pub fn end_first_pass_as(&mut self, leader: &Search) -> bool {
        debug_assert!(self.first_histogram() && leader.first_histogram());
        if let State::Histogram(bins) = &leader.state {
            self.state = State::Histogram(bins.clone());
        }
        self.end_pass()
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
            for (k, w) in rows {
                s.add(k, *w);
            }
            if s.end_pass() {
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
}
