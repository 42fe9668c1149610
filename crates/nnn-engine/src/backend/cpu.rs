//! The CPU backend: cache-sized GEMM tiles (the `gemm` crate) fused with per-row top-k
//! selection, spread over a rayon pool. The full `a × bᵀ` product is never materialised.

use super::kernel::{self, micro_kernel, MR, NR};
use super::Backend;
use crate::control::Control;
use crate::error::{EngineError, Result};
use crate::matrix::Matrix;
use crate::run::{run_polled, Progress};
use crate::topk::{sort_best_first, RowsTopK, TopK};
use rayon::prelude::*;
use std::borrow::Cow;
use std::ops::Range;

/// Rows of `a` per task (and per GEMM tile). 256 x 1024 was fastest on the full-size
/// benchmark of the shapes tried (see the engine issue note); small shapes favour narrower rows.
const ROW_BLOCK: usize = 256;
/// Columns of `b` per GEMM tile: a `ROW_BLOCK × COL_BLOCK` tile of scores stays in cache.
const COL_BLOCK: usize = 1024;
/// Few rows of `a` are split over column ranges until about this many tasks exist.
const TARGET_TASKS: usize = 32;
/// Rows of `a` per task on the micro-kernel path: 16 packed panels (150 KB at d = 384) stay
/// in L2 while each packed 16-column panel of `b` streams through L1.
const ROW_BLOCK_PACKED: usize = 16 * MR;
/// Fewest rows of `a` per task on the micro-kernel path when row blocks are halved for more
/// tasks (2,000 × 30,000: 48-row blocks were 5–15 % faster than 96-row blocks split in two
/// column parts).
const MIN_ROW_BLOCK_PACKED: usize = 8 * MR;
/// Columns per cancellation check and progress report on the micro-kernel path.
const COL_UNIT_PACKED: usize = 256;
/// Below this many rows of `a` (single queries), packing `b` costs more than it saves.
const MIN_ROWS_PACKED: usize = 4 * MR;

/// Exact top-k of inner products on CPU threads.
#[derive(Debug, Clone)]
pub struct CpuBackend {
    threads: usize,
}

impl CpuBackend {
    /// A backend running on `threads` worker threads (at least 1).
    pub fn new(threads: usize) -> Result<Self> {
        if threads == 0 {
            return Err(EngineError::InvalidParameter { name: "threads", value: "0".into() });
        }
        Ok(Self { threads })
    }
}

/// How the work is cut: depends only on the shape, so results do not depend on thread count.
struct Plan {
    row_block: usize,
    col_part: usize,
}

impl Plan {
    /// Row blocks of at most `row_block` rows, halved down to `min_row_block` while there are
    /// fewer than [`TARGET_TASKS`]; then column parts (a multiple of `col_unit`) make up the rest.
    /// Smaller row blocks come first: each column part repeats the top-k warm-up of its rows
    /// and must be merged afterwards.
    fn new(rows: usize, cols: usize, row_block: usize, min_row_block: usize, col_unit: usize) -> Self {
        let mut row_block = row_block;
        while rows.div_ceil(row_block) < TARGET_TASKS && row_block / 2 >= min_row_block {
            row_block /= 2;
        }
        let row_block = row_block.min(rows.max(1));
        let row_blocks = rows.div_ceil(row_block);
        let col_tiles = cols.div_ceil(col_unit).max(1);
        let parts = TARGET_TASKS.div_ceil(row_blocks.max(1)).clamp(1, col_tiles);
        Self { row_block, col_part: col_tiles.div_ceil(parts) * col_unit }
    }

    fn tasks(&self, rows: usize, cols: usize) -> Vec<(Range<usize>, Range<usize>)> {
        let mut out = Vec::new();
        for r0 in (0..rows).step_by(self.row_block) {
            for c0 in (0..cols).step_by(self.col_part) {
                out.push((r0..(r0 + self.row_block).min(rows), c0..(c0 + self.col_part).min(cols)));
            }
        }
        out
    }
}

