//! The CUDA backend (feature `cuda`). Only the first test runs without a GPU; the others are
//! `#[ignore]`d there (reported as ignored, not passed) and run on a GPU machine with
//! `--ignored` (scripts/gpu-check.sh). Data paths follow `NNN_DATA` when set.
#![cfg(feature = "cuda")]

mod common;
use common::*;
use nnn_engine::backend::cuda::{kernel_ptx, unavailable, CudaBackend, MAX_K};
use nnn_engine::backend::TopKRequest;
use nnn_engine::*;

fn gpu() -> CudaBackend {
    CudaBackend::new(0).expect("a usable CUDA device")
}

#[test]
fn without_a_gpu_the_backend_is_an_error_not_a_crash() {
    let made = CudaBackend::new(0);
    match unavailable() {
        Some(why) => {
            println!("no CUDA here ({why}): the GPU tests of this file are ignored, not passed");
            assert!(matches!(made, Err(EngineError::Unavailable { what: "CUDA", .. })), "{made:?}");
        }
        None => match made {
            Ok(b) => println!("CUDA device: {}", b.device_name()),
            Err(e) => assert!(matches!(e, EngineError::Unavailable { .. }), "libraries present, no device: {e:?}"),
        },
    }
}

/// NVRTC compiles the kernels (the merge, the exact scores) without a GPU; `make test` provides libnvrtc from PyPI
/// (nvidia-cuda-nvrtc-cu12) and runs this.
#[test]
#[ignore = "needs libnvrtc: make test provides it"]
fn nvrtc_compiles_the_kernels() {
    let ptx = kernel_ptx().expect("NVRTC present and the kernel compiles");
    for entry in [".entry merge_topk", ".entry exact_scores"] {
        assert!(ptx.to_src().contains(entry), "PTX without {entry}");
    }
}

#[test]
#[ignore = "needs an NVIDIA GPU: scripts/gpu-check.sh runs it"]
fn gpu_matches_reference_package() {
    check_wordnet_small(&gpu());
}

/// Coarse values (multiples of 1/4) make every product exact in f32, so the GPU must return
/// exactly the CPU's values and indices, tie order included.
#[test]
#[ignore = "needs an NVIDIA GPU: scripts/gpu-check.sh runs it"]
fn gpu_equals_cpu_exactly_tie_order_included() {
    let (g, cpu) = (gpu(), CpuBackend::new(2).unwrap());
    let mut rng = Rng::new(21);
    for &(m, n, d, k, with_offset) in &[
        (1, 5, 3, 5, false),
        (37, 9000, 24, 10, true),
        (300, 4096, 64, 128, false),
        (5, 12_345, 16, 1024, true),
        (2000, 5000, 384, 128, false),
    ] {
        let (a, b) = (rng.matrix(m, d, true), rng.matrix(n, d, true));
        let off: Vec<f32> = (0..n).map(|_| (rng.unit() * 4.0).round() / 4.0).collect();
        let (am, bm) = (Matrix::from_slice(&a, d, "a").unwrap(), Matrix::from_slice(&b, d, "b").unwrap());
        let o = with_offset.then_some(off.as_slice());
        let want = cpu.topk(&TopKRequest::new(&am, &bm, k).with_offset(o), &mut Unwatched).unwrap();
        let got = g.topk(&TopKRequest::new(&am, &bm, k).with_offset(o), &mut Unwatched).unwrap();
        assert_eq!(got, want, "shape {m}x{n}x{d} k={k}");
    }
}

#[test]
#[ignore = "needs an NVIDIA GPU: scripts/gpu-check.sh runs it"]
fn small_memory_budgets_cut_blocks_and_too_small_is_an_error() {
    let g = gpu();
    let mut rng = Rng::new(5);
    let (m, n, d, k) = (3000, 20_000, 32, 16);
    let (a, b) = (rng.matrix(m, d, false), rng.matrix(n, d, false));
    let (am, bm) = (Matrix::from_slice(&a, d, "a").unwrap(), Matrix::from_slice(&b, d, "b").unwrap());
    let whole = g.topk(&TopKRequest::new(&am, &bm, k), &mut Unwatched).unwrap();
    g.set_memory_limit(6 << 20); // b no longer fits: tiles copied, rows in blocks
    assert_eq!(g.topk(&TopKRequest::new(&am, &bm, k), &mut Unwatched).unwrap(), whole);
    g.set_memory_limit(64 << 10);
    let err = g.topk(&TopKRequest::new(&am, &bm, k), &mut Unwatched).unwrap_err();
    assert!(matches!(err, EngineError::Device { what: "memory", .. }), "{err:?}");
}

