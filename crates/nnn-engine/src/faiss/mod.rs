//! Faiss (feature `faiss`): approximate NNN search over augmented vectors `[r, bias]`
//! ([`ann::AnnIndex`]) and a [`Backend`](crate::Backend) that runs the fused product and
//! selection through a Faiss index ([`backend::FaissBackend`]).
//!
//! Every Faiss call runs on a worker of the engine's pool, whose signals are blocked, so the
//! OpenMP threads Faiss starts inherit that mask; the caller's thread keeps polling its control.

pub mod ann;
pub mod backend;
mod index;
mod native;

use crate::error::EngineError;

/// A Faiss failure (bad factory string, unsupported operation, out of memory) as an engine
/// error, without the C++ function and source location Faiss puts before its message.
fn faiss_error(what: &'static str, e: impl std::fmt::Display) -> EngineError {
    let full = e.to_string();
    let message =
        full.find(" at /").and_then(|at| full[at..].find(": ").map(|c| full[at + c + 2..].to_string())).unwrap_or(full);
    EngineError::Faiss { what, message }
}

/// `[r, extra]` rows: each row of `data` (`dim` wide) followed by one value of `extra`.
fn augmented(data: &[f32], dim: usize, extra: impl Iterator<Item = f32>) -> Vec<f32> {
    let mut out = Vec::with_capacity(data.len() / dim * (dim + 1));
    for (row, x) in data.chunks_exact(dim).zip(extra) {
        out.extend_from_slice(row);
        out.push(x);
    }
    out
}
