//! A contiguous row-major `f32` matrix, borrowed or owned.

use crate::error::{EngineError, Result};
use std::borrow::Cow;

/// Rows of equal dimension stored contiguously, row after row.
#[derive(Debug, Clone)]
pub struct Matrix<'a> {
    data: Cow<'a, [f32]>,
    dim: usize,
    /// Set by [`Matrix::assume_finite`]: [`Matrix::check_finite`] then passes at once.
    finite: bool,
}

impl<'a> Matrix<'a> {
    /// Views `data` as rows of `dim` values without copying.
    pub fn from_slice(data: &'a [f32], dim: usize, what: &'static str) -> Result<Self> {
        Self::checked(Cow::Borrowed(data), dim, what)
    }

    /// Takes ownership of `data` as rows of `dim` values.
    pub fn from_vec(data: Vec<f32>, dim: usize, what: &'static str) -> Result<Matrix<'static>> {
        Matrix::checked(Cow::Owned(data), dim, what)
    }

    fn checked(data: Cow<'a, [f32]>, dim: usize, what: &'static str) -> Result<Self> {
        if dim == 0 || !data.len().is_multiple_of(dim) {
            return Err(EngineError::Shape { what, len: data.len(), dim });
        }
        Ok(Self { data, dim, finite: false })
    }

    /// Number of rows.
    pub fn rows(&self) -> usize {
        self.data.len() / self.dim
    }

    /// Number of columns (the embedding dimension).
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// All values, row-major.
    pub fn as_slice(&self) -> &[f32] {
        &self.data
    }

    /// Rows `start..end` as one contiguous slice.
    pub fn rows_slice(&self, start: usize, end: usize) -> &[f32] {
        &self.data[start * self.dim..end * self.dim]
    }

    /// This matrix, marked as holding no NaN or ±∞ because its maker checked every value
    /// already (e.g. the PostgreSQL glue, row by row as it reads them), so that
    /// [`Matrix::check_finite`] does not pass over it again (a 2 GB reference set took
    /// 0.087 s of a 0.375 s GPU bias build on an H200 host). Marking a matrix that holds one
    /// is a bug of the caller.
    pub fn assume_finite(mut self) -> Self {
        self.finite = true;
        self
    }

    /// Fails with [`EngineError::NonFinite`] naming the first row holding NaN or ±∞ (passes at
    /// once after [`Matrix::assume_finite`]).
    pub fn check_finite(&self, what: &'static str) -> Result<()> {
        if self.finite {
            return Ok(());
        }
        // a branch-free pass per block (vectorised), the position only where one fails;
        // large matrices in parts on several threads (the pass is memory-bound)
        const BLOCK: usize = 4096;
        const PART_BYTES: usize = 64 << 20;
        let first_bad = |data: &[f32]| {
            data.chunks(BLOCK).enumerate().find_map(|(b, block)| {
                block
                    .iter()
                    .fold(false, |bad, v| bad | !v.is_finite())
                    .then(|| b * BLOCK + block.iter().position(|v| !v.is_finite()).unwrap_or(0))
            })
        };
        let threads = (self.data.len() * 4 / PART_BYTES).clamp(1, 8);
        match crate::run::first_parallel(&self.data, threads, first_bad) {
            Some(pos) => Err(EngineError::NonFinite { what, row: pos / self.dim }),
            None => Ok(()),
        }
    }

    /// Fails with [`EngineError::Empty`] when there are no rows.
    pub fn check_not_empty(&self, what: &'static str) -> Result<()> {
        if self.rows() == 0 {
            return Err(EngineError::Empty { what });
        }
        Ok(())
    }

    /// Fails with [`EngineError::DimensionMismatch`] unless this matrix has dimension `expected`.
    pub fn check_dim(&self, expected: usize, what: &'static str) -> Result<()> {
        if self.dim != expected {
            return Err(EngineError::DimensionMismatch { what, expected, found: self.dim });
        }
        Ok(())
    }

    /// Column means, accumulated in f64 (DN's mean embedding).
    pub fn column_mean(&self) -> Result<Vec<f32>> {
        self.check_not_empty("mean of an empty set")?;
        let mut sum = vec![0f64; self.dim];
        for r in self.data.chunks_exact(self.dim) {
            for (s, v) in sum.iter_mut().zip(r) {
                *s += f64::from(*v);
            }
        }
        let n = self.rows() as f64;
        Ok(sum.into_iter().map(|s| (s / n) as f32).collect())
    }

    /// A copy with `lambda · shift` subtracted from every row (Distribution Normalization).
    pub fn shifted(&self, shift: &[f32], lambda: f32) -> Result<Matrix<'static>> {
        if shift.len() != self.dim {
            return Err(EngineError::DimensionMismatch {
                what: "shift vector",
                expected: self.dim,
                found: shift.len(),
            });
        }
        let scaled: Vec<f32> = shift.iter().map(|s| lambda * s).collect();
        let mut out = self.data.to_vec();
        for r in out.chunks_exact_mut(self.dim) {
            for (v, s) in r.iter_mut().zip(&scaled) {
                *v -= s;
            }
        }
        Matrix::from_vec(out, self.dim, "shifted")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_finite_names_the_row_of_the_first_bad_value_in_any_block() {
        let dim = 7;
        for (pos, bad) in [(0, f32::NAN), (4095, f32::INFINITY), (4096, f32::NEG_INFINITY), (9001, f32::NAN)] {
            let mut data = vec![0.5f32; 1400 * dim];
            data[pos] = bad;
            data[9500] = f32::NAN; // a later one does not matter
            let m = Matrix::from_vec(data, dim, "m").unwrap();
            assert!(
                matches!(m.check_finite("m"), Err(EngineError::NonFinite { what: "m", row }) if row == pos / dim),
                "{pos}"
            );
        }
        assert!(Matrix::from_vec(vec![1.0; 9000 * 2], 2, "m").unwrap().check_finite("m").is_ok());
    }

    #[test]
    fn a_matrix_assumed_finite_is_not_checked_again_and_its_clones_keep_the_mark() {
        let data = [1.0, f32::NAN, 0.0, 2.0];
        let m = Matrix::from_slice(&data, 2, "m").unwrap();
        assert!(m.check_finite("m").is_err());
        let marked = m.assume_finite();
        assert!(marked.check_finite("m").is_ok());
        assert!(marked.clone().check_finite("m").is_ok());
        assert!(Matrix::from_slice(&data, 2, "m").unwrap().check_finite("m").is_err());
    }

    #[test]
    fn check_finite_of_a_large_matrix_in_parts_finds_the_first_bad_row() {
        let dim = 64;
        let rows = (200 << 20) / 4 / dim; // 200 MB: checked on 3 threads
        let mut data = vec![0.25f32; rows * dim];
        assert!(Matrix::from_slice(&data, dim, "m").unwrap().check_finite("m").is_ok());
        for pos in [rows * dim - 1, rows * dim / 2 + 3, 5] {
            data[pos] = f32::NAN;
            let err = Matrix::from_slice(&data, dim, "m").unwrap().check_finite("m");
            assert!(matches!(err, Err(EngineError::NonFinite { row, .. }) if row == pos / dim), "{pos}");
        }
    }
}
