//! Where the fused product + top-k runs. Every backend gives the same answer as the CPU one.

pub mod cpu;
#[cfg(feature = "cuda")]
pub mod cuda;
pub mod kernel;
pub mod quantize;
pub(crate) mod rescore;

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

    /// [`Backend::topk_products`] for callers that search the same `b` many times and keep
    /// `b16` (its rows rounded once, [`RoundedRows::new`]) beside it. Same answer; backends
    /// with no use for the rounded rows ignore them.
    fn topk_products_rounded(
        &self,
        a: &Matrix,
        b: &Matrix,
        b16: &RoundedRows,
        offset: Option<&[f32]>,
        k: usize,
        control: &mut dyn Control,
    ) -> Result<TopK> {
        let _ = b16;
        self.topk_products(a, b, offset, k, control)
    }
}

/// Rows rounded once to 16 bits in the CPU kernel's panels ([`quantize::Quantized`]), kept
/// beside a matrix that is searched often, so each search reads half the bytes (the exact f32
/// pass still ranks the results). Empty when the CPU has no AVX2 kernel or a row cannot be
/// rounded.
pub struct RoundedRows {
    panels: Option<quantize::Quantized>,
    rows: usize,
    dim: usize,
}

impl RoundedRows {
    /// Rounds the rows of `b` on the current rayon pool: call it from a worker of the
    /// engine's pool (e.g. in [`crate::run::run_polled`]). Empty where the kernel cannot use them.
    pub fn new(b: &Matrix) -> Self {
        let panels = kernel::available().then(|| quantize::Quantized::new(b.as_slice(), b.dim(), kernel::NR)).flatten();
        Self { panels, rows: b.rows(), dim: b.dim() }
    }

    /// The panels, if they were made from a matrix of `b`'s shape.
    fn panels(&self, b: &Matrix) -> Option<&quantize::Quantized> {
        self.panels.as_ref().filter(|_| self.rows == b.rows() && self.dim == b.dim())
    }

    /// Bytes held (0 when empty).
    pub fn bytes(&self) -> usize {
        self.panels.as_ref().map_or(0, |_| Self::bytes_for(self.rows, self.dim))
    }

    /// Bytes the rounded copy of a `rows × dim` matrix holds: 2 per value, plus each row's
    /// scale, in whole panels.
    pub fn bytes_for(rows: usize, dim: usize) -> usize {
        let padded = rows.div_ceil(kernel::NR) * kernel::NR;
        padded * (dim.div_ceil(2) * 4 + std::mem::size_of::<quantize::RowScale>() + 4)
    }
}

impl std::fmt::Debug for RoundedRows {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RoundedRows({} x {}, {} bytes)", self.rows, self.dim, self.bytes())
    }
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

    fn topk_products_rounded(
        &self,
        a: &Matrix,
        b: &Matrix,
        b16: &RoundedRows,
        offset: Option<&[f32]>,
        k: usize,
        control: &mut dyn Control,
    ) -> Result<TopK> {
        (**self).topk_products_rounded(a, b, b16, offset, k, control)
    }
}
