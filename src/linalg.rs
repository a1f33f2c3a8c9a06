//! The few dense kernels hermes needs, on row-major `f32` slices.
//!
//! Matrix products go through `matrixmultiply` (pure Rust, runtime-selected AVX2/FMA kernels).
//! Its result for one row of `A` depends only on that row and `B`: blocking is over `k` and
//! `n`, never across rows, which is what keeps codes independent of batch neighbours.

/// `out[n, k] = a[n, d] · b[k, d]ᵀ` (dot products of every row of `a` with every row of `b`).
pub fn matmul_nt(a: &[f32], n: usize, d: usize, b: &[f32], k: usize) -> Vec<f32> {
    let mut out = vec![0f32; n * k];
    matmul_nt_into(a, n, d, b, k, &mut out);
    out
}

/// [`matmul_nt`] writing into a caller-owned buffer of length `n * k`.
pub fn matmul_nt_into(a: &[f32], n: usize, d: usize, b: &[f32], k: usize, out: &mut [f32]) {
    assert_eq!(a.len(), n * d, "a is [n, d]");
    assert_eq!(b.len(), k * d, "b is [k, d]");
    assert_eq!(out.len(), n * k, "out is [n, k]");
    if n == 0 || k == 0 {
        return;
    }
    // SAFETY: the asserts above bound every index the kernel touches: a is n×d with row
    // stride d, b is read as its transpose (d×k, row stride 1, column stride d), out is n×k.
    unsafe {
        matrixmultiply::sgemm(
            n,
            d,
            k,
            1.0,
            a.as_ptr(),
            d as isize,
            1,
            b.as_ptr(),
            1,
            d as isize,
            0.0,
            out.as_mut_ptr(),
            k as isize,
            1,
        );
    }
}

/// Squared L2 norm of each row of `m[rows, d]`.
pub fn row_sq_norms(m: &[f32], d: usize) -> Vec<f32> {
    m.chunks_exact(d)
        .map(|r| r.iter().map(|x| x * x).sum())
        .collect()
}

/// Squared Euclidean distance, accumulated in f64 (for statistics, not the hot path).
pub fn sq_dist_f64(a: &[f32], b: &[f32]) -> f64 {
    a.iter().zip(b).map(|(x, y)| f64::from(x - y).powi(2)).sum()
}

/// Index of the smallest value; ties go to the lowest index. NaN never wins.
pub fn argmin(values: &[f32]) -> usize {
    let mut best = 0;
    let mut best_v = f32::INFINITY;
    for (i, &v) in values.iter().enumerate() {
        if v < best_v {
            best_v = v;
            best = i;
        }
    }
    best
}
