//! The exact pass after the CPU backend's 16-bit filter: every shortlisted score computed in
//! f32 ([`exact_score`]) and each row's best k kept. The larger side is read once, front to
//! back, however many rows shortlisted each of its rows.

use super::cpu::finish_rows;
use super::kernel;
use crate::error::{EngineError, Result};
use crate::matrix::Matrix;
use crate::run::Progress;
use crate::topk::{RowsTopK, Shortlists, TopK};
use rayon::prelude::*;

/// Scores per parallel piece of the exact pass (whole columns; and per cancellation check).
const PIECE: usize = 16_384;
/// Rows per parallel piece of the final selection.
const ROWS_PIECE: usize = 64;
/// Scores ahead whose row of the side read at random is requested from memory before it is
/// needed.
const PREFETCH_AHEAD: usize = 4;

/// The exact score `fl(x·b_j − off[j])` of row `x` against row `j` of `b`: the one
/// computation every result of the 16-bit path comes from (in the exact pass, and where a
/// crowded shortlist is settled).
///
/// # Safety
/// The CPU must have the AVX2 kernel (`kernel::available()`); `x` has `b.dim()` values.
pub(crate) unsafe fn exact_score(x: &[f32], b: &Matrix, j: usize, off: &[f32]) -> f32 {
    // SAFETY: the caller guarantees the kernel's CPU features; both rows have `d` values.
    unsafe { kernel::dot(x, b.rows_slice(j, j + 1)) - off[j] }
}

/// Row `i` of `a` against its shortlisted columns: the best `k` of `dot(a_i, b_j) − off[j]`,
/// best first. Runs on the current rayon pool. A row with fewer than `k` finite scores is a
/// [`EngineError::NonFinite`]. The larger side is read in order and the smaller one (more
/// likely in cache) at random: when `b` is larger, the scores are computed column by column
/// first (three 4-byte values per shortlisted column at most), else row by row as they are
/// ranked.
/// Panics where the CPU lacks the AVX2 kernel (the 16-bit path that makes shortlists runs only
/// where it has it).
/// `scored`: the scores of every shortlisted pair, in the order of `short`, already computed
/// elsewhere with the same operations (the GPU's `exact_scores` kernel); then only the
/// selection runs here.
pub(crate) fn rescore(
    a: &Matrix,
    b: &Matrix,
    off: &[f32],
    short: &Shortlists,
    scored: Option<&[f32]>,
    k: usize,
    progress: &Progress,
) -> Result<TopK> {
    assert!(kernel::available(), "the exact pass needs the AVX2 kernel");
    let computed;
    let values = match scored {
        Some(v) => Some(v),
        None if b.rows() > a.rows() => {
            computed = by_columns(a, b, off, short, progress)?;
            Some(computed.as_slice())
        }
        None => None,
    };
    select(a, b, off, short, values, k, progress)
}

