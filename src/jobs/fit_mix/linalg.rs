//! The small dense linear algebra the fit needs: a symmetric positive definite solve by
//! Cholesky in f64, on row-major square matrices of a few hundred unknowns at most (one per
//! bucket, plus two).

/// A square matrix, row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct Matrix {
    pub n: usize,
    pub a: Vec<f64>,
}

impl Matrix {
    pub fn zeros(n: usize) -> Matrix {
        Matrix {
            n,
            a: vec![0.0; n * n],
        }
    }

    pub fn at(&self, i: usize, j: usize) -> f64 {
        self.a[i * self.n + j]
    }

    pub fn add(&mut self, i: usize, j: usize, x: f64) {
        self.a[i * self.n + j] += x;
    }

    /// The diagonal.
    pub fn diag(&self) -> Vec<f64> {
        (0..self.n).map(|i| self.at(i, i)).collect()
    }
}

/// Solves `A x = b` for a symmetric positive definite `A` (only its lower triangle is read).
/// `None` when `A` is not numerically positive definite (a pivot that is not clearly above
/// zero, relative to the diagonal), or when `b` does not match.
pub fn solve_spd(a: &Matrix, b: &[f64]) -> Option<Vec<f64>> {
    let n = a.n;
    if b.len() != n || a.a.len() != n * n {
        return None;
    }
    let scale = (0..n).map(|i| a.at(i, i).abs()).fold(0.0, f64::max);
    if !(scale.is_finite() && scale > 0.0) {
        return None;
    }
    // L, lower triangular, with A = L Lᵀ.
    let mut l = vec![0.0; n * n];
    for i in 0..n {
        for j in 0..=i {
            let mut s = a.at(i, j);
            for k in 0..j {
                s -= l[i * n + k] * l[j * n + k];
            }
            if i == j {
                if s.is_nan() || s <= 1e-14 * scale || !s.is_finite() {
                    return None;
                }
                l[i * n + i] = s.sqrt();
            } else {
                l[i * n + j] = s / l[j * n + j];
            }
        }
    }
    // L y = b, then Lᵀ x = y.
    let mut y = b.to_vec();
    for i in 0..n {
        for k in 0..i {
            y[i] -= l[i * n + k] * y[k];
        }
        y[i] /= l[i * n + i];
    }
    for i in (0..n).rev() {
        for k in i + 1..n {
            y[i] -= l[k * n + i] * y[k];
        }
        y[i] /= l[i * n + i];
    }
    y.iter().all(|x| x.is_finite()).then_some(y)
}

#[cfg(test)]
mod tests {
    use super::{Matrix, solve_spd};

    fn from_rows(rows: &[&[f64]]) -> Matrix {
        Matrix {
            n: rows.len(),
            a: rows.iter().flat_map(|r| r.iter().copied()).collect(),
        }
    }

    #[test]
    fn solves_a_known_system() {
        // A = M Mᵀ + I for a fixed M: SPD; x chosen, b = A x.
        let a = from_rows(&[
            &[5.0, 2.0, 1.0, 0.5],
            &[2.0, 6.0, 0.0, 1.0],
            &[1.0, 0.0, 4.0, -1.0],
            &[0.5, 1.0, -1.0, 3.0],
        ]);
        let x = [1.0, -2.0, 0.5, 3.0];
        let b: Vec<f64> = (0..4)
            .map(|i| (0..4).map(|j| a.at(i, j) * x[j]).sum())
            .collect();
        let got = solve_spd(&a, &b).unwrap();
        for (g, w) in got.iter().zip(x) {
            assert!((g - w).abs() < 1e-12, "{got:?}");
        }
    }

    #[test]
    fn refuses_what_is_not_positive_definite() {
        // Singular (rank 1) and indefinite.
        assert!(solve_spd(&from_rows(&[&[1.0, 1.0], &[1.0, 1.0]]), &[1.0, 1.0]).is_none());
        assert!(solve_spd(&from_rows(&[&[1.0, 2.0], &[2.0, 1.0]]), &[1.0, 1.0]).is_none());
        assert!(solve_spd(&Matrix::zeros(2), &[1.0, 1.0]).is_none());
        assert!(solve_spd(&from_rows(&[&[1.0]]), &[1.0, 2.0]).is_none());
        assert!(solve_spd(&from_rows(&[&[f64::NAN]]), &[1.0]).is_none());
    }
}
