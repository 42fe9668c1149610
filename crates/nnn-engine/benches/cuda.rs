//! CUDA backend benchmark (run by scripts/gpu-check.sh on a GPU machine), side by side in one
//! run on N = 10,000 candidates × M = 1,000,000 reference rows × d = 512, k = 128 (random unit
//! rows): host→device copy rates from pageable and page-locked memory; resident cuBLAS sgemm
//! rate per tile width (both sides already on the device: the ceiling); the NNN bias build per
//! tile width with its ratio to that ceiling; plain sgemm of the same tiles with their copies;
//! TF32 mode with its error against f32; the exact TF32 mode (TF32 shortlists ranked exactly
//! on the host) with the rows it recomputed; batch search of 1, 100 and 10,000 queries over the
//! M reference rows as candidates (k = 10, with biases), GPU and CPU backend side by side; and
//! the CPU backend's bias on the problem scaled down (M / 50) with every core. Not a test: it
//! only reports. `--quick` divides M by 10.

use cudarc::cublas::sys::cublasOperation_t;
use cudarc::cublas::{CudaBlas, Gemm, GemmConfig};
use cudarc::driver::CudaContext;
use nnn_engine::backend::cuda::{CudaBackend, TILE_COLS};
use nnn_engine::backend::TopKRequest;
use nnn_engine::{reference_topk, search, Backend, Candidates, CpuBackend, Matrix, Unwatched};
use std::time::Instant;

mod common;
use common::unit_rows;

fn timed<T>(f: impl FnOnce() -> T) -> (T, f64) {
    let t = Instant::now();
    let out = f();
    (out, t.elapsed().as_secs_f64())
}

/// Tile widths measured.
const WIDTHS: [usize; 5] = [4096, 8192, 16_384, 32_768, 65_536];

/// Host→device copy rates (GB/s) of `data`: from pageable memory, from page-locked memory, and
/// the rate at which one thread fills page-locked memory.
fn copy_rates(ctx: &std::sync::Arc<CudaContext>, data: &[f32]) {
    let s = ctx.default_stream();
    let gb = data.len() as f64 * 4.0 / 1e9;
    // SAFETY: written whole by each copy before it is read.
    let mut dst = unsafe { s.alloc::<f32>(data.len()) }.unwrap();
    s.memcpy_htod(data, &mut dst).unwrap();
    s.synchronize().unwrap();
    let (_, t_page) = timed(|| {
        s.memcpy_htod(data, &mut dst).unwrap();
        s.synchronize().unwrap();
    });
    // SAFETY: filled before it is copied.
    let mut pinned = unsafe { ctx.alloc_pinned::<f32>(data.len()) }.unwrap();
    let (_, t_fill) = timed(|| pinned.as_mut_slice().unwrap().copy_from_slice(data));
    let (_, t_pin) = timed(|| {
        s.memcpy_htod(&pinned, &mut dst).unwrap();
        s.synchronize().unwrap();
    });
    println!(
        "RESULT copy.htod {gb:.2} GB: pageable {:.1} GB/s, page-locked {:.1} GB/s; one thread fills page-locked memory at {:.1} GB/s",
        gb / t_page,
        gb / t_pin,
        gb / t_fill
    );
}

/// cuBLAS sgemm rate (GFLOP/s) of `cand` against every whole tile of `refs`, both resident on
/// the device, per tile width: the ceiling a bias build can reach.
fn resident_rates(ctx: &std::sync::Arc<CudaContext>, cand: &[f32], refs: &[f32], d: usize) -> Vec<(usize, f64)> {
    let s = ctx.default_stream();
    let blas = CudaBlas::new(s.clone()).unwrap();
    let (n, m) = (cand.len() / d, refs.len() / d);
    let (a, b) = (s.clone_htod(cand).unwrap(), s.clone_htod(refs).unwrap());
    let mut out = Vec::new();
    for width in WIDTHS {
        let tiles = m / width;
        let mut scores = s.alloc_zeros::<f32>(n * width).unwrap();
        let cfg = GemmConfig {
            transa: cublasOperation_t::CUBLAS_OP_T,
            transb: cublasOperation_t::CUBLAS_OP_N,
            m: width as i32,
            n: n as i32,
            k: d as i32,
            alpha: 1.0f32,
            lda: d as i32,
            ldb: d as i32,
            beta: 0.0f32,
            ldc: width as i32,
        };
        let gemm = |t: usize, scores: &mut _| {
            // SAFETY: the tile holds width × d values, a holds n × d, scores n × width.
            unsafe { blas.gemm(cfg, &b.slice(t * width * d..(t + 1) * width * d), &a, scores) }.unwrap()
        };
        gemm(0, &mut scores);
        s.synchronize().unwrap();
        let (_, secs) = timed(|| {
            for t in 0..tiles {
                gemm(t, &mut scores);
            }
            s.synchronize().unwrap();
        });
        let rate = 2.0 * (n * tiles * width * d) as f64 / secs / 1e9;
        println!("RESULT cuda.resident_sgemm_tile_{width:<6} {secs:>9.3} s {rate:>9.1} GFLOP/s");
        out.push((width, rate));
    }
    out
}

