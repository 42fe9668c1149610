//! Faiss (feature `faiss`): approximate NNN search over augmented vectors `[r, bias]`
//! ([`ann::AnnIndex`]) and a [`Backend`](crate::Backend) that runs the fused product and
//! selection through a Faiss index ([`backend::FaissBackend`]). Without the feature the same
//! types exist and report that this build has no Faiss, so callers need no feature switch.
//!
//! Every Faiss call runs on a worker of the engine's pool, whose signals are blocked, so the
//! OpenMP threads Faiss starts inherit that mask; the caller's thread keeps polling its control.

#[cfg(not(feature = "faiss"))]
mod absent;
#[cfg(feature = "faiss")]
pub mod ann;
#[cfg(feature = "faiss")]
pub mod backend;
#[cfg(feature = "faiss")]
mod index;
#[cfg(feature = "faiss")]
mod native;
#[cfg(not(feature = "faiss"))]
pub use absent::{ann, backend};

use crate::matrix::Matrix;
use std::collections::HashSet;

/// Whether this build has Faiss.
pub const AVAILABLE: bool = cfg!(feature = "faiss");

/// Per-search knobs; 0 leaves the index's own value.
#[derive(Debug, Clone, Copy, Default)]
pub struct AnnParams {
    /// Inverted lists visited per query (IVF structures).
    pub probes: usize,
    /// Candidate list length while searching (HNSW structures).
    pub ef_search: usize,
}

/// One approximate search ([`ann::AnnIndex::search`]): about `k` ids per query row of
/// `queries` by `q·r − α·bias(r)`, leaving out the ids in `skip`, with `params`.
#[derive(Clone, Copy)]
pub struct AnnSearch<'a> {
    /// The queries, one per row.
    pub queries: &'a Matrix<'a>,
    /// The bias weight α.
    pub alpha: f32,
    /// Ids wanted per query.
    pub k: usize,
    /// Ids left out (rows the caller scores from fresher data).
    pub skip: &'a HashSet<i64>,
    /// The structure's search knobs.
    pub params: AnnParams,
}

/// Stops the BLAS library's worker threads where it is OpenBLAS (Faiss links the system BLAS).
/// OpenBLAS starts one thread per extra core as soon as it is loaded, and each spins for about
/// 0.1 s of CPU time (`sched_yield`) before it sleeps: in a database session that has just
/// loaded nnn, that is CPU taken from its first search or bias build. OpenBLAS starts them
/// again at its next multi-threaded call (as after a `fork`). Does nothing with any other BLAS,
/// or none. Call it while no BLAS call runs (as when the library loads).
pub fn stop_idle_blas_threads() {
    // SAFETY: looks a symbol up by name and calls it only if found, with OpenBLAS's signature
    // for it (no arguments, returns int); OpenBLAS's own fork handler calls the same function.
    unsafe {
        let f = libc::dlsym(libc::RTLD_DEFAULT, c"blas_thread_shutdown_".as_ptr());
        if !f.is_null() {
            let shutdown: unsafe extern "C" fn() -> std::os::raw::c_int = std::mem::transmute(f);
            shutdown();
        }
    }
}

#[cfg(feature = "faiss")]
use crate::error::EngineError;

#[cfg(feature = "faiss")]
/// A Faiss failure (bad factory string, unsupported operation, out of memory) as an engine
/// error, without the C++ function and source location Faiss puts before its message.
fn faiss_error(what: &'static str, e: impl std::fmt::Display) -> EngineError {
    let full = e.to_string();
    let message =
        full.find(" at /").and_then(|at| full[at..].find(": ").map(|c| full[at + c + 2..].to_string())).unwrap_or(full);
    EngineError::Faiss { what, message }
}

#[cfg(feature = "faiss")]
/// `[r, extra]` rows: each row of `data` (`dim` wide) followed by one value of `extra`.
fn augmented(data: &[f32], dim: usize, extra: impl Iterator<Item = f32>) -> Vec<f32> {
    let mut out = Vec::with_capacity(data.len() / dim * (dim + 1));
    for (row, x) in data.chunks_exact(dim).zip(extra) {
        out.extend_from_slice(row);
        out.push(x);
    }
    out
}
