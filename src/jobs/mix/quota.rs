//! The arithmetic of a mixture (docs/mix.md, rules 2 to 4), on numbers alone:
//! stage-1 shares, quotas capped by the epoch limit with what caps remove handed on, the
//! integer rounding for document counts, and the two stage-2 rules. Inputs are in code order
//! (the order ties are broken in); nothing here reads a file.

use super::spec::Method;

/// Slack when comparing sums that should be equal: float sums of the same numbers taken in
/// another order differ in the last bits, never by this much.
pub const EPS: f64 = 1e-9;

/// Stage-1 shares `w_b` of buckets with candidate sizes `n` (in code order). `explicit`
/// holds the listed weights by bucket index. For unimax the shares are the allocation over
/// the budget. The shares may sum to less than 1 (explicit weights that cannot be placed).
pub fn shares(
    method: Method,
    n: &[f64],
    temperature: f64,
    explicit: &[Option<f64>],
    budget: f64,
    max_epochs: f64,
) -> Vec<f64> {
    let total: f64 = n.iter().sum();
    match method {
        Method::Natural => n
            .iter()
            .map(|&x| if total > 0.0 { x / total } else { 0.0 })
            .collect(),
        Method::Temperature => {
            let mut p: Vec<f64> = n.iter().map(|&x| x.powf(1.0 / temperature)).collect();
            let mut sum: f64 = p.iter().sum();
            if !sum.is_finite() {
                // A small temperature overflows n^(1/T): the same ratios in log space,
                // scaled by the largest, n_b^(1/T) / max n^(1/T) = exp((ln n_b − ln max n) / T).
                let max = n.iter().copied().fold(0.0, f64::max);
                p = n
                    .iter()
                    .map(|&x| {
                        if x > 0.0 {
                            ((x / max).ln() / temperature).exp()
                        } else {
                            0.0
                        }
                    })
                    .collect();
                sum = p.iter().sum();
            }
            p.iter()
                .map(|&x| if sum > 0.0 { x / sum } else { 0.0 })
                .collect()
        }
        Method::Unimax => {
            // Smallest first (ties: the smaller code, i.e. the earlier index).
            let mut order: Vec<usize> = (0..n.len()).collect();
            order.sort_by(|&a, &b| n[a].total_cmp(&n[b]).then(a.cmp(&b)));
            let mut left = budget;
            let mut w = vec![0.0; n.len()];
            for (k, &b) in order.iter().enumerate() {
                let give = (left / (n.len() - k) as f64).min(max_epochs * n[b]);
                w[b] = if budget > 0.0 { give / budget } else { 0.0 };
                left -= give;
            }
            w
        }
        Method::Explicit => {
            let listed: f64 = explicit.iter().flatten().sum();
            let rest = (1.0 - listed).max(0.0);
            let unlisted: f64 = n
                .iter()
                .zip(explicit)
                .filter(|(_, e)| e.is_none())
                .map(|(x, _)| x)
                .sum();
            n.iter()
                .zip(explicit)
                .map(|(&x, e)| match e {
                    Some(w) => *w,
                    None if unlisted > 0.0 => rest * x / unlisted,
                    None => 0.0,
                })
                .collect()
        }
    }
}

/// Quotas `budget · w_b` capped at `caps`, what caps remove handed to the uncapped buckets
/// in proportion to their shares, until no quota exceeds its cap (rule 3). Real numbers.
pub fn capped(budget: f64, w: &[f64], caps: &[f64]) -> Vec<f64> {
    let mut q: Vec<f64> = w.iter().map(|&x| budget * x).collect();
    let mut capped = vec![false; q.len()];
    loop {
        let mut excess = 0.0;
        for i in 0..q.len() {
            if !capped[i] && q[i] > caps[i] + EPS * caps[i].max(1.0) {
                excess += q[i] - caps[i];
                q[i] = caps[i];
                capped[i] = true;
            }
        }
        if excess <= 0.0 {
            return q;
        }
        let open: f64 = (0..q.len()).filter(|&i| !capped[i]).map(|i| w[i]).sum();
        if open <= 0.0 {
            // Nothing can take it: the mixture is short by what is left.
            return q;
        }
        for i in 0..q.len() {
            if !capped[i] {
                q[i] += excess * w[i] / open;
            }
        }
    }
}

/// The whole number a sum of real quotas stands for: `floor(sum + EPS)` (a budget or a sum
/// of integer caps, up to float error).
pub fn whole(sum: f64) -> u64 {
    (sum + EPS).floor().max(0.0) as u64
}

/// Integer quotas summing to `total`: floors, then one more to the largest remainders
/// (compared rounded to 9 decimals; ties: the earlier index, the smaller code).
pub fn largest_remainder(q: &[f64], total: u64) -> Vec<f64> {
    let floors: Vec<f64> = q.iter().map(|x| x.floor()).collect();
    let given: f64 = floors.iter().sum();
    let left = (total as f64 - given).max(0.0) as usize;
    let mut order: Vec<usize> = (0..q.len()).collect();
    let frac = |i: usize| ((q[i] - floors[i]) * 1e9).round() as i64;
    order.sort_by(|&a, &b| frac(b).cmp(&frac(a)).then(a.cmp(&b)));
    let mut out = floors;
    for &i in order.iter().take(left) {
        out[i] += 1.0;
    }
    out
}

