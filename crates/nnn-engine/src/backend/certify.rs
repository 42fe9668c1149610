//! Exact top k from estimates with a proven error bound, for backends whose fast products are
//! not exact (the GPU's TF32 tensor cores): the backend keeps each row's best `k'` columns by
//! estimate; the CPU's exact pass ranks them ([`rescore`]); a row whose k-th exact score is
//! out of reach of every column it did not keep (whose estimate is at most the row's `k'`-th,
//! so whose score is at most that plus the bound) is certified; the other rows are ranked
//! from scratch by the CPU backend. Results equal the CPU backend's exact pass bit for bit (its
//! results wherever its 16-bit path runs: 128 rows or more, or prepared columns), tie order
//! included.

use super::cpu::{padded_offsets, CpuBackend};
use super::rescore::rescore;
use super::{kernel, quantize};
use super::{Backend, TopKRequest};
use crate::control::Control;
use crate::error::Result;
use crate::matrix::Matrix;
use crate::run::run_polled;
use crate::topk::{Shortlists, TopK};
use rayon::prelude::*;

/// Unit roundoff of f32 (round to nearest).
const U: f64 = f32::EPSILON as f64 / 2.0;
/// Unit roundoff assumed for the GPU's accumulation: four times f32's, so that accumulators
/// that truncate (as tensor cores have been measured to) are covered twice over.
const U_ACC: f64 = 4.0 * U;
/// `x` rounded to TF32 (10 mantissa bits): to nearest (ties to even), or toward zero. What a
/// tensor core's inputs may become; the emulations of the tests and `benches/certify.rs` use
/// it too.
pub fn tf32(x: f32, nearest: bool) -> f32 {
    let bits = x.to_bits();
    let low = bits & 0x1fff;
    let mut kept = bits & !0x1fff;
    if nearest && (low > 0x1000 || (low == 0x1000 && kept & 0x2000 != 0)) {
        kept += 0x2000;
    }
    f32::from_bits(kept)
}

/// A row's size for the bound of [`tf32_margin`]: its norm, and the norm of what rounding it
/// to TF32 toward zero takes away (at most 2⁻¹⁰ of the norm, half that on average).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct RowSize {
    /// ‖x‖.
    pub norm: f64,
    /// ‖x − RZ(x)‖, RZ rounding each value to TF32 toward zero.
    pub tf32_error: f64,
}

impl RowSize {
    /// The size of `x`.
    pub fn of(x: &[f32]) -> Self {
        let (mut norm, mut err) = (0f64, 0f64);
        for &v in x {
            let cut = f64::from(v) - f64::from(tf32(v, false));
            norm += f64::from(v) * f64::from(v);
            err += cut * cut;
        }
        Self { norm: norm.sqrt(), tf32_error: err.sqrt() }
    }

    /// The largest norm and the largest error of `sizes`, each on its own (so at least those
    /// of every row).
    pub fn largest(sizes: &[RowSize]) -> Self {
        sizes
            .iter()
            .fold(Self::default(), |m, s| Self { norm: m.norm.max(s.norm), tf32_error: m.tf32_error.max(s.tf32_error) })
    }
}

