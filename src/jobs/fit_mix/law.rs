//! The mixing law `L(w) = c + k · exp(Σ_b t_b · w_b)`, `k ≥ 0`, and its robust fit to one
//! metric over the runs of a swarm.
//!
//! - **Units.** The metric is standardised (mean 0, standard deviation 1) and the weights are
//!   centred on the runs' mean mixture `w̄` before fitting: `y = c' + exp(u + t · (w − w̄))`,
//!   with `k = exp(u − t · w̄)` once mapped back. `k = exp(u)` keeps `k > 0`; `k = 0` is the
//!   constant law, fitted on its own and kept when it fits at least as well.
//! - **Gauge.** Every run's weights sum to 1 (and, with a pin, each pinned prefix's weights to
//!   its total), so adding a constant to every `t_b` (of a pinned prefix) changes no prediction
//!   on the swarm's mixtures; `k` absorbs it. The gauge is fixed by a penalty
//!   `½ s Σ_G (Σ_{b∈G} t_b)²` over those groups `G`, which the runs cannot see, so it costs
//!   nothing and its optimum has `Σ_{b∈G} t_b = 0` exactly. A ridge `½ s · RIDGE · Σ t_b²`
//!   ([`RIDGE`] = 1e-8) only keeps the solve well posed where the runs inform nothing (a
//!   bucket whose weight never varies gets `t_b = 0`). `s` is the mean diagonal of the
//!   `t`-block of the Gauss–Newton matrix at the start. (A larger ridge would not do: the
//!   curvature of `exp` is weakly told apart from `c` and `k` over a swarm's small range, and a
//!   ridge leans on that direction, shrinking `t`.)
//! - **Loss.** Huber's `ρ(r) = r²/2` for `|r| ≤ δ`, `δ(|r| − δ/2)` beyond, `δ = 1.345 σ`: a
//!   few failed or noisy proxies do not drag the law. The noise scale `σ` is estimated with
//!   the law (Huber's "proposal 2", which counts the degrees of freedom the coefficients use:
//!   with one per bucket they can be few, and a plain MAD of the residuals then shrinks
//!   round after round until the loss is L1 and the law chases single runs).
//! - **Guards.** Even a robust loss lets a flexible exponential spike through a few wild runs:
//!   the floor `c` is kept below `min y + 3σ` (else the runs below it become "outliers"), and
//!   the exponent `t · (w − w̄)` ranging beyond ±[`SPREAD`] over the runs costs.
//! - **Search.** `c` is gridded below `min y` (49 values, `min y − range · 10^g`, `g` from −3 to
//!   3): there `ln(y − c)` is linear in `w` and a weighted least squares gives `u, t`. The
//!   three best starts are refined in all parameters by Levenberg–Marquardt on squared error;
//!   `σ` is first taken from that fit's residuals (MAD, scaled by `sqrt(n / dof)`). Wild runs
//!   inflate it, so the first robust fit uses a quarter of it (near L1), from the
//!   least-squares fit and from the grid's two best starts under that loss (reweighted by
//!   Huber's weights); the best is kept, and then `σ` and the fit are updated in turn
//!   (Levenberg–Marquardt on the iteratively reweighted Huber loss) until `σ` settles.

use super::linalg::{Matrix, solve_spd};
use super::stats::{mad_sigma, median};

/// The ridge on `t`, relative to the mean curvature the runs give each `t_b` (numerical
/// safety only; the gauge is fixed by its own penalty).
pub const RIDGE: f64 = 1e-8;
/// How far the exponent `t · (w − w̄)` may range over the runs, either way, before it costs:
/// `y − c` varying by more than `e^3 ≈ 20` times either side of the runs' centre is not a
/// law but a spike through a few runs (a flexible exponential can pass through wild runs
/// that way, however robust the loss).
pub const SPREAD: f64 = 3.0;
/// What each unit of exponent beyond [`SPREAD`] costs, squared and halved, in the
/// standardised metric's units (a residual of one standard deviation costs 0.5).
const SPREAD_WEIGHT: f64 = 10.0;
/// Huber's tuning constant (95% efficiency under normal noise).
pub const HUBER: f64 = 1.345;
/// `E[ψ(Z)²]` for Huber's ψ at [`HUBER`] and a standard normal `Z`:
/// `2Φ(c) − 1 − 2cφ(c) + 2c²(1 − Φ(c))`.
const PSI2: f64 = 0.710_164_5;
const GRID: usize = 49;
const STARTS: usize = 3;

