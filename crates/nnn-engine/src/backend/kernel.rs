//! The CPU backend's kernels: a BLIS-style AVX2 micro-kernel (6 rows × 16 columns per call)
//! over rows rounded to 16-bit integers, which only filters, and the f32 dot product that
//! gives every score the filter lets through. `vpmaddwd` does twice the multiply-adds per
//! instruction of an f32 FMA; the filter's bound ([`super::quantize::margin`]) makes sure it
//! never drops a score that belongs in the top k. Where the CPU has them, the same kernel with
//! AVX-VNNI (`vpdpwssd`: products and sum in one instruction) or in 512-bit registers with
//! AVX-512 VNNI runs instead ([`kernels`]); the integer sums are exact, so every table gives
//! the same results bit for bit.
//!
//! Every score is the same f32 computation ([`dot`]) whatever the tiling or thread count.

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

/// Whether this CPU has AVX-VNNI, with which the micro-kernel fuses each pair product into its
/// sum (`vpdpwssd`): the same exact integer sums, half the instructions.
pub fn has_vnni() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        available() && is_x86_feature_detected!("avxvnni")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// The micro-kernels for the first `R` rows of a panel, by `R − 1`: a panel with fewer live
/// rows (a single query, the last panel of a batch) does only their work.
pub static KERNELS: [Kernel; MR] =
    [micro_kernel::<1>, micro_kernel::<2>, micro_kernel::<3>, micro_kernel::<4>, micro_kernel::<5>, micro_kernel::<6>];

/// [`KERNELS`] with AVX-VNNI ([`has_vnni`]).
#[cfg(target_arch = "x86_64")]
pub static KERNELS_VNNI: [Kernel; MR] = [
    micro_kernel_vnni::<1>,
    micro_kernel_vnni::<2>,
    micro_kernel_vnni::<3>,
    micro_kernel_vnni::<4>,
    micro_kernel_vnni::<5>,
    micro_kernel_vnni::<6>,
];

/// Whether this CPU has AVX-512 with VNNI, for [`micro_kernel_zmm`]: 512-bit registers hold a
/// whole panel row of 16 columns, so each instruction does twice the work of the 256-bit
/// kernels' (where the CPU executes 512 bits at once, as AMD's Zen 5 does).
pub fn has_zmm() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        available()
            && is_x86_feature_detected!("avx512f")
            && is_x86_feature_detected!("avx512bw")
            && is_x86_feature_detected!("avx512vnni")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// [`KERNELS`] with AVX-512 and its VNNI ([`has_zmm`]).
#[cfg(target_arch = "x86_64")]
pub static KERNELS_ZMM: [Kernel; MR] = [
    micro_kernel_zmm::<1>,
    micro_kernel_zmm::<2>,
    micro_kernel_zmm::<3>,
    micro_kernel_zmm::<4>,
    micro_kernel_zmm::<5>,
    micro_kernel_zmm::<6>,
];

/// The micro-kernels this CPU runs best; every table gives the same results bit for bit.
pub fn kernels() -> &'static [Kernel; MR] {
    #[cfg(target_arch = "x86_64")]
    if has_zmm() {
        return &KERNELS_ZMM;
    }
    #[cfg(target_arch = "x86_64")]
    if has_vnni() {
        return &KERNELS_VNNI;
    }
    &KERNELS
}

/// The signature of [`micro_kernel`].
pub type Kernel = unsafe fn(
    usize,
    &[i16],
    &[i16],
    (&[f32; MR], &[f32; MR]),
    (&[f32; NR], &[f32; NR]),
    &mut [f32; MR * NR],
    &[i16],
) -> u128;

