//! The proposal: the weights that minimise `Σ_m o_m L_m(w) + kl · KL(w ‖ p)` over the mixtures
//! the swarm allows: `0 ≤ w_b ≤ c_b` (the caps) and `Σ w = 1`, or with a pin, each pinned
//! prefix's children summing to its total.
//!
//! With every `k_m ≥ 0` and `o_m ≥ 0` the objective is convex (a sum of exponentials of linear
//! forms, plus KL) and the feasible set is a product of capped simplices, so any local method
//! finds the optimum; what matters is accuracy. First-order methods struggle here: KL's
//! curvature `kl / w_b` is unbounded where the optimum puts a bucket near 0 (with a moderate
//! `kl` that can be 1e-13), and one step size cannot serve both ends. So this is a primal
//! barrier (interior-point) method with Newton steps: the caps and `w ≥ 0` become
//! `−μ Σ (ln w_b + ln(c_b − w_b))`, each `μ` is minimised under the group totals by Newton's
//! method (the Hessian is a diagonal plus one rank-1 term per metric, solved by Woodbury with
//! the group totals as a small Schur complement), and `μ` falls tenfold until the duality gap
//! (`2 · buckets · μ`) is below 1e-12 of the objective. The result is snapped to the bounds it
//! lies within 1e-12 of and put back on the totals by [`project`], the Euclidean projection
//! onto `{Σ w = T, lo ≤ w ≤ hi}` (`clamp(v − τ, lo, hi)`, the shift `τ` by bisection). With
//! `kl = 0` the objective curves in only as many directions as there are metrics, Newton's
//! last steps are ill-conditioned, and accelerated projected gradient finishes from there.

use super::inputs::Group;
use super::law::Law;
use super::linalg::{Matrix, solve_spd};

/// `Σ_m o_m L_m(w)`.
pub fn objective(laws: &[Law], o: &[f64], w: &[f64]) -> f64 {
    laws.iter()
        .zip(o)
        .filter(|(_, o)| **o != 0.0)
        .map(|(l, o)| o * l.predict(w))
        .sum()
}

/// `KL(w ‖ p) = Σ_b w_b ln(w_b / p_b)` (0 where `w_b = 0`; infinite where `p_b = 0 < w_b`).
pub fn kl(w: &[f64], p: &[f64]) -> f64 {
    w.iter()
        .zip(p)
        .filter(|(w, _)| **w > 0.0)
        .map(|(w, p)| {
            if *p > 0.0 {
                w * (w / p).ln()
            } else {
                f64::INFINITY
            }
        })
        .sum()
}

/// The Euclidean projection of `v` onto `{Σ w = total, lo ≤ w ≤ hi}` (assumed non-empty).
pub fn project(v: &[f64], lo: &[f64], hi: &[f64], total: f64) -> Vec<f64> {
    let at = |tau: f64| -> Vec<f64> {
        v.iter()
            .zip(lo.iter().zip(hi))
            .map(|(x, (l, h))| (x - tau).clamp(*l, *h))
            .collect()
    };
    let sum = |w: &[f64]| w.iter().sum::<f64>();
    // Σ clamp(v − τ) falls from Σ hi (τ ≤ min(v − hi)) to Σ lo (τ ≥ max(v − lo)).
    let mut a = v
        .iter()
        .zip(hi)
        .map(|(x, h)| x - h)
        .fold(f64::INFINITY, f64::min);
    let mut b = v
        .iter()
        .zip(lo)
        .map(|(x, l)| x - l)
        .fold(f64::NEG_INFINITY, f64::max);
    if !(a.is_finite() && b.is_finite()) {
        return lo.to_vec();
    }
    for _ in 0..200 {
        let mid = 0.5 * (a + b);
        if mid <= a || mid >= b {
            break;
        }
        if sum(&at(mid)) > total {
            a = mid;
        } else {
            b = mid;
        }
    }
    // Exactly: with the coordinates at their bounds fixed, the free ones share what is left.
    let tau = 0.5 * (a + b);
    let mut w = at(tau);
    let free: Vec<usize> = (0..w.len())
        .filter(|&i| w[i] > lo[i] && w[i] < hi[i])
        .collect();
    if !free.is_empty() {
        let fixed: f64 = (0..w.len())
            .filter(|i| !free.contains(i))
            .map(|i| w[i])
            .sum();
        let vfree: f64 = free.iter().map(|&i| v[i]).sum();
        let exact = (vfree - (total - fixed)) / free.len() as f64;
        let cand: Vec<f64> = at(exact);
        if (sum(&cand) - total).abs() <= (sum(&w) - total).abs() {
            w = cand;
        }
    }
    w
}

