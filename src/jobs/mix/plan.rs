//! The plan of a mixture: every bucket's and group's rows, candidates, quota and cut, found
//! by passes over the codes (one over the Parquet files to count, which also writes the
//! scratch records of [`super::spill`], then the cut searches of [`super::cut`] over those
//! records). Pass 1 reads `threads` Parquet files at once and merges their counts in file
//! order; a search pass runs `threads` readers over every scratch file, each searching its
//! share of the groups, so every sum has the same order, and the plan is the same, whatever
//! `threads`. It is what `plan.json` holds and what every selection task reuses.

use std::collections::HashMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::cut::{Acc, Cut, Search, Words, words};
use super::quota::{EPS, capped, coverage, largest_remainder, proportional, shares, whole};
use super::rows::{Columns, LAST, OrderKey};
use super::spec::{Method, Rule, Spec};
use super::spill::{self, FileCount, Scratch, SlotCount};
use crate::quantize::{key_hash, label, pack};

pub use crate::corpus::codes::CodesFile;

/// A group's or bucket's line in the plan.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Line {
    pub label: String,
    /// Every row with this prefix.
    pub rows: u64,
    /// Rows that could not be candidates: a null size or quality (or a size that is not a
    /// finite number >= 0).
    pub excluded: u64,
    /// Rows that may be selected (after the quality top fraction).
    pub candidates: u64,
    /// Their total size.
    pub size: f64,
    /// The share of the budget this line was meant to get.
    pub target_share: f64,
    /// What it was given to select, in units of `size`.
    pub quota: f64,
    pub selected_size: f64,
    /// Of everything selected.
    pub selected_share: f64,
    /// The most copies any of its rows gets.
    pub largest_copies: u32,
}

/// What the selection needs of a group, beside its line.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct GroupCut {
    #[serde(flatten)]
    pub line: Line,
    /// The stage-1 bucket it belongs to.
    pub bucket: String,
    /// A merged thin pool's (`<bucket>.*`) sub-buckets, in code order; empty otherwise.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub members: Vec<String>,
    /// Copies every candidate gets.
    pub base_copies: u32,
    /// The last candidate of the quality order (hex order key); absent: all qualify.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quality_cut: Option<String>,
    /// The crossing row: candidates at or before it get one copy more (hex order key).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extra_cut: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Totals {
    pub rows: u64,
    pub excluded: u64,
    pub candidates: u64,
    pub size: f64,
    pub budget: f64,
    pub quota: f64,
    pub selected_size: f64,
    /// `budget − quota`: what could not be placed under the epoch cap (0 when the mixture
    /// is whole).
    pub shortfall: f64,
    /// `selected_size − quota` when positive: what rule 5's kept crossing rows add beyond the
    /// quotas (each group with a quota may overshoot by up to one row's size; with a
    /// token-sized budget and many small groups this can be a large share of the budget).
    #[serde(default)]
    pub overshoot: f64,
}

/// `plan.json`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Plan {
    pub spec: Spec,
    /// sha256 of the spec as read: a plan is reused only for the same spec...
    pub spec_digest: String,
    /// ...and the same codes (their names, sizes and done markers).
    pub codes_digest: String,
    pub fingerprint: String,
    pub encoder: crate::tier::Tier,
    /// What `size` counts: "docs" or the column's name.
    pub unit: String,
    pub files: Vec<String>,
    pub totals: Totals,
    pub short: bool,
    pub buckets: Vec<Line>,
    pub groups: Vec<GroupCut>,
}

/// Running counts of one group during the passes.
#[derive(Debug, Clone, Default)]
struct Group {
    /// Its prefix; a merged thin pool's is its bucket's.
    code: Vec<u16>,
    /// A merged thin pool's sub-buckets (their codes, in code order); empty otherwise.
    members: Vec<Vec<u16>>,
    /// Its rows' counts (and the quality bits its eligible rows share).
    count: SlotCount,
    /// After the quality phase.
    quality: Option<Cut>,
}

impl Group {
    /// `17.3`, or `17.*` for bucket 17's merged thin pool.
    fn label(&self) -> String {
        if self.members.is_empty() {
            label(&self.code)
        } else {
            format!("{}.*", label(&self.code))
        }
    }