/// Coverage (rule 4): water-filling of `quota` over capacities `a`. For documents, `x` is
/// the largest integer with `Σ min(x, a_i) ≤ quota` and the remainder goes one each to the
/// sub-buckets with `a_i > x` in `tie` order (smallest hash first); otherwise `x` solves
/// `Σ min(x, a_i) = quota`.
pub fn coverage(quota: f64, a: &[f64], docs: bool, tie: &[u64]) -> Vec<f64> {
    let fill = |x: f64| a.iter().map(|&c| c.min(x)).sum::<f64>();
    let top = a.iter().copied().fold(0.0, f64::max);
    if fill(top) <= quota + EPS {
        return a.to_vec();
    }
    if docs {
        let (mut lo, mut hi) = (0u64, top as u64);
        // fill(lo) <= quota < fill(hi)
        while hi - lo > 1 {
            let mid = lo + (hi - lo) / 2;
            if fill(mid as f64) <= quota + EPS {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        let x = lo as f64;
        let mut t: Vec<f64> = a.iter().map(|&c| c.min(x)).collect();
        let left = (quota - fill(x)).round().max(0.0) as usize;
        let mut open: Vec<usize> = (0..a.len()).filter(|&i| a[i] > x).collect();
        open.sort_by_key(|&i| (tie[i], i));
        for &i in open.iter().take(left) {
            t[i] += 1.0;
        }
        t
    } else {
        let mut sorted: Vec<f64> = a.to_vec();
        sorted.sort_by(f64::total_cmp);
        let (mut left, mut k) = (quota, sorted.len());
        let mut x = top;
        for &c in &sorted {
            if c * k as f64 <= left {
                left -= c;
                k -= 1;
            } else {
                x = left / k as f64;
                break;
            }
        }
        a.iter().map(|&c| c.min(x)).collect()
    }
}

/// Proportional (rule 4): `quota · n_i / Σ n`, rounded as in rule 3 for documents.
pub fn proportional(quota: f64, n: &[f64], docs: bool) -> Vec<f64> {
    let total: f64 = n.iter().sum();
    let t: Vec<f64> = n
        .iter()
        .map(|&x| if total > 0.0 { quota * x / total } else { 0.0 })
        .collect();
    if docs {
        largest_remainder(&t, whole(quota))
    } else {
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tiny_temperature_gives_finite_shares_not_nulls() {
        // 1000^(1/0.005) overflows f64; the shares are still the limit: all on the largest.
        let n = [1000.0, 999.0, 10.0, 0.0];
        let w = shares(Method::Temperature, &n, 0.005, &[], 100.0, 1.0);
        assert!(w.iter().all(|x| x.is_finite()), "{w:?}");
        assert!((w.iter().sum::<f64>() - 1.0).abs() < 1e-12, "{w:?}");
        // (999/1000)^200 = 0.8186: the runner-up keeps its ratio to the largest.
        assert!((w[1] / w[0] - (0.999f64).powf(200.0)).abs() < 1e-9, "{w:?}");
        assert_eq!(w[3], 0.0);
        // Where nothing overflows the shares are n^(1/T) / Σ, as before.
        let w = shares(Method::Temperature, &[4.0, 1.0], 2.0, &[], 10.0, 1.0);
        assert_eq!(w, [2.0 / 3.0, 1.0 / 3.0]);
    }

    #[test]
    fn unimax_fills_small_buckets_to_their_cap_first() {
        // Budget 100 over 4 buckets, 2 epochs: 5 (cap 10), 10 (cap 20), then 35 each.
        let w = shares(
            Method::Unimax,
            &[5.0, 100.0, 10.0, 100.0],
            0.0,
            &[],
            100.0,
            2.0,
        );
        let q: Vec<f64> = w.iter().map(|x| x * 100.0).collect();
        assert_eq!(q, [10.0, 35.0, 20.0, 35.0]);
    }

    #[test]
    fn caps_hand_their_excess_on_until_none_is_exceeded() {
        // Natural shares of 1, 1, 8 with cap 1 epoch and budget 10 over n = 1, 1, 8: fits.
        assert_eq!(
            capped(10.0, &[0.1, 0.1, 0.8], &[1.0, 1.0, 8.0]),
            [1.0, 1.0, 8.0]
        );
        // Equal shares, caps 1, 2, 100: 10/3 each → 1 and 2 capped, the rest goes to the third.
        let q = capped(10.0, &[1.0 / 3.0; 3], &[1.0, 2.0, 100.0]);
        assert!(
            (q[2] - 7.0).abs() < 1e-9 && q[0] == 1.0 && q[1] == 2.0,
            "{q:?}"
        );
        // Everything capped: short.
        let q = capped(10.0, &[0.5, 0.5], &[1.0, 2.0]);
        assert_eq!(q, [1.0, 2.0]);
    }

    #[test]
    fn integer_quotas_sum_exactly_and_break_ties_by_code() {
        assert_eq!(largest_remainder(&[1.5, 1.5, 2.0], 5), [2.0, 1.0, 2.0]);
        assert_eq!(largest_remainder(&[10.0 / 3.0; 3], 10), [4.0, 3.0, 3.0]);
    }

    #[test]
    fn coverage_water_fills() {
        // Quota 10 over capacities 2, 5, 8: x = 4 (2 + 4 + 4 = 10).
        assert_eq!(
            coverage(10.0, &[2.0, 5.0, 8.0], true, &[0, 0, 0]),
            [2.0, 4.0, 4.0]
        );
        // Quota 11: x = 4, one left, to the open sub-bucket of smallest hash.
        assert_eq!(
            coverage(11.0, &[2.0, 5.0, 8.0], true, &[9, 7, 3]),
            [2.0, 4.0, 5.0]
        );
        let t = coverage(11.0, &[2.0, 5.0, 8.0], false, &[0; 3]);
        assert!(
            (t[1] - 4.5).abs() < 1e-12 && (t[2] - 4.5).abs() < 1e-12,
            "{t:?}"
        );
        assert_eq!(coverage(100.0, &[2.0, 5.0], true, &[0; 2]), [2.0, 5.0]);
    }
}
