//! CUDA backend benchmark (run by scripts/gpu-check.sh on a GPU machine): an NNN bias build of
//! N = 10,000 candidates × M = 1,000,000 reference rows × d = 512, k = 128 (random unit rows),
//! its GFLOP/s and ratio to plain cuBLAS sgemm of the same tiles, both with their host→device
//! copies (overlapped with the products), the same in TF32 mode with its error against f32,
//! and the CPU backend on the same problem scaled down (M / 50) with every core.
//! Not a test: it only reports. `--quick` divides M by 10.

use nnn_engine::backend::cuda::CudaBackend;
use nnn_engine::{reference_topk, CpuBackend, Matrix, Unwatched};
use rayon::prelude::*;
use std::time::Instant;

fn unit_rows(rows: usize, dim: usize, seed: u64) -> Vec<f32> {
    let mut out = vec![0f32; rows * dim];
    out.par_chunks_mut(dim).enumerate().for_each(|(r, row)| {
        let mut s = (seed ^ (r as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)) | 1;
        for v in row.iter_mut() {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            *v = (s >> 40) as f32 / (1u64 << 23) as f32 - 1.0;
        }
        let n = row.iter().map(|v| v * v).sum::<f32>().sqrt();
        row.iter_mut().for_each(|v| *v /= n);
    });
    out
}

fn timed<T>(f: impl FnOnce() -> T) -> (T, f64) {
    let t = Instant::now();
    let out = f();
    (out, t.elapsed().as_secs_f64())
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
    let _ = reference_topk(&gpu, &c, &Matrix::from_slice(&refs[..4096 * d], d, "w").unwrap(), k, &mut Unwatched);
    let (f32_bias, t_gpu) = timed(|| reference_topk(&gpu, &c, &r, k, &mut Unwatched).unwrap());
    let (_, t_gemm) = timed(|| gpu.plain_sgemm(&c, &r).unwrap());
    println!("RESULT cuda.bias        {t_gpu:>9.3} s {:>9.1} GFLOP/s", flop / t_gpu / 1e9);
    println!("RESULT cuda.plain_sgemm {t_gemm:>9.3} s {:>9.1} GFLOP/s", flop / t_gemm / 1e9);
    println!("RATIO cuda.bias_vs_sgemm_rate {:.3}", t_gemm / t_gpu);
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
    let small = m / 50;
    let threads = std::thread::available_parallelism().map_or(1, |t| t.get());
    let cpu = CpuBackend::new(threads).unwrap();
    let rs = Matrix::from_slice(&refs[..small * d], d, "r").unwrap();
    let (_, t_cpu) = timed(|| reference_topk(&cpu, &c, &rs, k, &mut Unwatched).unwrap());
    let cpu_flop = 2.0 * n as f64 * small as f64 * d as f64;
    println!("RESULT cpu.bias_{small:<8} {t_cpu:>9.3} s {:>9.1} GFLOP/s ({threads} threads)", cpu_flop / t_cpu / 1e9);
    println!("RATIO cuda_vs_cpu_flop_rate {:.1}", (flop / t_gpu) / (cpu_flop / t_cpu));
}
