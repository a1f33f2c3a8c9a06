//! The numbers of a swarm (docs/search.md), on numbers alone: each variant's strength and
//! Dirichlet weights, the minimum weight, the caps, and the pinned totals. Nothing here reads
//! a file.
//!
//! The generator is written here (xoshiro256**, seeded through splitmix64 from
//! `key_hash(seed, "<i>")`) rather than taken from a crate, so that a swarm's files stay the
//! same for the same seed across dependency upgrades.

use crate::quantize::key_hash;

/// Slack of float sums that should be equal (as the mixture rules use).
const EPS: f64 = 1e-9;

/// xoshiro256** with a splitmix64 seeding.
pub struct Rng {
    s: [u64; 4],
}

impl Rng {
    /// The generator of variant `i` of a swarm with `seed`.
    pub fn variant(seed: u64, i: usize) -> Rng {
        let mut x = key_hash(seed, &i.to_string());
        let mut next = || {
            x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = x;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        };
        Rng {
            s: [next(), next(), next(), next()],
        }
    }

    pub fn next_u64(&mut self) -> u64 {
        let s = &mut self.s;
        let out = s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = s[3].rotate_left(45);
        out
    }

    /// Uniform in the open interval (0, 1).
    pub fn uniform(&mut self) -> f64 {
        ((self.next_u64() >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }

    /// Standard normal (Box–Muller; one of the pair is used).
    fn normal(&mut self) -> f64 {
        let (u, v) = (self.uniform(), self.uniform());
        (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
    }

    /// `ln X` for `X ~ Gamma(shape, 1)`, shape > 0 (Marsaglia–Tsang; below shape 1 through
    /// `Gamma(a) = Gamma(a + 1) · U^(1/a)`, kept in logs so tiny shapes do not underflow).
    pub fn ln_gamma_draw(&mut self, shape: f64) -> f64 {
        if shape < 1.0 {
            let boost = self.ln_gamma_draw(shape + 1.0);
            return boost + self.uniform().ln() / shape;
        }
        let d = shape - 1.0 / 3.0;
        let c = 1.0 / (9.0 * d).sqrt();
        loop {
            let x = self.normal();
            let v = 1.0 + c * x;
            if v <= 0.0 {
                continue;
            }
            let v = v * v * v;
            let u = self.uniform();
            if u.ln() < 0.5 * x * x + d - d * v + d * v.ln() {
                return d.ln() + v.ln();
            }
        }
    }

    /// A draw of `Dirichlet(alpha)`; entries with `alpha = 0` get 0.
    pub fn dirichlet(&mut self, alpha: &[f64]) -> Vec<f64> {
        let logs: Vec<Option<f64>> = alpha
            .iter()
            .map(|&a| (a > 0.0).then(|| self.ln_gamma_draw(a)))
            .collect();
        let max = logs
            .iter()
            .flatten()
            .copied()
            .fold(f64::NEG_INFINITY, f64::max);
        let w: Vec<f64> = logs
            .iter()
            .map(|l| l.map_or(0.0, |l| (l - max).exp()))
            .collect();
        let sum: f64 = w.iter().sum();
        w.iter().map(|x| x / sum).collect()
    }
}

/// One block of buckets whose weights sum to `total`: every searched bucket (no pin), or
/// the children of one pinned prefix.
#[derive(Debug, Clone, PartialEq)]
pub struct Block {
    pub total: f64,
    /// Indexes into the searched buckets.
    pub members: Vec<usize>,
}

/// What every variant is drawn from.
#[derive(Debug, Clone)]
pub struct Draw<'a> {
    pub seed: u64,
    pub min_strength: f64,
    pub max_strength: f64,
    pub minimum_weight: f64,
    /// `p_b`, over the searched buckets.
    pub prior: &'a [f64],
    /// `c_b`.
    pub caps: &'a [f64],
    pub blocks: &'a [Block],
}

impl Draw<'_> {
    /// Variant `i`: its strength and its weights over the searched buckets.
    pub fn variant(&self, i: usize) -> (f64, Vec<f64>) {
        let mut rng = Rng::variant(self.seed, i);
        let (lo, hi) = (self.min_strength.ln(), self.max_strength.ln());
        let s = (lo + rng.uniform() * (hi - lo)).exp();
        let mut w = vec![0.0; self.prior.len()];
        for b in self.blocks {
            let within: f64 = b.members.iter().map(|&m| self.prior[m]).sum();
            let alpha: Vec<f64> = b
                .members
                .iter()
                .map(|&m| s * self.prior[m] / within)
                .collect();
            let split = rng.dirichlet(&alpha);
            let mut x: Vec<f64> = split.iter().map(|v| v * b.total).collect();
            floor_small(&mut x, self.minimum_weight, b.total);
            let caps: Vec<f64> = b.members.iter().map(|&m| self.caps[m]).collect();
            let prior: Vec<f64> = b.members.iter().map(|&m| self.prior[m]).collect();
            cap(&mut x, &caps, &prior);
            for (&m, v) in b.members.iter().zip(x) {
                w[m] = v;
            }
        }
        (s, w)
    }
}

/// Weights below `minimum` become 0 (the largest always stays) and the rest are scaled back
/// to `total`.
pub fn floor_small(w: &mut [f64], minimum: f64, total: f64) {
    let largest = (0..w.len()).max_by(|&a, &b| w[a].total_cmp(&w[b]).then(b.cmp(&a)));
    for (i, x) in w.iter_mut().enumerate() {
        if *x < minimum && Some(i) != largest {
            *x = 0.0;
        }
    }
    let sum: f64 = w.iter().sum();
    if sum > 0.0 {
        for x in w.iter_mut() {
            *x = *x / sum * total;
        }
    }
}

/// Every weight above its cap is set to the cap and the excess spread over the uncapped
/// buckets with weight, in proportion to their weights, until none exceeds its cap (as rule
/// 3 does for quotas). When every bucket with weight is capped, what is left goes to the
/// uncapped buckets in proportion to their `prior`. The caller has checked that the caps
/// can hold the block's total.
pub fn cap(w: &mut [f64], caps: &[f64], prior: &[f64]) {
    let mut capped = vec![false; w.len()];
    for _ in 0..=w.len() {
        let mut excess = 0.0;
        for i in 0..w.len() {
            if !capped[i] && w[i] > caps[i] * (1.0 + EPS) {
                excess += w[i] - caps[i];
                w[i] = caps[i];
                capped[i] = true;
            }
        }
        if excess <= 0.0 {
            return;
        }
        let open = |i: &usize| !capped[*i] && w[*i] > 0.0;
        let by_weight: f64 = (0..w.len()).filter(open).map(|i| w[i]).sum();
        if by_weight > 0.0 {
            for i in 0..w.len() {
                if !capped[i] && w[i] > 0.0 {
                    w[i] += excess * w[i] / by_weight;
                }
            }
            continue;
        }
        let by_prior: f64 = (0..w.len()).filter(|&i| !capped[i]).map(|i| prior[i]).sum();
        if by_prior <= 0.0 {
            return;
        }
        for i in 0..w.len() {
            if !capped[i] {
                w[i] += excess * prior[i] / by_prior;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gamma_draws_have_the_right_mean() {
        for shape in [0.05, 0.5, 1.0, 3.0, 20.0] {
            let mut rng = Rng::variant(7, 0);
            let n = 40_000;
            let mean: f64 = (0..n).map(|_| rng.ln_gamma_draw(shape).exp()).sum::<f64>() / n as f64;
            assert!(
                (mean - shape).abs() < 0.05 * shape.max(0.2),
                "shape {shape}: mean {mean}"
            );
        }
    }

    #[test]
    fn tiny_shapes_do_not_underflow_to_nothing() {
        let mut rng = Rng::variant(1, 3);
        let w = rng.dirichlet(&[1e-7, 1e-7, 1e-7]);
        assert!((w.iter().sum::<f64>() - 1.0).abs() < 1e-12, "{w:?}");
    }

    #[test]
    fn caps_hand_their_excess_on_until_none_is_exceeded() {
        let mut w = vec![0.7, 0.2, 0.1, 0.0];
        cap(&mut w, &[0.3, 0.5, 0.5, 1.0], &[0.25; 4]);
        assert!((w.iter().sum::<f64>() - 1.0).abs() < 1e-12);
        // 0.4 over: 2/3 to the second, 1/3 to the third -> 0.4667, 0.2333.
        assert!((w[0] - 0.3).abs() < 1e-12 && (w[1] - 0.2 - 0.4 * 2.0 / 3.0).abs() < 1e-12);
        assert_eq!(w[3], 0.0);
        // Everything with weight capped: the rest goes by prior to the uncapped.
        let mut w = vec![0.9, 0.1, 0.0];
        cap(&mut w, &[0.5, 0.1, 1.0], &[0.4, 0.1, 0.5]);
        assert!((w[2] - 0.4).abs() < 1e-12, "{w:?}");
    }

    #[test]
    fn small_weights_go_but_the_largest_stays() {
        let mut w = vec![0.001, 0.001, 0.998];
        floor_small(&mut w, 0.01, 1.0);
        assert_eq!(w, vec![0.0, 0.0, 1.0]);
        let mut w = vec![0.3, 0.3];
        floor_small(&mut w, 0.9, 0.6);
        assert_eq!(w, vec![0.6, 0.0]);
    }

    #[test]
    fn a_variant_keeps_its_blocks_totals() {
        let prior = [0.1, 0.2, 0.3, 0.4];
        let caps = [1.0; 4];
        let blocks = [
            Block {
                total: 0.25,
                members: vec![0, 1],
            },
            Block {
                total: 0.75,
                members: vec![2, 3],
            },
        ];
        let d = Draw {
            seed: 3,
            min_strength: 0.1,
            max_strength: 5.0,
            minimum_weight: 0.002,
            prior: &prior,
            caps: &caps,
            blocks: &blocks,
        };
        for i in 0..50 {
            let (s, w) = d.variant(i);
            assert!((0.1..=5.0).contains(&s));
            assert!((w[0] + w[1] - 0.25).abs() < 1e-12 && (w[2] + w[3] - 0.75).abs() < 1e-12);
            assert_eq!(d.variant(i), (s, w));
        }
    }
}
