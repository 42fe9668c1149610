//! The CUDA backend (feature `cuda`): cuBLAS sgemm of a block of `a` rows against a tile of
//! `b` rows into a device score tile, then a per-row top-k merge on the device (a kernel
//! compiled by NVRTC at start-up) that keeps only `rows × k` values and indices between tiles.
//! Host-to-device copies run on a second stream, one tile ahead of the products. Optional
//! TF32 products ([`CudaBackend::set_tf32`]) trade exactness for tensor-core speed. Opening
//! the backend checks the device against the CPU backend on a small exact problem. CUDA
//! libraries are loaded at run time (cudarc's dynamic loading), so one build runs everywhere:
//! without a usable GPU, [`CudaBackend::new`] is an `Unavailable` error, never a panic. All
//! CUDA calls run on a worker thread of the engine's pool (signals blocked), so the driver's
//! own threads inherit that mask.

use super::{cpu::CpuBackend, Backend};
use crate::control::{Control, Unwatched};
use crate::error::{EngineError, Result};
use crate::matrix::Matrix;
use crate::run::run_polled;
use crate::topk::TopK;
use cudarc::cublas::sys::{cublasMath_t, cublasOperation_t};
use cudarc::cublas::{CudaBlas, Gemm, GemmConfig};
use cudarc::driver::sys::CUevent_flags;
use cudarc::driver::{CudaContext, CudaFunction, CudaSlice, CudaStream, LaunchConfig, PushKernelArg};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

/// Largest `k` the merge kernel keeps per row.
pub const MAX_K: usize = 1024;
/// Columns of `b` per score tile.
const TILE_COLS: usize = 4096;
/// Threads per block of the merge kernel (one block per row).
const THREADS: u32 = 256;
/// Tiles the host may queue ahead of the device: enough to keep it busy, few enough that a
/// cancel is seen within a few tiles' time and progress follows the device.
const AHEAD: usize = 3;

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

/// How one call is cut to fit the device memory budget.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Plan {
    /// Rows of `a` per block.
    block: usize,
    /// Whether every tile of `b` stays on the device after its first copy; else each block
    /// copies the tiles again, with at most two of them on the device at a time.
    keep_b: bool,
}

/// The plan for `n × m` products in dimension `d` keeping `k` per row within `budget` bytes:
/// `b` stays on the device when that leaves room for min(n, 1024) rows per block, else its
/// tiles are streamed; an error when not even one row fits. Blocks hold at least one row,
/// even when `n` is 0.
fn plan(n: usize, m: usize, d: usize, k: usize, budget: usize) -> Result<Plan> {
    let cols = TILE_COLS.min(m);
    let per_row = d * 4 + cols * 4 + k * 8;
    let offsets = m * 4;
    let streamed = offsets + 2 * cols * d * 4;
    for (fixed, keep_b) in [(offsets + m * d * 4, true), (streamed, false)] {
        let rows_fit = budget.saturating_sub(fixed) / per_row;
        if rows_fit >= n.min(1024) || (!keep_b && rows_fit >= 1) {
            return Ok(Plan { block: rows_fit.min(n).max(1), keep_b });
        }
    }
    Err(EngineError::Device {
        what: "memory",
        message: format!(
            "one block needs {} MiB of device memory, more than the {} MiB allowed",
            (streamed + per_row).div_ceil(1 << 20),
            budget >> 20
        ),
    })
}

/// Exact top-k of inner products on one NVIDIA GPU.
pub struct CudaBackend {
    /// Runs the products and the merges.
    compute: Arc<CudaStream>,
    /// Runs the host-to-device copies, one tile ahead of `compute`. cudarc's event tracking
    /// makes every use of a buffer wait for its copy, and every free wait for its last use.
    copy: Arc<CudaStream>,
    /// cuBLAS on `compute`, locked for a whole call (the math mode is set per call).
    blas: Mutex<CudaBlas>,
    merge: CudaFunction,
    memory_limit: AtomicUsize,
    tf32: AtomicBool,
    name: String,
}

impl std::fmt::Debug for CudaBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CudaBackend({})", self.name)
    }
}

