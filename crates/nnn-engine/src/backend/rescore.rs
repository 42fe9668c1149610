//! The exact pass after the CPU backend's 16-bit filter: every shortlisted score computed in
//! f32 ([`kernel::dot`]) and each row's best k kept. The scores are computed in column order,
//! so `b` is read once, front to back, however many rows shortlisted each column.

use super::kernel;
use crate::error::{EngineError, Result};
use crate::matrix::Matrix;
use crate::run::Progress;
use crate::topk::{RowsTopK, TopK};
use rayon::prelude::*;

/// Scores per parallel piece of the exact pass (and per cancellation check).
const PIECE: usize = 16_384;
/// Rows per parallel piece of the final selection.
const ROWS_PIECE: usize = 64;
/// Scores ahead whose rows are requested from memory before they are needed.
const PREFETCH_AHEAD: usize = 4;

/// Row `i` of `a` against its shortlisted columns `shortlists[i]` (ascending): the best `k` of
/// `dot(a_i, b_j) − off[j]`, best first. Runs on the current rayon pool. A row with fewer than
/// `k` finite scores is a [`EngineError::NonFinite`].
pub fn rescore(
    a: &Matrix,
    b: &Matrix,
    off: &[f32],
    shortlists: &[Vec<u32>],
    k: usize,
    progress: &Progress,
) -> Result<TopK> {
    // Pairs in row order (p = position), then the same pairs grouped by column.
    let mut starts = vec![0];
    for s in shortlists {
        starts.push(starts[starts.len() - 1] + s.len());
    }
    let pairs = starts[shortlists.len()];
    let mut col_starts = vec![0u32; b.rows() + 1];
    for &c in shortlists.iter().flatten() {
        col_starts[c as usize + 1] += 1;
    }
    for j in 0..b.rows() {
        col_starts[j + 1] += col_starts[j];
    }
    let mut by_col = vec![(0u32, 0u32); pairs];
    let mut fill = col_starts.clone();
    for (row, cols) in shortlists.iter().enumerate() {
        for &c in cols {
            by_col[fill[c as usize] as usize] = (c, row as u32);
            fill[c as usize] += 1;
        }
    }
    let mut by_col_values = vec![0f32; pairs];
    by_col_values.par_chunks_mut(PIECE).zip(by_col.par_chunks(PIECE)).try_for_each(|(values, pairs)| {
        if progress.cancelled() {
            return Err(EngineError::Cancelled);
        }
        for (n, (v, &(c, row))) in values.iter_mut().zip(pairs).enumerate() {
            if let Some(&(ahead, row)) = pairs.get(n + PREFETCH_AHEAD) {
                if ahead != c {
                    kernel::prefetch(b.rows_slice(ahead as usize, ahead as usize + 1));
                }
                kernel::prefetch(a.rows_slice(row as usize, row as usize + 1));
            }
            let (row, c) = (row as usize, c as usize);
            // SAFETY: callers take this path only where `kernel::available()`; rows have `d` values.
            *v = unsafe { kernel::dot(a.rows_slice(row, row + 1), b.rows_slice(c, c + 1)) } - off[c];
        }
        Ok(())
    })?;
    // Back to row order: within a row, columns ascend, as the selection needs.
    let mut values = vec![0f32; pairs];
    let mut next = starts.clone();
    for (&(_, row), &v) in by_col.iter().zip(&by_col_values) {
        values[next[row as usize]] = v;
        next[row as usize] += 1;
    }
    let rows = shortlists.len();
    let parts = (0..rows.div_ceil(ROWS_PIECE))
        .into_par_iter()
        .map(|piece| {
            let (r0, r1) = (piece * ROWS_PIECE, ((piece + 1) * ROWS_PIECE).min(rows));
            let mut top = RowsTopK::new(r1 - r0, k);
            for r in r0..r1 {
                for (&c, &v) in shortlists[r].iter().zip(&values[starts[r]..starts[r + 1]]) {
                    if v > top.threshold(r - r0) {
                        top.push(r - r0, v, c);
                    }
                }
            }
            top.finish().map_err(|r| EngineError::NonFinite { what: "inner products", row: r0 + r })
        })
        .collect::<Result<Vec<_>>>()?;
    let (values, indices) = parts.into_iter().fold((Vec::new(), Vec::new()), |(mut v, mut i), (pv, pi)| {
        v.extend(pv);
        i.extend(pi);
        (v, i)
    });
    Ok(TopK { rows, k, values, indices })
}
