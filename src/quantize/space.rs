//! A bundle's code space: the learned transform followed by the residual quantizer.
//!
//! This is the one place where encoder embeddings become codes; the service, the probe check,
//! `hermes eval` and `hermes label` all come through [`CodeSpace::codes`], so the dimension and
//! finiteness checks are written once.

use super::{Code, QuantizeError, ResidualQuantizer, Transform};

#[derive(Debug, Clone)]
pub struct CodeSpace {
    /// `z = W (e − μ)`: encoder space (`transform.in_dim`) to code space.
    pub transform: Transform,
    /// Greedy residual codebooks in code space.
    pub quantizer: ResidualQuantizer,
}

impl CodeSpace {
    pub fn new(transform: Transform, quantizer: ResidualQuantizer) -> Self {
        Self {
            transform,
            quantizer,
        }
    }

    /// Width of the embeddings this space codes.
    pub fn in_dim(&self) -> usize {
        self.transform.in_dim
    }

    pub fn levels(&self) -> &[usize] {
        self.quantizer.levels()
    }

    /// Full codes of row-major embeddings `[n, in_dim]`: refuses partial rows and NaN or
    /// infinity (naming the row), then transforms and quantizes.
    pub fn codes(&self, e: &[f32]) -> Result<Vec<Code>, QuantizeError> {
        self.codes_and_residuals(e).map(|(codes, _)| codes)
    }

    /// Full codes and, per row, `‖r_d‖` for d = 1..L (row-major `[n, L]`): the distance from
    /// each embedding's transform to its code's reconstruction at each depth.
    pub fn codes_and_residuals(&self, e: &[f32]) -> Result<(Vec<Code>, Vec<f32>), QuantizeError> {
        let d = self.in_dim();
        if !e.len().is_multiple_of(d) {
            return Err(QuantizeError::Dimension {
                row: e.len() / d,
                got: e.len() % d,
                want: d,
            });
        }
        if let Some(pos) = e.iter().position(|x| !x.is_finite()) {
            return Err(QuantizeError::NonFinite { row: pos / d });
        }
        let z = self.transform.apply(e);
        let levels = self.levels().len();
        let codes = self.quantizer.encode(&z, levels)?;
        let dim = self.quantizer.dim();
        let mut norms = Vec::with_capacity(codes.len() * levels);
        let mut r = vec![0f32; dim];
        for (row, code) in z.chunks_exact(dim).zip(&codes) {
            r.copy_from_slice(row);
            for (l, &c) in code.0.iter().enumerate() {
                let book = self.quantizer.codebook(l);
                let centre = &book[c as usize * dim..(c as usize + 1) * dim];
                r.iter_mut().zip(centre).for_each(|(x, c)| *x -= c);
                norms.push(r.iter().map(|x| x * x).sum::<f32>().sqrt());
            }
        }
        Ok((codes, norms))
    }

    /// The requested depth, defaulting to the full code.
    pub fn depth(&self, depth: Option<u32>) -> Result<usize, QuantizeError> {
        let levels = self.levels().len();
        match depth {
            None => Ok(levels),
            Some(d) if (1..=levels as u32).contains(&d) => Ok(d as usize),
            Some(d) => Err(QuantizeError::Depth {
                depth: d as usize,
                levels,
            }),
        }
    }
}
