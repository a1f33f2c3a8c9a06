//! The proposal: the weights that minimise `Σ_m o_m L_m(w) + kl · KL(w ‖ p)` over the mixtures
//! the swarm allows: `0 ≤ w_b ≤ c_b` (the caps) and `Σ w = 1`, or with a pin, each pinned
//! prefix's children summing to its total.
//!
//! With every `k_m ≥ 0` and `o_m ≥ 0` the objective is convex (a sum of exponentials of linear
//! forms, plus KL), and the feasible set is a product of capped simplices, so projected
//! gradient finds the optimum: FISTA (Nesterov's acceleration) with a backtracking step and a
//! restart whenever the objective rises. The projection onto `{Σ w = T, lo ≤ w ≤ hi}` is
//! `clamp(v − τ, lo, hi)`, with the shift `τ` found by bisection and then solved exactly on the
//! coordinates left free. With `kl > 0` every weight keeps a floor of [`FLOOR`] (KL's gradient
//! is unbounded at 0; its optimum is inside anyway).

use super::inputs::Group;
use super::law::Law;

/// The smallest weight when `kl > 0`.
pub const FLOOR: f64 = 1e-12;
const MAX_ITER: usize = 200_000;

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
    pub iterations: usize,
}

impl Problem<'_> {
    fn value(&self, w: &[f64]) -> f64 {
        let mut f = objective(self.laws, self.o, w);
        if self.kl > 0.0 {
            f += self.kl * kl(w, self.prior);
        }
        if f.is_finite() { f } else { f64::INFINITY }
    }

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
        if self.kl > 0.0 {
            for ((g, w), p) in g.iter_mut().zip(w).zip(self.prior) {
                if *p > 0.0 && *w > 0.0 {
                    *g += self.kl * ((w / p).ln() + 1.0);
                }
            }
        }
        g
    }

    /// Each weight's bounds: `[floor, cap]`; a bucket without prior mass is held at 0 when
    /// the KL term is on (any weight there would cost infinitely).
    fn bounds(&self) -> (Vec<f64>, Vec<f64>) {
        let floor = if self.kl > 0.0 { FLOOR } else { 0.0 };
        let mut lo = vec![floor; self.caps.len()];
        let mut hi: Vec<f64> = self.caps.iter().map(|c| c.max(floor)).collect();
        if self.kl > 0.0 {
            for (b, p) in self.prior.iter().enumerate() {
                if *p <= 0.0 {
                    lo[b] = 0.0;
                    hi[b] = 0.0;
                }
            }
        }
        (lo, hi)
    }

    fn project(&self, v: &[f64], lo: &[f64], hi: &[f64]) -> Vec<f64> {
        let mut w = vec![0.0; v.len()];
        for g in self.groups {
            let pick = |x: &[f64]| g.members.iter().map(|&i| x[i]).collect::<Vec<f64>>();
            let part = project(&pick(v), &pick(lo), &pick(hi), g.total);
            for (&i, x) in g.members.iter().zip(part) {
                w[i] = x;
            }
        }
        w
    }

    /// Minimises from the prior (projected onto the feasible set).
    pub fn solve(&self) -> Result<Proposal, String> {
        let (lo, hi) = self.bounds();
        for g in self.groups {
            let (l, h): (f64, f64) = g
                .members
                .iter()
                .fold((0.0, 0.0), |(a, b), &i| (a + lo[i], b + hi[i]));
            if g.total < l - 1e-9 || g.total > h + 1e-9 {
                return Err(format!(
                    "no mixture of {} has a total weight of {} within the caps (they allow {l} to {h})",
                    g.prefix
                        .as_ref()
                        .map_or("the buckets".to_string(), |p| format!("prefix \"{p}\"")),
                    g.total
                ));
            }
        }
        let mut x = self.project(self.prior, &lo, &hi);
        let mut fx = self.value(&x);
        let mut y = x.clone();
        let mut t = 1.0f64;
        let mut lip = 1.0f64;
        let mut last = fx;
        let mut iterations = 0;
        while iterations < MAX_ITER {
            iterations += 1;
            let fy = self.value(&y);
            let g = self.gradient(&y);
            let (next, fnext) = loop {
                let v: Vec<f64> = y.iter().zip(&g).map(|(y, g)| y - g / lip).collect();
                let z = self.project(&v, &lo, &hi);
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
            let mut beta = (t - 1.0) / tn;
            // Keep the extrapolated point inside the floor (KL's domain).
            for ((n, o), l) in next.iter().zip(&x).zip(&lo) {
                let d = n - o;
                if d < 0.0 {
                    beta = beta.min(((n - l) / -d).max(0.0));
                }
            }
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
            if iterations % 50 == 0 {
                if last - fx <= 1e-15 * (1.0 + fx.abs()) && moved <= 1e-12 {
                    break;
                }
                last = fx;
            }
        }
        Ok(Proposal {
            value: self.value(&x),
            w: x,
            iterations,
        })
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
        assert!((w[2] - 0.4).abs() < 1e-15 && (w[1] - w[0] - 1.0).abs() > 0.0);
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