    /// The prefixes of the rows it holds.
    fn codes(&self) -> Vec<&[u16]> {
        if self.members.is_empty() {
            vec![&self.code]
        } else {
            self.members.iter().map(Vec::as_slice).collect()
        }
    }

    fn candidates(&self) -> (u64, f64) {
        match self.quality {
            Some(c) => (c.count, c.size),
            None => (self.count.eligible, self.count.eligible_size),
        }
    }

    /// The order-key bytes every eligible row of the group shares: where its searches start.
    fn shared_prefix(&self) -> Vec<u8> {
        let bytes = (self.count.quality_diff.leading_zeros() / 8) as usize;
        self.count.quality_first.to_be_bytes()[..bytes].to_vec()
    }
}

pub fn hex(key: &OrderKey) -> String {
    hex::encode(key)
}

pub fn unhex(s: &str) -> Result<OrderKey, String> {
    let v = hex::decode(s).map_err(|e| format!("bad cut {s:?}: {e}"))?;
    v.try_into()
        .map_err(|_| format!("bad cut {s:?}: not 28 bytes"))
}

/// A group's candidate count from its eligible rows `r` alone (rule 1): with quality (`top`),
/// `ceil(top · r − 1e-9)`, at least 1 and at most r; without, r.
fn candidate_count(eligible: u64, top: Option<f64>) -> u64 {
    match top {
        Some(top) if eligible > 0 => {
            ((top * eligible as f64 - EPS).ceil().max(1.0) as u64).min(eligible)
        }
        _ => eligible,
    }
}

/// Thin pools (`[stage2] min_candidates`, docs/mix.md): in each stage-1 bucket (the first
/// `depth` levels), the groups with fewer than `min` candidates before merging (from pass 1's
/// counts, [`candidate_count`]) become one group `<bucket>.*`, placed after the bucket's other
/// groups, that holds all their rows; its candidates are chosen afterwards over the union by the
/// same rule. A single thin group is merged too (it is then renamed), and so are groups without
/// candidates (they add rows and exclusions, nothing else). `groups` are in code order, and so
/// is what comes back; `min = 0` changes nothing.
fn merge_thin(groups: Vec<Group>, depth: usize, min: u64, top: Option<f64>) -> Vec<Group> {
    if min == 0 {
        return groups;
    }
    let mut out = Vec::with_capacity(groups.len());
    let mut pool: Option<Group> = None;
    for g in groups {
        if pool.as_ref().is_some_and(|p| p.code != g.code[..depth]) {
            out.extend(pool.take());
        }
        if candidate_count(g.count.eligible, top) >= min {
            out.push(g);
            continue;
        }
        let p = pool.get_or_insert_with(|| Group {
            code: g.code[..depth].to_vec(),
            ..Group::default()
        });
        p.count.merge(&g.count);
        p.members.push(g.code);
    }
    out.extend(pool);
    out
}

/// Every row prefix → the index of the group that holds it (a merged pool's members all map to
/// the pool).
fn group_index(groups: &[Group]) -> HashMap<u128, usize> {
    groups
        .iter()
        .enumerate()
        .flat_map(|(i, g)| g.codes().into_iter().map(move |c| (pack(c), i)))
        .collect()
}

/// How the passes run.
#[derive(Debug, Clone)]
pub struct Passes {
    /// Files read at once (>= 1).
    pub threads: usize,
    /// Where the scratch directory goes (`--out`).
    pub scratch: PathBuf,
}

/// Runs `work(i)` for every `i < n` on `threads` threads, and `merge(i, result)` in order of
/// `i`: files are read in parallel and merged in file order, `threads` at a time, so at most
/// `threads` results wait to be merged and every sum has the same order whatever `threads`.
fn in_file_order<T: Send>(
    n: usize,
    threads: usize,
    work: &(dyn Fn(usize) -> Result<T, String> + Sync),
    merge: &mut dyn FnMut(usize, T),
) -> Result<(), String> {
    let threads = threads.max(1);
    let mut start = 0;
    while start < n {
        let end = (start + threads).min(n);
        let results: Vec<Result<T, String>> = if end - start == 1 {
            vec![work(start)]
        } else {
            std::thread::scope(|s| {
                let handles: Vec<_> = (start..end).map(|i| s.spawn(move || work(i))).collect();
                handles
                    .into_iter()
                    .map(|h| {
                        h.join()
                            .unwrap_or_else(|_| Err("a pass thread panicked".into()))
                    })
                    .collect()
            })
        };
        for (i, r) in (start..end).zip(results) {
            merge(i, r?);
        }
        start = end;
    }
    Ok(())
}