/// The scores of all shortlisted pairs, in row order, computed column by column so that `b`
/// is read once, front to back.
fn by_columns(a: &Matrix, b: &Matrix, off: &[f32], short: &Shortlists, progress: &Progress) -> Result<Vec<f32>> {
    let Shortlists { starts, cols } = short;
    // The same pairs grouped by column (counting sort): `by_col[col_starts[j]..col_starts[j+1]]`
    // are the rows that shortlisted column j, in increasing order.
    let mut col_starts = vec![0usize; b.rows() + 1];
    for &c in cols {
        col_starts[c as usize + 1] += 1;
    }
    for j in 0..b.rows() {
        col_starts[j + 1] += col_starts[j];
    }
    let mut by_col = vec![0u32; cols.len()];
    let mut fill = col_starts.clone();
    for (row, w) in starts.windows(2).enumerate() {
        for &c in &cols[w[0]..w[1]] {
            by_col[fill[c as usize]] = row as u32;
            fill[c as usize] += 1;
        }
    }
    drop(fill);
    // Only the columns some row shortlisted are read (a few searches shortlist few of them),
    // in pieces of whole columns in parallel.
    let used: Vec<usize> = (0..b.rows()).filter(|&j| col_starts[j + 1] > col_starts[j]).collect();
    let mut by_col_values = vec![0f32; cols.len()];
    let mut pieces = Vec::new();
    let mut rest = by_col_values.as_mut_slice();
    let mut u0 = 0;
    while u0 < used.len() {
        let mut u1 = u0 + 1;
        while u1 < used.len() && col_starts[used[u1]] - col_starts[used[u0]] < PIECE {
            u1 += 1;
        }
        let (piece, tail) = rest.split_at_mut(col_starts[used[u1 - 1] + 1] - col_starts[used[u0]]);
        pieces.push((&used[u0..u1], piece));
        (rest, u0) = (tail, u1);
    }
    pieces.into_par_iter().try_for_each(|(columns, values)| {
        if progress.cancelled() {
            return Err(EngineError::Cancelled);
        }
        let first = col_starts[columns[0]];
        for (i, &j) in columns.iter().enumerate() {
            let (s, e) = (col_starts[j], col_starts[j + 1]);
            for (n, &row) in by_col[s..e].iter().enumerate() {
                if let Some(&ahead) = by_col.get(s + n + PREFETCH_AHEAD) {
                    kernel::prefetch(a.rows_slice(ahead as usize, ahead as usize + 1));
                }
                // SAFETY: `rescore` asserted the kernel; rows of `a` and `b` have the same `d`.
                values[s + n - first] = unsafe { exact_score(a.rows_slice(row as usize, row as usize + 1), b, j, off) };
            }
            if let Some(&next) = columns.get(i + 2) {
                kernel::prefetch(b.rows_slice(next, next + 1));
            }
        }
        Ok(())
    })?;
    // Back to row order: within a row, columns ascend, as the selection needs.
    let mut values = vec![0f32; cols.len()];
    let mut next = starts.clone();
    for (&row, &v) in by_col.iter().zip(&by_col_values) {
        values[next[row as usize]] = v;
        next[row as usize] += 1;
    }
    Ok(values)
}

/// Each row's best `k` of its shortlisted scores: `values` in row order, or (without)
/// computed here row by row.
fn select(
    a: &Matrix,
    b: &Matrix,
    off: &[f32],
    short: &Shortlists,
    values: Option<&[f32]>,
    k: usize,
    progress: &Progress,
) -> Result<TopK> {
    let Shortlists { starts, cols } = short;
    let rows = starts.len() - 1;
    let mut out = TopK { rows, k, values: vec![0f32; rows * k], indices: vec![0u32; rows * k] };
    out.values
        .par_chunks_mut(ROWS_PIECE * k)
        .zip(out.indices.par_chunks_mut(ROWS_PIECE * k))
        .enumerate()
        .try_for_each(|(piece, (out_v, out_i))| {
            if progress.cancelled() {
                return Err(EngineError::Cancelled);
            }
            let r0 = piece * ROWS_PIECE;
            let mut top = RowsTopK::new(out_v.len() / k, k);
            for r in r0..r0 + out_v.len() / k {
                let (s, e) = (starts[r], starts[r + 1]);
                let x = a.rows_slice(r, r + 1);
                for (n, &c) in cols[s..e].iter().enumerate() {
                    let v = match values {
                        Some(values) => values[s + n],
                        None => {
                            if let Some(&ahead) = cols[s..e].get(n + PREFETCH_AHEAD) {
                                kernel::prefetch(b.rows_slice(ahead as usize, ahead as usize + 1));
                            }
                            // SAFETY: `rescore` asserted the kernel; rows of `a` and `b` have the same `d`.
                            unsafe { exact_score(x, b, c as usize, off) }
                        }
                    };
                    if v > top.threshold(r - r0) {
                        top.push(r - r0, v, c);
                    }
                }
            }
            let (v, i) = finish_rows(top, r0)?;
            out_v.copy_from_slice(&v);
            out_i.copy_from_slice(&i);
            Ok(())
        })?;
    Ok(out)
}
