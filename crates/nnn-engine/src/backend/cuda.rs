//! The CUDA backend (feature `cuda`): cuBLAS sgemm of a block of `a` rows against a tile of
//! `b` rows into a device score tile, then a per-row top-k merge on the device (a kernel
//! compiled by NVRTC at start-up) that keeps only `rows × k` values and indices between tiles.
//! Host-to-device copies run on a second stream, one tile ahead of the products, from two
//! page-locked staging buffers that the host fills in turn (pageable copies are several times
//! slower and block the host). A matrix searched many times (prepared, as a session's cache
//! is) stays on the device between calls when the memory budget holds it ([`Resident`]).
//! Optional
//! TF32 products ([`CudaBackend::set_tf32`]) trade exactness for tensor-core speed; the exact
//! TF32 mode ([`CudaBackend::set_exact_tf32`]) keeps exactness: TF32 products shortlist each
//! row's columns and the CPU ranks the shortlist exactly ([`super::certify`]). Opening
//! the backend checks the device against the CPU backend on a small exact problem. CUDA
//! libraries are loaded at run time (cudarc's dynamic loading), so one build runs everywhere:
//! without a usable GPU, [`CudaBackend::new`] is an `Unavailable` error, never a panic. All
//! CUDA calls run on a worker thread of the engine's pool (signals blocked), so the driver's
//! own threads inherit that mask.

use super::certify::{self, Certified};
use super::cpu::padded_offsets;
use super::{cpu::CpuBackend, Backend, TopKRequest};
use crate::control::{Control, Unwatched};
use crate::error::{EngineError, Result};
use crate::matrix::Matrix;
use crate::run::run_polled;
use crate::topk::{Shortlists, TopK};
use cudarc::cublas::sys::{cublasMath_t, cublasOperation_t};
use cudarc::cublas::{CudaBlas, Gemm, GemmConfig};
use cudarc::driver::sys::CUevent_flags;
use cudarc::driver::{
    CudaContext, CudaFunction, CudaSlice, CudaStream, DevicePtr, LaunchConfig, PinnedHostSlice, PushKernelArg,
};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

/// Largest `k` the merge kernel keeps per row.
pub const MAX_K: usize = 1024;
/// Columns of `b` per score tile unless set otherwise ([`CudaBackend::set_tile_cols`]).
pub const TILE_COLS: usize = 16_384;
/// Bytes a host copy into a staging buffer hands to each of its threads, at least.
const COPY_SHARE: usize = 4 << 20;
/// Threads per block of the merge kernel (one block per row).
const THREADS: u32 = 256;
/// Tiles the host may queue ahead of the device: enough to keep it busy, few enough that a
/// cancel is seen within a few tiles' time and progress follows the device.
const AHEAD: usize = 3;

/// One block per row: a first pass over the tile checks whether any score beats the row's
/// k-th best and leaves at once when none does (the common case after the first tiles);
/// otherwise the running top-k and each chunk of 1024 new scores that beat it are sorted
/// together in shared memory (bitonic, best first: larger value, then lower column), so
/// results and tie order equal the CPU backend's.
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
    // after the first tiles almost every score loses to the row's k-th best: one branch-free
    // pass over the tile and a block-wide vote skip the chunked merge when none wins
    {
        float thr_v = tv[k - 1];
        unsigned thr_i = ti[k - 1];
        int wins = 0;
        for (int j = threadIdx.x; j < cols; j += blockDim.x) {
            unsigned g = (unsigned)(col0 + j);
            wins |= better(row[j] - (has_offset ? offset[g] : 0.0f), g, thr_v, thr_i);
        }
        if (!__syncthreads_or(wins)) return;
    }
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