#[test]
#[ignore = "needs an NVIDIA GPU: scripts/gpu-check.sh runs it"]
fn gpu_rejects_k_above_its_limit_and_stops_when_cancelled() {
    let g = gpu();
    let a = vec![0.5f32; 4 * (MAX_K + 1)];
    let m = Matrix::from_slice(&a, 4, "a").unwrap();
    assert!(matches!(
        g.topk(&TopKRequest::new(&m, &m, MAX_K + 1), &mut Unwatched),
        Err(EngineError::KOutOfRange { .. })
    ));
    // Lets the work start, then asks to stop at the first poll (every 20 ms) while about
    // 2.6 TFLOP of tiles are still running.
    struct Stop(u32);
    impl Control for Stop {
        fn keep_going(&mut self, _done: u64, _total: u64) -> bool {
            self.0 += 1;
            self.0 == 1
        }
    }
    let mut rng = Rng::new(9);
    let (a, b) = (rng.matrix(10_000, 128, false), rng.matrix(1_000_000, 128, false));
    let (am, bm) = (Matrix::from_slice(&a, 128, "a").unwrap(), Matrix::from_slice(&b, 128, "b").unwrap());
    let r = reference_topk(&g, &am, &bm, 8, &mut Stop(0));
    assert!(matches!(r, Err(EngineError::Cancelled)), "{r:?}");
}

#[test]
#[ignore = "needs an NVIDIA GPU: scripts/gpu-check.sh runs it"]
fn gpu_search_matches_naive() {
    let g = gpu();
    let mut rng = Rng::new(17);
    let (nq, n, d) = (50, 7000, 48);
    let (q, c) = (rng.matrix(nq, d, false), rng.matrix(n, d, false));
    let bias: Vec<f32> = (0..n).map(|_| rng.unit()).collect();
    let cands = Candidates::new(Matrix::from_slice(&c, d, "c").unwrap(), Some(bias.clone())).unwrap();
    let top = search(&g, &cands, 0.75, &Matrix::from_slice(&q, d, "q").unwrap(), 10, &mut Unwatched).unwrap();
    let off: Vec<f64> = bias.iter().map(|&b| 0.75 * f64::from(b)).collect();
    for r in 0..nq {
        let naive = naive_scores(&q[r * d..(r + 1) * d], &c, d, Some(&off));
        assert_row_matches(top.row_indices(r), top.row_values(r), &naive, 1e-4, &format!("query {r}"));
    }
}

/// TF32 products (an opt-in) stay within their bound: each input keeps a 10-bit mantissa, so
/// every score of unit rows is off by less than 2⁻⁹, and so is each of a row's k best values
/// (order statistics move no more than the scores). The measured errors are printed for the
/// notes; f32 mode, set again, is exact within 1e-5.
#[test]
#[ignore = "needs an NVIDIA GPU: scripts/gpu-check.sh runs it"]
fn tf32_mode_stays_within_its_error_bound() {
    let g = gpu();
    let mut rng = Rng::new(33);
    let (nq, n, d, k) = (64, 20_000, 512, 128);
    let unit_rows = |mut v: Vec<f32>| {
        for row in v.chunks_exact_mut(d) {
            let norm = row.iter().map(|x| x * x).sum::<f32>().sqrt();
            row.iter_mut().for_each(|x| *x /= norm);
        }
        v
    };
    let (a, b) = (unit_rows(rng.matrix(nq, d, false)), unit_rows(rng.matrix(n, d, false)));
    let (am, bm) = (Matrix::from_slice(&a, d, "a").unwrap(), Matrix::from_slice(&b, d, "b").unwrap());
    g.set_tf32(true);
    let tf32 = g.topk(&TopKRequest::new(&am, &bm, k), &mut Unwatched).unwrap();
    g.set_tf32(false);
    let f32_mode = g.topk(&TopKRequest::new(&am, &bm, k), &mut Unwatched).unwrap();
    let (mut worst_tf32, mut worst_f32, mut worst_bias) = (0f64, 0f64, 0f64);
    for r in 0..nq {
        let mut naive = naive_scores(&a[r * d..(r + 1) * d], &b, d, None);
        naive.sort_by(|x, y| y.partial_cmp(x).unwrap());
        let row = r * k..(r + 1) * k;
        for (j, (t, f)) in tf32.values[row.clone()].iter().zip(&f32_mode.values[row.clone()]).enumerate() {
            worst_tf32 = worst_tf32.max((f64::from(*t) - naive[j]).abs());
            worst_f32 = worst_f32.max((f64::from(*f) - naive[j]).abs());
        }
        let bias = tf32.values[row].iter().map(|&v| f64::from(v)).sum::<f64>() / k as f64;
        worst_bias = worst_bias.max((bias - naive[..k].iter().sum::<f64>() / k as f64).abs());
    }
    println!("{nq} x {n} x d={d}, k={k}: max |top-k value - f64| tf32 {worst_tf32:.2e}, f32 {worst_f32:.2e}; max |bias - f64| tf32 {worst_bias:.2e}");
    assert!(worst_tf32 < 2f64.powi(-9), "TF32 error {worst_tf32} above 2^-9");
    assert!(worst_f32 <= 1e-5, "f32 mode error {worst_f32} after TF32 was switched off");
}