/// `out[i][j] = a_i · b_j`: `a` is `m × d`, `b` is `n × d`, `out` is row-major `m × n`.
/// With `threads > 1` the GEMM itself runs on that many rayon threads (the benchmark's
/// plain-sgemm ceiling); tiles inside the backend use 1.
pub fn products(a: &[f32], b: &[f32], d: usize, out: &mut [f32], threads: usize) {
    let m = a.len() / d;
    let n = b.len() / d;
    assert!(out.len() >= m * n && a.len() == m * d && b.len() == n * d);
    let parallelism = if threads > 1 { gemm::Parallelism::Rayon(threads) } else { gemm::Parallelism::None };
    // SAFETY: the strides describe exactly the slices checked above.
    unsafe {
        gemm::gemm(
            m,
            n,
            d,
            out.as_mut_ptr(),
            1,
            n as isize,
            false,
            a.as_ptr(),
            1,
            d as isize,
            b.as_ptr(),
            d as isize,
            1,
            0.0,
            1.0,
            false,
            false,
            false,
            parallelism,
        );
    }
}

/// The best `min(k, cols.len())` entries of each row in `rows`, sorted, as flat arrays.
fn scan_task(
    a: &Matrix,
    b: &Matrix,
    off: &[f32],
    k: usize,
    rows: Range<usize>,
    cols: Range<usize>,
    progress: &Progress,
) -> Result<(Vec<f32>, Vec<u32>)> {
    let d = a.dim();
    let m = rows.len();
    let kp = k.min(cols.len());
    let mut top = RowsTopK::new(m, kp);
    let mut tile = vec![0f32; m * COL_BLOCK.min(cols.len())];
    let a_rows = a.rows_slice(rows.start, rows.end);
    for c0 in cols.clone().step_by(COL_BLOCK) {
        if progress.cancelled() {
            return Err(EngineError::Cancelled);
        }
        let c1 = (c0 + COL_BLOCK).min(cols.end);
        let n = c1 - c0;
        products(a_rows, b.rows_slice(c0, c1), d, &mut tile[..m * n], 1);
        for i in 0..m {
            let row = &tile[i * n..(i + 1) * n];
            let mut thr = top.threshold(i);
            for (j, (&s, &o)) in row.iter().zip(&off[c0..c1]).enumerate() {
                let v = s - o;
                if v > thr {
                    top.push(i, v, (c0 + j) as u32);
                    thr = top.threshold(i);
                }
            }
        }
        progress.add((m * n) as u64);
    }
    finish_rows(top, rows.start)
}

/// The sorted k best of every row; a row with fewer entries means NaN scores.
fn finish_rows(top: RowsTopK, first_row: usize) -> Result<(Vec<f32>, Vec<u32>)> {
    top.finish().map_err(|r| EngineError::NonFinite { what: "inner products", row: first_row + r })
}

/// The scanned side in NR-row panels ([`kernel::pack`] order): the whole panels, then the
/// zero-padded last one when the rows do not fill it.
struct Panels {
    whole: Vec<f32>,
    tail: Vec<f32>,
    len: usize,
}

impl Panels {
    /// A packed copy of `rows`.
    fn copied(rows: &[f32], d: usize) -> Self {
        Self { whole: kernel::pack(rows, d, NR), tail: Vec::new(), len: NR * d }
    }

    /// `rows` rearranged where they lie (no second copy of them).
    fn in_place(mut rows: Vec<f32>, d: usize) -> Self {
        let tail = kernel::pack_in_place(&mut rows, d, NR);
        Self { whole: rows, tail, len: NR * d }
    }

    /// Panel `i` (columns `i*NR..(i+1)*NR`), if there is one.
    fn get(&self, i: usize) -> Option<&[f32]> {
        let start = i * self.len;
        match start.checked_sub(self.whole.len()) {
            None => Some(&self.whole[start..start + self.len]),
            Some(t) => self.tail.get(t..t + self.len),
        }
    }
}