impl CudaBackend {
    /// Opens GPU 0, compiles the merge kernel and checks the device against the CPU backend
    /// on a small problem; device memory for one call is kept under `memory_limit` bytes
    /// (0: 90 % of what is free at each call).
    pub fn new(memory_limit: usize) -> Result<Self> {
        if let Some(why) = unavailable() {
            return Err(EngineError::Unavailable { what: "CUDA", why });
        }
        let backend = run_polled(1, 1, &mut Unwatched, |_| {
            let devices = CudaContext::device_count().map_err(|e| gpu_error("device count", e))?;
            if devices < 1 {
                return Err(EngineError::Unavailable { what: "CUDA", why: "no CUDA device".into() });
            }
            let ctx = CudaContext::new(0).map_err(|e| gpu_error("context", e))?;
            let name = ctx.name().unwrap_or_else(|_| "GPU 0".into());
            let stream = || ctx.new_stream().map_err(|e| gpu_error("stream", e));
            let (compute, copy) = (stream()?, stream()?);
            let blas = CudaBlas::new(compute.clone()).map_err(|e| gpu_error("cuBLAS", e))?;
            let ptx = kernel_ptx()?;
            let module = ctx.load_module(ptx).map_err(|e| gpu_error("module", e))?;
            let merge = module.load_function("merge_topk").map_err(|e| gpu_error("kernel", e))?;
            Ok(Self {
                compute,
                copy,
                blas: Mutex::new(blas),
                merge,
                memory_limit: AtomicUsize::new(memory_limit),
                tf32: AtomicBool::new(false),
                name,
            })
        })?;
        backend.self_check()?;
        Ok(backend)
    }

    /// Sets the device memory budget of later calls (bytes; 0: 90 % of what is free).
    pub fn set_memory_limit(&self, bytes: usize) {
        self.memory_limit.store(bytes, Ordering::Relaxed);
    }

    /// Whether later calls let cuBLAS round the inputs of its products to TF32 (10-bit
    /// mantissa) on tensor cores: faster, no longer exact f32. Off by default.
    pub fn set_tf32(&self, on: bool) {
        self.tf32.store(on, Ordering::Relaxed);
    }

    /// The device's name, e.g. "NVIDIA H100 80GB HBM3".
    pub fn device_name(&self) -> &str {
        &self.name
    }

    /// The memory budget of one call in bytes.
    fn budget(&self) -> Result<usize> {
        match self.memory_limit.load(Ordering::Relaxed) {
            0 => {
                let (free, _) = self.compute.context().mem_get_info().map_err(|e| gpu_error("memory info", e))?;
                Ok(free / 10 * 9)
            }
            limit => Ok(limit),
        }
    }

    /// The products of [`Backend::topk_products`] (same plan, tiles and copies) without the
    /// merges: the FLOP-rate ceiling the benchmark compares with.
    pub fn plain_sgemm(&self, a: &Matrix, b: &Matrix) -> Result<()> {
        let plan = plan(a.rows(), b.rows(), a.dim(), 0, self.budget()?)?;
        self.pass(a, b, None, 0, plan, &mut Unwatched).map(drop)
    }

    /// Compares the device with the CPU backend on a small problem whose products are exact
    /// in any order (quarter steps in −2..2, d = 8), with offsets, three tiles, both plans and
    /// several blocks, tie order included: a device, driver or library that computes wrongly
    /// is an error when opening the backend instead of silently wrong results.
    fn self_check(&self) -> Result<()> {
        let (n, m, d, k) = (40, 2 * TILE_COLS + 37, 8, 16);
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        let mut coarse = |len: usize| -> Vec<f32> {
            (0..len)
                .map(|_| {
                    state = state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
                    ((state >> 33) % 17) as f32 / 4.0 - 2.0
                })
                .collect()
        };
        let (a, b, off) = (coarse(n * d), coarse(m * d), coarse(m));
        let (a, b) = (Matrix::from_slice(&a, d, "a")?, Matrix::from_slice(&b, d, "b")?);
        let want = CpuBackend::new(1)?.topk_products(&a, &b, Some(&off), k, &mut Unwatched)?;
        for plan in [Plan { block: n, keep_b: true }, Plan { block: 16, keep_b: false }] {
            if self.pass(&a, &b, Some(&off), k, plan, &mut Unwatched)? != want {
                return Err(EngineError::Device {
                    what: "self-check",
                    message: format!("{} gave another top-k than the CPU ({plan:?})", self.name),
                });
            }
        }
        Ok(())
    }