/// A fitted law, in the metric's own units and the weights as they are.
#[derive(Debug, Clone, PartialEq)]
pub struct Law {
    pub c: f64,
    pub k: f64,
    /// By bucket.
    pub t: Vec<f64>,
}

impl Law {
    pub fn predict(&self, w: &[f64]) -> f64 {
        if self.k == 0.0 {
            return self.c;
        }
        self.c + self.k * dot(&self.t, w).exp()
    }
}

/// A law and how it was fitted.
#[derive(Debug, Clone, PartialEq)]
pub struct Fit {
    pub law: Law,
    /// Huber's δ, in the metric's units.
    pub delta: f64,
    /// `k = 0`: no weight moves the metric (as far as the runs tell).
    pub constant: bool,
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

fn huber(r: f64, delta: f64) -> f64 {
    let a = r.abs();
    if a <= delta {
        0.5 * r * r
    } else {
        delta * (a - 0.5 * delta)
    }
}

/// The fitting problem in standard units: centred weights `x` (run-major, `b` per run),
/// standardised values `y`.
struct Problem<'a> {
    x: &'a [f64],
    b: usize,
    y: &'a [f64],
    /// The buckets whose weights sum to a constant over the runs.
    gauge: &'a [Vec<usize>],
}

impl Problem<'_> {
    fn n(&self) -> usize {
        self.y.len()
    }

    fn row(&self, i: usize) -> &[f64] {
        &self.x[i * self.b..(i + 1) * self.b]
    }

    /// `exp(u + t · x_i)` per run; θ = `[c, u, t…]`.
    fn exps(&self, theta: &[f64]) -> Vec<f64> {
        (0..self.n())
            .map(|i| (theta[1] + dot(&theta[2..], self.row(i))).exp())
            .collect()
    }

    fn residuals(&self, theta: &[f64]) -> Vec<f64> {
        self.exps(theta)
            .iter()
            .zip(self.y)
            .map(|(e, y)| y - theta[0] - e)
            .collect()
    }

    /// `P t`, the penalty's gradient, for `½ tᵀ P t` = the gauge and the ridge at `scale`.
    fn penalty_grad(&self, t: &[f64], scale: f64) -> Vec<f64> {
        let mut g: Vec<f64> = t.iter().map(|t| scale * RIDGE * t).collect();
        for members in self.gauge {
            let sum: f64 = members.iter().map(|&b| t[b]).sum();
            for &b in members {
                g[b] += scale * sum;
            }
        }
        g
    }

    /// Adds `P` to the lower triangle of `a`, its `t` block starting at `offset`.
    fn add_penalty(&self, a: &mut Matrix, offset: usize, scale: f64) {
        for b in 0..self.b {
            a.add(offset + b, offset + b, scale * RIDGE);
        }
        for members in self.gauge {
            for &p in members {
                for &q in members {
                    if q <= p {
                        a.add(offset + p, offset + q, scale);
                    }
                }
            }
        }
    }

    /// Huber loss plus the penalty; infinite where the exponentials overflow.
    fn loss(&self, theta: &[f64], delta: f64, scale: f64) -> f64 {
        let r = self.residuals(theta);
        let fit: f64 = r.iter().map(|&r| huber(r, delta)).sum();
        let t = &theta[2..];
        let pen = 0.5 * dot(t, &self.penalty_grad(t, scale));
        let spread: f64 = (0..self.n())
            .map(|i| {
                let over = (dot(t, self.row(i)).abs() - SPREAD).max(0.0);
                0.5 * SPREAD_WEIGHT * over * over
            })
            .sum();
        let f = fit + pen + spread;
        if f.is_finite() { f } else { f64::INFINITY }
    }

    /// The start at `c`: `ln(y − c) ≈ u + t · x` by least squares weighted by `(y − c)²` (so
    /// that it approximates least squares on `y`) with the gauge's penalty; with a finite
    /// `delta`, reweighted a few times by Huber's weights of the residuals on `y` (so that
    /// outliers do not bend the start).
    fn start(&self, c: f64, delta: f64) -> Option<Vec<f64>> {
        let (n, b) = (self.n(), self.b);
        if self.y.iter().any(|&y| y - c <= 0.0) {
            return None;
        }
        let mut robust = vec![1.0; n];
        let mut theta = Vec::new();
        let rounds = if delta.is_finite() { 5 } else { 1 };
        for _ in 0..rounds {
            let mut a = Matrix::zeros(b + 1);
            let mut rhs = vec![0.0; b + 1];
            let mut row = vec![0.0; b + 1];
            for (i, weight) in robust.iter().enumerate() {
                let d = self.y[i] - c;
                let (z, v) = (d.ln(), d * d * weight);
                row[0] = 1.0;
                row[1..].copy_from_slice(self.row(i));
                for p in 0..=b {
                    rhs[p] += v * row[p] * z;
                    for q in 0..=p {
                        a.add(p, q, v * row[p] * row[q]);
                    }
                }
            }
            let trace: f64 = (1..=b).map(|p| a.at(p, p)).sum::<f64>() / b as f64;
            self.add_penalty(&mut a, 1, trace.max(1e-12));
            let beta = solve_spd(&a, &rhs)?;
            theta = vec![c];
            theta.extend(beta);
            for (w, r) in robust.iter_mut().zip(self.residuals(&theta)) {
                *w = if r.abs() <= delta {
                    1.0
                } else {
                    delta / r.abs()
                };
            }
        }
        Some(theta)
    }

    /// The penalty's scale for starts near `theta`.
    fn scale(&self, theta: &[f64]) -> f64 {
        let e = self.exps(theta);
        let mut trace = 0.0;
        for (i, e) in e.iter().enumerate() {
            trace += e * e * self.row(i).iter().map(|x| x * x).sum::<f64>();
        }
        (trace / self.b as f64).max(1e-12)
    }

    /// Levenberg–Marquardt on the iteratively reweighted Huber loss from `theta`.
    fn refine(&self, mut theta: Vec<f64>, delta: f64, scale: f64, c_max: f64) -> (Vec<f64>, f64) {
        theta[0] = theta[0].min(c_max);
        let b = self.b;
        let p = b + 2;
        let mut f = self.loss(&theta, delta, scale);
        let mut mu = 1e-3;
        let mut flat = 0;
        let mut jrow = vec![0.0; p];
        for _ in 0..2000 {
            let e = self.exps(&theta);
            let mut a = Matrix::zeros(p);
            let mut g = vec![0.0; p];
            for (i, &e) in e.iter().enumerate() {
                let r = self.y[i] - theta[0] - e;
                let w = if r.abs() <= delta {
                    1.0
                } else {
                    delta / r.abs()
                };
                jrow[0] = 1.0;
                jrow[1] = e;
                for (j, x) in self.row(i).iter().enumerate() {
                    jrow[2 + j] = e * x;
                }
                for q in 0..p {
                    g[q] += w * jrow[q] * r;
                    for s in 0..=q {
                        a.add(q, s, w * jrow[q] * jrow[s]);
                    }
                }
            }
            self.add_penalty(&mut a, 2, scale);
            for (q, pg) in self.penalty_grad(&theta[2..], scale).iter().enumerate() {
                g[2 + q] -= pg;
            }
            // The exponent's spread beyond ±SPREAD: a Gauss–Newton term per run past it.
            for i in 0..self.n() {
                let x = self.row(i);
                let z = dot(&theta[2..], x);
                let over = z.abs() - SPREAD;
                if over > 0.0 {
                    for (q, xq) in x.iter().enumerate() {
                        g[2 + q] -= SPREAD_WEIGHT * over * z.signum() * xq;
                        for (s, xs) in x.iter().enumerate().take(q + 1) {
                            a.add(2 + q, 2 + s, SPREAD_WEIGHT * xq * xs);
                        }
                    }
                }
            }
            // `c` at its bound and the descent pushing it up: hold it there this step.
            if theta[0] >= c_max && g[0] > 0.0 {
                for q in 0..p {
                    a.a[q * p] = 0.0;
                }
                a.a[0] = 1.0;
                g[0] = 0.0;
            }
            let diag = a.diag();
            let top = diag.iter().copied().fold(0.0, f64::max).max(1e-300);
            let mut accepted = None;
            for _ in 0..40 {
                let mut m = a.clone();
                for (q, d) in diag.iter().enumerate() {
                    m.add(q, q, mu * d.max(1e-9 * top));
                }
                let Some(step) = solve_spd(&m, &g) else {
                    mu *= 10.0;
                    continue;
                };
                let mut next: Vec<f64> = theta.iter().zip(&step).map(|(t, s)| t + s).collect();
                next[0] = next[0].min(c_max);
                let fn_ = self.loss(&next, delta, scale);
                if fn_ <= f {
                    let step: Vec<f64> = next.iter().zip(&theta).map(|(n, t)| n - t).collect();
                    accepted = Some((next, fn_, step));
                    mu = (mu / 3.0).max(1e-12);
                    break;
                }
                mu *= 4.0;
            }
            let Some((next, fn_, step)) = accepted else {
                break;
            };
            let big = theta.iter().fold(1.0f64, |m, t| m.max(t.abs()));
            let small = step.iter().all(|s| s.abs() <= 1e-12 * big);
            // Little progress under heavy damping is not convergence: only count flat steps
            // taken while the step is nearly Gauss–Newton's.
            flat = if f - fn_ <= 1e-15 * (1.0 + f) && mu < 1e-6 {
                flat + 1
            } else {
                0
            };
            theta = next;
            f = fn_;
            if small || flat >= 3 {
                break;
            }
        }
        (theta, f)
    }
}

