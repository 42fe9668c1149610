//! The CUDA backend (feature `cuda`): cuBLAS sgemm of a block of `a` rows against a tile of
//! `b` rows into a device score tile, then a per-row top-k merge on the device (a kernel
//! compiled by NVRTC at start-up) that keeps only `rows × k` values and indices between tiles.
//! CUDA libraries are loaded at run time (cudarc's dynamic loading), so one build runs
//! everywhere: without a usable GPU, [`CudaBackend::new`] is an `Unavailable` error, never a
//! panic. All CUDA calls run on a worker thread of the engine's pool (signals blocked), so the
//! driver's own threads inherit that mask.

use super::Backend;
use crate::control::{Control, Unwatched};
use crate::error::{EngineError, Result};
use crate::matrix::Matrix;
use crate::run::run_polled;
use crate::topk::TopK;
use cudarc::cublas::{sys::cublasOperation_t, CudaBlas, Gemm, GemmConfig};
use cudarc::driver::{CudaContext, CudaFunction, CudaSlice, CudaStream, DevicePtr, LaunchConfig, PushKernelArg};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// Largest `k` the merge kernel keeps per row.
pub const MAX_K: usize = 1024;
/// Columns of `b` per score tile.
const TILE_COLS: usize = 4096;
/// Threads per block of the merge kernel (one block per row).
const THREADS: u32 = 256;

/// One block per row: the running top-k and each chunk of 1024 new scores that beat its
/// k-th best are sorted together in shared memory (bitonic, best first: larger value, then
/// lower column), so results and tie order equal the CPU backend's.
const KERNEL: &str = r#"
#define CHUNK 1024
#define CAP 2048
__device__ __forceinline__ bool better(float v, unsigned i, float w, unsigned j) {
    return v > w || (v == w && i < j);
}
extern "C" __global__ void merge_topk(const float* __restrict__ scores, const float* __restrict__ offset,
                                      int has_offset, int rows, int cols, int col0, int k,
                                      float* top_val, unsigned* top_idx) {
    __shared__ float sv[CAP];
    __shared__ unsigned si[CAP];
    __shared__ int count;
    int r = blockIdx.x;
    if (r >= rows) return;
    const float* row = scores + (size_t)r * cols;
    float* tv = top_val + (size_t)r * k;
    unsigned* ti = top_idx + (size_t)r * k;
    for (int t = threadIdx.x; t < k; t += blockDim.x) { sv[t] = tv[t]; si[t] = ti[t]; }
    for (int c0 = 0; c0 < cols; c0 += CHUNK) {
        if (threadIdx.x == 0) count = 0;
        __syncthreads();
        float thr_v = sv[k - 1];
        unsigned thr_i = si[k - 1];
        int end = min(cols, c0 + CHUNK);
        for (int j = c0 + threadIdx.x; j < end; j += blockDim.x) {
            unsigned g = (unsigned)(col0 + j);
            float v = row[j] - (has_offset ? offset[g] : 0.0f);
            if (better(v, g, thr_v, thr_i)) {
                int slot = atomicAdd(&count, 1);
                sv[k + slot] = v;
                si[k + slot] = g;
            }
        }
        __syncthreads();
        int found = count;
        __syncthreads();
        if (found == 0) continue;
        int n = k + found;
        int p = 1;
        while (p < n) p <<= 1;
        for (int t = n + threadIdx.x; t < p; t += blockDim.x) { sv[t] = __int_as_float(0xff800000); si[t] = 0xffffffffu; }
        __syncthreads();
        for (int size = 2; size <= p; size <<= 1) {
            for (int stride = size >> 1; stride > 0; stride >>= 1) {
                for (int t = threadIdx.x; t < p / 2; t += blockDim.x) {
                    int i = 2 * t - (t & (stride - 1));
                    int j = i + stride;
                    bool first = (i & size) == 0;
                    bool swap = first ? better(sv[j], si[j], sv[i], si[i]) : better(sv[i], si[i], sv[j], si[j]);
                    if (swap) {
                        float fv = sv[i]; sv[i] = sv[j]; sv[j] = fv;
                        unsigned fi = si[i]; si[i] = si[j]; si[j] = fi;
                    }
                }
                __syncthreads();
            }
        }
    }
    __syncthreads();
    for (int t = threadIdx.x; t < k; t += blockDim.x) { tv[t] = sv[t]; ti[t] = si[t]; }
}
"#;

/// Why CUDA cannot be used here, checked without touching the driver beyond loading it.
pub fn unavailable() -> Option<String> {
    // SAFETY: these only try to dlopen the libraries.
    let (driver, blas, nvrtc) = unsafe {
        (
            cudarc::driver::sys::is_culib_present(),
            cudarc::cublas::sys::is_culib_present(),
            cudarc::nvrtc::sys::is_culib_present(),
        )
    };
    if !driver {
        return Some("no CUDA driver library (libcuda.so) found".into());
    }
    if !blas || !nvrtc {
        return Some(format!(
            "CUDA libraries missing:{}{}",
            if blas { "" } else { " cuBLAS" },
            if nvrtc { "" } else { " NVRTC" }
        ));
    }
    None
}