/// How far a TF32 tensor-core estimate of `a·b − off` (inputs rounded to TF32, products
/// accumulated in f32, the offset subtracted in f32) can be from the CPU backend's f32 score
/// of the same pair, for a row of size `a` against rows `b` whose norms and errors are at most
/// those of `b` ([`RowSize::largest`]), dimension `d`, offsets at most `off_max` in size.
///
/// Proof. The device rounds each input to TF32 toward zero or to nearest (ties either way):
/// the nearest neighbour is never farther than the one toward zero, so the rounded rows are
/// `ã = a + α`, `b̃ = b + β` with `‖α‖ ≤ e_a = ‖a − RZ(a)‖` and `‖β‖ ≤ e_b` (`e ≤ t‖x‖`,
/// `t = 2^-10`). A product of two TF32 values has at most 22 significant bits, so it is exact
/// in f32. Hence `|Σ ã_i b̃_i − a·b| = |α·b̃ + a·β| ≤ e_a(‖b‖ + e_b) + ‖a‖e_b`
/// (Cauchy–Schwarz; with `e = t‖x‖` this is the worst case `(2t + t²)‖a‖‖b‖`). Summing d
/// exact products in f32 in any order with unit roundoff u' errs by at most
/// `γ'_d Σ |ã_i b̃_i| ≤ γ'_d (‖a‖ + e_a)(‖b‖ + e_b)`, `γ'_d = d·u'/(1 − d·u')`; u' = 4u covers
/// truncating accumulators. The CPU's f32 dot product errs by at most `γ_d‖a‖‖b‖` from
/// `a·b`. Subtracting the offset rounds each side once more, by at most u' times a number no
/// larger than `(‖a‖ + e_a)(‖b‖ + e_b)(1 + γ'_d) + off_max`. Inputs below f32's smallest
/// normal may be flushed to zero: each such input moves a product by at most `2^-126` times
/// the other factor, `2^-126·√d·(‖a‖ + ‖b‖)` in all. Every term grows with `‖b‖` and `e_b`,
/// so the largest of each over the rows bounds every row. The sum of these terms is doubled
/// for safety.
pub fn tf32_margin(a: RowSize, b: RowSize, d: usize, off_max: f64) -> f64 {
    let d_f = d as f64;
    let gamma = |u: f64| d_f * u / (1.0 - d_f * u);
    let ab = a.norm * b.norm;
    let inputs = a.tf32_error * (b.norm + b.tf32_error) + a.norm * b.tf32_error;
    let grown = (a.norm + a.tf32_error) * (b.norm + b.tf32_error);
    let accumulate = gamma(U_ACC) * grown;
    let cpu = gamma(U) * ab;
    let offsets = 2.0 * U_ACC * (grown * (1.0 + gamma(U_ACC)) + off_max);
    let flushed = f64::from(f32::MIN_POSITIVE) * d_f.sqrt() * (a.norm + b.norm);
    2.0 * (inputs + accumulate + cpu + offsets + flushed) + f64::from(f32::MIN_POSITIVE)
}

/// What [`exact_from_estimates`] did.
#[derive(Debug, Clone, PartialEq)]
pub struct Certified {
    /// The exact top `k` of every row of `a`.
    pub top: TopK,
    /// Rows whose shortlist could not be certified, ranked from scratch on the CPU.
    pub recomputed: usize,
    /// Whether the shortlists' exact scores were given (computed on the GPU) rather than
    /// computed on the host.
    pub scores_given: bool,
}

/// The exact top `k` of `a` against `b` (minus `offset`) as the CPU backend's exact pass ranks
/// them, from `estimates`: each row's best `k' ≥ k` columns by an estimate within `margins[r]`
/// of the CPU's f32 score (best first, as a backend's top k), `k' ≤ b.rows()`. Runs on
/// `threads` CPU workers; `control` may cancel. Needs the CPU's AVX2 kernel and rows its
/// 16-bit path can round ([`exact_available`]; else the rows recomputed may differ in the last
/// bits).
pub fn exact_from_estimates(
    request: &TopKRequest,
    estimates: &TopK,
    margins: &[f64],
    threads: usize,
    control: &mut dyn Control,
) -> Result<Certified> {
    let (short, off) = (shortlists(estimates), padded_offsets(request.offset, request.b.rows()));
    exact_from_scores(request, estimates, Scores { short: &short, off: &off, given: None }, margins, threads, control)
}

/// The shortlisted pairs for [`exact_from_scores`]: `short` (from [`shortlists`]), the
/// request's offsets padded as the CPU's exact pass reads them, and, in `given`, the pairs'
/// exact scores in the order of `short` when they were computed elsewhere with the CPU's exact
/// operations (the GPU's `exact_scores` kernel); computed on the host otherwise.
pub(crate) struct Scores<'s> {
    /// Each row's shortlisted columns, in increasing order.
    pub short: &'s Shortlists,
    /// One offset per column of `b`, padded ([`padded_offsets`]).
    pub off: &'s [f32],
    /// The pairs' exact scores, when computed elsewhere.
    pub given: Option<&'s [f32]>,
}