/// A codes file as the later passes read it: its scratch records and each of its slots' group.
struct FileRows {
    /// Records per part.
    records: Vec<u64>,
    /// Slot → group index ([`NONE`]: no group).
    group: Vec<u32>,
}

const NONE: u32 = u32::MAX;

/// Computes the plan (every pass over `files`); `unknown` labels of explicit weights and
/// other errors that only the codes reveal are `Err`.
pub fn make(
    spec: &Spec,
    files: &[CodesFile],
    passes: &Passes,
    counter: &super::super::progress::Counter,
) -> Result<PlanParts, String> {
    let counted = count(spec, files, passes, counter)?;
    let mut allotted = [allot(spec, &counted)?];
    search_crossings(&counted, &mut allotted, counter)?;
    let [allotted] = allotted;
    Ok(finish(spec, &counted, allotted))
}

/// A spec's codes counted: the groups (thin pools merged, quality cuts found), the index from
/// a row's prefix to its group, and the stage-1 buckets. None of it depends on stage 1 or the
/// budget, so specs that differ only there (a swarm's variants) share one count.
pub struct Counted {
    groups: Vec<Group>,
    /// Each stage-1 bucket's code and its groups, in code order.
    buckets: Vec<(Vec<u16>, Vec<usize>)>,
    /// What the later passes read, per codes file.
    files: Vec<FileRows>,
    threads: usize,
    /// Removed with the count.
    scratch: Scratch,
}

impl Counted {
    /// Every stage-1 bucket's label and `n_b`, the total size of its candidates (rule 1), in
    /// code order.
    pub fn bucket_sizes(&self) -> Vec<(String, f64)> {
        self.buckets
            .iter()
            .map(|(code, members)| {
                let n = members.iter().map(|&i| self.groups[i].candidates().1).sum();
                (label(code), n)
            })
            .collect()
    }
}

/// Pass 1 (rows per group, and the scratch records), the thin-pool merge and the quality
/// phase.
pub fn count(
    spec: &Spec,
    files: &[CodesFile],
    passes: &Passes,
    counter: &super::super::progress::Counter,
) -> Result<Counted, String> {
    let gdepth = spec.group_depth();
    let docs = spec.by_docs();
    let quality = spec.quality();
    let cols = Columns {
        depth: gdepth,
        size: (!docs).then(|| spec.size.clone()),
        quality: quality.map(|(q, _)| q.to_string()),
        id: true,
        residuals: false,
    };
    let scratch = Scratch::create(&passes.scratch)?;
    // Pass 1: rows per group, merged in file order; each file's slots keep their prefix.
    let mut index: HashMap<u128, usize> = HashMap::new();
    let mut groups: Vec<Group> = Vec::new();
    let mut slot_codes: Vec<Vec<Vec<u16>>> = Vec::with_capacity(files.len());
    let mut records: Vec<Vec<u64>> = Vec::with_capacity(files.len());
    in_file_order(
        files.len(),
        spill::readers_within_descriptors(passes.threads),
        &|i| {
            spill::count_file(
                &files[i].path,
                &cols,
                spec.seed,
                quality.is_some(),
                spec.depth,
                &|p| scratch.file(i, p),
            )
        },
        &mut |_, fc: FileCount| {
            counter.add(fc.rows);
            for (code, c) in fc.codes.iter().zip(&fc.counts) {
                let g = *index.entry(pack(code)).or_insert_with(|| {
                    groups.push(Group {
                        code: code.clone(),
                        ..Group::default()
                    });
                    groups.len() - 1
                });
                groups[g].count.merge(c);
            }
            slot_codes.push(fc.codes);
            records.push(fc.records);
        },
    )?;
    if u32::try_from(index.len()).is_err() {
        return Err("more than 2^32 groups".into());
    }
    // Code order everywhere from here on (a bucket's merged thin pool after its other groups).
    groups.sort_by(|a, b| a.code.cmp(&b.code));
    let mut groups = merge_thin(
        groups,
        spec.depth,
        spec.min_candidates(),
        quality.map(|(_, top)| top),
    );
    let index = group_index(&groups);
    let rows_of: Vec<FileRows> = slot_codes
        .into_iter()
        .zip(records)
        .map(|(codes, records)| FileRows {
            records,
            group: codes
                .iter()
                .map(|c| index.get(&pack(c)).map_or(NONE, |&g| g as u32))
                .collect(),
        })
        .collect();
    let mut counted = Counted {
        groups: Vec::new(),
        buckets: Vec::new(),
        files: rows_of,
        threads: passes.threads.max(1),
        scratch,
    };

    // The quality phase: each group's top `ceil(top · r)` rows.
    if let Some((_, top)) = quality {
        let searches: Vec<Option<Search>> = groups
            .iter()
            .map(|g| {
                let k = candidate_count(g.count.eligible, Some(top));
                (k < g.count.eligible).then(|| {
                    Search::new(k as f64, true, g.count.eligible).with_prefix(&g.shared_prefix())
                })
            })
            .collect();
        let mut all = [searches];
        run_searches(&counted, &mut all, &|_, _| true, counter)?;
        let [searches] = all;
        for (g, s) in groups.iter_mut().zip(searches) {
            g.quality = s.and_then(|s| s.done());
        }
    }

    // Stage 1 over the buckets (prefixes at `spec.depth`, in code order).
    let mut buckets: Vec<(Vec<u16>, Vec<usize>)> = Vec::new();
    for (i, g) in groups.iter().enumerate() {
        let b = &g.code[..spec.depth];
        match buckets.last_mut() {
            Some((code, members)) if code.as_slice() == b => members.push(i),
            _ => buckets.push((b.to_vec(), vec![i])),
        }
    }
    counted.groups = groups;
    counted.buckets = buckets;
    Ok(counted)
}