/// What is minimised.
pub struct Problem<'a> {
    pub laws: &'a [Law],
    /// Metric weights.
    pub o: &'a [f64],
    pub prior: &'a [f64],
    pub caps: &'a [f64],
    pub groups: &'a [Group],
    pub kl: f64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Proposal {
    pub w: Vec<f64>,
    /// `objective + kl · KL` at `w`.
    pub value: f64,
    /// Newton steps taken.
    pub iterations: usize,
}

/// Weights within this of a bound are put on it at the end.
const SNAP: f64 = 1e-12;
/// Projected-gradient steps at most in the polish (kl = 0).
const POLISH_STEPS: usize = 20_000;

/// The barrier problem over the free coordinates.
struct Barrier<'a, 'b> {
    pb: &'a Problem<'b>,
    /// Free coordinates (global indices) and, per free coordinate, its group (0..groups).
    free: Vec<usize>,
    group: Vec<usize>,
    /// Each group's total.
    totals: Vec<f64>,
    hi: Vec<f64>,
    /// The whole weight vector; the free coordinates are updated in place.
    w: Vec<f64>,
}

impl Problem<'_> {
    pub fn value(&self, w: &[f64]) -> f64 {
        let mut f = objective(self.laws, self.o, w);
        if self.kl > 0.0 {
            f += self.kl * kl(w, self.prior);
        }
        if f.is_finite() { f } else { f64::INFINITY }
    }

    /// Minimises; an error names a group whose total the caps cannot hold.
    pub fn solve(&self) -> Result<Proposal, String> {
        let n = self.caps.len();
        // A bucket is held at 0 when its cap is 0, or when KL is on and its prior is 0 (any
        // weight there would cost infinitely).
        let hi: Vec<f64> = (0..n)
            .map(|b| {
                if self.kl > 0.0 && self.prior[b] <= 0.0 {
                    0.0
                } else {
                    self.caps[b].max(0.0)
                }
            })
            .collect();
        let mut w = vec![0.0; n];
        let (mut free, mut group, mut totals) = (Vec::new(), Vec::new(), Vec::new());
        for g in self.groups {
            let room: f64 = g.members.iter().map(|&i| hi[i]).sum();
            if g.total < 0.0 || g.total > room * (1.0 + 1e-9) + 1e-12 {
                return Err(format!(
                    "no mixture of {} has a total weight of {} within the caps (they hold {room})",
                    g.prefix
                        .as_ref()
                        .map_or("the buckets".to_string(), |p| format!("prefix \"{p}\"")),
                    g.total
                ));
            }
            let open: Vec<usize> = g.members.iter().copied().filter(|&i| hi[i] > 0.0).collect();
            if g.total == 0.0 || g.total >= room * (1.0 - 1e-12) || open.len() < 2 {
                // Nothing to choose: all at 0, all at their caps, or a single bucket.
                for &i in &open {
                    w[i] = hi[i] * (g.total / room).min(1.0);
                }
                continue;
            }
            // A strictly interior start: each bucket at the same fraction of its cap.
            for &i in &open {
                w[i] = hi[i] * g.total / room;
                free.push(i);
                group.push(totals.len());
            }
            totals.push(g.total);
        }
        let mut iterations = 0;
        if !free.is_empty() {
            let mut bar = Barrier {
                pb: self,
                hi: free.iter().map(|&i| hi[i]).collect(),
                free,
                group,
                totals,
                w,
            };
            iterations = bar.minimise();
            w = bar.w;
        }
        // On the bounds it is within SNAP of (which the barrier keeps it just off), then the
        // rest back on the totals exactly.
        let caps = hi.clone();
        let mut lo = vec![0.0; n];
        let mut hi = hi;
        for b in 0..n {
            if w[b] <= SNAP && self.kl == 0.0 {
                w[b] = 0.0;
                hi[b] = 0.0;
            }
            if hi[b] - w[b] <= SNAP {
                w[b] = hi[b];
                lo[b] = hi[b];
            }
        }
        for g in self.groups {
            let pick = |x: &[f64]| g.members.iter().map(|&i| x[i]).collect::<Vec<f64>>();
            let part = project(&pick(&w), &pick(&lo), &pick(&hi), g.total);
            for (&i, x) in g.members.iter().zip(part) {
                w[i] = x;
            }
        }
        if self.kl == 0.0 {
            // Over the whole box: the polish may still move a weight the barrier left at 0.
            let (polished, steps) = self.polish(w, &caps);
            w = polished;
            iterations += steps;
        }
        Ok(Proposal {
            value: self.value(&w),
            w,
            iterations,
        })
    }

    /// The objective's gradient (without KL).
    fn gradient(&self, w: &[f64]) -> Vec<f64> {
        let mut g = vec![0.0; w.len()];
        for (l, o) in self.laws.iter().zip(self.o) {
            if *o == 0.0 || l.k == 0.0 {
                continue;
            }
            let s = o * l.k * l.t.iter().zip(w).map(|(t, w)| t * w).sum::<f64>().exp();
            for (g, t) in g.iter_mut().zip(&l.t) {
                *g += s * t;
            }
        }
        g
    }

    fn project_all(&self, v: &[f64], hi: &[f64]) -> Vec<f64> {
        let lo = vec![0.0; v.len()];
        let mut w = v.to_vec();
        for g in self.groups {
            let pick = |x: &[f64]| g.members.iter().map(|&i| x[i]).collect::<Vec<f64>>();
            let part = project(&pick(v), &pick(&lo), &pick(hi), g.total);
            for (&i, x) in g.members.iter().zip(part) {
                w[i] = x;
            }
        }
        w
    }

    /// Without KL the objective curves in only as many directions as there are metrics, and
    /// Newton's steps near the end of the barrier path are ill-conditioned: the barrier's
    /// result is finished by accelerated projected gradient (FISTA, backtracking, restarts
    /// when the objective rises), which from there only has to settle the last digits. It
    /// never returns a worse point than it was given.
    fn polish(&self, start: Vec<f64>, hi: &[f64]) -> (Vec<f64>, usize) {
        let mut x = start;
        let mut fx = self.value(&x);
        let mut y = x.clone();
        let mut t = 1.0f64;
        let mut lip = 1.0f64;
        let mut last = fx;
        let mut steps = 0;
        while steps < POLISH_STEPS {
            steps += 1;
            let fy = self.value(&y);
            let g = self.gradient(&y);
            let (next, fnext) = loop {
                let v: Vec<f64> = y.iter().zip(&g).map(|(y, g)| y - g / lip).collect();
                let z = self.project_all(&v, hi);
                let fz = self.value(&z);
                let d: Vec<f64> = z.iter().zip(&y).map(|(z, y)| z - y).collect();
                let model = fy
                    + g.iter().zip(&d).map(|(g, d)| g * d).sum::<f64>()
                    + 0.5 * lip * d.iter().map(|d| d * d).sum::<f64>();
                if fz <= model + 1e-15 * fy.abs().max(1.0) || lip > 1e300 {
                    break (z, fz);
                }
                lip *= 2.0;
            };
            if fnext > fx {
                // Momentum overshot: restart from x without it.
                if y == x {
                    break;
                }
                y = x.clone();
                t = 1.0;
                continue;
            }
            let tn = 0.5 * (1.0 + (1.0 + 4.0 * t * t).sqrt());
            let beta = (t - 1.0) / tn;
            y = next
                .iter()
                .zip(&x)
                .map(|(n, o)| n + beta * (n - o))
                .collect();
            let moved = next
                .iter()
                .zip(&x)
                .fold(0.0f64, |m, (a, b)| m.max((a - b).abs()));
            x = next;
            fx = fnext;
            t = tn;
            lip *= 0.9;
            if steps % 50 == 0 {
                if last - fx <= 1e-15 * (1.0 + fx.abs()) && moved <= 1e-13 {
                    break;
                }
                last = fx;
            }
        }
        (x, steps)
    }
}