/// The merge kernel compiled to PTX by NVRTC (needs libnvrtc, not a GPU).
pub fn kernel_ptx() -> Result<cudarc::nvrtc::Ptx> {
    // SAFETY: only tries to dlopen the library, so a missing one is an error, not a panic.
    if !unsafe { cudarc::nvrtc::sys::is_culib_present() } {
        return Err(EngineError::Unavailable { what: "NVRTC", why: "no libnvrtc.so found".into() });
    }
    cudarc::nvrtc::compile_ptx(KERNEL).map_err(|e| gpu_error("NVRTC", e))
}

fn gpu_error(what: &'static str, e: impl std::fmt::Debug) -> EngineError {
    EngineError::Device { what, message: format!("{e:?}") }
}

/// Exact top-k of inner products on one NVIDIA GPU.
pub struct CudaBackend {
    stream: Arc<CudaStream>,
    blas: CudaBlas,
    merge: CudaFunction,
    memory_limit: AtomicUsize,
    name: String,
}

impl std::fmt::Debug for CudaBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CudaBackend({})", self.name)
    }
}

impl CudaBackend {
    /// Opens GPU 0, compiles the merge kernel; device memory for one call is kept under
    /// `memory_limit` bytes (0: 90 % of what is free at each call).
    pub fn new(memory_limit: usize) -> Result<Self> {
        if let Some(why) = unavailable() {
            return Err(EngineError::Unavailable { what: "CUDA", why });
        }
        run_polled(1, 1, &mut Unwatched, |_| {
            let devices = CudaContext::device_count().map_err(|e| gpu_error("device count", e))?;
            if devices < 1 {
                return Err(EngineError::Unavailable { what: "CUDA", why: "no CUDA device".into() });
            }
            let ctx = CudaContext::new(0).map_err(|e| gpu_error("context", e))?;
            let name = ctx.name().unwrap_or_else(|_| "GPU 0".into());
            let stream = ctx.default_stream();
            let blas = CudaBlas::new(stream.clone()).map_err(|e| gpu_error("cuBLAS", e))?;
            let ptx = kernel_ptx()?;
            let module = ctx.load_module(ptx).map_err(|e| gpu_error("module", e))?;
            let merge = module.load_function("merge_topk").map_err(|e| gpu_error("kernel", e))?;
            Ok(Self { stream, blas, merge, memory_limit: AtomicUsize::new(memory_limit), name })
        })
    }

    /// Sets the device memory budget of later calls (bytes; 0: 90 % of what is free).
    pub fn set_memory_limit(&self, bytes: usize) {
        self.memory_limit.store(bytes, Ordering::Relaxed);
    }

    /// The device's name, e.g. "NVIDIA H100 80GB HBM3".
    pub fn device_name(&self) -> &str {
        &self.name
    }

    /// How a call is cut to fit the memory budget: rows of `a` per block, and whether all of
    /// `b` stays on the device (else each tile is copied for each block).
    fn plan(&self, n: usize, m: usize, d: usize, k: usize) -> Result<(usize, bool)> {
        let budget = match self.memory_limit.load(Ordering::Relaxed) {
            0 => {
                let (free, _) = self.stream.context().mem_get_info().map_err(|e| gpu_error("memory info", e))?;
                free / 10 * 9
            }
            limit => limit,
        };
        let cols = TILE_COLS.min(m);
        let per_row = d * 4 + cols * 4 + k * 8;
        let offsets = m * 4;
        let resident = m * d * 4;
        for (fixed, keep_b) in [(offsets + resident, true), (offsets + cols * d * 4, false)] {
            let rows_fit = budget.saturating_sub(fixed) / per_row;
            if rows_fit >= n.min(1024) || (!keep_b && rows_fit >= 1) {
                return Ok((rows_fit.min(n), keep_b));
            }
        }
        Err(EngineError::Device {
            what: "memory",
            message: format!(
                "one block needs {} MiB of device memory, more than the {} MiB allowed",
                (offsets + cols * d * 4 + per_row).div_ceil(1 << 20),
                budget >> 20
            ),
        })
    }

    /// The same products as [`Backend::topk_products`] (all of `a` against all of `b`, `b`
    /// resident, in the same tiles) without the selection: the FLOP-rate ceiling the
    /// benchmark compares with.
    pub fn plain_sgemm(&self, a: &Matrix, b: &Matrix) -> Result<()> {
        let (n, m, d) = (a.rows(), b.rows(), a.dim());
        let s = &self.stream;
        run_polled(1, 1, &mut Unwatched, |_| {
            let copy = |e| gpu_error("copy", e);
            let a_dev = s.clone_htod(a.as_slice()).map_err(copy)?;
            let b_dev = s.clone_htod(b.as_slice()).map_err(copy)?;
            let mut scores = s.alloc_zeros::<f32>(n * TILE_COLS.min(m)).map_err(|e| gpu_error("alloc", e))?;
            for c0 in (0..m).step_by(TILE_COLS) {
                let cols = TILE_COLS.min(m - c0);
                self.product(&a_dev, &b_dev.slice(c0 * d..(c0 + cols) * d), &mut scores, n, cols, d)?;
            }
            s.synchronize().map_err(|e| gpu_error("synchronize", e))
        })
    }