/// One spec's shares, quotas and copies over counted groups, with the crossing-row searches
/// ([`search_crossings`]) still to run.
pub struct Allotted {
    w: Vec<f64>,
    q: Vec<f64>,
    t: Vec<f64>,
    base: Vec<u32>,
    extra: Vec<Option<Search>>,
    shortfall: f64,
    short: bool,
}

/// Rules 2 to 5 on numbers alone: stage-1 shares and quotas, the stage-2 split, and each
/// group's copies for all; refuses explicit weights of labels the codes do not have.
pub fn allot(spec: &Spec, counted: &Counted) -> Result<Allotted, String> {
    let (groups, buckets) = (&counted.groups, &counted.buckets);
    let docs = spec.by_docs();
    let n: Vec<f64> = buckets
        .iter()
        .map(|(_, m)| m.iter().map(|&i| groups[i].candidates().1).sum())
        .collect();
    let labels: Vec<String> = buckets.iter().map(|(c, _)| label(c)).collect();
    let mut explicit = vec![None; buckets.len()];
    if let Some(w) = &spec.stage1.weights {
        for (l, &x) in w {
            let i = labels.iter().position(|b| b == l).ok_or_else(|| {
                format!(
                    "stage1.weights: no bucket \"{l}\" at depth {} in the codes ({} buckets, e.g. \"{}\")",
                    spec.depth,
                    labels.len(),
                    labels.first().map_or("", String::as_str)
                )
            })?;
            explicit[i] = Some(x);
        }
    }
    let epochs = f64::from(spec.max_epochs);
    let w = shares(
        spec.stage1.method,
        &n,
        spec.stage1.temperature.unwrap_or(1.0),
        &explicit,
        spec.budget,
        epochs,
    );
    let caps: Vec<f64> = n.iter().map(|x| epochs * x).collect();
    let mut q = capped(spec.budget, &w, &caps);
    if docs {
        let total = whole(q.iter().sum::<f64>()).min(spec.budget as u64);
        q = largest_remainder(&q, total);
    }
    let placed: f64 = q.iter().sum();
    let shortfall = (spec.budget - placed).max(0.0);
    let short = shortfall > EPS * spec.budget.max(1.0);

    // Stage 2: each bucket's quota over its groups.
    let mut t = vec![0.0; groups.len()];
    for ((_, members), &qb) in buckets.iter().zip(&q) {
        let with: Vec<usize> = members
            .iter()
            .copied()
            .filter(|&i| groups[i].candidates().0 > 0)
            .collect();
        if spec.group_depth() == spec.depth {
            for &i in &with {
                t[i] = qb;
            }
            continue;
        }
        let ni: Vec<f64> = with.iter().map(|&i| groups[i].candidates().1).collect();
        let split = match spec.stage2.as_ref().map_or(Rule::Coverage, |s| s.rule) {
            Rule::Coverage => {
                let a: Vec<f64> = ni.iter().map(|x| epochs * x).collect();
                let tie: Vec<u64> = with
                    .iter()
                    .map(|&i| key_hash(spec.seed, &groups[i].label()))
                    .collect();
                coverage(qb, &a, docs, &tie)
            }
            Rule::Proportional => proportional(qb, &ni, docs),
        };
        for (&i, x) in with.iter().zip(split) {
            t[i] = x;
        }
    }

    // Rule 5: copies for all, then one more up to each group's crossing row.
    let mut base = vec![0u32; groups.len()];
    let mut extra: Vec<Option<Search>> = Vec::with_capacity(groups.len());
    for (i, g) in groups.iter().enumerate() {
        let (count, size) = g.candidates();
        let c = if docs { count as f64 } else { size };
        if c <= 0.0 || t[i] <= 0.0 {
            extra.push(None);
            continue;
        }
        let b = ((t[i] / c + EPS).floor() as u32).min(spec.max_epochs);
        let left = t[i] - f64::from(b) * c;
        base[i] = b;
        extra.push(
            (b < spec.max_epochs && left > EPS * t[i].max(1.0))
                .then(|| Search::new(left, docs, count).with_prefix(&g.shared_prefix())),
        );
    }
    Ok(Allotted {
        w,
        q,
        t,
        base,
        extra,
        shortfall,
        short,
    })
}