/// Huber's location estimate of `y` (the constant law) and its loss.
fn location(y: &[f64], delta: f64) -> (f64, f64) {
    let mut c = median(y);
    for _ in 0..100 {
        let (mut num, mut den) = (0.0, 0.0);
        for &v in y {
            let r = v - c;
            let w = if r.abs() <= delta {
                1.0
            } else {
                delta / r.abs()
            };
            num += w * v;
            den += w;
        }
        let next = num / den;
        let done = (next - c).abs() <= 1e-15 * (1.0 + c.abs());
        c = next;
        if done {
            break;
        }
    }
    (c, y.iter().map(|v| huber(v - c, delta)).sum())
}

/// Fits the law to values `y` of runs with weights `w` (one `Vec` per run, all of one length);
/// `gauge`: the sets of buckets whose weights have a fixed total in every run (all buckets, or
/// with a pin each pinned prefix's).
pub fn fit(w: &[Vec<f64>], y: &[f64], gauge: &[Vec<usize>]) -> Fit {
    let n = y.len();
    let b = w.first().map_or(0, Vec::len);
    let mean = y.iter().sum::<f64>() / n.max(1) as f64;
    let sd = (y.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / n.max(1) as f64).sqrt();
    if n == 0 || b == 0 || sd.is_nan() || sd <= 1e-12 * (1.0 + mean.abs()) {
        return Fit {
            law: Law {
                c: mean,
                k: 0.0,
                t: vec![0.0; b],
            },
            delta: 0.0,
            constant: true,
        };
    }
    let ys: Vec<f64> = y.iter().map(|v| (v - mean) / sd).collect();
    let wbar: Vec<f64> = (0..b)
        .map(|j| w.iter().map(|r| r[j]).sum::<f64>() / n as f64)
        .collect();
    let x: Vec<f64> = w
        .iter()
        .flat_map(|r| r.iter().zip(&wbar).map(|(a, m)| a - m))
        .collect();
    let pb = Problem {
        x: &x,
        b,
        y: &ys,
        gauge,
    };

    let lo = ys.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = ys.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let range = hi - lo;
    let grid: Vec<f64> = (0..GRID)
        .map(|j| lo - range * 10f64.powf(-3.0 + 6.0 * j as f64 / (GRID - 1) as f64))
        .collect();
    let best_of = |starts: Vec<Vec<f64>>, delta: f64, scale: f64| {
        let mut ranked: Vec<(f64, Vec<f64>)> = starts
            .into_iter()
            .map(|t| (pb.loss(&t, delta, scale), t))
            .filter(|(l, _)| l.is_finite())
            .collect();
        ranked.sort_by(|a, b| a.0.total_cmp(&b.0));
        ranked
    };
    let floor = 1e-6;
    let ls_starts = best_of(
        grid.iter()
            .filter_map(|&c| pb.start(c, f64::INFINITY))
            .collect(),
        f64::INFINITY,
        0.0,
    );
    let Some((_, first)) = ls_starts.first() else {
        return constant(y, b, mean, sd, floor);
    };
    let scale = pb.scale(first);
    // Least squares first: starts, and a first scale of the residuals (the MAD, scaled back
    // by sqrt(n / dof) for the degrees of freedom a coefficient per bucket uses up).
    let (ls, _) = ls_starts
        .iter()
        .take(STARTS)
        .map(|(_, t)| pb.refine(t.clone(), f64::INFINITY, scale, f64::INFINITY))
        .min_by(|a, b| a.1.total_cmp(&b.1))
        .expect("at least one start");
    let params = 2 + b - gauge.iter().filter(|g| !g.is_empty()).count().min(b);
    let dof = n.saturating_sub(params).max(1);
    let mut sigma = (mad_sigma(&pb.residuals(&ls)) * (n as f64 / dof as f64).sqrt()).max(floor);
    // Wild runs inflate that scale, and a loss that tolerates large residuals lets the law
    // bend toward them: the first robust fit is made with a quarter of it, close to least
    // absolute deviations, from the least-squares fit and the grid's best robust starts.
    let mut delta = HUBER * sigma / 4.0;
    // The law's floor `c` may not sit above the lowest run by more than the noise: with it
    // there, a robust loss could call the runs below it outliers and bend the law through
    // the rest.
    let c_max = |sigma: f64| lo + 3.0 * sigma;
    let robust = best_of(
        grid.iter().filter_map(|&c| pb.start(c, delta)).collect(),
        delta,
        scale,
    );
    let (mut theta, mut f) = std::iter::once(&ls)
        .chain(robust.iter().take(STARTS - 1).map(|(_, t)| t))
        .map(|t| pb.refine(t.clone(), delta, scale, c_max(sigma)))
        .min_by(|a, b| a.1.total_cmp(&b.1))
        .expect("at least one start");
    // Then the scale and the fit together (Huber's "proposal 2"): σ² = Σ min(r², (1.345 σ)²)
    // / ((n − parameters) · β), β = E[ψ(Z)²] for a standard normal Z, so that σ estimates the
    // noise's standard deviation under normal noise, whatever the degrees of freedom. It
    // grows from a scale that is too small (most residuals are then capped) and shrinks from
    // one that wild runs inflated, to where it settles.
    for _ in 0..20 {
        let r = pb.residuals(&theta);
        let cap = (HUBER * sigma).powi(2);
        let next = (r.iter().map(|r| (r * r).min(cap)).sum::<f64>() / (dof as f64 * PSI2))
            .sqrt()
            .max(floor);
        let settled = (next - sigma).abs() <= 1e-3 * sigma;
        sigma = next;
        delta = HUBER * sigma;
        (theta, f) = pb.refine(theta, delta, scale, c_max(sigma));
        if settled {
            break;
        }
    }
    let (c0, f0) = location(&ys, delta);
    // The exponential law includes the constant one as k → 0; if it fits no better, keep
    // the constant (a NaN loss counts as worse).
    if f.is_nan() || f >= f0 {
        return Fit {
            law: Law {
                c: mean + sd * c0,
                k: 0.0,
                t: vec![0.0; b],
            },
            delta: delta * sd,
            constant: true,
        };
    }
    let t = theta[2..].to_vec();
    Fit {
        law: Law {
            c: mean + sd * theta[0],
            k: sd * (theta[1] - dot(&t, &wbar)).exp(),
            t,
        },
        delta: delta * sd,
        constant: false,
    }
}

