//! A BLIS-style AVX2/FMA micro-kernel (6 rows × 16 columns per call) over packed panels, for
//! the CPU backend's fused product + top-k. Packing the `b` side once per call removes the
//! repacking that a general GEMM does for every tile, and the 6 × 16 scores come back from
//! registers straight to the top-k filter, never through memory-sized tiles.
//!
//! Each score is accumulated over the dimension in one fixed order, whatever the tiling, so
//! results do not depend on how work is split.

/// Rows of `a` per micro-kernel call.
pub const MR: usize = 6;
/// Columns (rows of `b`) per micro-kernel call.
pub const NR: usize = 16;

/// Whether this CPU can run the kernel.
pub fn available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Rows laid out in panels of `width` rows: panel `i` holds, for each dimension `p`, the
/// `width` values `x[i*width + r][p]` side by side. Missing rows of the last panel are zeros.
/// Panels are filled in parallel on the current rayon pool.
pub fn pack(rows: &[f32], d: usize, width: usize) -> Vec<f32> {
    use rayon::prelude::*;
    let panels = (rows.len() / d).div_ceil(width);
    let mut out = vec![0f32; panels * width * d];
    huge_pages(&mut out);
    out.par_chunks_mut(width * d)
        .zip(rows.par_chunks(width * d))
        .for_each(|(panel, src)| fill_panel(panel, src, d, width));
    out
}

/// [`pack`] without a copy: the whole panels of `rows` (each `width` consecutive rows) are
/// rearranged where they lie and kept; the rows after the last whole panel are cut off and
/// come back as one packed, zero-padded panel (empty when there are none).
pub fn pack_in_place(rows: &mut Vec<f32>, d: usize, width: usize) -> Vec<f32> {
    use rayon::prelude::*;
    let whole = rows.len() / (width * d) * (width * d);
    rows[..whole].par_chunks_mut(width * d).for_each_init(
        || vec![0f32; width * d],
        |copy, panel| {
            copy.copy_from_slice(panel);
            fill_panel(panel, copy, d, width);
        },
    );
    let tail = pack(&rows[whole..], d, width);
    rows.truncate(whole);
    tail
}

/// Writes the rows of `src` (at most `width` rows of `d` values) into `panel` in panel order.
fn fill_panel(panel: &mut [f32], src: &[f32], d: usize, width: usize) {
    for (r, values) in src.chunks_exact(d).enumerate() {
        for (p, &v) in values.iter().enumerate() {
            panel[p * width + r] = v;
        }
    }
}