/// The micro-kernels' walk over the `pairs` pairs of dimensions: two per turn, `$even` for
/// pair `$p` and `$odd` for pair `$p + 1` (each written in terms of `$p`), with one prefetch of
/// `ahead` (a 64-byte line) per turn; a last odd pair goes through `$even`. Expands in the
/// kernel's body, under its CPU features.
macro_rules! for_pairs {
    ($pairs:expr, $ahead:expr, |$p:ident| $even:expr, $odd:expr) => {{
        let mut $p = 0;
        while $p + 2 <= $pairs {
            if 16 * $p < $ahead.len() {
                _mm_prefetch::<_MM_HINT_T0>($ahead.as_ptr().add(16 * $p).cast());
            }
            $even;
            $odd;
            $p += 2;
        }
        if $p < $pairs {
            $even;
        }
    }};
}

/// Defines a micro-kernel compiled with CPU `$features`; `$vnni` fuses each pair product into
/// its sum with AVX-VNNI's `vpdpwssd` (the same exact integer sums as `vpmaddwd` + `vpaddd`).
macro_rules! micro_kernel {
    ($(#[$meta:meta])* $name:ident, $features:literal, $vnni:literal) => {
        $(#[$meta])*
        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = $features)]
        pub unsafe fn $name<const R: usize>(
            pairs: usize,
            a: &[i16],
            b: &[i16],
            (a_inv, floor): (&[f32; MR], &[f32; MR]),
            (b_inv, off): (&[f32; NR], &[f32; NR]),
            out: &mut [f32; MR * NR],
            ahead: &[i16],
        ) -> u128 {
            // SAFETY: the caller guarantees the CPU features and the panel lengths (# Safety).
            unsafe {
                use std::arch::x86_64::*;
                debug_assert!(R <= MR && a.len() >= MR * 2 * pairs && b.len() >= NR * 2 * pairs);
                let (a, b) = (a.as_ptr(), b.as_ptr());
                let mut c = [[_mm256_setzero_si256(); 2]; R];
                let step = |c: &mut [[__m256i; 2]; R], p: usize| {
                    let b0 = _mm256_loadu_si256(b.add(p * 2 * NR).cast());
                    let b1 = _mm256_loadu_si256(b.add(p * 2 * NR + 16).cast());
                    for (r, acc) in c.iter_mut().enumerate() {
                        let av = _mm256_set1_epi32(a.add((p * MR + r) * 2).cast::<i32>().read_unaligned());
                        if $vnni {
                            // one instruction for the pair products and their sum into the accumulator
                            acc[0] = _mm256_dpwssd_avx_epi32(acc[0], av, b0);
                            acc[1] = _mm256_dpwssd_avx_epi32(acc[1], av, b1);
                        } else {
                            acc[0] = _mm256_add_epi32(acc[0], _mm256_madd_epi16(av, b0));
                            acc[1] = _mm256_add_epi32(acc[1], _mm256_madd_epi16(av, b1));
                        }
                    }
                };
                for_pairs!(pairs, ahead, |p| step(&mut c, p), step(&mut c, p + 1));
                let (i0, i1) = (_mm256_loadu_ps(b_inv.as_ptr()), _mm256_loadu_ps(b_inv.as_ptr().add(8)));
                let (o0, o1) = (_mm256_loadu_ps(off.as_ptr()), _mm256_loadu_ps(off.as_ptr().add(8)));
                let mut hits = 0u128;
                for (r, acc) in c.iter().enumerate() {
                    let ar = _mm256_set1_ps(a_inv[r]);
                    let v0 = _mm256_fmsub_ps(_mm256_cvtepi32_ps(acc[0]), _mm256_mul_ps(ar, i0), o0);
                    let v1 = _mm256_fmsub_ps(_mm256_cvtepi32_ps(acc[1]), _mm256_mul_ps(ar, i1), o1);
                    _mm256_storeu_ps(out.as_mut_ptr().add(r * NR), v0);
                    _mm256_storeu_ps(out.as_mut_ptr().add(r * NR + 8), v1);
                    let t = _mm256_set1_ps(floor[r]);
                    let low = _mm256_movemask_ps(_mm256_cmp_ps::<_CMP_GT_OQ>(v0, t)) as u128;
                    let high = _mm256_movemask_ps(_mm256_cmp_ps::<_CMP_GT_OQ>(v1, t)) as u128;
                    hits |= (low | high << 8) << (r * NR);
                }
                hits
            }
        }
    };
}