/// Each row's columns of `estimates` in increasing order: the pairs whose exact scores
/// [`exact_from_scores`] ranks.
pub(crate) fn shortlists(estimates: &TopK) -> Shortlists {
    let (rows, wide) = (estimates.rows, estimates.k);
    let mut short = Shortlists { starts: Vec::with_capacity(rows + 1), cols: Vec::with_capacity(rows * wide) };
    short.starts.push(0);
    for r in 0..rows {
        let start = short.cols.len();
        short.cols.extend_from_slice(estimates.row_indices(r));
        short.cols[start..].sort_unstable();
        short.starts.push(short.cols.len());
    }
    short
}

/// [`exact_from_estimates`] with its shortlisted pairs prepared by the caller ([`Scores`]).
pub(crate) fn exact_from_scores(
    request: &TopKRequest,
    estimates: &TopK,
    scores: Scores,
    margins: &[f64],
    threads: usize,
    control: &mut dyn Control,
) -> Result<Certified> {
    let TopKRequest { a, b, offset, k, .. } = *request;
    let (rows, wide) = (a.rows(), estimates.k);
    debug_assert!(wide >= k && wide <= b.rows() && margins.len() == rows && estimates.rows == rows);
    let Scores { short, off, given } = scores;
    debug_assert!(given.is_none_or(|s| s.len() == short.cols.len()));
    let mut top =
        run_polled(threads, (rows * wide) as u64, control, |progress| rescore(a, b, off, short, given, k, progress))?;
    // every column kept: nothing unseen to doubt
    let doubtful: Vec<usize> = match wide == b.rows() {
        true => Vec::new(),
        false => (0..rows)
            .filter(|&r| {
                // (all finite: the inputs were checked, the margins are)
                let unseen_best = f64::from(estimates.row_values(r)[wide - 1]) + margins[r];
                unseen_best >= f64::from(top.row_values(r)[k - 1])
            })
            .collect(),
    };
    if !doubtful.is_empty() {
        let picked: Vec<f32> = doubtful.iter().flat_map(|&r| a.rows_slice(r, r + 1).iter().copied()).collect();
        let picked = Matrix::from_slice(&picked, a.dim(), "rows to recompute")?;
        // with `b` prepared, the CPU backend takes its 16-bit path even for a few rows: its
        // exact pass computes the same scores as `rescore` above (the request's own copy when
        // it has one, a session's cache)
        let made;
        let prepared = match request.prepared.filter(|p| p.rounded().usable_for(b)) {
            Some(p) => p,
            None => {
                made = run_polled(threads, 1, control, |_| Ok(CpuBackend::prepare(b)))?;
                &made
            }
        };
        let again = TopKRequest { prepared: Some(prepared), ..TopKRequest::new(&picked, b, k).with_offset(offset) };
        let again = CpuBackend::new(threads)?.topk(&again, control)?;
        for (i, &r) in doubtful.iter().enumerate() {
            top.values[r * k..(r + 1) * k].copy_from_slice(again.row_values(i));
            top.indices[r * k..(r + 1) * k].copy_from_slice(again.row_indices(i));
        }
    }
    Ok(Certified { top, recomputed: doubtful.len(), scores_given: given.is_some() })
}

/// Whether this CPU can run [`exact_from_estimates`] (its exact pass is the AVX2 kernel's) on
/// rows of these `sizes` (the CPU's 16-bit path must round them all).
pub fn exact_available(sizes: &[RowSize]) -> bool {
    kernel::available() && sizes.iter().all(|s| quantize::roundable(s.norm))
}

/// The size of each row of `m`, on the current rayon pool.
pub fn row_sizes(m: &Matrix) -> Vec<RowSize> {
    m.as_slice().par_chunks(m.dim()).map(RowSize::of).collect()
}

/// The largest size of `m`'s rows ([`RowSize::largest`]), or `None` where [`exact_available`]
/// is not; on the current rayon pool.
pub fn largest_size(m: &Matrix) -> Option<RowSize> {
    let sizes = row_sizes(m);
    exact_available(&sizes).then(|| RowSize::largest(&sizes))
}

#[cfg(test)]
mod tests {
    use super::super::cpu::tests::values;
    use super::super::rescore::exact_score;
    use super::*;
    use crate::Unwatched;

    /// f64 `x` to f32 toward zero.
    fn toward_zero(x: f64) -> f32 {
        let f = x as f32;
        if f64::from(f).abs() > x.abs() {
            f32::from_bits(f.to_bits() - 1)
        } else {
            f
        }
    }

