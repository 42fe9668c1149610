//! NNN bias: for each candidate, the mean of its k largest similarities to the reference set.

use crate::backend::{Backend, TopKRequest};
use crate::control::Control;
use crate::error::{EngineError, Result};
use crate::matrix::Matrix;
use crate::topk::TopK;

/// For every candidate, its `k_max` largest similarities to the reference rows (best first)
/// and which reference rows they came from. Any bias with `k ≤ k_max` is a prefix mean.
#[derive(Debug, Clone)]
pub struct ReferenceTopK {
    /// The per-candidate top similarities (`rows` = candidates, `k` = k_max).
    pub sims: TopK,
}

impl ReferenceTopK {
    /// `bias(r)` = mean of the `k` largest similarities of candidate r (nnn-retrieval's
    /// `alignment_means`), accumulated in f64.
    pub fn bias(&self, k: usize) -> Result<Vec<f32>> {
        if k == 0 || k > self.sims.k {
            return Err(EngineError::KOutOfRange { k, max: self.sims.k, what: "bias prefix of the kept similarities" });
        }
        Ok((0..self.sims.rows)
            .map(|r| {
                let s: f64 = self.sims.row_values(r)[..k].iter().map(|&v| f64::from(v)).sum();
                (s / k as f64) as f32
            })
            .collect())
    }
}

/// Checks the inputs of a bias build: a non-empty finite reference set of the candidates'
/// dimension, finite candidates, and `1 ≤ k ≤ reference rows`.
pub fn check_bias_inputs(candidates: &Matrix, reference: &Matrix, k: usize) -> Result<()> {
    reference.check_not_empty("reference set")?;
    reference.check_dim(candidates.dim(), "reference set vs candidates")?;
    if k == 0 || k > reference.rows() {
        return Err(EngineError::KOutOfRange { k, max: reference.rows(), what: "reference rows" });
    }
    candidates.check_finite("candidates")?;
    reference.check_finite("reference set")
}

/// The `k` largest similarities of every candidate against the reference set.
pub fn reference_topk(
    backend: &dyn Backend,
    candidates: &Matrix,
    reference: &Matrix,
    k: usize,
    control: &mut dyn Control,
) -> Result<ReferenceTopK> {
    check_bias_inputs(candidates, reference, k)?;
    let sims = backend.topk(&TopKRequest::new(candidates, reference, k), control)?;
    Ok(ReferenceTopK { sims })
}