/// Runs every allotment's crossing-row searches in shared passes over the codes: a pass
/// computes each row's key once and feeds it to every allotment still searching its group.
pub fn search_crossings(
    counted: &Counted,
    allotted: &mut [Allotted],
    counter: &super::super::progress::Counter,
) -> Result<(), String> {
    let qcuts: Vec<Words> = counted
        .groups
        .iter()
        .map(|g| words(&g.quality.map_or(LAST, |c| c.key)))
        .collect();
    let mut searches: Vec<Vec<Option<Search>>> = allotted
        .iter_mut()
        .map(|a| std::mem::take(&mut a.extra))
        .collect();
    run_searches(counted, &mut searches, &|g, key| key <= &qcuts[g], counter)?;
    for (a, s) in allotted.iter_mut().zip(searches) {
        a.extra = s;
    }
    Ok(())
}

/// The plan's parts from a count and an allotment whose searches have run.
pub fn finish(spec: &Spec, counted: &Counted, allotted: Allotted) -> PlanParts {
    let docs = spec.by_docs();
    let Allotted {
        w,
        q,
        t,
        base,
        extra,
        shortfall,
        short,
    } = allotted;
    let extra: Vec<Option<Cut>> = extra
        .into_iter()
        .map(|s| s.and_then(|s| s.done()))
        .collect();
    PlanParts {
        groups: counted
            .groups
            .iter()
            .enumerate()
            .map(|(i, g)| {
                let (count, size) = g.candidates();
                let per = if docs { count as f64 } else { size };
                let more = extra[i].map_or(0.0, |c| if docs { c.count as f64 } else { c.size });
                let selected = f64::from(base[i]) * per + more;
                PartGroup {
                    bucket: label(&g.code[..spec.depth]),
                    members: g.members.iter().map(|c| label(c)).collect(),
                    line: Line {
                        label: g.label(),
                        rows: g.count.rows,
                        excluded: g.count.excluded,
                        candidates: count,
                        size,
                        target_share: 0.0,
                        quota: t[i],
                        selected_size: selected,
                        selected_share: 0.0,
                        largest_copies: if count == 0 {
                            0
                        } else {
                            base[i] + u32::from(extra[i].is_some())
                        },
                    },
                    base_copies: base[i],
                    quality_cut: g.quality.map(|c| c.key),
                    extra_cut: extra[i].map(|c| c.key),
                }
            })
            .collect(),
        bucket_shares: w,
        bucket_quotas: q,
        shortfall,
        short,
    }
}