// One warp per shortlisted pair (row `p / wide` of `a`, column `cols[p]` of b, found in its
// tile): the CPU kernel's exact dot product (kernel::dot) with the same f32 operations in the
// same order, so the same bits. Lane l holds the CPU's accumulator lane l % 8 of register
// l / 8: FMA over chunks of 32 values, then chunks of 8 in the first register, then
// (r0 + r1) + (r2 + r3) lane by lane, the upper four lanes onto the lower four, lanes 2 and 3
// onto 0 and 1, lane 1 onto 0; the last d % 8 values by FMA one by one; then minus the
// offset. Explicit _rn intrinsics, so the compiler fuses or reorders nothing.
extern "C" __global__ void exact_scores(const float* __restrict__ a, const unsigned long long* __restrict__ tiles,
                                        int width, int d, const float* __restrict__ offset,
                                        const unsigned* __restrict__ cols, int wide, long long pairs,
                                        float* __restrict__ out) {
    long long p = ((long long)blockIdx.x * blockDim.x + threadIdx.x) >> 5;
    int lane = threadIdx.x & 31;
    if (p >= pairs) return;
    unsigned j = cols[p];
    const float* x = a + (size_t)(p / wide) * d;
    const float* y = (const float*)tiles[j / width] + (size_t)(j % width) * d;
    float acc = 0.0f;
    int i = 0;
    for (; i + 32 <= d; i += 32) acc = __fmaf_rn(x[i + lane], y[i + lane], acc);
    for (; i + 8 <= d; i += 8) if (lane < 8) acc = __fmaf_rn(x[i + lane], y[i + lane], acc);
    const unsigned all = 0xffffffffu;
    acc = __fadd_rn(acc, __shfl_down_sync(all, acc, 8));
    acc = __fadd_rn(acc, __shfl_down_sync(all, acc, 16));
    acc = __fadd_rn(acc, __shfl_down_sync(all, acc, 4));
    acc = __fadd_rn(acc, __shfl_down_sync(all, acc, 2));
    acc = __fadd_rn(acc, __shfl_down_sync(all, acc, 1));
    if (lane != 0) return;
    for (; i < d; i++) acc = __fmaf_rn(x[i], y[i], acc);
    out[p] = __fsub_rn(acc, offset[j]);
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

/// The kernels (the merge, the exact scores) compiled to PTX by NVRTC (needs libnvrtc, not a
/// GPU).
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
    /// Rows of `b` (score columns) per tile.
    tile: usize,
    /// Whether every tile of `b` stays on the device after its first copy; else each block
    /// copies the tiles again, with at most two of them on the device at a time.
    keep_b: bool,
}