/// The micro-kernel version of [`scan_task`]: `pb` is all of `b` in NR-column panels, `off`
/// the per-column offsets padded with +∞ to whole panels (padding never enters).
fn scan_task_packed(
    a: &Matrix,
    pb: &Panels,
    off: &[f32],
    k: usize,
    rows: Range<usize>,
    cols: Range<usize>,
    progress: &Progress,
) -> Result<(Vec<f32>, Vec<u32>)> {
    let d = a.dim();
    let m = rows.len();
    let kp = k.min(cols.len());
    let pa = kernel::pack(a.rows_slice(rows.start, rows.end), d, MR);
    let mut top = RowsTopK::new(m, kp);
    let mut out = [0f32; MR * NR];
    // Each kernel call on a `b` panel prefetches its share of the next one, so that one's loads
    // (from memory: all of `b` is far bigger than the caches) are not waited for.
    let share = (NR * d).div_ceil(m.div_ceil(MR)).next_multiple_of(16);
    for u0 in cols.clone().step_by(COL_UNIT_PACKED) {
        if progress.cancelled() {
            return Err(EngineError::Cancelled);
        }
        let u1 = (u0 + COL_UNIT_PACKED).min(cols.end);
        for c0 in (u0..u1).step_by(NR) {
            let bp = pb.get(c0 / NR).expect("a panel for every column");
            let o: &[f32; NR] = off[c0..c0 + NR].try_into().expect("whole panel");
            let mut ahead = pb.get(c0 / NR + 1).unwrap_or_default().chunks(share);
            for (panel, ap) in pa.chunks_exact(MR * d).enumerate() {
                let rows_here = MR.min(m - panel * MR);
                let thr: [f32; MR] =
                    std::array::from_fn(|r| if r < rows_here { top.threshold(panel * MR + r) } else { f32::INFINITY });
                // SAFETY: the caller checked `kernel::available()`; the panels hold MR*d and NR*d values.
                let mut hits = unsafe { micro_kernel(d, ap, bp, o, &thr, &mut out, ahead.next().unwrap_or_default()) };
                // Bits in increasing column order per row; each push may raise the threshold.
                while hits != 0 {
                    let bit = hits.trailing_zeros() as usize;
                    hits &= hits - 1;
                    let (row, v) = (panel * MR + bit / NR, out[bit]);
                    if v > top.threshold(row) {
                        top.push(row, v, (c0 + bit % NR) as u32);
                    }
                }
            }
        }
        progress.add((m * (u1 - u0)) as u64);
    }
    finish_rows(top, rows.start)
}

impl CpuBackend {
    /// Whether `rows` rows of `a` go through the micro-kernel (else through `gemm` tiles).
    fn packs(rows: usize) -> bool {
        rows >= MIN_ROWS_PACKED && kernel::available()
    }

    /// The micro-kernel path over `cols` columns whose panels `panels` makes (on the pool).
    fn run_packed(
        &self,
        a: &Matrix,
        cols: usize,
        panels: impl FnOnce() -> Panels + Send,
        offset: Option<&[f32]>,
        k: usize,
        control: &mut dyn Control,
    ) -> Result<TopK> {
        let plan = Plan::new(a.rows(), cols, ROW_BLOCK_PACKED, MIN_ROW_BLOCK_PACKED, COL_UNIT_PACKED);
        let tasks = plan.tasks(a.rows(), cols);
        let off = padded_offsets(offset, cols);
        let parts = run_polled(self.threads, (a.rows() * cols) as u64, control, |progress| {
            let pb = panels();
            tasks
                .par_iter()
                .map(|(r, c)| scan_task_packed(a, &pb, &off, k, r.clone(), c.clone(), progress))
                .collect::<Result<Vec<_>>>()
        })?;
        Ok(merge_parts(parts, &plan, a.rows(), cols, k))
    }
}

/// Offsets for every column (0 without), padded with +∞ to whole kernel panels.
fn padded_offsets(offset: Option<&[f32]>, cols: usize) -> Vec<f32> {
    let mut off = vec![f32::INFINITY; cols.div_ceil(NR) * NR];
    match offset {
        Some(o) => off[..cols].copy_from_slice(o),
        None => off[..cols].fill(0.0),
    }
    off
}