/// Asks the kernel to back `buf` with transparent huge pages where it can (before it is first
/// written): fewer page faults and TLB misses over a large packed side.
fn huge_pages(buf: &mut [f32]) {
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

/// `out[r*NR + c] = Σ_p a[p*MR + r] · b[p*NR + c] − off[c]` for one packed `a` panel (MR × d)
/// and one packed `b` panel (NR × d). Returns bit `r*NR + c` set where `out[r*NR + c]` is
/// above `thr[r]`, so the caller looks at those scores only (rarely, once thresholds settle).
///
/// Meanwhile it asks the CPU to load `ahead` into cache, one 64-byte line per four dimensions
/// (the caller passes a share of the `b` panel it will need next, so that panel is not
/// waited for).
///
/// # Safety
/// The CPU must support AVX2 and FMA ([`available`]); `a` must hold `MR*d` and `b` `NR*d` values.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
pub unsafe fn micro_kernel(
    d: usize,
    a: &[f32],
    b: &[f32],
    off: &[f32; NR],
    thr: &[f32; MR],
    out: &mut [f32; MR * NR],
    ahead: &[f32],
) -> u128 {
    use std::arch::x86_64::*;
    debug_assert!(a.len() >= MR * d && b.len() >= NR * d);
    let (a, b) = (a.as_ptr(), b.as_ptr());
    let mut c = [[_mm256_setzero_ps(); 2]; MR];
    let step = |c: &mut [[__m256; 2]; MR], p: usize| {
        let b0 = _mm256_loadu_ps(b.add(p * NR));
        let b1 = _mm256_loadu_ps(b.add(p * NR + 8));
        for (r, acc) in c.iter_mut().enumerate() {
            let av = _mm256_broadcast_ss(&*a.add(p * MR + r));
            acc[0] = _mm256_fmadd_ps(av, b0, acc[0]);
            acc[1] = _mm256_fmadd_ps(av, b1, acc[1]);
        }
    };
    // Four dimensions per loop turn (fewer branches and pointer updates), same order of sums.
    let mut p = 0;
    while p + 4 <= d {
        if 4 * p < ahead.len() {
            _mm_prefetch::<_MM_HINT_T0>(ahead.as_ptr().add(4 * p).cast());
        }
        for u in 0..4 {
            step(&mut c, p + u);
        }
        p += 4;
    }
    while p < d {
        step(&mut c, p);
        p += 1;
    }
    let (o0, o1) = (_mm256_loadu_ps(off.as_ptr()), _mm256_loadu_ps(off.as_ptr().add(8)));
    let mut hits = 0u128;
    for (r, acc) in c.iter().enumerate() {
        let (v0, v1) = (_mm256_sub_ps(acc[0], o0), _mm256_sub_ps(acc[1], o1));
        _mm256_storeu_ps(out.as_mut_ptr().add(r * NR), v0);
        _mm256_storeu_ps(out.as_mut_ptr().add(r * NR + 8), v1);
        let t = _mm256_set1_ps(thr[r]);
        let low = _mm256_movemask_ps(_mm256_cmp_ps::<_CMP_GT_OQ>(v0, t)) as u128;
        let high = _mm256_movemask_ps(_mm256_cmp_ps::<_CMP_GT_OQ>(v1, t)) as u128;
        hits |= (low | high << 8) << (r * NR);
    }
    hits
}

/// Portable stand-in with the same contract, for targets without the kernel (never called
/// there: [`available`] is false).
///
/// # Safety
/// Same contract as the x86-64 kernel.
#[cfg(not(target_arch = "x86_64"))]
pub unsafe fn micro_kernel(
    d: usize,
    a: &[f32],
    b: &[f32],
    off: &[f32; NR],
    thr: &[f32; MR],
    out: &mut [f32; MR * NR],
    _ahead: &[f32],
) -> u128 {
    let mut hits = 0;
    for r in 0..MR {
        for c in 0..NR {
            let v = (0..d).map(|p| a[p * MR + r] * b[p * NR + c]).sum::<f32>() - off[c];
            out[r * NR + c] = v;
            hits |= u128::from(v > thr[r]) << (r * NR + c);
        }
    }
    hits
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packing_in_place_equals_packing_a_copy() {
        for rows in [0, 1, 15, 16, 17, 40, 48] {
            let d = 5;
            let x: Vec<f32> = (0..rows * d).map(|i| i as f32).collect();
            let mut in_place = x.clone();
            let tail = pack_in_place(&mut in_place, d, NR);
            in_place.extend_from_slice(&tail);
            assert_eq!(in_place, pack(&x, d, NR), "{rows} rows");
        }
    }

    #[test]
    fn kernel_equals_plain_dot_products() {
        if !available() {
            return;
        }
        let d = 37;
        let a: Vec<f32> = (0..4 * d).map(|i| ((i * 7) % 11) as f32 - 5.0).collect();
        let b: Vec<f32> = (0..13 * d).map(|i| ((i * 5) % 13) as f32 - 6.0).collect();
        let (pa, pb) = (pack(&a, d, MR), pack(&b, d, NR));
        let mut out = [0f32; MR * NR];
        let off: [f32; NR] = std::array::from_fn(|c| c as f32);
        let thr = [1e9, -1e9, 1e9, 0.0, 1e9, 1e9];
        let hits = unsafe { micro_kernel(d, &pa, &pb, &off, &thr, &mut out, &pb) };
        for r in 0..MR {
            for c in 0..NR {
                let dot: f32 = if r < 4 && c < 13 { (0..d).map(|p| a[r * d + p] * b[c * d + p]).sum() } else { 0.0 };
                let v = out[r * NR + c];
                assert_eq!(v, dot - c as f32, "r={r} c={c}");
                assert_eq!(hits >> (r * NR + c) & 1 == 1, v > thr[r], "hit bit r={r} c={c}");
            }
        }
        assert_eq!(hits >> NR & 0xffff, 0xffff, "row 1 is above -1e9 everywhere");
    }
}