/// The plan for `n × m` products in dimension `d` keeping `k` per row within `budget` bytes,
/// `tile_cols` columns per score tile: `b` stays on the device when that leaves room for
/// min(n, 1024) rows per block, else its tiles are streamed; an error when not even one row
/// fits. Blocks hold at least one row, even when `n` is 0.
fn plan(n: usize, m: usize, d: usize, k: usize, budget: usize, tile_cols: usize) -> Result<Plan> {
    let cols = tile_cols.min(m).max(1);
    let per_row = d * 4 + cols * 4 + k * 8;
    let offsets = m * 4;
    let streamed = offsets + 2 * cols * d * 4;
    for (fixed, keep_b) in [(offsets + m * d * 4, true), (streamed, false)] {
        let rows_fit = budget.saturating_sub(fixed) / per_row;
        if rows_fit >= n.min(1024) || (!keep_b && rows_fit >= 1) {
            return Ok(Plan { block: rows_fit.min(n).max(1), tile: cols, keep_b });
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
    exact: CudaFunction,
    memory_limit: AtomicUsize,
    tile_cols: AtomicUsize,
    tf32: AtomicBool,
    exact_tf32: AtomicBool,
    /// Device bytes held by prepared matrices' copies ([`Resident`]), shared with them.
    resident: Arc<AtomicUsize>,
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
            let exact = module.load_function("exact_scores").map_err(|e| gpu_error("kernel", e))?;
            Ok(Self {
                compute,
                copy,
                blas: Mutex::new(blas),
                merge,
                exact,
                memory_limit: AtomicUsize::new(memory_limit),
                tile_cols: AtomicUsize::new(TILE_COLS),
                tf32: AtomicBool::new(false),
                exact_tf32: AtomicBool::new(false),
                resident: Arc::new(AtomicUsize::new(0)),
                name,
            })
        })?;
        backend.self_check()?;
        Ok(backend)
    }

    /// Sets the device memory budget of later calls (bytes; 0: 90 % of what is free). Copies
    /// kept on the device between calls ([`Resident`]) count against it.
    pub fn set_memory_limit(&self, bytes: usize) {
        self.memory_limit.store(bytes, Ordering::Relaxed);
    }

    /// Sets the columns per score tile of later calls (at least 1; default [`TILE_COLS`]):
    /// wider tiles give cuBLAS larger products and the merge fewer launches, at the price of
    /// device memory per row and of page-locked host memory (two staging tiles).
    pub fn set_tile_cols(&self, cols: usize) {
        self.tile_cols.store(cols.max(1), Ordering::Relaxed);
    }

    /// Page-locked host bytes a call of `d` dimensions holds: two staging tiles.
    pub fn pinned_bytes(&self, d: usize) -> usize {
        2 * self.tile_cols.load(Ordering::Relaxed) * d * 4
    }

    /// Whether later calls let cuBLAS round the inputs of its products to TF32 (10-bit
    /// mantissa) on tensor cores: faster, no longer exact f32. Off by default.
    pub fn set_tf32(&self, on: bool) {
        self.tf32.store(on, Ordering::Relaxed);
    }

    /// Whether later calls run the exact TF32 mode (off by default): TF32 tensor-core products
    /// keep each row's best `k'` columns by estimate (`k' = max(2k, k + 32)`, at most
    /// [`MAX_K`]: in emulation (`cargo bench --bench certify`), with k = 128 over 1,000,000
    /// random unit rows of d = 512, the 128th and the 256th best scores are a median 0.008
    /// apart, 3.7 times the median bound, and every row of 200 was certified, as at k = 10 with
    /// k' = 42), the shortlists are scored exactly (on the device while `b` is there) and
    /// ranked, rows that cannot be certified from scratch by the host's CPU
    /// ([`certify::exact_from_scores`]): results equal the CPU backend's bit for bit. Calls
    /// whose rows the CPU's 16-bit path cannot round, or on a CPU without AVX2, take the f32
    /// products instead. Takes precedence over [`CudaBackend::set_tf32`].
    pub fn set_exact_tf32(&self, on: bool) {
        self.exact_tf32.store(on, Ordering::Relaxed);
    }

    /// The exact TF32 mode's answer to `request` ([`CudaBackend::set_exact_tf32`]) with how
    /// many rows the host recomputed; `None` where the mode cannot run (see there). The host
    /// work runs on every core.
    pub fn topk_exact_tf32(&self, request: &TopKRequest, control: &mut dyn Control) -> Result<Option<Certified>> {
        let TopKRequest { a, b, k, .. } = *request;
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        let (a_sizes, b_max) = run_polled(threads, 1, control, |_| {
            // a prepared `b` (a session's cache) is sized once, not at every search
            let b_max = match request.prepared {
                Some(p) => *p.device.b_size.get_or_init(|| certify::largest_size(b)),
                None => certify::largest_size(b),
            };
            Ok((certify::row_sizes(a), b_max))
        })?;
        let Some(b_max) = b_max.filter(|_| certify::exact_available(&a_sizes)) else {
            return Ok(None);
        };
        let off_max = request.largest_offset();
        let wide = (2 * k).max(k + 32).min(MAX_K).min(b.rows());
        let off = padded_offsets(request.offset, b.rows());
        // the shortlists' exact scores on the device while `b` is there, else on the host
        let (estimates, short, scored) =
            self.run_then(&TopKRequest { k: wide, ..*request }, true, control, |tiles, width, estimates, control| {
                let short = certify::shortlists(&estimates);
                let scored = match tiles.is_empty() {
                    true => None,
                    false => Some(self.exact_scores(a, tiles, width, &off, &short, control)?),
                };
                Ok((estimates, short, scored))
            })?;
        let margins: Vec<f64> = a_sizes.iter().map(|&s| certify::tf32_margin(s, b_max, a.dim(), off_max)).collect();
        let scores = certify::Scores { short: &short, off: &off, given: scored.as_deref() };
        certify::exact_from_scores(request, &estimates, scores, &margins, threads, control).map(Some)
    }

    /// The device's name, e.g. "NVIDIA H100 80GB HBM3".
    pub fn device_name(&self) -> &str {
        &self.name
    }

    /// Device bytes held now by copies kept between calls ([`Resident`]).
    pub fn resident_bytes(&self) -> usize {
        self.resident.load(Ordering::Relaxed)
    }

    /// The memory budget of one call in bytes, besides the copies kept on the device for other
    /// matrices; `own`: bytes of this call's `b` already on the device, which count as free.
    fn budget(&self, own: usize) -> Result<usize> {
        match self.memory_limit.load(Ordering::Relaxed) {
            0 => {
                let (free, _) = self.compute.context().mem_get_info().map_err(|e| gpu_error("memory info", e))?;
                Ok((free + own) / 10 * 9)
            }
            limit => Ok(limit.saturating_sub(self.resident_bytes() - own)),
        }
    }

    /// `request` in one [`CudaBackend::pass`] planned within the budget. With `b` prepared,
    /// the pass starts from the tiles an earlier call left in its slot ([`Resident`]) and,
    /// when its plan keeps `b` on the device, leaves them there for the next call.
    fn run(&self, request: &TopKRequest, tf32: bool, control: &mut dyn Control) -> Result<TopK> {
        self.run_then(request, tf32, control, |_, _, top, _| Ok(top))
    }

    /// [`CudaBackend::run`], then `then` with `b`'s tiles on the device (`width` rows each;
    /// none when the plan streamed them), the pass's result and `control`, before the tiles
    /// are kept or freed.
    fn run_then<T>(
        &self,
        request: &TopKRequest,
        tf32: bool,
        control: &mut dyn Control,
        then: impl FnOnce(&[CudaSlice<f32>], usize, TopK, &mut dyn Control) -> Result<T>,
    ) -> Result<T> {
        let TopKRequest { a, b, k, .. } = *request;
        let slot = request.prepared.map(|p| &p.device);
        let kept = slot.and_then(Resident::take);
        let own = kept.as_ref().map_or(0, DeviceRows::bytes);
        let plan = plan(a.rows(), b.rows(), a.dim(), k, self.budget(own)?, self.tile_cols.load(Ordering::Relaxed))?;
        let shape = (b.rows(), b.dim(), plan.tile);
        // a copy of another shape or tile width, or one the budget no longer holds, is freed
        // here, before the pass allocates
        let start = match kept {
            Some(mut r) if plan.keep_b && r.shape == shape => std::mem::take(&mut r.tiles),
            other => {
                drop(other);
                Vec::new()
            }
        };
        let (top, tiles) = self.pass(request, plan, start, tf32, control)?;
        let whole = plan.keep_b && b.rows() > 0 && tiles.len() == b.rows().div_ceil(plan.tile);
        let out = then(if whole { &tiles } else { &[] }, plan.tile, top, control)?;
        if let Some(slot) = slot.filter(|_| whole) {
            slot.put(DeviceRows::new(tiles, shape, &self.resident));
        }
        Ok(out)
    }

    /// The exact scores of the pairs of `short` (the same number of columns for every row of
    /// `a`), in its order, by the `exact_scores` kernel from `b`'s `tiles` (`width` rows each)
    /// minus `off` (one per row of `b`): the bits of the CPU's exact pass.
    fn exact_scores(
        &self,
        a: &Matrix,
        tiles: &[CudaSlice<f32>],
        width: usize,
        off: &[f32],
        short: &Shortlists,
        control: &mut dyn Control,
    ) -> Result<Vec<f32>> {
        let pairs = short.cols.len();
        let wide = pairs / a.rows().max(1);
        debug_assert!(short.starts.windows(2).all(|w| w[1] - w[0] == wide));
        run_polled(1, 1, control, |_| {
            let s = &self.compute;
            let (copy, alloc) = (|e| gpu_error("copy", e), |e| gpu_error("alloc", e));
            let a_dev = s.clone_htod(a.as_slice()).map_err(copy)?;
            let off_dev = s.clone_htod(off).map_err(copy)?;
            let cols = s.clone_htod(&short.cols).map_err(copy)?;
            // (the guards make later uses of each tile wait for this kernel's reads)
            let (pointers, _reads): (Vec<u64>, Vec<_>) = tiles.iter().map(|t| t.device_ptr(s)).unzip();
            let pointers = s.clone_htod(&pointers).map_err(copy)?;
            let mut out = s.alloc_zeros::<f32>(pairs.max(1)).map_err(alloc)?;
            let warps_per_block = (THREADS / 32) as usize;
            let cfg = LaunchConfig {
                grid_dim: (pairs.div_ceil(warps_per_block).max(1) as u32, 1, 1),
                block_dim: (THREADS, 1, 1),
                shared_mem_bytes: 0,
            };
            let (width_i, d_i, wide_i, pairs_i) = (width as i32, a.dim() as i32, wide as i32, pairs as i64);
            let mut launch = s.launch_builder(&self.exact);
            launch.arg(&a_dev).arg(&pointers).arg(&width_i).arg(&d_i).arg(&off_dev).arg(&cols);
            launch.arg(&wide_i).arg(&pairs_i).arg(&mut out);
            // SAFETY: the arguments match the kernel's signature; every column of `cols` is a row
            // of `b`, held by the tile its index divided by `width` names.
            unsafe { launch.launch(cfg) }.map_err(|e| gpu_error("exact scores kernel", e))?;
            let mut scores = vec![0f32; pairs];
            s.memcpy_dtoh(&out.slice(..pairs), &mut scores).map_err(copy)?;
            s.synchronize().map_err(|e| gpu_error("synchronize", e))?;
            Ok(scores)
        })
    }

    /// The products of [`Backend::topk`] (same plan, tiles and copies) without the
    /// merges: the FLOP-rate ceiling the benchmark compares with.
    pub fn plain_sgemm(&self, a: &Matrix, b: &Matrix) -> Result<()> {
        self.run(&TopKRequest::new(a, b, 0), self.tf32.load(Ordering::Relaxed), &mut Unwatched).map(drop)
    }

    /// Compares the device with the CPU backend on a small problem whose products are exact
    /// in any order (quarter steps in −2..2, d = 8), with offsets, three tiles, both plans and
    /// several blocks, tie order included: a device, driver or library that computes wrongly
    /// is an error when opening the backend instead of silently wrong results.
    fn self_check(&self) -> Result<()> {
        let tile = 4096;
        let (n, m, d, k) = (40, 2 * tile + 37, 8, 16);
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
        let want = CpuBackend::new(1)?.topk(&TopKRequest::new(&a, &b, k).with_offset(Some(&off)), &mut Unwatched)?;
        for plan in [Plan { block: n, tile, keep_b: true }, Plan { block: 16, tile, keep_b: false }] {
            let request = TopKRequest::new(&a, &b, k).with_offset(Some(&off));
            if self.pass(&request, plan, Vec::new(), false, &mut Unwatched)?.0 != want {
                return Err(EngineError::Device {
                    what: "self-check",
                    message: format!("{} gave another top-k than the CPU ({plan:?})", self.name),
                });
            }
        }
        Ok(())
    }

    /// One pass over all products of `request`: `a` in blocks of rows and `b` in tiles, both copied on the
    /// copy stream (the next tile while the current one is multiplied; whole tiles through two
    /// page-locked staging buffers used in turn), each block times each tile by cuBLAS, each
    /// score tile merged into the rows' top `k` (k = 0: no merging, an empty result); with
    /// `tf32`, cuBLAS may round the products' inputs to TF32. The host stays at most [`AHEAD`]
    /// tiles ahead of the device. `start`: the first tiles of `b` already on the device (as
    /// [`plan.tile`](Plan::tile) cuts it); with [`Plan::keep_b`], the tiles on the device at
    /// the end are returned beside the result.
    fn pass(
        &self,
        request: &TopKRequest,
        plan: Plan,
        start: Vec<CudaSlice<f32>>,
        tf32: bool,
        control: &mut dyn Control,
    ) -> Result<(TopK, Vec<CudaSlice<f32>>)> {
        let TopKRequest { a, b, offset, k, .. } = *request;
        let (n, m, d) = (a.rows(), b.rows(), a.dim());
        let width = plan.tile;
        let tiles = m.div_ceil(width);
        let total = (n.div_ceil(plan.block) * tiles) as u64;
        let guard = self.blas.lock().unwrap_or_else(PoisonError::into_inner);
        let blas: &CudaBlas = &guard;
        let (s, cs) = (&self.compute, &self.copy);
        run_polled(1, total, control, |progress| {
            let copy = |e| gpu_error("copy", e);
            let alloc = |e| gpu_error("alloc", e);
            let event = |e| gpu_error("event", e);
            let mut queued = VecDeque::with_capacity(AHEAD + 1);
            let math = match tf32 {
                true => cublasMath_t::CUBLAS_TF32_TENSOR_OP_MATH,
                false => cublasMath_t::CUBLAS_DEFAULT_MATH,
            };
            // SAFETY: sets a mode of the handle this call holds locked.
            unsafe { cudarc::cublas::sys::cublasSetMathMode(*blas.handle(), math) }
                .result()
                .map_err(|e| gpu_error("cuBLAS math mode", e))?;
            let ctx = s.context();
            // made at the first whole tile to copy (none when `b` is one tile or on the device)
            let mut staging: Vec<PinnedHostSlice<f32>> = Vec::new();
            let mut tile = |t: usize| -> Result<CudaSlice<f32>> {
                let rows = b.rows_slice(t * width, m.min((t + 1) * width));
                if tiles == 1 || rows.len() < width * d {
                    return cs.clone_htod(rows).map_err(copy);
                }
                while staging.len() < 2 {
                    // SAFETY: every staging element is written before it is copied (whole tiles only).
                    staging.push(unsafe { ctx.alloc_pinned::<f32>(width * d) }.map_err(alloc)?);
                }
                let buf = &mut staging[t % 2];
                // waits until the copy that last read this buffer is done
                parallel_copy(buf.as_mut_slice().map_err(copy)?, rows);
                // SAFETY: the whole slice is written by the copy below before any use.
                let mut dst = unsafe { cs.alloc::<f32>(width * d) }.map_err(alloc)?;
                cs.memcpy_htod(buf, &mut dst).map_err(copy)?;
                Ok(dst)
            };
            let mut on_device: Vec<Option<CudaSlice<f32>>> = start.into_iter().map(Some).collect();
            on_device.resize_with(tiles, || None);
            let mut scores = s.alloc_zeros::<f32>(plan.block * width).map_err(alloc)?;
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
                    let (c0, cols) = (t * width, width.min(m - t * width));
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
            let kept = on_device.into_iter().flatten().collect();
            Ok((TopK { rows: n, k, values, indices }, kept))
        })
    }
}