    /// What a tensor core may compute for `x·y − off`: inputs rounded to TF32, exact products,
    /// accumulated in f32 in blocks of `block` (each block's sum added to the total), every
    /// addition rounded to nearest or toward zero.
    fn emulated(x: &[f32], y: &[f32], off: f32, nearest: bool, block: usize) -> f32 {
        let add = |s: f32, p: f64| if nearest { (f64::from(s) + p) as f32 } else { toward_zero(f64::from(s) + p) };
        let mut total = 0f32;
        for (bx, by) in x.chunks(block).zip(y.chunks(block)) {
            let part = bx
                .iter()
                .zip(by)
                .fold(0f32, |s, (&p, &q)| add(s, f64::from(tf32(p, nearest)) * f64::from(tf32(q, nearest))));
            total = add(total, f64::from(part));
        }
        add(total, -f64::from(off))
    }

    /// Each row's best `wide` columns by emulated TF32 estimate (ties to the lower column), as
    /// a backend's top k, and the rows' margins.
    fn estimates(a: &Matrix, b: &Matrix, off: &[f32], wide: usize, nearest: bool) -> (TopK, Vec<f64>) {
        let d = a.dim();
        let b_size = RowSize::largest(&row_sizes(b));
        let off_max = off.iter().fold(0f64, |m, &o| m.max(f64::from(o).abs()));
        let (mut values, mut indices, mut margins) = (Vec::new(), Vec::new(), Vec::new());
        for r in 0..a.rows() {
            let x = a.rows_slice(r, r + 1);
            let mut row: Vec<(f32, u32)> = (0..b.rows())
                .map(|j| (emulated(x, b.rows_slice(j, j + 1), off[j], nearest, 16 + (j % 3) * 16), j as u32))
                .collect();
            row.sort_by(|p, q| q.0.total_cmp(&p.0).then(p.1.cmp(&q.1)));
            values.extend(row[..wide].iter().map(|p| p.0));
            indices.extend(row[..wide].iter().map(|p| p.1));
            margins.push(tf32_margin(RowSize::of(x), b_size, d, off_max));
        }
        (TopK { rows: a.rows(), k: wide, values, indices }, margins)
    }

    #[test]
    fn row_sizes_measure_what_rounding_to_tf32_toward_zero_drops() {
        let p = |e: i32| 2f64.powi(e);
        // TF32 keeps 10 mantissa bits: 1 + 2^-10 and 3 stay, the rest loses its low bits
        let x = [(1.0 + p(-12)) as f32, 3.0, (1.0 + p(-10)) as f32, -(1.0 + p(-11) + p(-23)) as f32];
        let s = RowSize::of(&x);
        let norm = x.iter().map(|&v| f64::from(v).powi(2)).sum::<f64>().sqrt();
        assert_eq!(s.norm, norm);
        assert_eq!(s.tf32_error, (p(-24) + (p(-11) + p(-23)).powi(2)).sqrt());
        for row in values(64 * 100, 5).chunks(100) {
            let s = RowSize::of(row);
            assert!(s.tf32_error > 0.0 && s.tf32_error <= s.norm / 1024.0, "{s:?}");
        }
        let sizes = [RowSize { norm: 3.0, tf32_error: 0.001 }, RowSize { norm: 1.0, tf32_error: 0.002 }];
        assert_eq!(RowSize::largest(&sizes), RowSize { norm: 3.0, tf32_error: 0.002 });
    }