/// The constant law when no start can be made.
fn constant(y: &[f64], b: usize, mean: f64, sd: f64, floor: f64) -> Fit {
    let ys: Vec<f64> = y.iter().map(|v| (v - mean) / sd).collect();
    let delta = HUBER * mad_sigma(&ys).max(floor);
    let (c0, _) = location(&ys, delta);
    Fit {
        law: Law {
            c: mean + sd * c0,
            k: 0.0,
            t: vec![0.0; b],
        },
        delta: delta * sd,
        constant: true,
    }
}

#[cfg(test)]
mod tests {
    use super::{Law, fit};
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    /// Runs on the simplex of 5 buckets: random points around the centre.
    fn runs(n: usize, rng: &mut ChaCha8Rng) -> Vec<Vec<f64>> {
        (0..n)
            .map(|_| {
                let mut w: Vec<f64> = (0..5).map(|_| rng.random_range(0.2..1.0)).collect();
                let s: f64 = w.iter().sum();
                w.iter_mut().for_each(|x| *x /= s);
                w
            })
            .collect()
    }

    #[test]
    fn recovers_a_noise_free_law_up_to_its_gauge() {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let truth = Law {
            c: 1.5,
            k: 0.8,
            t: vec![2.0, -1.0, 0.5, -3.0, 1.0],
        };
        let w = runs(40, &mut rng);
        let y: Vec<f64> = w.iter().map(|w| truth.predict(w)).collect();
        let got = fit(&w, &y, &[(0..5).collect()]);
        assert!(!got.constant);
        // Predictions anywhere on the simplex agree, and the gauge is Σ t = 0.
        for w in runs(20, &mut rng) {
            let (a, b) = (truth.predict(&w), got.law.predict(&w));
            assert!((a - b).abs() < 1e-4, "{a} vs {b}: {got:?}");
        }
        assert!(got.law.t.iter().sum::<f64>().abs() < 1e-6, "{got:?}");
        assert!((got.law.c - 1.5).abs() < 1e-2, "{got:?}");
    }