micro_kernel!(
    /// For the first `R ≤ MR` rows of one packed `a` panel and one packed `b` panel (NR rows) of
    /// 16-bit rows ([`super::quantize::Quantized`], `pairs` pairs of dimensions each), the integer
    /// products `S[r][c]`, exact in `i32`, and the estimates
    /// `out[r*NR + c] = S·(a_inv[r]·b_inv[c]) − off[c]`. Returns bit `r*NR + c` set where the
    /// estimate is above `floor[r]`, so the caller looks at those only (rarely, once floors
    /// settle). Rows from `R` on are neither computed nor flagged.
    ///
    /// Meanwhile it asks the CPU to load `ahead` into cache, one 64-byte line per two pairs (the
    /// caller passes a share of the `b` panel it will need next, so that panel is not waited for).
    ///
    /// # Safety
    /// The CPU must support AVX2 and FMA ([`available`]); `a` must hold `MR*2*pairs` and `b`
    /// `NR*2*pairs` values.
    micro_kernel,
    "avx2,fma",
    false
);

micro_kernel!(
    /// [`micro_kernel`] with AVX-VNNI's fused pair products: the same integer sums, so the
    /// same results bit for bit.
    ///
    /// # Safety
    /// As [`micro_kernel`], and the CPU must support AVX-VNNI ([`has_vnni`]).
    micro_kernel_vnni,
    "avx2,fma,avxvnni",
    true
);

/// [`micro_kernel`] in 512-bit registers with AVX-512 VNNI: one register holds a row's sums for
/// all 16 columns, and alternate pairs of dimensions go to two sets of sums (twelve independent
/// chains keep the fused multiply-adds busy), added at the end. Integer sums are exact in any
/// order (every partial sum of a subset of pairs is within `‖qa‖·‖qb‖ < 2^31` too), and the
/// estimate is the same f32 arithmetic per column, so the results are those of
/// [`micro_kernel`] bit for bit.
///
/// # Safety
/// As [`micro_kernel`], and the CPU must support AVX-512 F, BW and VNNI ([`has_zmm`]).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,avx512f,avx512bw,avx512vnni")]
pub unsafe fn micro_kernel_zmm<const R: usize>(
    pairs: usize,
    a: &[i16],
    b: &[i16],
    (a_inv, floor): (&[f32; MR], &[f32; MR]),
    (b_inv, off): (&[f32; NR], &[f32; NR]),
    out: &mut [f32; MR * NR],
    ahead: &[i16],
) -> u128 {
    // SAFETY: the caller guarantees the CPU features and the panel lengths (# Safety).
    unsafe {
        use std::arch::x86_64::*;
        debug_assert!(R <= MR && a.len() >= MR * 2 * pairs && b.len() >= NR * 2 * pairs);
        let (a, b) = (a.as_ptr(), b.as_ptr());
        let mut even = [_mm512_setzero_si512(); R];
        let mut odd = [_mm512_setzero_si512(); R];
        let step = |c: &mut [__m512i; R], p: usize| {
            let bv = _mm512_loadu_si512(b.add(p * 2 * NR).cast());
            for (r, acc) in c.iter_mut().enumerate() {
                let av = _mm512_set1_epi32(a.add((p * MR + r) * 2).cast::<i32>().read_unaligned());
                *acc = _mm512_dpwssd_epi32(*acc, av, bv);
            }
        };
        for_pairs!(pairs, ahead, |p| step(&mut even, p), step(&mut odd, p + 1));
        let inv = _mm512_loadu_ps(b_inv.as_ptr());
        let o = _mm512_loadu_ps(off.as_ptr());
        let mut hits = 0u128;
        for r in 0..R {
            let sums = _mm512_add_epi32(even[r], odd[r]);
            let v = _mm512_fmsub_ps(_mm512_cvtepi32_ps(sums), _mm512_mul_ps(_mm512_set1_ps(a_inv[r]), inv), o);
            _mm512_storeu_ps(out.as_mut_ptr().add(r * NR), v);
            let above = _mm512_cmp_ps_mask::<_CMP_GT_OQ>(v, _mm512_set1_ps(floor[r]));
            hits |= u128::from(above) << (r * NR);
        }
        hits
    }
}