/// The tile width changes how the work is cut, never the answer: narrow, default and wide
/// tiles, a last tile that is partial (copied without staging) and whole tiles staged through
/// the two page-locked buffers in turn (more tiles than buffers, b resident and streamed) all
/// give the CPU's values and indices exactly on coarse data.
#[test]
#[ignore = "needs an NVIDIA GPU: scripts/gpu-check.sh runs it"]
fn tile_widths_and_staging_buffers_do_not_change_results() {
    let (g, cpu) = (gpu(), CpuBackend::new(2).unwrap());
    let mut rng = Rng::new(41);
    let (m, n, d, k) = (300, 70_001, 40, 64);
    let (a, b) = (rng.matrix(m, d, true), rng.matrix(n, d, true));
    let off: Vec<f32> = (0..n).map(|_| (rng.unit() * 4.0).round() / 4.0).collect();
    let (am, bm) = (Matrix::from_slice(&a, d, "a").unwrap(), Matrix::from_slice(&b, d, "b").unwrap());
    let want = cpu.topk(&TopKRequest::new(&am, &bm, k).with_offset(Some(&off)), &mut Unwatched).unwrap();
    for (tile, limit) in [(1000, 0), (4096, 0), (16_384, 0), (65_536, 0), (7000, 6 << 20)] {
        g.set_tile_cols(tile);
        g.set_memory_limit(limit);
        let got = g.topk(&TopKRequest::new(&am, &bm, k).with_offset(Some(&off)), &mut Unwatched).unwrap();
        assert_eq!(got, want, "tile {tile}, memory limit {limit}");
    }
    g.set_tile_cols(nnn_engine::backend::cuda::TILE_COLS);
    g.set_memory_limit(0);
}

/// The exact TF32 mode gives the CPU backend's exact pass bit for bit (values and tie order)
/// on data whose products are not exact in f32, with and without offsets, with the
/// shortlists scored on the device (the `exact_scores` kernel) and, under a budget that streams
/// `b`, on the host, and through `topk`; near-duplicate columns, whose TF32 estimates cannot tell them apart, leave some
/// rows to the host, and those are exact too.
#[test]
#[ignore = "needs an NVIDIA GPU: scripts/gpu-check.sh runs it"]
fn exact_tf32_mode_equals_the_cpu_bit_for_bit() {
    let (g, cpu) = (gpu(), CpuBackend::new(2).unwrap());
    let mut rng = Rng::new(51);
    let near = |rng: &mut Rng, n: usize, d: usize| -> Vec<f32> {
        let base = rng.matrix(1, d, false);
        (0..n).flat_map(|j| base.iter().enumerate().map(move |(i, v)| v + 1e-6 * ((i * j) % 7) as f32)).collect()
    };
    for (m, n, d, k, with_offset, crowded) in [
        (200, 20_000, 384, 128, true, false),
        (37, 9000, 64, 10, false, false),
        (5, 3000, 7, 100, true, false),
        (40, 5000, 48, 16, false, true),
    ] {
        let a = rng.matrix(m, d, false);
        let b = if crowded { near(&mut rng, n, d) } else { rng.matrix(n, d, false) };
        let off: Vec<f32> = (0..n).map(|_| 0.1 * rng.unit()).collect();
        let (am, bm) = (Matrix::from_slice(&a, d, "a").unwrap(), Matrix::from_slice(&b, d, "b").unwrap());
        let request = TopKRequest::new(&am, &bm, k).with_offset(with_offset.then_some(off.as_slice()));
        // the CPU backend's exact pass (its 16-bit path, which prepared columns always take)
        let prepared = CpuBackend::prepare(&bm);
        let want = cpu.topk(&TopKRequest { prepared: Some(&prepared), ..request }, &mut Unwatched).unwrap();
        let certified = g.topk_exact_tf32(&request, &mut Unwatched).unwrap().expect("the mode runs here");
        println!("{m} x {n} x d={d}, k={k}: {} rows recomputed on the host", certified.recomputed);
        assert_eq!(certified.top, want, "shape {m}x{n}x{d} k={k}");
        assert!(certified.scores_given, "b stays on the device: the shortlists are scored there");
        // a budget that streams b's tiles: the shortlists are scored on the host instead
        g.set_tile_cols(1000);
        g.set_memory_limit((n * d * 4).min(8 << 20) - 1);
        let streamed = g.topk_exact_tf32(&request, &mut Unwatched).unwrap().expect("the mode runs here");
        g.set_tile_cols(nnn_engine::backend::cuda::TILE_COLS);
        g.set_memory_limit(0);
        assert_eq!(streamed.top, want, "shape {m}x{n}x{d} k={k}, streamed");
        assert!(!streamed.scores_given, "b streamed: scored on the host");
        if crowded {
            assert!(certified.recomputed > 0, "no row recomputed among near-duplicates");
        }
        g.set_exact_tf32(true);
        assert_eq!(g.topk(&request, &mut Unwatched).unwrap(), want, "through topk");
        g.set_exact_tf32(false);
    }
}

