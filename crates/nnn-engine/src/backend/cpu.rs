//! The CPU backend, on a rayon pool; the full `a × bᵀ` product is never materialised. With
//! AVX2 a 16-bit micro-kernel shortlists each row's columns and an exact f32 pass ranks the
//! shortlist ([`super::quantize`], [`super::rescore`]); otherwise cache-sized GEMM tiles (the
//! `gemm` crate) are fused with per-row top-k selection.

use super::kernel::{self, MR, NR};
use super::quantize::{self, Quantized};
use super::rescore::{exact_score, rescore};
use super::{Backend, Prepared, TopKRequest};
use crate::control::Control;
use crate::error::{EngineError, Result};
use crate::matrix::Matrix;
use crate::run::{run_polled, Progress};
use crate::topk::{sort_best_first, RowsShortlist, RowsTopK, Shortlists, TopK};
use rayon::prelude::*;
use std::ops::Range;

/// Rows of `a` per task (and per GEMM tile). 256 x 1024 was fastest on the full-size
/// benchmark of the shapes tried (see the engine issue note); small shapes favour narrower rows.
const ROW_BLOCK: usize = 256;
/// Columns of `b` per GEMM tile: a `ROW_BLOCK × COL_BLOCK` tile of scores stays in cache.
const COL_BLOCK: usize = 1024;
/// Few rows of `a` are split over column ranges until about this many tasks exist.
const TARGET_TASKS: usize = 32;
/// Rows of `a` per task on the micro-kernel path: 16 panels of 16-bit rows (74 KB at
/// d = 384) stay in L2 while each 16-column panel of `b` streams through L1.
const ROW_BLOCK_PACKED: usize = 16 * MR;
/// Fewest rows of `a` per task on the micro-kernel path when row blocks are halved for more
/// tasks (2,000 × 30,000: 48-row blocks were 5–15 % faster than 96-row blocks split in two
/// column parts).
const MIN_ROW_BLOCK_PACKED: usize = 8 * MR;
/// Columns per cancellation check and progress report on the micro-kernel path.
const COL_UNIT_PACKED: usize = 256;
/// Below this many rows of `a` (single queries, small batches), rounding and packing all of
/// `b` costs more than it saves (searches over 100,000 × 384 candidates: the f32 tiles were
/// faster up to 96 query rows, the 16-bit path from 192).
const MIN_ROWS_PACKED: usize = 128;

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

    /// Column parts per row block: consecutive tasks of [`Plan::tasks`] share a row block.
    fn parts_per_block(&self, cols: usize) -> usize {
        cols.div_ceil(self.col_part).max(1)
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
pub(super) fn finish_rows(top: RowsTopK, first_row: usize) -> Result<(Vec<f32>, Vec<u32>)> {
    top.finish().map_err(|r| EngineError::NonFinite { what: "inner products", row: first_row + r })
}

/// The micro-kernel version of [`scan_task`], which only shortlists (a row crowded by
/// near-equal estimates is settled with exact scores): `qa`/`qb` are all of `a`/`b` rounded to
/// 16 bits in kernel panels (`rows.start` is a multiple of MR), `off` the
/// per-column offsets padded with +∞ to whole panels (padding never enters). Returns, per row,
/// the columns whose estimates could still be among its best `k` exact scores, for the task's
/// `rows` of `a` and `cols` of `b`.
fn scan_task_packed(
    (a, b): (&Matrix, &Matrix),
    (qa, qb): (&Quantized, &Quantized),
    (margins, off): (&[f64], &[f32]),
    k: usize,
    (rows, cols): (Range<usize>, Range<usize>),
    progress: &Progress,
) -> Result<Shortlists> {
    let m = rows.len();
    let mut short = RowsShortlist::new(k.min(cols.len()), margins[rows.clone()].to_vec());
    let first_panel = rows.start / MR;
    let a_panels = m.div_ceil(MR);
    let b_panels = qb.inv.len() / NR;
    // Each kernel call on a `b` panel prefetches its share of the next one, so that one's loads
    // (from memory: all of `b` is far bigger than the caches) are not waited for.
    let share = (NR * 2 * qb.pairs).div_ceil(a_panels).next_multiple_of(32);
    let mut out = [0f32; MR * NR];
    let kernels = kernel::kernels();
    for u0 in cols.clone().step_by(COL_UNIT_PACKED) {
        if progress.cancelled() {
            return Err(EngineError::Cancelled);
        }
        let u1 = (u0 + COL_UNIT_PACKED).min(cols.end);
        for c0 in (u0..u1).step_by(NR) {
            let bp = qb.panel(c0 / NR);
            let o: &[f32; NR] = off[c0..c0 + NR].try_into().expect("whole panel");
            let b_inv: &[f32; NR] = qb.inv[c0..c0 + NR].try_into().expect("whole panel");
            let next = if c0 / NR + 1 < b_panels { qb.panel(c0 / NR + 1) } else { &[] };
            let mut ahead = next.chunks(share);
            for panel in 0..a_panels {
                let r0 = panel * MR;
                let rows_here = MR.min(m - r0);
                let floor: [f32; MR] =
                    std::array::from_fn(|r| if r < rows_here { short.floor(r0 + r) } else { f32::INFINITY });
                let a_inv: &[f32; MR] = qa.inv[rows.start + r0..][..MR].try_into().expect("whole panel");
                let ap = qa.panel(first_panel + panel);
                // SAFETY: the caller checked `kernel::available()`; the panels hold MR and NR rows.
                let mut hits = unsafe {
                    kernels[rows_here - 1](
                        qb.pairs,
                        ap,
                        bp,
                        (a_inv, &floor),
                        (b_inv, o),
                        &mut out,
                        ahead.next().unwrap_or_default(),
                    )
                };
                // Bits in increasing column order per row; each push may raise the floor.
                while hits != 0 {
                    let bit = hits.trailing_zeros() as usize;
                    hits &= hits - 1;
                    let row = r0 + bit / NR;
                    if out[bit] > short.floor(row) && short.push(row, out[bit], (c0 + bit % NR) as u32) {
                        let x = a.rows_slice(rows.start + row, rows.start + row + 1);
                        // SAFETY: this 16-bit path runs only where `kernel::available()`.
                        short.settle(row, |c| unsafe { exact_score(x, b, c as usize, off) });
                    }
                }
            }
        }
        progress.add((m * (u1 - u0)) as u64);
    }
    let mut out = Shortlists { starts: vec![0], cols: Vec::new() };
    short.finish_into(&mut out);
    Ok(out)
}

impl CpuBackend {
    /// Whether `rows` rows of `a` go through the micro-kernel (else through `gemm` tiles).
    fn packs(rows: usize) -> bool {
        rows >= MIN_ROWS_PACKED && kernel::available()
    }

    /// The micro-kernel path: 16-bit shortlists, then exact f32 scores for the shortlisted.
    /// `None` when a row cannot be rounded to 16 bits (the caller then takes the f32 path).
    /// `b16`: `b` already rounded ([`CpuBackend::prepare`]), else it is rounded here.
    fn run_packed(
        &self,
        request: &TopKRequest,
        b16: Option<&Quantized>,
        control: &mut dyn Control,
    ) -> Option<Result<TopK>> {
        let TopKRequest { a, b, offset, k, .. } = *request;
        let (rows, cols, d) = (a.rows(), b.rows(), a.dim());
        let plan = Plan::new(rows, cols, ROW_BLOCK_PACKED, MIN_ROW_BLOCK_PACKED, COL_UNIT_PACKED);
        let tasks = plan.tasks(rows, cols);
        let off = padded_offsets(offset, cols);
        let off_max = request.largest_offset();
        run_polled(self.threads, (rows * cols) as u64, control, |progress| {
            // The filter; the 16-bit copies made here are freed before the exact pass.
            let parts = {
                let rounded_here;
                let qb = match b16 {
                    Some(q) => q,
                    None => match Quantized::new(b.as_slice(), d, NR) {
                        Some(q) => {
                            rounded_here = q;
                            &rounded_here
                        }
                        None => return Ok(None),
                    },
                };
                let Some(qa) = Quantized::new(a.as_slice(), d, MR) else { return Ok(None) };
                let margins: Vec<f64> =
                    qa.scales.iter().map(|s| quantize::margin(s, &qb.extremes, d, off_max)).collect();
                tasks
                    .par_iter()
                    .map(|(r, c)| {
                        scan_task_packed((a, b), (&qa, qb), (&margins, &off), k, (r.clone(), c.clone()), progress)
                    })
                    .collect::<Result<Vec<_>>>()?
            };
            // Each row's shortlists from its column parts, in column order, flat.
            let mut short = Shortlists { starts: vec![0], cols: Vec::new() };
            for block in parts.chunks(plan.parts_per_block(cols)) {
                for row in 0..block[0].starts.len() - 1 {
                    block.iter().for_each(|p| short.cols.extend_from_slice(&p.cols[p.starts[row]..p.starts[row + 1]]));
                    short.starts.push(short.cols.len());
                }
            }
            drop(parts);
            rescore(a, b, &off, &short, None, k, progress).map(Some)
        })
        .transpose()
    }
}

/// Offsets for every column (0 without), padded with +∞ to whole kernel panels.
pub(super) fn padded_offsets(offset: Option<&[f32]>, cols: usize) -> Vec<f32> {
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
    for (block, chunk) in parts.chunks(plan.parts_per_block(cols)).enumerate() {
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
    fn topk(&self, request: &TopKRequest, control: &mut dyn Control) -> Result<TopK> {
        // prepared rows take the 16-bit path whatever the rows of `a`; without (or prepared
        // for the GPU only), enough rows do
        let packed = match request.prepared.and_then(|p| p.rounded().panels(request.b)) {
            Some(b16) => Some(Some(b16)),
            None => Self::packs(request.a.rows()).then_some(None),
        };
        if let Some(b16) = packed {
            if let Some(result) = self.run_packed(request, b16, control) {
                return result;
            }
        }
        self.run_f32(request, control)
    }
}

impl CpuBackend {
    /// The `gemm`-tile path: exact f32 products fused with per-row selection.
    fn run_f32(&self, request: &TopKRequest, control: &mut dyn Control) -> Result<TopK> {
        let TopKRequest { a, b, offset, k, .. } = *request;
        let (rows, cols) = (a.rows(), b.rows());
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
}

impl CpuBackend {
    /// `b` prepared for many searches: its rows rounded once to 16 bits in the micro-kernel's
    /// panels, so each search reads half the bytes (the exact f32 pass still ranks). Runs on
    /// the current rayon pool: call it from a worker of the engine's pool (e.g. in
    /// [`crate::run::run_polled`]). Holds nothing where the kernel cannot use it.
    pub fn prepare(b: &Matrix) -> Prepared {
        Prepared::with(RoundedRows::new(b))
    }

    /// Bytes [`CpuBackend::prepare`] holds for a `rows × dim` matrix (at most).
    pub fn prepared_bytes(rows: usize, dim: usize) -> usize {
        RoundedRows::bytes_for(rows, dim)
    }
}

/// Rows rounded once to 16 bits in the kernel's panels ([`Quantized`]). Empty when the CPU
/// has no AVX2 kernel or a row cannot be rounded.
pub(crate) struct RoundedRows {
    panels: Option<Quantized>,
    rows: usize,
    dim: usize,
}

impl RoundedRows {
    /// No copy: searches take the f32 path (or round on the fly, as without one).
    pub(crate) fn none() -> Self {
        Self { panels: None, rows: 0, dim: 0 }
    }

    /// Rounds the rows of `b` on the current rayon pool.
    fn new(b: &Matrix) -> Self {
        let panels = kernel::available().then(|| Quantized::new(b.as_slice(), b.dim(), NR)).flatten();
        Self { panels, rows: b.rows(), dim: b.dim() }
    }

    /// The panels, if they were made from a matrix of `b`'s shape.
    fn panels(&self, b: &Matrix) -> Option<&Quantized> {
        self.panels.as_ref().filter(|_| self.rows == b.rows() && self.dim == b.dim())
    }

    /// Whether it holds panels made from a matrix of `b`'s shape.
    pub(crate) fn usable_for(&self, b: &Matrix) -> bool {
        self.panels(b).is_some()
    }

    /// Bytes held (0 when empty).
    pub(crate) fn bytes(&self) -> usize {
        self.panels.as_ref().map_or(0, |_| Self::bytes_for(self.rows, self.dim))
    }

    /// Bytes the rounded copy of a `rows × dim` matrix holds: 2 per value, plus each row's
    /// scale, in whole panels.
    fn bytes_for(rows: usize, dim: usize) -> usize {
        let padded = rows.div_ceil(NR) * NR;
        padded * (dim.div_ceil(2) * 4 + std::mem::size_of::<quantize::RowScale>() + 4)
    }
}

impl std::fmt::Debug for RoundedRows {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RoundedRows({} x {}, {} bytes)", self.rows, self.dim, self.bytes())
    }
}

#[cfg(test)]
pub(super) mod tests {
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

    /// Every row's k best of `dot(a_i, b_j) − off_j` by brute force, best first.
    fn brute_force(a: &[f32], b: &[f32], d: usize, off: &[f32], k: usize) -> (Vec<f32>, Vec<u32>) {
        let (mut vals, mut idx) = (Vec::new(), Vec::new());
        for x in a.chunks_exact(d) {
            let mut row: Vec<(f32, u32)> = b
                .chunks_exact(d)
                .zip(off)
                .enumerate()
                // SAFETY: the test runs only where the kernel is available (asserted above).
                .map(|(j, (y, o))| (unsafe { kernel::dot(x, y) } - o, j as u32))
                .collect();
            row.sort_by(|p, q| q.0.total_cmp(&p.0).then(p.1.cmp(&q.1)));
            vals.extend(row[..k].iter().map(|p| p.0));
            idx.extend(row[..k].iter().map(|p| p.1));
        }
        (vals, idx)
    }

    /// Deterministic values in [-1, 1).
    pub(crate) fn values(n: usize, seed: u64) -> Vec<f32> {
        let mut s = seed | 1;
        (0..n)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                (s >> 40) as f32 / (1u64 << 23) as f32 - 1.0
            })
            .collect()
    }

    fn check_exact(what: &str, a: &[f32], b: &[f32], d: usize, off: Option<&[f32]>, k: usize) {
        let backend = CpuBackend::new(2).unwrap();
        let (am, bm) = (Matrix::from_slice(a, d, "a").unwrap(), Matrix::from_slice(b, d, "b").unwrap());
        assert!(
            Quantized::new(a, d, MR).is_some() && Quantized::new(b, d, NR).is_some(),
            "{what}: takes the 16-bit path"
        );
        let zeros = vec![0.0; bm.rows()];
        let (vals, idx) = brute_force(a, b, d, off.unwrap_or(&zeros), k);
        let request = TopKRequest::new(&am, &bm, k).with_offset(off);
        let rounded_here = backend.run_packed(&request, None, &mut crate::Unwatched).expect("16-bit path");
        let prepared = CpuBackend::prepare(&bm);
        let q = prepared.rounded().panels(&bm).expect("rounded");
        let held = q.panels.len() * 2 + q.scales.len() * std::mem::size_of::<quantize::RowScale>() + q.inv.len() * 4;
        assert_eq!(prepared.bytes(), held, "{what}: bytes counted");
        let request = TopKRequest { prepared: Some(&prepared), ..request };
        let rounded_before = backend.topk(&request, &mut crate::Unwatched);
        for (how, got) in [("b rounded per call", rounded_here), ("b rounded before", rounded_before)] {
            let got = got.unwrap();
            assert_eq!(got.indices, idx, "{what}, {how}: indices");
            let same = got.values.iter().zip(&vals).all(|(g, v)| g.to_bits() == v.to_bits());
            assert!(same, "{what}, {how}: values bit for bit");
        }
    }

    #[test]
    #[ignore = "needs AVX2: make test runs it (--ignored avx2) where the CPU has it"]
    fn avx2_16_bit_filter_gives_exactly_the_f32_top_k() {
        assert!(kernel::available(), "this CPU has no AVX2 kernel");
        // (more rows than columns: the exact pass goes row by row; fewer: column by column)
        // (1, 2 and 5 rows: panels with fewer live rows than MR, as single queries give)
        let shapes = [
            (384, 1, 3000, 10),
            (64, 5, 2000, 20),
            (7, 2, 100, 10),
            (1, 30, 40, 3),
            (2, 24, 17, 17),
            (7, 25, 100, 10),
            (37, 50, 300, 32),
            (64, 500, 90, 20),
            (384, 30, 1000, 128),
        ];
        for (d, n, m, k) in shapes {
            let (a, b) = (values(n * d, 3 + d as u64), values(m * d, 5 + n as u64));
            let off: Vec<f32> = values(m, 9).iter().map(|v| 0.1 * v).collect();
            check_exact(&format!("random d={d} {n}x{m} k={k}"), &a, &b, d, None, k);
            check_exact(&format!("random d={d} {n}x{m} k={k}, offsets"), &a, &b, d, Some(&off), k);
        }
        // Near-duplicates: rows closer than 16-bit rounding can tell apart, so the estimates
        // tie or misorder them and only the exact scores can rank them.
        let d = 64;
        let base = values(d, 21);
        let b: Vec<f32> =
            (0..600).flat_map(|j| base.iter().enumerate().map(move |(i, v)| v + 1e-7 * ((i * j) % 5) as f32)).collect();
        let a = values(30 * d, 22);
        check_exact("near-duplicates", &a, &b, d, None, 100);
        // Every reference row the same: the estimates all tie, rows get crowded and settled.
        let b: Vec<f32> = (0..3000).flat_map(|_| base.clone()).collect();
        check_exact("all equal", &a, &b, d, None, 10);
        // Exact duplicates tie: lower index first.
        let b: Vec<f32> = (0..300).flat_map(|_| base.clone()).chain(values(300 * d, 23)).collect();
        check_exact("duplicates", &a, &b, d, None, 50);
        // Norms across many orders of magnitude, and zero rows: wide margins, many survivors.
        let b: Vec<f32> = values(400 * d, 24)
            .chunks(d)
            .enumerate()
            .flat_map(|(j, r)| {
                let scale = [1e-8, 1e-3, 1.0, 1e3, 1e8, 0.0][j % 6];
                r.iter().map(move |v| v * scale).collect::<Vec<_>>()
            })
            .collect();
        check_exact("mixed norms", &a, &b, d, None, 64);
    }

    #[test]
    #[ignore = "needs AVX2: make test runs it (--ignored avx2) where the CPU has it"]
    fn avx2_columns_prepared_for_the_gpu_only_rank_as_unprepared_ones() {
        assert!(kernel::available(), "this CPU has no AVX2 kernel");
        let d = 96;
        let b = values(3000 * d, 41);
        let bm = Matrix::from_slice(&b, d, "b").unwrap();
        let off: Vec<f32> = values(3000, 42).iter().map(|v| 0.1 * v).collect();
        let device_only = Prepared::unrounded();
        let backend = CpuBackend::new(2).unwrap();
        // (enough rows for the 16-bit path, rounded per call; a few rows: the f32 path)
        for n in [300, 3] {
            let a = values(n * d, 43 + n as u64);
            let am = Matrix::from_slice(&a, d, "a").unwrap();
            let request = TopKRequest::new(&am, &bm, 40).with_offset(Some(&off));
            let want = backend.topk(&request, &mut crate::Unwatched).unwrap();
            let got = backend.topk(&TopKRequest { prepared: Some(&device_only), ..request }, &mut crate::Unwatched);
            assert_eq!(got.unwrap(), want, "{n} rows");
        }
    }

    #[test]
    fn rows_the_16_bit_path_cannot_round_take_the_f32_path() {
        let d = 8;
        let mut b = values(40 * d, 31);
        b[..d].iter_mut().for_each(|v| *v *= 1e-12);
        let a = values(30 * d, 32);
        let (am, bm) = (Matrix::from_slice(&a, d, "a").unwrap(), Matrix::from_slice(&b, d, "b").unwrap());
        let backend = CpuBackend::new(1).unwrap();
        let request = TopKRequest::new(&am, &bm, 5);
        assert!(backend.run_packed(&request, None, &mut crate::Unwatched).is_none(), "norm 1e-12 is out of range");
        let prepared = CpuBackend::prepare(&bm);
        assert_eq!(prepared.bytes(), 0, "nothing kept when a row cannot be rounded");
        let got = backend.topk(&request, &mut crate::Unwatched).unwrap();
        let with_prepared = TopKRequest { prepared: Some(&prepared), ..request };
        let via_rounded = backend.topk(&with_prepared, &mut crate::Unwatched).unwrap();
        assert_eq!(via_rounded, got, "the f32 path either way");
        let (vals, idx) = brute_force(&a, &b, d, &[0.0; 40], 5);
        assert_eq!(got.indices, idx);
        assert!(got.values.iter().zip(&vals).all(|(g, v)| (g - v).abs() <= 1e-6), "f32 path agrees");
    }
}