/// Portable stand-in with the same contract, for targets without the kernel (never called
/// there: [`available`] is false).
///
/// # Safety
/// Same contract as the x86-64 kernel.
#[cfg(not(target_arch = "x86_64"))]
pub unsafe fn micro_kernel<const R: usize>(
    pairs: usize,
    a: &[i16],
    b: &[i16],
    (a_inv, floor): (&[f32; MR], &[f32; MR]),
    (b_inv, off): (&[f32; NR], &[f32; NR]),
    out: &mut [f32; MR * NR],
    _ahead: &[i16],
) -> u128 {
    let mut hits = 0;
    for r in 0..R {
        for c in 0..NR {
            let s: i32 = (0..2 * pairs)
                .map(|i| i32::from(a[(i / 2 * MR + r) * 2 + i % 2]) * i32::from(b[(i / 2 * NR + c) * 2 + i % 2]))
                .sum();
            let v = (s as f32).mul_add(a_inv[r] * b_inv[c], -off[c]);
            out[r * NR + c] = v;
            hits |= u128::from(v > floor[r]) << (r * NR + c);
        }
    }
    hits
}

/// The f32 inner product `x·y` in one fixed order (32 running sums over the dimension, then
/// a fixed reduction), wherever it is called from: the CPU backend's exact score.
///
/// # Safety
/// The CPU must support AVX2 and FMA ([`available`]); `x` and `y` have equal length.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
pub unsafe fn dot(x: &[f32], y: &[f32]) -> f32 {
    // SAFETY: the caller guarantees AVX2 and FMA and equal lengths (see # Safety).
    unsafe {
        use std::arch::x86_64::*;
        debug_assert_eq!(x.len(), y.len());
        let n = x.len();
        let (xp, yp) = (x.as_ptr(), y.as_ptr());
        let mut acc = [_mm256_setzero_ps(); 4];
        let mut i = 0;
        while i + 32 <= n {
            for (j, a) in acc.iter_mut().enumerate() {
                *a = _mm256_fmadd_ps(_mm256_loadu_ps(xp.add(i + 8 * j)), _mm256_loadu_ps(yp.add(i + 8 * j)), *a);
            }
            i += 32;
        }
        while i + 8 <= n {
            acc[0] = _mm256_fmadd_ps(_mm256_loadu_ps(xp.add(i)), _mm256_loadu_ps(yp.add(i)), acc[0]);
            i += 8;
        }
        let v = _mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3]));
        let v = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
        let v = _mm_add_ps(v, _mm_movehl_ps(v, v));
        let mut s = _mm_cvtss_f32(_mm_add_ss(v, _mm_movehdup_ps(v)));
        while i < n {
            s = x[i].mul_add(y[i], s);
            i += 1;
        }
        s
    }
}

/// Asks the CPU to start loading `x` into cache (all of its 64-byte lines), so that a later
/// [`dot`] over it does not wait for memory.
pub fn prefetch(x: &[f32]) {
    #[cfg(target_arch = "x86_64")]
    for line in x.chunks(16) {
        // SAFETY: a prefetch is only a hint; the address lies inside `x`.
        unsafe { std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(line.as_ptr().cast()) };
    }
}