impl Barrier<'_, '_> {
    /// `a_m = o_m k_m exp(t_m · w)` per metric.
    fn scales(&self, w: &[f64]) -> Vec<f64> {
        self.pb
            .laws
            .iter()
            .zip(self.pb.o)
            .map(|(l, o)| {
                if *o == 0.0 || l.k == 0.0 {
                    0.0
                } else {
                    o * l.k * l.t.iter().zip(w).map(|(t, w)| t * w).sum::<f64>().exp()
                }
            })
            .collect()
    }

    /// The barrier objective at `w` (whole vector); infinite outside the open box. With KL on,
    /// KL itself keeps weights off 0 and only the caps get a barrier (one at 0 would bias the
    /// small weights that KL's optimum can have by `μ / w`).
    fn phi(&self, w: &[f64], mu: f64) -> f64 {
        let mut f = self.pb.value(w);
        let low = self.pb.kl == 0.0;
        for (j, &b) in self.free.iter().enumerate() {
            let (x, h) = (w[b], self.hi[j]);
            if x <= 0.0 || x >= h {
                return f64::INFINITY;
            }
            f -= mu * (h - x).ln();
            if low {
                f -= mu * x.ln();
            }
        }
        if f.is_finite() { f } else { f64::INFINITY }
    }

    /// Newton's method on each barrier problem, μ falling tenfold; returns the steps taken.
    fn minimise(&mut self) -> usize {
        let nf = self.free.len();
        let scale = self.pb.value(&self.w).abs().max(1.0);
        let mut mu = 0.1 * scale / (2 * nf) as f64;
        let mut steps = 0;
        loop {
            for _ in 0..100 {
                steps += 1;
                let Some((dir, decrement)) = self.newton(mu) else {
                    break;
                };
                if decrement <= 1e-20 * scale {
                    break;
                }
                // The longest step that keeps every weight inside its box, then Armijo.
                let mut alpha = 1.0f64;
                for (j, &b) in self.free.iter().enumerate() {
                    let (x, d) = (self.w[b], dir[j]);
                    if d < 0.0 {
                        alpha = alpha.min(0.99 * x / -d);
                    } else if d > 0.0 {
                        alpha = alpha.min(0.99 * (self.hi[j] - x) / d);
                    }
                }
                let f0 = self.phi(&self.w, mu);
                // Close to the minimum the decrease is below what f64 can see in φ: there
                // Newton's step is taken as long as φ does not visibly rise.
                let slack = if decrement <= 1e-8 * scale {
                    1e-14 * scale
                } else {
                    0.0
                };
                let mut moved = false;
                for _ in 0..60 {
                    let mut next = self.w.clone();
                    for (j, &b) in self.free.iter().enumerate() {
                        next[b] += alpha * dir[j];
                    }
                    if self.phi(&next, mu) <= f0 - 0.25 * alpha * decrement + slack {
                        self.w = next;
                        moved = true;
                        break;
                    }
                    alpha *= 0.5;
                }
                if !moved {
                    break;
                }
            }
            if 2.0 * nf as f64 * mu <= 1e-12 * scale {
                return steps;
            }
            mu /= 10.0;
        }
    }