/// Candidates prepared for many searches (a session's cache) stay on the device after their
/// first search: later searches answer as unprepared ones and as the CPU (coarse values, so
/// exactly), their bytes count against the budget, another tile width replaces the copy, a
/// budget that no longer holds it frees it (the tiles are streamed again), the exact TF32
/// mode reads it too, and dropping the candidates frees it.
#[test]
#[ignore = "needs an NVIDIA GPU: scripts/gpu-check.sh runs it"]
fn prepared_candidates_stay_on_the_device_between_searches() {
    let (g, cpu) = (gpu(), CpuBackend::new(2).unwrap());
    let mut rng = Rng::new(61);
    let (n, d, k) = (50_000, 32, 20);
    let bytes = n * d * 4;
    let c = rng.matrix(n, d, true);
    let bias: Vec<f32> = (0..n).map(|_| (rng.unit() * 4.0).round() / 4.0).collect();
    let plain = Candidates::new(Matrix::from_slice(&c, d, "c").unwrap(), Some(bias)).unwrap();
    let mut kept = plain.clone();
    kept.prepare(2, &mut Unwatched).unwrap();
    assert_eq!((kept.device_bytes(), g.resident_bytes()), (0, 0), "nothing on the device before a search");
    let mut check = |g: &CudaBackend, nq: usize, what: &str| {
        let q = rng.matrix(nq, d, true);
        let qm = Matrix::from_slice(&q, d, "q").unwrap();
        let want = search(&cpu, &plain, 0.75, &qm, k, &mut Unwatched).unwrap();
        assert_eq!(search(g, &kept, 0.75, &qm, k, &mut Unwatched).unwrap(), want, "{what}: prepared");
        assert_eq!(search(g, &plain, 0.75, &qm, k, &mut Unwatched).unwrap(), want, "{what}: unprepared");
    };
    for nq in [1, 7, 300] {
        check(&g, nq, &format!("{nq} queries"));
        assert_eq!((kept.device_bytes(), g.resident_bytes()), (bytes, bytes), "{nq} queries");
    }
    g.set_tile_cols(7000);
    check(&g, 50, "another tile width");
    assert_eq!((kept.device_bytes(), g.resident_bytes()), (bytes, bytes), "replaced, not added");
    g.set_memory_limit(bytes / 2);
    check(&g, 300, "a budget below the copy");
    assert_eq!((kept.device_bytes(), g.resident_bytes()), (0, 0), "freed when the budget cannot hold it");
    g.set_memory_limit(0);
    g.set_tile_cols(nnn_engine::backend::cuda::TILE_COLS);
    check(&g, 3, "default budget again");
    assert_eq!(g.resident_bytes(), bytes);

    // exact TF32 on prepared candidates without the CPU's copy (values not exact in f32)
    let r = rng.matrix(n, d, false);
    let rm = Matrix::from_slice(&r, d, "r").unwrap();
    let mut device_only = Candidates::new(rm.clone(), None).unwrap();
    device_only.prepare_for_device();
    let q = rng.matrix(64, d, false);
    let qm = Matrix::from_slice(&q, d, "q").unwrap();
    let prepared = CpuBackend::prepare(&rm);
    let want =
        cpu.topk(&TopKRequest { prepared: Some(&prepared), ..TopKRequest::new(&qm, &rm, k) }, &mut Unwatched).unwrap();
    g.set_exact_tf32(true);
    for round in 0..2 {
        let got = search(&g, &device_only, 0.0, &qm, k, &mut Unwatched).unwrap();
        assert_eq!(got, want, "exact TF32 on the device copy, search {round}");
        assert_eq!(device_only.device_bytes(), bytes);
    }
    g.set_exact_tf32(false);
    assert_eq!(g.resident_bytes(), 2 * bytes);
    drop((kept, device_only));
    assert_eq!(g.resident_bytes(), 0, "freed with the candidates");
}