    #[test]
    #[ignore = "needs AVX2: make test runs it (--ignored avx2) where the CPU has it"]
    fn avx2_the_tf32_bound_holds_for_emulated_tensor_cores() {
        assert!(kernel::available(), "this CPU has no AVX2 kernel");
        let mut worst = 0f64;
        for (d, scale) in [(7, 1.0), (64, 1e-3), (384, 1.0), (512, 30.0), (1536, 1.0)] {
            let a: Vec<f32> = values(8 * d, d as u64).iter().map(|v| v * scale).collect();
            let mut b: Vec<f32> = values(40 * d, 3 + d as u64).iter().map(|v| v * scale).collect();
            // a row of b equal to a row of a (large products), and tiny and huge rows
            b[..d].copy_from_slice(&a[..d]);
            b[d..2 * d].iter_mut().for_each(|v| *v *= 1e-30);
            let off: Vec<f32> = values(40, 9).iter().map(|v| v * scale * scale).collect();
            let off_max = off.iter().fold(0f64, |m, &o| m.max(f64::from(o).abs()));
            for x in a.chunks(d) {
                for (j, y) in b.chunks(d).enumerate() {
                    // (the column's own size: tighter than the largest, which certificates use)
                    let m = tf32_margin(RowSize::of(x), RowSize::of(y), d, off_max);
                    // SAFETY: the CPU has the kernel (asserted); equal lengths.
                    let cpu = unsafe { kernel::dot(x, y) } - off[j];
                    for nearest in [true, false] {
                        let gap = (f64::from(emulated(x, y, off[j], nearest, 32)) - f64::from(cpu)).abs();
                        assert!(gap <= m, "d={d}, column {j}: |estimate − f32| = {gap:e} above the bound {m:e}");
                        worst = worst.max(gap / m);
                    }
                }
            }
        }
        // the bound is not vacuous: TF32 rounding uses a good part of it
        println!("largest |emulated TF32 estimate − f32 score| / bound: {worst:.3}");
        assert!(worst > 0.05, "estimates use only {worst} of the bound");
    }

    #[test]
    #[ignore = "needs AVX2: make test runs it (--ignored avx2) where the CPU has it"]
    fn avx2_certified_shortlists_give_the_cpu_s_top_k_bit_for_bit() {
        assert!(kernel::available(), "this CPU has no AVX2 kernel");
        let cpu = CpuBackend::new(2).unwrap();
        let d = 48;
        let a = values(30 * d, 1);
        let random = values(600 * d, 2);
        // near-duplicates: their estimates tie within the bound, so rows see doubt
        let base = values(d, 3);
        let crowded: Vec<f32> =
            (0..600).flat_map(|j| base.iter().enumerate().map(move |(i, v)| v + 1e-6 * ((i * j) % 7) as f32)).collect();
        let off = values(600, 4).iter().map(|v| 0.05 * v).collect::<Vec<_>>();
        // (None: any number of rows may need recomputing)
        for (what, b, wide, doubt) in [
            ("random", &random, 40, None),
            ("crowded", &crowded, 40, Some(true)),
            ("every column", &random, 600, Some(false)),
        ] {
            let (am, bm) = (Matrix::from_slice(&a, d, "a").unwrap(), Matrix::from_slice(b, d, "b").unwrap());
            for (k, offset) in [(10, None), (25, Some(off.as_slice()))] {
                let request = TopKRequest::new(&am, &bm, k).with_offset(offset);
                let prepared = CpuBackend::prepare(&bm);
                let want = cpu.topk(&TopKRequest { prepared: Some(&prepared), ..request }, &mut Unwatched).unwrap();
                let zeros = vec![0.0; 600];
                for nearest in [true, false] {
                    let (est, margins) = estimates(&am, &bm, offset.unwrap_or(&zeros), wide, nearest);
                    let got = exact_from_estimates(&request, &est, &margins, 2, &mut Unwatched).unwrap();
                    assert_eq!(got.top, want, "{what}, k={k}");
                    // the shortlists' scores given (as the GPU computes them), not computed here
                    let short = shortlists(&est);
                    let pad = padded_offsets(offset, bm.rows());
                    let scored: Vec<f32> = (0..am.rows())
                        .flat_map(|r| short.cols[short.starts[r]..short.starts[r + 1]].iter().map(move |&j| (r, j)))
                        // SAFETY: the CPU has the kernel (asserted); equal lengths.
                        .map(|(r, j)| unsafe { exact_score(am.rows_slice(r, r + 1), &bm, j as usize, &pad) })
                        .collect();
                    let scores = Scores { short: &short, off: &pad, given: Some(&scored) };
                    let given = exact_from_scores(&request, &est, scores, &margins, 2, &mut Unwatched).unwrap();
                    assert_eq!((given.top, given.recomputed), (got.top, got.recomputed), "{what}, k={k}: scores given");
                    assert!(given.scores_given && !got.scores_given);
                    if let Some(doubt) = doubt {
                        assert_eq!(got.recomputed > 0, doubt, "{what}, k={k}: {} rows recomputed", got.recomputed);
                    }
                }
            }
        }
    }
}
