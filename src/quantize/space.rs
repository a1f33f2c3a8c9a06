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
        self.quantizer.encode(&z, self.levels().len())
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