/// Joins the tasks' sorted parts (in task order) into each row's best `k`.
fn merge_parts(parts: Vec<(Vec<f32>, Vec<u32>)>, plan: &Plan, rows: usize, cols: usize, k: usize) -> TopK {
    let mut values = Vec::with_capacity(rows * k);
    let mut indices = Vec::with_capacity(rows * k);
    let per_block = cols.div_ceil(plan.col_part).max(1);
    for (block, chunk) in parts.chunks(per_block).enumerate() {
        let r0 = block * plan.row_block;
        let m = plan.row_block.min(rows - r0);
        if let [(v, i)] = chunk {
            values.extend_from_slice(v);
            indices.extend_from_slice(i);
            continue;
        }
        for row in 0..m {
            let (mut v, mut i) = (Vec::new(), Vec::new());
            for (pv, pi) in chunk {
                let kp = pv.len() / m;
                v.extend_from_slice(&pv[row * kp..(row + 1) * kp]);
                i.extend_from_slice(&pi[row * kp..(row + 1) * kp]);
            }
            sort_best_first(&mut v, &mut i);
            values.extend_from_slice(&v[..k]);
            indices.extend_from_slice(&i[..k]);
        }
    }
    TopK { rows, k, values, indices }
}

impl Backend for CpuBackend {
    fn topk_products(
        &self,
        a: &Matrix,
        b: &Matrix,
        offset: Option<&[f32]>,
        k: usize,
        control: &mut dyn Control,
    ) -> Result<TopK> {
        let (rows, cols) = (a.rows(), b.rows());
        if Self::packs(rows) {
            return self.run_packed(a, cols, || Panels::copied(b.as_slice(), b.dim()), offset, k, control);
        }
        let plan = Plan::new(rows, cols, ROW_BLOCK, ROW_BLOCK, COL_BLOCK);
        let tasks = plan.tasks(rows, cols);
        let off = padded_offsets(offset, cols);
        let parts = run_polled(self.threads, (rows * cols) as u64, control, |progress| {
            tasks
                .par_iter()
                .map(|(r, c)| scan_task(a, b, &off, k, r.clone(), c.clone(), progress))
                .collect::<Result<Vec<_>>>()
        })?;
        Ok(merge_parts(parts, &plan, rows, cols, k))
    }

    fn topk_products_consuming(
        &self,
        a: &Matrix,
        b: Matrix,
        offset: Option<&[f32]>,
        k: usize,
        control: &mut dyn Control,
    ) -> Result<TopK> {
        if !Self::packs(a.rows()) {
            return self.topk_products(a, &b, offset, k, control);
        }
        let (cols, d) = (b.rows(), b.dim());
        match b.into_data() {
            Cow::Owned(rows) => self.run_packed(a, cols, move || Panels::in_place(rows, d), offset, k, control),
            Cow::Borrowed(rows) => self.run_packed(a, cols, || Panels::copied(rows, d), offset, k, control),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plans_halve_row_blocks_before_splitting_columns() {
        let plan = Plan::new(2000, 30_000, 96, 48, 256);
        assert_eq!((plan.row_block, plan.tasks(2000, 30_000).len()), (48, 42), "rows alone give enough tasks");
        let plan = Plan::new(10_000, 30_000, 96, 48, 256);
        assert_eq!((plan.row_block, plan.tasks(10_000, 30_000).len()), (96, 105), "enough row blocks already");
        let plan = Plan::new(100, 30_000, 96, 48, 256);
        assert_eq!(plan.row_block, 48);
        let tasks = plan.tasks(100, 30_000);
        assert!(tasks.len() >= TARGET_TASKS, "few rows: columns split too ({} tasks)", tasks.len());
        assert!(tasks.iter().all(|(_, c)| c.start % 256 == 0), "column parts start on whole units");
    }
}