    /// One pass over all products: `a` in blocks of rows and `b` in tiles, both copied on the
    /// copy stream (the next tile while the current one is multiplied), each block times each
    /// tile by cuBLAS, each score tile merged into the rows' top `k` (k = 0: no merging, an
    /// empty result). The host stays at most [`AHEAD`] tiles ahead of the device.
    fn pass(
        &self,
        a: &Matrix,
        b: &Matrix,
        offset: Option<&[f32]>,
        k: usize,
        plan: Plan,
        control: &mut dyn Control,
    ) -> Result<TopK> {
        let (n, m, d) = (a.rows(), b.rows(), a.dim());
        let tiles = m.div_ceil(TILE_COLS);
        let total = (n.div_ceil(plan.block) * tiles) as u64;
        let guard = self.blas.lock().unwrap_or_else(PoisonError::into_inner);
        let blas: &CudaBlas = &guard;
        let (s, cs) = (&self.compute, &self.copy);
        run_polled(1, total, control, |progress| {
            let copy = |e| gpu_error("copy", e);
            let alloc = |e| gpu_error("alloc", e);
            let event = |e| gpu_error("event", e);
            let mut queued = VecDeque::with_capacity(AHEAD + 1);
            let math = match self.tf32.load(Ordering::Relaxed) {
                true => cublasMath_t::CUBLAS_TF32_TENSOR_OP_MATH,
                false => cublasMath_t::CUBLAS_DEFAULT_MATH,
            };
            // SAFETY: sets a mode of the handle this call holds locked.
            unsafe { cudarc::cublas::sys::cublasSetMathMode(*blas.handle(), math) }
                .result()
                .map_err(|e| gpu_error("cuBLAS math mode", e))?;
            let tile = |t: usize| cs.clone_htod(b.rows_slice(t * TILE_COLS, m.min((t + 1) * TILE_COLS))).map_err(copy);
            let mut on_device: Vec<Option<CudaSlice<f32>>> = (0..tiles).map(|_| None).collect();
            let mut scores = s.alloc_zeros::<f32>(plan.block * TILE_COLS.min(m)).map_err(alloc)?;
            let off = s.clone_htod(offset.unwrap_or(&[0.0])).map_err(copy)?;
            let has_offset = offset.is_some() as i32;
            let mut values = vec![0f32; n * k];
            let mut indices = vec![0u32; n * k];
            for r0 in (0..n).step_by(plan.block) {
                let rows = plan.block.min(n - r0);
                let a_dev = cs.clone_htod(a.rows_slice(r0, r0 + rows)).map_err(copy)?;
                let mut top = match k {
                    0 => None,
                    _ => Some((
                        s.clone_htod(&vec![f32::NEG_INFINITY; rows * k]).map_err(copy)?,
                        s.clone_htod(&vec![u32::MAX; rows * k]).map_err(copy)?,
                    )),
                };
                for t in 0..tiles {
                    if progress.cancelled() {
                        return Err(EngineError::Cancelled);
                    }
                    let (c0, cols) = (t * TILE_COLS, TILE_COLS.min(m - t * TILE_COLS));
                    let b_dev: &CudaSlice<f32> = match &mut on_device[t] {
                        Some(copied) => copied,
                        empty => empty.insert(tile(t)?),
                    };
                    product(blas, &a_dev, b_dev, &mut scores, rows, cols, d)?;
                    if let Some((top_v, top_i)) = &mut top {
                        let cfg = LaunchConfig {
                            grid_dim: (rows as u32, 1, 1),
                            block_dim: (THREADS, 1, 1),
                            shared_mem_bytes: 0,
                        };
                        let (rows_i, cols_i, c0_i, k_i) = (rows as i32, cols as i32, c0 as i32, k as i32);
                        let mut launch = s.launch_builder(&self.merge);
                        launch.arg(&scores).arg(&off).arg(&has_offset).arg(&rows_i).arg(&cols_i).arg(&c0_i).arg(&k_i);
                        launch.arg(top_v).arg(top_i);
                        // SAFETY: the arguments match the kernel's signature and buffer sizes.
                        unsafe { launch.launch(cfg) }.map_err(|e| gpu_error("merge kernel", e))?;
                    }
                    queued.push_back(s.record_event(Some(CUevent_flags::CU_EVENT_BLOCKING_SYNC)).map_err(event)?);
                    if t + 1 < tiles && on_device[t + 1].is_none() {
                        on_device[t + 1] = Some(tile(t + 1)?);
                    }
                    if !plan.keep_b {
                        on_device[t] = None;
                    }
                    if queued.len() > AHEAD {
                        queued[0].synchronize().map_err(event)?;
                        queued.pop_front();
                    }
                    progress.add(1);
                }
                if let Some((top_v, top_i)) = &top {
                    s.memcpy_dtoh(top_v, &mut values[r0 * k..(r0 + rows) * k]).map_err(copy)?;
                    s.memcpy_dtoh(top_i, &mut indices[r0 * k..(r0 + rows) * k]).map_err(copy)?;
                }
            }
            s.synchronize().map_err(|e| gpu_error("synchronize", e))?;
            s.context().check_err().map_err(|e| gpu_error("stream events", e))?;
            Ok(TopK { rows: n, k, values, indices })
        })
    }
}