/// Batch search of the first 1, 100 and 10,000 rows of `queries` over `vectors` as candidates
/// (biases in 0..0.1, α = 0.75, k = 10): the CPU backend with its 16-bit copy prepared (every
/// core); the GPU's first search of prepared candidates (copies them and leaves them on the
/// device), a second one (resident), one of unprepared candidates (copied at every call), and
/// the exact TF32 mode on resident candidates; with whether each answer equals the CPU's.
fn batch_search(gpu: &CudaBackend, vectors: &[f32], queries: &[f32], d: usize) {
    let m = vectors.len() / d;
    let bias: Vec<f32> = (0..m).map(|j| ((j * 7919) % 1000) as f32 / 10_000.0).collect();
    let plain = Candidates::new(Matrix::from_slice(vectors, d, "c").unwrap(), Some(bias)).unwrap();
    let threads = std::thread::available_parallelism().map_or(1, |t| t.get());
    let cpu = CpuBackend::new(threads).unwrap();
    let mut kept = plain.clone();
    let (_, t_prepare) = timed(|| kept.prepare(threads, &mut Unwatched).unwrap());
    println!("RESULT search.cpu_prepare {t_prepare:.3} s ({m} x d={d} rounded to 16 bits once)");
    for nq in [1, 100, 10_000] {
        let q = Matrix::from_slice(&queries[..nq * d], d, "q").unwrap();
        let run = |b: &dyn Backend, c: &Candidates| timed(|| search(b, c, 0.75, &q, 10, &mut Unwatched).unwrap());
        let (want, t_cpu) = run(&cpu, &kept);
        let mut fresh = plain.clone();
        fresh.prepare_for_device();
        let (first, t_first) = run(gpu, &fresh);
        let (resident, t_resident) = run(gpu, &fresh);
        let (_, t_plain) = run(gpu, &plain);
        drop(fresh);
        gpu.set_exact_tf32(true);
        let _ = run(gpu, &kept);
        let (exact, t_exact) = run(gpu, &kept);
        gpu.set_exact_tf32(false);
        let same = |t: &nnn_engine::TopK| (0..nq).filter(|&r| t.row_indices(r) == want.row_indices(r)).count();
        println!(
            "RESULT search.q{nq:<6} cpu {t_cpu:.4} s; cuda first {t_first:.4} s, resident {t_resident:.4} s, unprepared {t_plain:.4} s, exact tf32 resident {t_exact:.4} s; device copy {} MiB",
            kept.device_bytes() >> 20
        );
        println!(
            "RATIO search.q{nq}.cpu_vs_cuda_resident {:.1}; cpu_vs_cuda_exact_tf32 {:.1}; rows equal to the cpu: f32 first {}/{nq}, resident {}/{nq}, exact tf32 {}/{nq} (bit for bit: {})",
            t_cpu / t_resident,
            t_cpu / t_exact,
            same(&first),
            same(&resident),
            same(&exact),
            exact == want
        );
    }
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let (n, m, d, k) = (10_000, if quick { 100_000 } else { 1_000_000 }, 512, 128);
    let gpu = match CudaBackend::new(0) {
        Ok(g) => g,
        Err(e) => {
            println!("SKIPPED: {e}");
            return;
        }
    };
    let cand = unit_rows(n, d, 1);
    let refs = unit_rows(m, d, 2);
    let (c, r) = (Matrix::from_slice(&cand, d, "c").unwrap(), Matrix::from_slice(&refs, d, "r").unwrap());
    let flop = 2.0 * n as f64 * m as f64 * d as f64;
    println!("# {}: bias {n} x {m} x d={d}, k={k}", gpu.device_name());
    let ctx = CudaContext::new(0).unwrap();
    copy_rates(&ctx, &refs);
    let ceiling = resident_rates(&ctx, &cand, &refs, d);
    let best = ceiling.iter().map(|&(_, r)| r).fold(0.0, f64::max);
    let _ = reference_topk(&gpu, &c, &Matrix::from_slice(&refs[..4096 * d], d, "w").unwrap(), k, &mut Unwatched);
    for width in WIDTHS {
        gpu.set_tile_cols(width);
        let (_, secs) = timed(|| reference_topk(&gpu, &c, &r, k, &mut Unwatched).unwrap());
        let rate = flop / secs / 1e9;
        println!(
            "RESULT cuda.bias_tile_{width:<6} {secs:>9.3} s {rate:>9.1} GFLOP/s; {:.3} of the best resident sgemm; pinned {} MiB",
            rate / best,
            gpu.pinned_bytes(d) >> 20
        );
    }
    gpu.set_tile_cols(TILE_COLS);
    let (_, t_check) = timed(|| nnn_engine::bias::check_bias_inputs(&c, &r, k).unwrap());
    let (_, t_topk) = timed(|| gpu.topk(&TopKRequest::new(&c, &r, k), &mut Unwatched).unwrap());
    println!(
        "RESULT cuda.topk_products {t_topk:>9.3} s {:>9.1} GFLOP/s: the backend alone; input checks on the host {t_check:.3} s",
        flop / t_topk / 1e9
    );
    let (f32_bias, t_gpu) = timed(|| reference_topk(&gpu, &c, &r, k, &mut Unwatched).unwrap());
    let (_, t_gemm) = timed(|| gpu.plain_sgemm(&c, &r).unwrap());
    println!("RESULT cuda.bias        {t_gpu:>9.3} s {:>9.1} GFLOP/s (tile {TILE_COLS})", flop / t_gpu / 1e9);
    println!("RESULT cuda.plain_sgemm {t_gemm:>9.3} s {:>9.1} GFLOP/s", flop / t_gemm / 1e9);
    println!("RATIO cuda.bias_vs_sgemm_rate {:.3}", t_gemm / t_gpu);
    println!("RATIO cuda.bias_vs_best_resident_sgemm {:.3}", flop / t_gpu / 1e9 / best);
    gpu.set_tf32(true);
    let (tf32, t_tf32) = timed(|| reference_topk(&gpu, &c, &r, k, &mut Unwatched).unwrap());
    let (_, t_tf32_gemm) = timed(|| gpu.plain_sgemm(&c, &r).unwrap());
    gpu.set_tf32(false);
    println!("RESULT cuda.bias_tf32        {t_tf32:>9.3} s {:>9.1} GFLOP/s", flop / t_tf32 / 1e9);
    println!("RESULT cuda.plain_sgemm_tf32 {t_tf32_gemm:>9.3} s {:>9.1} GFLOP/s", flop / t_tf32_gemm / 1e9);
    println!("RATIO cuda.tf32_bias_vs_f32_bias {:.2}", t_gpu / t_tf32);
    let (bias, bias_tf32) = (f32_bias.bias(k).unwrap(), tf32.bias(k).unwrap());
    let diff: Vec<f64> = bias.iter().zip(&bias_tf32).map(|(x, y)| f64::from(x - y).abs()).collect();
    let kept = f32_bias.sims.indices.chunks(k).zip(tf32.sims.indices.chunks(k));
    let same = kept.map(|(x, y)| y.iter().filter(|j| x.contains(j)).count()).sum::<usize>();
    println!(
        "ERROR tf32 bias vs f32: max {:.2e}, mean {:.2e}; top-{k} sets overlap {:.4}",
        diff.iter().cloned().fold(0.0, f64::max),
        diff.iter().sum::<f64>() / n as f64,
        same as f64 / (n * k) as f64
    );
    let request = TopKRequest::new(&c, &r, k);
    let (exact, t_exact) = timed(|| gpu.topk_exact_tf32(&request, &mut Unwatched).unwrap());
    match exact {
        Some(e) => {
            let same = e.top.indices == f32_bias.sims.indices;
            println!(
                "RESULT cuda.bias_exact_tf32  {t_exact:>9.3} s {:>9.1} GFLOP/s; {} of {n} rows recomputed on the host; indices equal to the f32 path's: {same}",
                flop / t_exact / 1e9,
                e.recomputed
            );
            println!("RATIO cuda.exact_tf32_bias_vs_f32_bias {:.2}", t_gpu / t_exact);
        }
        None => println!("RESULT cuda.bias_exact_tf32 not run: this host has no AVX2 or rows out of range"),
    }
    batch_search(&gpu, &refs, &cand, d);
    let small = m / 50;
    let threads = std::thread::available_parallelism().map_or(1, |t| t.get());
    let cpu = CpuBackend::new(threads).unwrap();
    let rs = Matrix::from_slice(&refs[..small * d], d, "r").unwrap();
    let (_, t_cpu) = timed(|| reference_topk(&cpu, &c, &rs, k, &mut Unwatched).unwrap());
    let cpu_flop = 2.0 * n as f64 * small as f64 * d as f64;
    println!("RESULT cpu.bias_{small:<8} {t_cpu:>9.3} s {:>9.1} GFLOP/s ({threads} threads)", cpu_flop / t_cpu / 1e9);
    println!("RATIO cuda_vs_cpu_flop_rate {:.1}", (flop / t_gpu) / (cpu_flop / t_cpu));
}
