//! Distribution Normalization (DN): shift each side by λ times the mean of its dev embeddings,
//! as nnn-retrieval's `DNRanker` does before its (optional) NNN bias.

use crate::error::{EngineError, Result};
use crate::matrix::Matrix;

/// The two mean embeddings and λ of a DN ranker.
#[derive(Debug, Clone)]
pub struct DistributionShift {
    candidate_mean: Vec<f32>,
    query_mean: Vec<f32>,
    lambda: f32,
}

impl DistributionShift {
    /// Means of candidate-side and query-side dev sets (same dimension, not empty).
    pub fn from_dev(candidate_dev: &Matrix, query_dev: &Matrix, lambda: f32) -> Result<Self> {
        if !lambda.is_finite() {
            return Err(EngineError::InvalidParameter { name: "lambda", value: lambda.to_string() });
        }
        query_dev.check_dim(candidate_dev.dim(), "query dev set vs candidate dev set")?;
        candidate_dev.check_finite("candidate dev set")?;
        query_dev.check_finite("query dev set")?;
        Ok(Self { candidate_mean: candidate_dev.column_mean()?, query_mean: query_dev.column_mean()?, lambda })
    }

    /// Candidates minus λ·candidate mean.
    pub fn candidates(&self, m: &Matrix) -> Result<Matrix<'static>> {
        m.shifted(&self.candidate_mean, self.lambda)
    }

    /// Queries (and reference queries) minus λ·query mean.
    pub fn queries(&self, m: &Matrix) -> Result<Matrix<'static>> {
        m.shifted(&self.query_mean, self.lambda)
    }
}