    #[test]
    fn an_outlier_does_not_drag_the_law() {
        let mut rng = ChaCha8Rng::seed_from_u64(8);
        let truth = Law {
            c: 0.5,
            k: 1.0,
            t: vec![1.0, -1.0, 0.0, 2.0, -2.0],
        };
        let w = runs(60, &mut rng);
        let mut y: Vec<f64> = w
            .iter()
            .map(|w| truth.predict(w) + 0.002 * (rng.random::<f64>() - 0.5))
            .collect();
        y[3] += 5.0;
        let got = fit(&w, &y, &[(0..5).collect()]);
        let res: Vec<f64> = w
            .iter()
            .zip(&y)
            .map(|(w, y)| y - got.law.predict(w))
            .collect();
        eprintln!("{got:?}\n{res:?}");
        for w in runs(20, &mut rng) {
            let (a, b) = (truth.predict(&w), got.law.predict(&w));
            assert!((a - b).abs() < 0.01, "{a} vs {b}");
        }
    }

    #[test]
    fn flat_metrics_give_the_constant_law() {
        let mut rng = ChaCha8Rng::seed_from_u64(9);
        let w = runs(10, &mut rng);
        let got = fit(&w, &[2.0; 10], &[(0..5).collect()]);
        assert!(got.constant);
        assert_eq!((got.law.c, got.law.k), (2.0, 0.0));
        assert_eq!(got.law.predict(&w[0]), 2.0);
    }
}