/// The plan before it is dressed as [`Plan`].
pub struct PlanParts {
    pub groups: Vec<PartGroup>,
    /// Stage-1 shares and quotas, per bucket in code order.
    pub bucket_shares: Vec<f64>,
    pub bucket_quotas: Vec<f64>,
    pub shortfall: f64,
    pub short: bool,
}

pub struct PartGroup {
    pub bucket: String,
    /// A merged thin pool's sub-buckets; empty otherwise.
    pub members: Vec<String>,
    pub line: Line,
    pub base_copies: u32,
    pub quality_cut: Option<OrderKey>,
    pub extra_cut: Option<OrderKey>,
}

/// Passes over the scratch records until every search is done: `searches[k][group]` for
/// each of several sets (one per allotment), all fed from the same passes. `takes(group, key)`
/// says whether an eligible row takes part (the remainder runs over candidates only).
fn run_searches(
    counted: &Counted,
    searches: &mut [Vec<Option<Search>>],
    takes: &(dyn Fn(usize, &Words) -> bool + Sync),
    counter: &super::super::progress::Counter,
) -> Result<(), String> {
    let groups = counted
        .groups
        .len()
        .max(searches.iter().map(Vec::len).max().unwrap_or(0));
    // Group-major while searching: a row's group holds every set's search side by side.
    let mut by_group: Vec<Vec<(usize, Search)>> = (0..groups).map(|_| Vec::new()).collect();
    for (k, set) in searches.iter_mut().enumerate() {
        for (g, s) in set.iter_mut().enumerate() {
            if let Some(s) = s.take() {
                by_group[g].push((k, s));
            }
        }
    }
    // How many of a group's searches are still running.
    let mut active: Vec<usize> = by_group.iter().map(Vec::len).collect();
    while active.iter().any(|&a| a > 0) {
        // A group whose searches are all in their first pass collects one histogram for all
        // of them (the same rows give the same histogram), so memory does not grow with the
        // number of sets there.
        let shared: Vec<bool> = by_group
            .iter()
            .map(|set| set.len() > 1 && set.iter().all(|(_, s)| s.first_histogram()))
            .collect();
        // Each group's accumulators lie at `offset[g]..offset[g + 1]`.
        let mut offset = Vec::with_capacity(groups + 1);
        offset.push(0usize);
        for g in 0..groups {
            let n = match (active[g], shared[g]) {
                (0, _) => 0,
                (_, true) => 1,
                _ => by_group[g].len(),
            };
            offset.push(offset[g] + n);
        }
        let slots = offset[groups];
        let (by_group_r, active_r, shared_r, offset_r) = (&by_group, &active, &shared, &offset);
        let threads = counted.threads;
        // Thread j reads the parts p with p % threads == j, each part over every file in
        // order: a group lies in one part, so its rows are added in file and row order
        // whatever the threads, and one set of accumulators exists in all.
        let read = |j: usize| -> Result<Vec<Acc>, String> {
            let mut accs: Vec<Acc> = (0..slots).map(|_| Acc::Empty).collect();
            for part in (j..spill::PARTS).step_by(threads) {
                for (fi, f) in counted.files.iter().enumerate() {
                    let n = f.records[part];
                    if n == 0 {
                        continue;
                    }
                    let file =
                        u32::try_from(fi).map_err(|_| "more than 2^32 codes files".to_string())?;
                    spill::read_file(&counted.scratch.file(fi, part), n, |r| {
                        let g = f.group[r.slot as usize];
                        if g == NONE || active_r[g as usize] == 0 {
                            return;
                        }
                        let g = g as usize;
                        // The order key's words (`rows::order_key_bits`' bytes).
                        let key: Words = [
                            r.quality,
                            r.key,
                            u64::from(file) << 32 | r.row >> 32,
                            (r.row & 0xffff_ffff) << 32,
                        ];
                        if !takes(g, &key) {
                            return;
                        }
                        let at = offset_r[g];
                        if shared_r[g] {
                            by_group_r[g][0].1.add(&mut accs[at], &key, r.size);
                        } else {
                            for (k, (_, s)) in by_group_r[g].iter().enumerate() {
                                s.add(&mut accs[at + k], &key, r.size);
                            }
                        }
                    })?;
                    counter.add(n);
                }
            }
            Ok(accs)
        };
        let mut parts: Vec<std::vec::IntoIter<Acc>> = Vec::with_capacity(threads);
        in_file_order(threads, threads, &read, &mut |_, accs| {
            parts.push(accs.into_iter())
        })?;
        // Slot by slot: only the thread that read a group's part has anything for it.
        let mut merged: Vec<Acc> = Vec::with_capacity(slots);
        for _ in 0..slots {
            let mut acc = Acc::Empty;
            for p in &mut parts {
                acc.merge(p.next().unwrap_or_default());
            }
            merged.push(acc);
        }
        let mut merged = merged.into_iter();
        for (g, set) in by_group.iter_mut().enumerate() {
            if active[g] == 0 {
                continue;
            }
            active[g] = 0;
            if shared[g] {
                let acc = merged.next().unwrap_or_default();
                if let Some(((_, leader), rest)) = set.split_first_mut() {
                    for (_, s) in rest.iter_mut() {
                        if !s.end_pass(acc.clone()) {
                            active[g] += 1;
                        }
                    }
                    if !leader.end_pass(acc) {
                        active[g] += 1;
                    }
                }
                continue;
            }
            for (_, s) in set.iter_mut() {
                let acc = merged.next().unwrap_or_default();
                if !s.end_pass(acc) {
                    active[g] += 1;
                }
            }
        }
    }
    for (g, set) in by_group.into_iter().enumerate() {
        for (k, s) in set {
            searches[k][g] = Some(s);
        }
    }
    Ok(())
}