/// Scores of `rows` rows of `a` (on the device) against `cols` rows of `b`: `scores` is
/// row-major `rows × cols` (column-major `cols × rows`: `b_tile · a_blockᵀ`).
fn product(
    blas: &CudaBlas,
    a: &CudaSlice<f32>,
    b: &CudaSlice<f32>,
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
    // SAFETY: a holds rows × d, b holds cols × d, scores at least rows × cols.
    unsafe { blas.gemm(cfg, b, a, scores) }.map_err(|e| gpu_error("sgemm", e))
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
        let plan = plan(a.rows(), b.rows(), a.dim(), k, self.budget()?)?;
        self.pass(a, b, offset, k, plan, control)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plans_keep_b_when_it_fits_stream_tiles_when_not_and_fail_below_one_row() {
        let (n, m, d, k) = (3000, 20_000, 32, 16);
        let per_row = d * 4 + TILE_COLS * 4 + k * 8;
        let resident = m * 4 + m * d * 4;
        let streamed = m * 4 + 2 * TILE_COLS * d * 4;
        assert_eq!(plan(n, m, d, k, 1 << 30).unwrap(), Plan { block: n, keep_b: true });
        // b fits, but not with 1024 rows beside it: tiles are streamed instead.
        let tight = resident + 1023 * per_row;
        assert_eq!(plan(n, m, d, k, tight).unwrap(), Plan { block: (tight - streamed) / per_row, keep_b: false });
        assert_eq!(plan(n, m, d, k, resident + 1024 * per_row).unwrap(), Plan { block: 1024, keep_b: true });
        assert_eq!(plan(n, m, d, k, streamed + per_row).unwrap(), Plan { block: 1, keep_b: false });
        let err = plan(n, m, d, k, streamed + per_row - 1).unwrap_err();
        assert!(matches!(err, EngineError::Device { what: "memory", .. }), "{err:?}");
        assert_eq!(plan(0, m, d, k, 1 << 30).unwrap(), Plan { block: 1, keep_b: true });
        // Fewer rows than 1024: all of them in one block with b resident.
        assert_eq!(plan(10, m, d, k, resident + 10 * per_row).unwrap(), Plan { block: 10, keep_b: true });
        // One tile narrower than TILE_COLS when b is small.
        assert_eq!(
            plan(5, 100, d, 0, 100 * 4 + 100 * d * 4 + 5 * (d * 4 + 400)).unwrap(),
            Plan { block: 5, keep_b: true }
        );
    }
}
