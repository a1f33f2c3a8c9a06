//! The static tier's inner loop: the sum of a text's table rows.
//!
//! The table is stored as f16 and every f16 converts to f32 exactly, so it is held as f16
//! (half the memory and half the bytes each row pulls from RAM) and converted as it is
//! summed. The sum is the same f32 arithmetic in the same order as summing the f32 rows one
//! token after another (each column starts at 0.0 and adds its tokens' values in text order),
//! so embeddings, and codes, are bit for bit those of the plain loop. On x86 with AVX2 and
//! F16C, columns are summed 64 at a time in registers; elsewhere a scalar loop does the same
//! additions.

/// A `[vocab, dim]` row-major table.
pub(crate) enum Table {
    /// f16 bits, as `static.safetensors` stores them.
    F16(Vec<u16>),
    F32(Vec<f32>),
}

impl Table {
    pub(crate) fn len(&self) -> usize {
        match self {
            Table::F16(t) => t.len(),
            Table::F32(t) => t.len(),
        }
    }

    /// Writes into `out` (`dim` wide) the sum of the rows `ids` (all below the vocabulary).
    pub(crate) fn sum_rows(&self, ids: &[u32], out: &mut [f32]) {
        let dim = out.len();
        out.fill(0.0);
        match self {
            Table::F32(t) => {
                for &id in ids {
                    let row = &t[id as usize * dim..(id as usize + 1) * dim];
                    out.iter_mut().zip(row).for_each(|(o, x)| *o += x);
                }
            }
            Table::F16(t) => {
                #[cfg(target_arch = "x86_64")]
                if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("f16c") {
                    // SAFETY: the CPU has AVX2 and F16C (checked above).
                    unsafe { x86::sum_rows_f16(t, ids, out) };
                    return;
                }
                sum_rows_f16_scalar(t, ids, out);
            }
        }
    }
}

/// The f16 sum without SIMD (other CPUs and architectures): `out` must start at zero.
fn sum_rows_f16_scalar(table: &[u16], ids: &[u32], out: &mut [f32]) {
    let dim = out.len();
    for &id in ids {
        let row = &table[id as usize * dim..(id as usize + 1) * dim];
        out.iter_mut()
            .zip(row)
            .for_each(|(o, &x)| *o += half::f16::from_bits(x).to_f32());
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    /// Columns summed together in registers: 8 vectors of 8.
    const BLOCK: usize = 64;

    /// `out[c] = Σ_id table[id][c]` in token order, for f16 rows.
    ///
    /// # Safety
    /// The CPU must have AVX2 and F16C; every id must index a row of `table`.
    #[target_feature(enable = "avx2,f16c")]
    pub unsafe fn sum_rows_f16(table: &[u16], ids: &[u32], out: &mut [f32]) {
        let dim = out.len();
        let mut col = 0;
        while col + BLOCK <= dim {
            let mut acc = [_mm256_setzero_ps(); BLOCK / 8];
            for &id in ids {
                let row = &table[id as usize * dim + col..id as usize * dim + col + BLOCK];
                for (k, a) in acc.iter_mut().enumerate() {
                    // SAFETY: `row` holds BLOCK u16s, so 8 from k*8 are in bounds.
                    let h = unsafe { _mm_loadu_si128(row.as_ptr().add(k * 8).cast()) };
                    *a = _mm256_add_ps(*a, _mm256_cvtph_ps(h));
                }
            }
            for (k, a) in acc.iter().enumerate() {
                // SAFETY: out has dim >= col + BLOCK floats.
                unsafe { _mm256_storeu_ps(out.as_mut_ptr().add(col + k * 8), *a) };
            }
            col += BLOCK;
        }
        // The columns left (dim not a multiple of BLOCK): the same additions, one at a time.
        for (c, o) in out.iter_mut().enumerate().skip(col) {
            let mut s = 0.0f32;
            for &id in ids {
                s += half::f16::from_bits(table[id as usize * dim + c]).to_f32();
            }
            *o = s;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Table;

    /// The f16 paths (SIMD where the CPU has it, and the scalar fallback) against the f32 loop on the same values: equal
    /// bit for bit, for a width with a remainder after the 64-column blocks.
    #[test]
    fn f16_rows_sum_as_the_f32_loop_does() {
        let (vocab, dim) = (50, 136);
        let bits: Vec<u16> = (0..vocab * dim)
            .map(|i| half::f16::from_f32(((i * 7919 % 1000) as f32 - 500.0) / 97.0).to_bits())
            .collect();
        let f32s: Vec<f32> = bits
            .iter()
            .map(|&b| half::f16::from_bits(b).to_f32())
            .collect();
        let ids = [3u32, 49, 0, 3, 17, 17, 17, 2];
        let (mut a, mut b) = (vec![0f32; dim], vec![1f32; dim]);
        Table::F32(f32s).sum_rows(&ids, &mut a);
        // The scalar fallback, which a CPU with AVX2 and F16C never takes in sum_rows.
        let mut c = vec![0f32; dim];
        super::sum_rows_f16_scalar(&bits, &ids, &mut c);
        Table::F16(bits).sum_rows(&ids, &mut b);
        assert!(a.iter().zip(&b).all(|(x, y)| x.to_bits() == y.to_bits()));
        assert!(a.iter().zip(&c).all(|(x, y)| x.to_bits() == y.to_bits()));
        assert!(a.iter().any(|&x| x != 0.0));
    }
}
