//! Where the fused product + top-k runs. Every backend gives the same answer as the CPU one.

pub mod cpu;
#[cfg(feature = "cuda")]
pub mod cuda;
pub mod kernel;
pub mod quantize;
pub mod rescore;

use crate::control::Control;
use crate::error::Result;
use crate::matrix::Matrix;
use crate::topk::TopK;

/// Computes, for every row `a_i`, the `k` columns `j` with the largest `a_i·b_j − offset_j`.
pub trait Backend: Sync {
    /// Fused product and selection. Callers have checked: equal dimensions, finite values,
    /// `1 ≤ k ≤ b.rows()`, `offset.len() == b.rows()`. Ties go to the lower column index.
    fn topk_products(
        &self,
        a: &Matrix,
        b: &Matrix,
        offset: Option<&[f32]>,
        k: usize,
        control: &mut dyn Control,
    ) -> Result<TopK>;
}

/// A shared backend (e.g. the one GPU context a process keeps) is a backend.
impl<T: Backend + Send> Backend for std::sync::Arc<T> {
    fn topk_products(
        &self,
        a: &Matrix,
        b: &Matrix,
        offset: Option<&[f32]>,
        k: usize,
        control: &mut dyn Control,
    ) -> Result<TopK> {
        (**self).topk_products(a, b, offset, k, control)
    }
}