/// Whether stage 1 is by explicit weights (for the plan's wording).
pub fn is_explicit(spec: &Spec) -> bool {
    spec.stage1.method == Method::Explicit
}

#[cfg(test)]
mod tests {
    use super::*;

    fn group(code: &[u16], eligible: u64) -> Group {
        Group {
            code: code.to_vec(),
            count: SlotCount {
                rows: eligible + 1,
                excluded: 1,
                eligible,
                eligible_size: eligible as f64,
                ..SlotCount::default()
            },
            ..Group::default()
        }
    }

    #[test]
    fn thin_groups_merge_per_bucket_after_the_others() {
        let groups = vec![
            group(&[1, 0], 1),
            group(&[1, 4], 9),
            group(&[1, 7], 0),
            group(&[2, 1], 2),
            group(&[3, 0], 5),
            group(&[3, 2], 6),
        ];
        // Without quality a group's candidates are its eligible rows.
        let merged = merge_thin(groups.clone(), 1, 3, None);
        let labels: Vec<String> = merged.iter().map(Group::label).collect();
        assert_eq!(labels, ["1.4", "1.*", "2.*", "3.0", "3.2"]);
        assert_eq!(merged[1].members, [vec![1, 0], vec![1, 7]]);
        assert_eq!(
            (
                merged[1].count.rows,
                merged[1].count.excluded,
                merged[1].count.eligible
            ),
            (3, 2, 1)
        );
        assert_eq!(merged[2].members, [vec![2, 1]]);
        let index = group_index(&merged);
        assert_eq!(index.len(), groups.len());
        for (code, want) in [
            (&[1u16, 0][..], 1),
            (&[1, 7], 1),
            (&[1, 4], 0),
            (&[2, 1], 2),
        ] {
            assert_eq!(index[&pack(code)], want, "{code:?}");
        }
        // With a top 30%: 9 eligible rows give 3 candidates, 5 give 2, 6 give 2.
        let labels: Vec<String> = merge_thin(groups.clone(), 1, 3, Some(0.3))
            .iter()
            .map(Group::label)
            .collect();
        assert_eq!(labels, ["1.4", "1.*", "2.*", "3.*"]);
        // Off: unchanged.
        let same = merge_thin(groups.clone(), 1, 0, None);
        assert_eq!(same.len(), groups.len());
        assert!(same.iter().all(|g| g.members.is_empty()));
    }

    #[test]
    fn candidate_counts_follow_rule_1() {
        assert_eq!(candidate_count(10, Some(0.3)), 3);
        assert_eq!(candidate_count(1, Some(0.3)), 1);
        assert_eq!(candidate_count(0, Some(0.3)), 0);
        assert_eq!(candidate_count(7, None), 7);
        assert_eq!(candidate_count(4, Some(1.0)), 4);
    }
}