    /// The Newton direction under the group totals, and the Newton decrement `−gᵀ d`.
    fn newton(&self, mu: f64) -> Option<(Vec<f64>, f64)> {
        let nf = self.free.len();
        let pb = self.pb;
        let a = self.scales(&self.w);
        // Gradient and the diagonal of the Hessian (KL and the barrier), free coordinates.
        let mut g = vec![0.0; nf];
        let mut d = vec![0.0; nf];
        for (j, &b) in self.free.iter().enumerate() {
            let (x, h) = (self.w[b], self.hi[j]);
            let mut gj: f64 = pb.laws.iter().zip(&a).map(|(l, a)| a * l.t[b]).sum();
            gj += mu / (h - x);
            let mut dj = mu / ((h - x) * (h - x));
            if pb.kl > 0.0 {
                gj += pb.kl * ((x / pb.prior[b]).ln() + 1.0);
                dj += pb.kl / x;
            } else {
                gj -= mu / x;
                dj += mu / (x * x);
            }
            g[j] = gj;
            d[j] = dj;
        }
        // H = diag(d) + U Uᵀ, U's columns sqrt(a_m) t_m (free coordinates).
        let cols: Vec<Vec<f64>> = pb
            .laws
            .iter()
            .zip(&a)
            .filter(|(_, a)| **a > 0.0)
            .map(|(l, a)| self.free.iter().map(|&b| a.sqrt() * l.t[b]).collect())
            .collect();
        let m = cols.len();
        let mut k = Matrix::zeros(m);
        for p in 0..m {
            for q in 0..=p {
                let s: f64 = (0..nf).map(|j| cols[p][j] * cols[q][j] / d[j]).sum();
                k.add(p, q, s);
            }
            k.add(p, p, 1.0);
        }
        // H⁻¹ x = D⁻¹x − D⁻¹U (I + UᵀD⁻¹U)⁻¹ UᵀD⁻¹x.
        let solve = |x: &[f64]| -> Option<Vec<f64>> {
            let y: Vec<f64> = x.iter().zip(&d).map(|(x, d)| x / d).collect();
            if m == 0 {
                return Some(y);
            }
            let uy: Vec<f64> = cols
                .iter()
                .map(|c| c.iter().zip(&y).map(|(c, y)| c * y).sum())
                .collect();
            let z = solve_spd(&k, &uy)?;
            Some(
                (0..nf)
                    .map(|j| y[j] - (0..m).map(|p| cols[p][j] * z[p]).sum::<f64>() / d[j])
                    .collect(),
            )
        };
        let hg = solve(&g)?;
        // Group totals: E d = T − E w with E the groups' indicators; ν from
        // (E H⁻¹ Eᵀ) ν = −E H⁻¹ g − (T − E w).
        let mut he = Vec::with_capacity(self.totals.len());
        for q in 0..self.totals.len() {
            let e: Vec<f64> = self
                .group
                .iter()
                .map(|&gq| if gq == q { 1.0 } else { 0.0 })
                .collect();
            he.push(solve(&e)?);
        }
        let mut s = Matrix::zeros(self.totals.len());
        // What each total is off by (rounding accumulates over steps): the step puts it back,
        // E d = T − E w.
        let mut rhs: Vec<f64> = self.totals.iter().map(|t| -t).collect();
        for (j, &gq) in self.group.iter().enumerate() {
            rhs[gq] += self.w[self.free[j]];
        }
        for (j, &gq) in self.group.iter().enumerate() {
            rhs[gq] -= hg[j];
            for (q, col) in he.iter().enumerate() {
                if q <= gq {
                    s.add(gq, q, col[j]);
                }
            }
        }
        let nu = solve_spd(&s, &rhs)?;
        let dir: Vec<f64> = (0..nf)
            .map(|j| -hg[j] - he.iter().zip(&nu).map(|(c, n)| c[j] * n).sum::<f64>())
            .collect();
        let decrement = -g.iter().zip(&dir).map(|(g, d)| g * d).sum::<f64>();
        decrement.is_finite().then_some((dir, decrement.max(0.0)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn projection_is_onto_the_capped_simplex() {
        // Inside already: unchanged.
        let w = project(&[0.2, 0.3, 0.5], &[0.0; 3], &[1.0; 3], 1.0);
        assert!(
            w.iter()
                .zip([0.2, 0.3, 0.5])
                .all(|(a, b)| (a - b).abs() < 1e-15)
        );
        // A uniform shift: (1, 2, 3) → (0, 0, 1) on the simplex.
        let w = project(&[1.0, 2.0, 3.0], &[0.0; 3], &[1.0; 3], 1.0);
        assert_eq!(w, [0.0, 0.0, 1.0]);
        // Caps bind: the capped coordinate sits at its cap, the rest share the remainder.
        let w = project(&[1.0, 2.0, 3.0], &[0.0; 3], &[1.0, 1.0, 0.4], 1.0);
        assert!((w[2] - 0.4).abs() < 1e-15);
        assert!((w.iter().sum::<f64>() - 1.0).abs() < 1e-15, "{w:?}");
        assert!(
            (w[0] - 0.0).abs() < 1e-15 && (w[1] - 0.6).abs() < 1e-15,
            "{w:?}"
        );
        // Against a brute-force minimiser of the distance on a fine grid.
        let v = [0.7, -0.2, 0.4];
        let (lo, hi) = ([0.05, 0.0, 0.1], [0.5, 0.6, 0.35]);
        let w = project(&v, &lo, &hi, 0.8);
        let dist = |a: f64, b: f64| {
            let c = 0.8 - a - b;
            (a - v[0]).powi(2) + (b - v[1]).powi(2) + (c - v[2]).powi(2)
        };
        let mut best = f64::INFINITY;
        for i in 0..=1000 {
            for j in 0..=1000 {
                let (a, b) = (
                    lo[0] + (hi[0] - lo[0]) * i as f64 / 1000.0,
                    lo[1] + (hi[1] - lo[1]) * j as f64 / 1000.0,
                );
                let c = 0.8 - a - b;
                if c >= lo[2] && c <= hi[2] {
                    best = best.min(dist(a, b));
                }
            }
        }
        assert!(dist(w[0], w[1]) <= best + 1e-12, "{w:?}");
        assert!((w.iter().sum::<f64>() - 0.8).abs() < 1e-15);
        for i in 0..3 {
            assert!(w[i] >= lo[i] && w[i] <= hi[i]);
        }
    }

    fn law(c: f64, k: f64, t: &[f64]) -> Law {
        Law {
            c,
            k,
            t: t.to_vec(),
        }
    }

    #[test]
    fn minimises_onto_the_cheapest_bucket_up_to_its_cap() {
        // L = exp(2 w0 − w1 + 0 w2): the optimum fills bucket 1 to its cap 0.5, then bucket 2.
        let laws = [law(0.0, 1.0, &[2.0, -1.0, 0.0])];
        let groups = [Group {
            prefix: None,
            members: vec![0, 1, 2],
            total: 1.0,
        }];
        let p = Problem {
            laws: &laws,
            o: &[1.0],
            prior: &[0.4, 0.3, 0.3],
            caps: &[1.0, 0.5, 1.0],
            groups: &groups,
            kl: 0.0,
        };
        let got = p.solve().unwrap();
        assert!(
            got.w[0].abs() < 1e-12 && (got.w[1] - 0.5).abs() < 1e-12,
            "{got:?}"
        );
        assert!((got.value - (-0.5f64).exp()).abs() < 1e-12);
    }

    #[test]
    fn kl_alone_stays_at_the_prior_and_pins_hold() {
        let laws = [law(1.0, 0.0, &[0.0; 4])];
        let groups = [
            Group {
                prefix: Some("1".into()),
                members: vec![0, 1],
                total: 0.3,
            },
            Group {
                prefix: Some("2".into()),
                members: vec![2, 3],
                total: 0.7,
            },
        ];
        let prior = [0.1, 0.4, 0.25, 0.25];
        let p = Problem {
            laws: &laws,
            o: &[1.0],
            prior: &prior,
            caps: &[1.0; 4],
            groups: &groups,
            kl: 0.5,
        };
        let got = p.solve().unwrap();
        // The nearest mixture to p in KL with the pinned totals: p rescaled within each prefix.
        let want = [0.06, 0.24, 0.35, 0.35];
        for (g, w) in got.w.iter().zip(want) {
            assert!((g - w).abs() < 1e-9, "{got:?}");
        }
    }

    /// The KKT conditions of `min f(w)` on one capped simplex, where the gradient `g` is known:
    /// one multiplier `ν` with `g_b = ν` where `0 < w_b < c_b`, `g_b ≥ ν` at 0, `g_b ≤ ν` at
    /// the cap.
    fn kkt(w: &[f64], g: &[f64], caps: &[f64], tol: f64) {
        let inside: Vec<usize> = (0..w.len())
            .filter(|&b| w[b] > 0.0 && w[b] < caps[b])
            .collect();
        assert!(!inside.is_empty(), "{w:?}");
        let nu = g[inside[0]];
        for b in 0..w.len() {
            let msg = format!("bucket {b}: w {w:?}, g {g:?}");
            if inside.contains(&b) {
                assert!((g[b] - nu).abs() <= tol, "{msg}");
            } else if w[b] == 0.0 {
                assert!(g[b] >= nu - tol, "{msg}");
            } else {
                assert!(g[b] <= nu + tol, "{msg}");
            }
        }
    }

    #[test]
    fn a_weak_kl_pull_with_weights_near_zero_is_solved_to_its_kkt_point() {
        // Gradients that differ by ~10 against kl = 0.1 put some weights near p · e^-100:
        // curvature kl / w_b of 1e40 there, which defeats a single step size.
        let t = [8.0, -2.0, 0.0, 3.0, -4.0, 1.0];
        let laws = [
            law(1.0, 1.0, &t),
            law(0.5, 0.5, &[-3.0, 0.0, 2.0, 0.0, 1.0, 0.0]),
        ];
        let prior = [0.1, 0.2, 0.3, 0.15, 0.05, 0.2];
        let caps = [1.0, 0.3, 1.0, 1.0, 0.12, 1.0];
        let groups = [Group {
            prefix: None,
            members: (0..6).collect(),
            total: 1.0,
        }];
        for kl in [0.1, 1.0, 10.0] {
            let p = Problem {
                laws: &laws,
                o: &[1.0, 2.0],
                prior: &prior,
                caps: &caps,
                groups: &groups,
                kl,
            };
            let got = p.solve().unwrap();
            let w = &got.w;
            assert!((w.iter().sum::<f64>() - 1.0).abs() < 1e-14);
            // The gradient of the objective plus kl · KL.
            let mut g = vec![0.0; 6];
            for (l, o) in laws.iter().zip([1.0, 2.0]) {
                let s = o * l.k * l.t.iter().zip(w).map(|(t, w)| t * w).sum::<f64>().exp();
                for (g, t) in g.iter_mut().zip(&l.t) {
                    *g += s * t;
                }
            }
            for ((g, w), p) in g.iter_mut().zip(w).zip(prior) {
                *g += kl * ((w / p).ln() + 1.0);
            }
            kkt(w, &g, &caps, 1e-6);
            // And no feasible nudge improves it.
            for (i, j) in [(0, 1), (2, 3), (5, 1), (3, 0)] {
                let mut v = w.clone();
                let h = 1e-7f64.min(v[i]);
                v[i] -= h;
                v[j] += h;
                if v[j] <= caps[j] {
                    assert!(p.value(&v) >= got.value - 1e-15, "kl {kl}: {i}->{j}");
                }
            }
        }
    }

    #[test]
    fn without_kl_the_kkt_point_has_zeros_and_caps() {
        let laws = [law(0.0, 1.0, &[2.0, -1.0, 0.5, -3.0])];
        let caps = [1.0, 0.5, 1.0, 0.3];
        let groups = [Group {
            prefix: None,
            members: (0..4).collect(),
            total: 1.0,
        }];
        let p = Problem {
            laws: &laws,
            o: &[1.0],
            prior: &[0.25; 4],
            caps: &caps,
            groups: &groups,
            kl: 0.0,
        };
        let got = p.solve().unwrap();
        let w = &got.w;
        let s = laws[0]
            .t
            .iter()
            .zip(w)
            .map(|(t, w)| t * w)
            .sum::<f64>()
            .exp();
        let g: Vec<f64> = laws[0].t.iter().map(|t| s * t).collect();
        kkt(w, &g, &caps, 1e-9);
        assert_eq!((w[3], w[1]), (0.3, 0.5), "{w:?}");
    }

    #[test]
    fn an_impossible_total_is_refused() {
        let laws = [law(1.0, 0.0, &[0.0; 2])];
        let groups = [Group {
            prefix: Some("7".into()),
            members: vec![0, 1],
            total: 1.0,
        }];
        let p = Problem {
            laws: &laws,
            o: &[1.0],
            prior: &[0.5, 0.5],
            caps: &[0.3, 0.3],
            groups: &groups,
            kl: 0.0,
        };
        assert!(p.solve().unwrap_err().contains("prefix \"7\""));
    }
}
