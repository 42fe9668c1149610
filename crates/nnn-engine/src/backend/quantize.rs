//! Rows rounded to 16-bit integers in kernel panels, for the CPU kernel's first pass, and the
//! bound that keeps that pass a safe filter.
//!
//! A row `x` becomes `q = round(σ·x)` with `‖q‖ ≤ 45,000` and `|q_i| ≤ 32,767`, so every
//! partial sum of `Σ qa_i·qb_i` fits an `i32` (Cauchy–Schwarz) and the integer products are
//! exact. `S/(σa·σb)` then differs from the f32 dot product by at most [`margin`]; the scores
//! that can still make the top k are recomputed in f32, so results never depend on the rounding.

use rayon::prelude::*;

/// Largest `‖q‖`: below `2^15.5`, so `‖qa‖·‖qb‖ < 2^31` even after rounding.
const NORM: f64 = 45_000.0;
/// Rows whose norm lies outside this range (or is not finite) are not rounded: the kernel's
/// f32 multipliers `1/σ` and their products would lose precision.
const NORM_RANGE: (f64, f64) = (1e-9, 1e9);

/// Whether a row of norm `norm` (in f64) is surely rounded (not refused by [`NORM_RANGE`],
/// whose test uses an f32 sum: a margin of 1 % on either side covers that sum's rounding).
pub fn roundable(norm: f64) -> bool {
    norm == 0.0 || (NORM_RANGE.0 * 1.01..=NORM_RANGE.1 * 0.99).contains(&norm)
}
/// Unit roundoff of f32.
const U: f64 = f32::EPSILON as f64 / 2.0;

/// How one row was rounded, in the row's own units.
#[derive(Debug, Clone, Copy, Default)]
pub struct RowScale {
    /// `1/σ` (0 for a zero row): multiplies the integer product back to the row's units.
    pub inv: f32,
    /// `‖x‖`.
    pub norm: f64,
    /// `‖q‖/σ`.
    pub rounded_norm: f64,
    /// `‖σ·x − q‖/σ`: how far rounding moved the row.
    pub error: f64,
}

/// The largest of each [`RowScale`] field over a set of rows.
#[derive(Debug, Clone, Copy, Default)]
pub struct Extremes {
    /// Largest `‖x‖`.
    pub norm: f64,
    /// Largest `‖q‖/σ`.
    pub rounded_norm: f64,
    /// Largest rounding error.
    pub error: f64,
}

/// Rows rounded to `i16` in panels of `width` rows: panel `i` holds, for each pair of
/// dimensions `p`, the rows' values `(q[2p], q[2p+1])` side by side (what `vpmaddwd` pairs up).
/// Missing rows and the odd dimension's partner are zeros.
pub struct Quantized {
    /// All panels, one after another.
    pub panels: Vec<i16>,
    /// Per row, padded with zero-row scales to whole panels.
    pub scales: Vec<RowScale>,
    /// `1/σ` per row, padded alike (the kernel reads `width` at a time).
    pub inv: Vec<f32>,
    /// Pairs of dimensions: `⌈d/2⌉`.
    pub pairs: usize,
    /// Rows per panel.
    pub width: usize,
    /// The largest norms and rounding error over all rows (found once, when rounding).
    pub extremes: Extremes,
}

impl Quantized {
    /// Rounds `rows` (each `d` values) on the current rayon pool; `None` when a row's norm is
    /// not finite or outside 1e-9 … 1e9 (callers then use the f32 path).
    pub fn new(rows: &[f32], d: usize, width: usize) -> Option<Self> {
        let pairs = d.div_ceil(2);
        let panel_len = pairs * 2 * width;
        let n_panels = (rows.len() / d).div_ceil(width);
        let mut panels = vec![0i16; n_panels * panel_len];
        huge_pages(&mut panels);
        let mut scales = vec![RowScale::default(); n_panels * width];
        let ok =
            panels.par_chunks_mut(panel_len).zip(scales.par_chunks_mut(width)).zip(rows.par_chunks(width * d)).all(
                |((panel, scales), src)| {
                    src.chunks_exact(d)
                        .zip(scales.iter_mut())
                        .enumerate()
                        .all(|(r, (x, scale))| round_row(x, panel, r, width).map(|s| *scale = s).is_some())
                },
            );
        let inv = scales.iter().map(|s| s.inv).collect();
        let extremes = scales.iter().fold(Extremes::default(), |e, s| Extremes {
            norm: e.norm.max(s.norm),
            rounded_norm: e.rounded_norm.max(s.rounded_norm),
            error: e.error.max(s.error),
        });
        ok.then_some(Self { panels, scales, inv, pairs, width, extremes })
    }