/// Portable stand-in for [`dot`] (never called: [`available`] is false there).
///
/// # Safety
/// Same contract as the x86-64 version.
#[cfg(not(target_arch = "x86_64"))]
pub unsafe fn dot(x: &[f32], y: &[f32]) -> f32 {
    x.iter().zip(y).fold(0.0, |s, (a, b)| a.mul_add(*b, s))
}

#[cfg(test)]
mod tests {
    use super::super::quantize::Quantized;
    use super::*;

    /// The kernel of `table` for `live` rows on the first panels of `qa` and `qb`.
    ///
    /// # Safety
    /// The CPU must have the table's features; both sets hold at least one whole panel.
    unsafe fn call(
        table: &[Kernel; MR],
        live: usize,
        (qa, qb): (&Quantized, &Quantized),
        row: (&[f32; MR], &[f32; MR]),
        col: (&[f32; NR], &[f32; NR]),
        out: &mut [f32; MR * NR],
    ) -> u128 {
        // SAFETY: as this function's contract; the panels hold MR and NR rows of `pairs`.
        unsafe { table[live - 1](qa.pairs, qa.panel(0), qb.panel(0), row, col, out, qb.panel(0)) }
    }

    /// Asserts that `table` gives [`KERNELS`]' hits and estimates bit for bit, for every number
    /// of live rows, on odd and even dimensions (a half-filled last pair), tiny and huge rows,
    /// and the largest sums (a row of `b` equal to a row of `a`).
    ///
    /// # Safety
    /// The CPU must have the table's features.
    unsafe fn assert_same_as_plain(table: &[Kernel; MR]) {
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        let mut values = |n: usize, scale: f32| -> Vec<f32> {
            (0..n)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    scale * ((state >> 40) as f32 / (1u64 << 23) as f32 - 1.0)
                })
                .collect()
        };
        for (d, scale) in [(1, 1.0), (2, 1.0), (3, 1.0), (37, 1.0), (384, 1e-3), (385, 1e4), (64, 1.0)] {
            let (a, mut b) = (values(MR * d, scale), values(NR * d, scale));
            b[..d].copy_from_slice(&a[..d]);
            let (qa, qb) = (Quantized::new(&a, d, MR).unwrap(), Quantized::new(&b, d, NR).unwrap());
            let a_inv: &[f32; MR] = qa.inv[..MR].try_into().unwrap();
            let b_inv: &[f32; NR] = qb.inv[..NR].try_into().unwrap();
            let off: [f32; NR] = std::array::from_fn(|c| c as f32 * 0.01);
            let floor: [f32; MR] = std::array::from_fn(|r| r as f32 * 0.1 - 0.2);
            for live in 1..=MR {
                let run = |table: &[Kernel; MR]| {
                    let mut out = [0f32; MR * NR];
                    // SAFETY: the caller guarantees the table's features; KERNELS need less.
                    let hits = unsafe { call(table, live, (&qa, &qb), (a_inv, &floor), (b_inv, &off), &mut out) };
                    (hits, out.map(f32::to_bits))
                };
                assert_eq!(run(table), run(&KERNELS), "d = {d}, scale {scale}, {live} live rows");
            }
        }
    }

    #[test]
    #[ignore = "needs AVX-VNNI: make test runs it (--ignored vnni) where the CPU has it"]
    fn vnni_kernels_give_the_plain_kernels_results_bit_for_bit() {
        assert!(has_vnni(), "this CPU has no AVX-VNNI");
        assert!(!std::ptr::eq(kernels(), &KERNELS), "a fused kernel is the one used");
        // SAFETY: AVX2 and AVX-VNNI asserted above.
        unsafe { assert_same_as_plain(&KERNELS_VNNI) };
    }

    #[test]
    #[ignore = "needs AVX-512 VNNI: make test runs it (--ignored zmm) where the CPU has it"]
    fn zmm_kernels_give_the_plain_kernels_results_bit_for_bit() {
        assert!(has_zmm(), "this CPU has no AVX-512 VNNI");
        assert!(std::ptr::eq(kernels(), &KERNELS_ZMM), "the 512-bit kernels are the ones used");
        // SAFETY: AVX-512 F, BW and VNNI asserted above.
        unsafe { assert_same_as_plain(&KERNELS_ZMM) };
    }

    #[test]
    #[ignore = "needs AVX2: make test runs it (--ignored avx2) where the CPU has it"]
    fn avx2_kernels_flag_exactly_the_estimates_above_the_floor_for_their_live_rows() {
        assert!(available(), "this CPU has no AVX2 kernel");
        let d = 37;
        let a: Vec<f32> = (0..4 * d).map(|i| ((i * 7) % 11) as f32 - 5.0).collect();
        let b: Vec<f32> = (0..13 * d).map(|i| ((i * 5) % 13) as f32 - 6.0).collect();
        let (qa, qb) = (Quantized::new(&a, d, MR).unwrap(), Quantized::new(&b, d, NR).unwrap());
        let off: [f32; NR] = std::array::from_fn(|c| c as f32);
        let floor = [1e9, -1e9, 1e9, 0.0, 1e9, 1e9];
        let a_inv: &[f32; MR] = qa.inv[..MR].try_into().unwrap();
        let b_inv: &[f32; NR] = qb.inv[..NR].try_into().unwrap();
        let int =
            |q: &Quantized, width: usize, r: usize, i: usize| i32::from(q.panel(0)[(i / 2 * width + r) * 2 + i % 2]);
        for live in 1..=MR {
            let mut out = [12345f32; MR * NR];
            // SAFETY: AVX2 asserted at the test's start.
            let hits = unsafe { call(&KERNELS, live, (&qa, &qb), (a_inv, &floor), (b_inv, &off), &mut out) };
            for r in 0..MR {
                for c in 0..NR {
                    let hit = hits >> (r * NR + c) & 1 == 1;
                    if r >= live {
                        assert!(out[r * NR + c] == 12345.0 && !hit, "row {r} of {live} live rows was touched");
                        continue;
                    }
                    let s: i32 = (0..d).map(|i| int(&qa, MR, r, i) * int(&qb, NR, c, i)).sum();
                    let v = (s as f32).mul_add(a_inv[r] * b_inv[c], -off[c]);
                    assert_eq!(out[r * NR + c], v, "estimate r={r} c={c} ({live} live rows)");
                    assert_eq!(hit, v > floor[r], "hit bit r={r} c={c} ({live} live rows)");
                    if r < 4 && c < 13 {
                        let exact: f32 = (0..d).map(|p| a[r * d + p] * b[c * d + p]).sum();
                        assert!(
                            (s as f32 * a_inv[r] * b_inv[c] - exact).abs() < 1e-2 * exact.abs().max(1.0),
                            "r={r} c={c}"
                        );
                    }
                }
            }
            if live > 1 {
                assert_eq!(hits >> NR & 0xffff, 0xffff, "row 1 is above -1e9 everywhere");
            }
        }
    }

    #[test]
    #[ignore = "needs AVX2: make test runs it (--ignored avx2) where the CPU has it"]
    fn avx2_dot_is_the_f32_inner_product() {
        assert!(available(), "this CPU has no AVX2 kernel");
        for n in [0, 1, 7, 8, 31, 32, 33, 100, 384] {
            let x: Vec<f32> = (0..n).map(|i| ((i * 7) % 11) as f32 - 5.0).collect();
            let y: Vec<f32> = (0..n).map(|i| ((i * 5) % 13) as f32 * 0.5 - 3.0).collect();
            let exact: f32 = x.iter().zip(&y).map(|(a, b)| a * b).sum();
            // SAFETY: AVX2 asserted at the test's start; x and y have equal length.
            let got = unsafe { dot(&x, &y) };
            assert_eq!(got, exact, "n = {n} (small integers: every order is exact)");
        }
    }
}