    /// Scores of `rows` rows of `a` (on the device) against `cols` rows of `b`: `scores` is
    /// row-major `rows × cols` (column-major `cols × rows`: `b_tile · a_blockᵀ`).
    fn product(
        &self,
        a: &CudaSlice<f32>,
        b: &impl DevicePtr<f32>,
        scores: &mut CudaSlice<f32>,
        rows: usize,
        cols: usize,
        d: usize,
    ) -> Result<()> {
        let cfg = GemmConfig {
            transa: cublasOperation_t::CUBLAS_OP_T,
            transb: cublasOperation_t::CUBLAS_OP_N,
            m: cols as i32,
            n: rows as i32,
            k: d as i32,
            alpha: 1.0f32,
            lda: d as i32,
            ldb: d as i32,
            beta: 0.0f32,
            ldc: cols as i32,
        };
        // SAFETY: a holds rows × d, b holds at least cols × d, scores at least rows × cols.
        unsafe { self.blas.gemm(cfg, b, a, scores) }.map_err(|e| gpu_error("sgemm", e))
    }
}

impl Backend for CudaBackend {
    fn topk_products(
        &self,
        a: &Matrix,
        b: &Matrix,
        offset: Option<&[f32]>,
        k: usize,
        control: &mut dyn Control,
    ) -> Result<TopK> {
        if k > MAX_K {
            return Err(EngineError::KOutOfRange { k, max: MAX_K, what: "k on the CUDA backend" });
        }
        let (n, m, d) = (a.rows(), b.rows(), a.dim());
        let (block, keep_b) = self.plan(n, m, d, k)?;
        let tiles = m.div_ceil(TILE_COLS) as u64;
        let total = n.div_ceil(block) as u64 * tiles;
        let s = &self.stream;
        run_polled(1, total, control, |progress| {
            let copy = |e| gpu_error("copy", e);
            let mut values = vec![0f32; n * k];
            let mut indices = vec![0u32; n * k];
            let off = s.clone_htod(offset.unwrap_or(&[0.0])).map_err(copy)?;
            let has_offset = offset.is_some() as i32;
            let b_all = if keep_b { Some(s.clone_htod(b.as_slice()).map_err(copy)?) } else { None };
            let mut scores = s.alloc_zeros::<f32>(block * TILE_COLS.min(m)).map_err(|e| gpu_error("alloc", e))?;
            for r0 in (0..n).step_by(block) {
                let rows = block.min(n - r0);
                let a_dev = s.clone_htod(a.rows_slice(r0, r0 + rows)).map_err(copy)?;
                let mut top_v = s.clone_htod(&vec![f32::NEG_INFINITY; rows * k]).map_err(copy)?;
                let mut top_i = s.clone_htod(&vec![u32::MAX; rows * k]).map_err(copy)?;
                for c0 in (0..m).step_by(TILE_COLS) {
                    if progress.cancelled() {
                        return Err(EngineError::Cancelled);
                    }
                    let cols = TILE_COLS.min(m - c0);
                    match &b_all {
                        Some(all) => {
                            self.product(&a_dev, &all.slice(c0 * d..(c0 + cols) * d), &mut scores, rows, cols, d)?
                        }
                        None => {
                            let tile = s.clone_htod(b.rows_slice(c0, c0 + cols)).map_err(copy)?;
                            self.product(&a_dev, &tile, &mut scores, rows, cols, d)?
                        }
                    }
                    let cfg =
                        LaunchConfig { grid_dim: (rows as u32, 1, 1), block_dim: (THREADS, 1, 1), shared_mem_bytes: 0 };
                    let (rows_i, cols_i, c0_i, k_i) = (rows as i32, cols as i32, c0 as i32, k as i32);
                    let mut launch = s.launch_builder(&self.merge);
                    launch.arg(&scores).arg(&off).arg(&has_offset).arg(&rows_i).arg(&cols_i).arg(&c0_i).arg(&k_i);
                    launch.arg(&mut top_v).arg(&mut top_i);
                    // SAFETY: the arguments match the kernel's signature and buffer sizes.
                    unsafe { launch.launch(cfg) }.map_err(|e| gpu_error("merge kernel", e))?;
                    progress.add(1);
                }
                s.memcpy_dtoh(&top_v, &mut values[r0 * k..(r0 + rows) * k]).map_err(copy)?;
                s.memcpy_dtoh(&top_i, &mut indices[r0 * k..(r0 + rows) * k]).map_err(copy)?;
            }
            s.synchronize().map_err(|e| gpu_error("synchronize", e))?;
            Ok(TopK { rows: n, k, values, indices })
        })
    }
}