    /// Panel `i`.
    pub fn panel(&self, i: usize) -> &[i16] {
        let len = self.pairs * 2 * self.width;
        &self.panels[i * len..(i + 1) * len]
    }
}

/// Asks the kernel to back `buf` with transparent huge pages where it can (before it is first
/// written): fewer page faults and TLB misses over a large packed side.
fn huge_pages(buf: &mut [i16]) {
    #[cfg(target_os = "linux")]
    {
        const HUGE: usize = 2 << 20;
        let start = (buf.as_mut_ptr() as usize).next_multiple_of(HUGE);
        let end = (buf.as_mut_ptr() as usize + std::mem::size_of_val(buf)) / HUGE * HUGE;
        if end > start {
            // SAFETY: advice only, on whole pages inside the buffer.
            unsafe { libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_HUGEPAGE) };
        }
    }
}

/// Rounds row `r` of a panel of `width` rows into `panel` (zeros there already); `None` for a
/// norm out of range, or where the 16-bit kernel does not exist (callers check
/// [`super::kernel::available`] first).
fn round_row(x: &[f32], panel: &mut [i16], r: usize, width: usize) -> Option<RowScale> {
    #[cfg(target_arch = "x86_64")]
    if super::kernel::available() {
        // SAFETY: the CPU has AVX2 and FMA.
        return unsafe { round_row_avx2(x, panel, r, width) };
    }
    let _ = (x, panel, r, width);
    None
}

/// [`round_row`] with AVX2: eight running sums in f32, whose own rounding (relative ~1e-5
/// at most for these lengths) [`SUM_SAFETY`] covers.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn round_row_avx2(x: &[f32], panel: &mut [i16], r: usize, width: usize) -> Option<RowScale> {
    // SAFETY: only called where `kernel::available()` (AVX2 and FMA); loads stay within `x`.
    unsafe {
        use std::arch::x86_64::*;
        // Eight values from `i` on, zeros past the end.
        let load = |i: usize| {
            if i + 8 <= x.len() {
                _mm256_loadu_ps(x.as_ptr().add(i))
            } else {
                let mut tail = [0f32; 8];
                tail[..x.len() - i].copy_from_slice(&x[i..]);
                _mm256_loadu_ps(tail.as_ptr())
            }
        };
        let lanes = |v: __m256| {
            let mut out = [0f32; 8];
            _mm256_storeu_ps(out.as_mut_ptr(), v);
            out
        };
        let sum = |v: __m256| lanes(v).iter().sum::<f32>();
        let (mut squares, mut largest) = (_mm256_setzero_ps(), _mm256_setzero_ps());
        for i in (0..x.len()).step_by(8) {
            let v = load(i);
            squares = _mm256_fmadd_ps(v, v, squares);
            largest = _mm256_max_ps(largest, _mm256_andnot_ps(_mm256_set1_ps(-0.0), v));
        }
        let norm = f64::from(sum(squares)).sqrt();
        let largest = f64::from(lanes(largest).iter().fold(0f32, |m, &v| m.max(v)));
        if !norm.is_finite() {
            return None;
        }
        if largest == 0.0 {
            return Some(RowScale::default());
        }
        // (a tiny row whose squares vanish in f32 has norm 0 here: out of range too)
        if !(NORM_RANGE.0..=NORM_RANGE.1).contains(&norm) {
            return None;
        }
        let sigma = (NORM / norm).min(f64::from(i16::MAX - 1) / largest) as f32;
        let s = _mm256_set1_ps(sigma);
        let (mut rounded, mut error) = (_mm256_setzero_ps(), _mm256_setzero_ps());
        for i in (0..x.len()).step_by(8) {
            let v = load(i);
            let near = _mm256_round_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(_mm256_mul_ps(s, v));
            let moved = _mm256_fmsub_ps(s, v, near);
            rounded = _mm256_fmadd_ps(near, near, rounded);
            error = _mm256_fmadd_ps(moved, moved, error);
            let ints = _mm256_cvtps_epi32(near);
            // four pairs of dimensions, each an i32 lane, to their places in the panel
            let pairs = _mm_packs_epi32(_mm256_castsi256_si128(ints), _mm256_extracti128_si256::<1>(ints));
            let words = [
                _mm_extract_epi32::<0>(pairs),
                _mm_extract_epi32::<1>(pairs),
                _mm_extract_epi32::<2>(pairs),
                _mm_extract_epi32::<3>(pairs),
            ];
            for (j, &two) in words.iter().enumerate().take((x.len() - i).div_ceil(2)) {
                let at = ((i / 2 + j) * width + r) * 2;
                panel[at] = two as i16;
                panel[at + 1] = (two >> 16) as i16;
            }
        }
        let root = |v| SUM_SAFETY * f64::from(sum(v)).sqrt() / f64::from(sigma);
        Some(RowScale {
            inv: (1.0 / f64::from(sigma)) as f32,
            norm: SUM_SAFETY * norm,
            rounded_norm: root(rounded),
            error: root(error),
        })
    }
}

