//! Which engine backend runs a call: `nnn.backend`, the features this library was built with,
//! and whether a GPU is usable here. The CUDA backend is opened once per server process (at
//! the first call that would use it) and kept; `auto` sends only work of at least
//! [`AUTO_GPU_FLOP`] to it.

use crate::guc;
use crate::postgres::errors::{fail, or_raise};
use nnn_engine::{Backend, CpuBackend};
use pgrx::PgSqlErrorCode::*;

/// Work (floating-point operations) from which `auto` prefers a usable GPU: below it, copying
/// the vectors to the device costs more than the CPU needs.
pub const AUTO_GPU_FLOP: f64 = 2e10;

/// The backend for a call of about `flop` operations, as `nnn.backend` asks.
pub fn backend(flop: f64) -> Box<dyn Backend> {
    let threads = guc::threads();
    let cpu = || -> Box<dyn Backend> { Box::new(or_raise(CpuBackend::new(threads), "nnn.threads")) };
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
        guc::BackendChoice::Faiss => faiss(threads),
    }
}

#[cfg(feature = "cuda")]
fn gpu() -> Result<Box<dyn Backend>, String> {
    use crate::postgres::errors::report;
    use nnn_engine::backend::cuda::CudaBackend;
    use nnn_engine::EngineError;
    use pgrx::PgLogLevel::{DEBUG1, WARNING};
    use std::sync::{Arc, OnceLock};
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
    Ok(Box::new(g))
}

#[cfg(not(feature = "cuda"))]
fn gpu() -> Result<Box<dyn Backend>, String> {
    Err("this build of nnn has no CUDA backend (build it with the cuda feature)".into())
}

#[cfg(feature = "faiss")]
fn faiss(threads: usize) -> Box<dyn Backend> {
    let b = nnn_engine::faiss::backend::FaissBackend::new(&guc::faiss_backend_index(), guc::ann_params(), threads);
    Box::new(or_raise(b, "nnn.backend"))
}

#[cfg(not(feature = "faiss"))]
fn faiss(_threads: usize) -> Box<dyn Backend> {
    fail(
        ERRCODE_FEATURE_NOT_SUPPORTED,
        "this build of nnn has no Faiss backend",
        "Build the extension with the faiss feature (make install does), or SET nnn.backend = 'cpu'.",
    )
}
