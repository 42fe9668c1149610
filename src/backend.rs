//! Which engine backend runs a call: `nnn.backend`, and whether a GPU (or Faiss) is usable
//! here; the engine reports what this build lacks. The CUDA backend is opened once per server
//! process (at the first call that would use it) and kept; `auto` sends only work of at least
//! [`AUTO_GPU_FLOP`] to it.

use crate::guc;
use crate::postgres::errors::{fail, or_raise, report};
use nnn_engine::backend::cuda::CudaBackend;
use nnn_engine::faiss::backend::FaissBackend;
use nnn_engine::{Backend, CpuBackend, EngineError};
use pgrx::PgLogLevel::{DEBUG1, WARNING};
use pgrx::PgSqlErrorCode::*;
use std::sync::{Arc, OnceLock};

/// Work (floating-point operations) from which `auto` prefers a usable GPU: below it, copying
/// the vectors to the device costs more than the CPU needs.
pub const AUTO_GPU_FLOP: f64 = 2e10;

/// The backend for a call of about `flop` operations, as `nnn.backend` asks.
pub fn backend(flop: f64) -> Arc<dyn Backend> {
    let threads = guc::threads();
    let cpu = || -> Arc<dyn Backend> { Arc::new(or_raise(CpuBackend::new(threads), "nnn.threads")) };
    match guc::BACKEND.get() {
        guc::BackendChoice::Cpu => cpu(),
        guc::BackendChoice::Auto if flop >= AUTO_GPU_FLOP => gpu().unwrap_or_else(|_| cpu()),
        guc::BackendChoice::Auto => cpu(),
        guc::BackendChoice::Cuda => gpu().unwrap_or_else(|why| {
            fail(
                ERRCODE_FEATURE_NOT_SUPPORTED,
                why,
                "SET nnn.backend = 'cpu' (or 'auto', which uses a GPU only when one is usable).",
            )
        }),
        guc::BackendChoice::Faiss => {
            let b = FaissBackend::new(&guc::faiss_backend_index(), guc::ann_params(), threads);
            Arc::new(or_raise(b, "nnn.backend"))
        }
    }
}

/// This process's GPU backend, opened at the first call, or why there is none.
fn gpu() -> Result<Arc<dyn Backend>, String> {
    static OPENED: OnceLock<Result<Arc<CudaBackend>, String>> = OnceLock::new();
    let opened = OPENED.get_or_init(|| {
        let r = CudaBackend::new(0).map(Arc::new);
        match &r {
            Ok(g) => report(DEBUG1, format!("nnn: CUDA device {} is usable", g.device_name())),
            Err(why @ EngineError::Unavailable { .. }) => {
                report(DEBUG1, format!("nnn: no GPU, the CPU backend runs everything: {why}"))
            }
            Err(why) => report(WARNING, format!("nnn: the GPU cannot be used, the CPU backend runs everything: {why}")),
        }
        r.map_err(|e| e.to_string())
    });
    let g = opened.clone()?;
    g.set_memory_limit(guc::CUDA_MEMORY_MB.get() as usize * (1 << 20));
    g.set_tf32(guc::CUDA_TF32.get());
    Ok(g)
}