/// Copies `src` into the start of `dst` on up to eight threads (page-locked, write-combined
/// staging memory is filled faster by several cores than by one).
fn parallel_copy(dst: &mut [f32], src: &[f32]) {
    let threads = (src.len() * 4 / COPY_SHARE).clamp(1, 8);
    if threads == 1 {
        dst[..src.len()].copy_from_slice(src);
        return;
    }
    let chunk = src.len().div_ceil(threads);
    std::thread::scope(|scope| {
        for (d, s) in dst[..src.len()].chunks_mut(chunk).zip(src.chunks(chunk)) {
            scope.spawn(move || d.copy_from_slice(s));
        }
    });
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

/// The CUDA backend's slot in [`super::Prepared`]: the tiles of a matrix searched many times,
/// left on the device by a call whose plan kept them there ([`Plan::keep_b`]), so that later
/// calls copy only their queries; freed with the slot (a session's cache entry), and when a
/// later call plans another tile width or no longer has room for them. Their bytes count
/// against the budget of every call ([`CudaBackend::set_memory_limit`]). Also the matrix's
/// largest row size for the exact TF32 mode's bound, measured at its first use.
#[derive(Default)]
pub struct Resident {
    rows: Mutex<Option<DeviceRows>>,
    /// [`certify::largest_size`] of the matrix.
    b_size: std::sync::OnceLock<Option<certify::RowSize>>,
}

impl Resident {
    /// Device bytes held.
    pub fn bytes(&self) -> usize {
        self.lock().as_ref().map_or(0, DeviceRows::bytes)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<DeviceRows>> {
        self.rows.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// What the slot holds, taken out for a call (put back by [`Resident::put`]).
    fn take(&self) -> Option<DeviceRows> {
        self.lock().take()
    }

    /// Keeps `rows` in the slot.
    fn put(&self, rows: DeviceRows) {
        *self.lock() = Some(rows);
    }
}

/// A `rows × dim` matrix on the device in tiles of `width` rows (the last one fewer), counted
/// in the backend's total while held.
struct DeviceRows {
    tiles: Vec<CudaSlice<f32>>,
    /// (rows, dim, width).
    shape: (usize, usize, usize),
    counted: Arc<AtomicUsize>,
}

impl DeviceRows {
    /// Holds `tiles` of a matrix of `shape`, adding their bytes to `counted`.
    fn new(tiles: Vec<CudaSlice<f32>>, shape: (usize, usize, usize), counted: &Arc<AtomicUsize>) -> Self {
        let rows = Self { tiles, shape, counted: counted.clone() };
        counted.fetch_add(rows.bytes(), Ordering::Relaxed);
        rows
    }

    /// Device bytes of the matrix.
    fn bytes(&self) -> usize {
        self.shape.0 * self.shape.1 * 4
    }
}

impl Drop for DeviceRows {
    fn drop(&mut self) {
        self.counted.fetch_sub(self.bytes(), Ordering::Relaxed);
        // the tiles are freed next, maybe on a thread that never used the device (a session's
        // main thread dropping its cache entry): the context must be current there
        if let Some(t) = self.tiles.first() {
            t.context().record_err(t.context().bind_to_thread());
        }
    }
}

impl Backend for CudaBackend {
    fn topk(&self, request: &TopKRequest, control: &mut dyn Control) -> Result<TopK> {
        let k = request.k;
        if k > MAX_K {
            return Err(EngineError::KOutOfRange { k, max: MAX_K, what: "k on the CUDA backend" });
        }
        if self.exact_tf32.load(Ordering::Relaxed) {
            if let Some(exact) = self.topk_exact_tf32(request, control)? {
                return Ok(exact.top);
            }
        }
        self.run(request, self.tf32.load(Ordering::Relaxed), control)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plans_keep_b_when_it_fits_stream_tiles_when_not_and_fail_below_one_row() {
        let (n, m, d, k, tile) = (3000, 20_000, 32, 16, 4096);
        let per_row = d * 4 + tile * 4 + k * 8;
        let resident = m * 4 + m * d * 4;
        let streamed = m * 4 + 2 * tile * d * 4;
        let p = |block, keep_b| Plan { block, tile, keep_b };
        assert_eq!(plan(n, m, d, k, 1 << 30, tile).unwrap(), p(n, true));
        // b fits, but not with 1024 rows beside it: tiles are streamed instead.
        let tight = resident + 1023 * per_row;
        assert_eq!(plan(n, m, d, k, tight, tile).unwrap(), p((tight - streamed) / per_row, false));
        assert_eq!(plan(n, m, d, k, resident + 1024 * per_row, tile).unwrap(), p(1024, true));
        assert_eq!(plan(n, m, d, k, streamed + per_row, tile).unwrap(), p(1, false));
        let err = plan(n, m, d, k, streamed + per_row - 1, tile).unwrap_err();
        assert!(matches!(err, EngineError::Device { what: "memory", .. }), "{err:?}");
        assert_eq!(plan(0, m, d, k, 1 << 30, tile).unwrap(), p(1, true));
        // Fewer rows than 1024: all of them in one block with b resident.
        assert_eq!(plan(10, m, d, k, resident + 10 * per_row, tile).unwrap(), p(10, true));
        // One tile narrower than tile_cols when b is small.
        assert_eq!(
            plan(5, 100, d, 0, 100 * 4 + 100 * d * 4 + 5 * (d * 4 + 400), tile).unwrap(),
            Plan { block: 5, tile: 100, keep_b: true }
        );
        // Wider tiles cost device memory per row: the same budget holds fewer rows.
        let wide = plan(n, m, d, k, tight, 4 * tile).unwrap();
        assert!(wide.tile == 4 * tile && wide.block < (tight - streamed) / per_row, "{wide:?}");
    }

    /// The `exact_scores` kernel's operations for one pair as a warp runs them, lane by lane
    /// (a shuffle from beyond the last lane returns the lane's own value, as on the device).
    fn warp_dot(x: &[f32], y: &[f32]) -> f32 {
        let d = x.len();
        let mut acc = [0f32; 32];
        let mut i = 0;
        while i + 32 <= d {
            (0..32).for_each(|l| acc[l] = x[i + l].mul_add(y[i + l], acc[l]));
            i += 32;
        }
        while i + 8 <= d {
            (0..8).for_each(|l| acc[l] = x[i + l].mul_add(y[i + l], acc[l]));
            i += 8;
        }
        for delta in [8, 16, 4, 2, 1] {
            let before = acc;
            (0..32).for_each(|l| acc[l] = before[l] + before.get(l + delta).copied().unwrap_or(before[l]));
        }
        let mut s = acc[0];
        while i < d {
            s = x[i].mul_add(y[i], s);
            i += 1;
        }
        s
    }

    /// The device's exact scores are the CPU's exact pass's bits only if the kernel's lanes
    /// and shuffles perform the CPU kernel's operations in its order: checked here, in
    /// emulation, for every length up to 100 and the usual embedding sizes, at scales from
    /// tiny to huge; the kernel itself is checked on a GPU
    /// (`tests/cuda.rs::exact_tf32_mode_equals_the_cpu_bit_for_bit`).
    #[test]
    #[ignore = "needs AVX2: make test runs it (--ignored avx2) where the CPU has it"]
    fn avx2_the_exact_scores_kernel_s_order_is_the_cpu_kernel_s() {
        assert!(crate::backend::kernel::available(), "this CPU has no AVX2 kernel");
        let values = crate::backend::cpu::tests::values;
        for d in (1..=100).chain([384, 512, 768, 1000, 1536]) {
            for (seed, scale) in [(1u64, 1.0f32), (2, 1e-20), (3, 1e15)] {
                let (x, y) = (values(d, seed + d as u64), values(d, 7 * seed + d as u64));
                let x: Vec<f32> = x.iter().map(|v| v * scale).collect();
                // SAFETY: the CPU has the kernel (asserted); equal lengths.
                let cpu = unsafe { crate::backend::kernel::dot(&x, &y) };
                assert_eq!(warp_dot(&x, &y).to_bits(), cpu.to_bits(), "d={d}, scale {scale}");
            }
        }
    }

    #[test]
    fn device_copies_count_from_when_they_are_kept_until_they_are_dropped() {
        let counted = Arc::new(AtomicUsize::new(0));
        let slot = Resident::default();
        slot.put(DeviceRows::new(Vec::new(), (1000, 64, 512), &counted));
        assert_eq!((slot.bytes(), counted.load(Ordering::Relaxed)), (256_000, 256_000));
        let taken = slot.take().expect("kept");
        assert_eq!((slot.bytes(), counted.load(Ordering::Relaxed)), (0, 256_000), "held while taken out");
        drop(taken);
        assert_eq!(counted.load(Ordering::Relaxed), 0);
        slot.put(DeviceRows::new(Vec::new(), (10, 8, 4), &counted));
        drop(slot);
        assert_eq!(counted.load(Ordering::Relaxed), 0, "freed with the slot");
    }

    #[test]
    fn parallel_copy_fills_the_start_of_the_buffer_exactly() {
        for len in [0, 1, 1000, (3 * COPY_SHARE / 4) + 17] {
            let src: Vec<f32> = (0..len).map(|i| i as f32).collect();
            let mut dst = vec![-1f32; len + 5];
            parallel_copy(&mut dst, &src);
            assert_eq!(&dst[..len], &src[..]);
            assert!(dst[len..].iter().all(|&v| v == -1.0));
        }
    }
}