/// Factor on the norms [`round_row_avx2`] reports, for the f32 rounding of its sums.
const SUM_SAFETY: f64 = 1.001;

/// How far apart the kernel's estimate `S·inv_a·inv_b − off` and the f32 score
/// `fl(a·b − off)` ([`super::kernel::dot`]) can be, for row `a` against any row of a set with
/// extremes `b`, dimension `d` and offsets at most `off_max` in size.
///
/// The estimate's distance to the exact dot product is at most `‖qa‖/σa·eb + ea·‖b‖` (the
/// rounding errors through Cauchy–Schwarz); the f32 dot product's at most `γ_d·‖a‖·‖b‖`;
/// the estimate's own f32 arithmetic and the subtraction of the offset add a few roundings of
/// numbers no larger than `‖a‖·‖b‖ + off_max`. The sum is doubled for safety: a larger margin
/// only costs a few more exact recomputations.
pub fn margin(a: &RowScale, b: &Extremes, d: usize, off_max: f64) -> f64 {
    let gamma = d as f64 * U / (1.0 - d as f64 * U);
    let rounding = a.rounded_norm * b.error + a.error * b.norm;
    let f32_dot = gamma * a.norm * b.norm;
    let size = a.rounded_norm.max(a.norm) * b.rounded_norm.max(b.norm) + rounding + off_max;
    2.0 * (rounding + f32_dot + 8.0 * U * size) + f64::from(f32::MIN_POSITIVE)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounding_keeps_products_in_range_and_reports_its_error() {
        let d = 7;
        let rows: Vec<f32> = vec![
            1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, // one dominant value: |q_i| ≤ 32767 binds
            0.5, -0.25, 3.0, 1e-3, -2.0, 0.75, 0.1, // a general row
            0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, // zero row
        ];
        let q = Quantized::new(&rows, d, 2).unwrap();
        assert_eq!((q.pairs, q.panels.len(), q.scales.len()), (4, 2 * 4 * 2 * 2, 4));
        for (r, x) in rows.chunks_exact(d).enumerate() {
            let panel = q.panel(r / 2);
            let qs: Vec<i16> = (0..d).map(|i| panel[(i / 2 * 2 + r % 2) * 2 + i % 2]).collect();
            let s = q.scales[r];
            let norm_q = qs.iter().map(|&v| f64::from(v).powi(2)).sum::<f64>().sqrt();
            assert!(norm_q <= NORM + 0.5 * (d as f64).sqrt(), "row {r}: ‖q‖ = {norm_q}");
            let err = x.iter().zip(&qs).map(|(&v, &q)| (f64::from(v) - f64::from(q) * f64::from(s.inv)).powi(2));
            let err = err.sum::<f64>().sqrt();
            // (1/σ is rounded to f32: a relative 6e-8 more, outside what `error` measures)
            assert!(err <= s.error * 1.001 + 1e-7 * s.norm, "row {r}: moved {err}, reported {}", s.error);
        }
        assert_eq!(q.panel(0)[..2], [i16::MAX - 1, 0], "dominant value at the int16 limit");
        assert_eq!(q.scales[2].inv, 0.0, "zero row");
        assert!(Quantized::new(&[f32::NAN, 0.0], 2, 2).is_none());
        assert!(Quantized::new(&[1e-20, 0.0], 2, 2).is_none());
    }
}
