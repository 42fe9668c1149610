//! Search: top-k candidates of `q·r − α·bias(r)` for one query or a batch (one fused GEMM).

use crate::backend::cpu::CpuBackend;
use crate::backend::kernel;
use crate::backend::{Backend, Prepared, TopKRequest};
use crate::control::Control;
use crate::error::{EngineError, Result};
use crate::matrix::Matrix;
use crate::run::run_polled;
use crate::topk::TopK;
use std::sync::Arc;

/// Candidate vectors with their biases, checked once so that searches need not re-check;
/// optionally with a copy of the vectors prepared for repeated searches ([`Candidates::prepare`]).
#[derive(Debug, Clone)]
pub struct Candidates<'a> {
    vectors: Matrix<'a>,
    bias: Option<Vec<f32>>,
    prepared: Option<Arc<Prepared>>,
}

impl<'a> Candidates<'a> {
    /// Checks that all vectors and biases are finite and that there is one bias per row.
    /// Without biases every search is the Base ranker (plain inner product).
    pub fn new(vectors: Matrix<'a>, bias: Option<Vec<f32>>) -> Result<Self> {
        vectors.check_finite("candidates")?;
        if let Some(b) = &bias {
            if b.len() != vectors.rows() {
                return Err(EngineError::DimensionMismatch {
                    what: "bias values vs candidate rows",
                    expected: vectors.rows(),
                    found: b.len(),
                });
            }
            if let Some(row) = b.iter().position(|v| !v.is_finite()) {
                return Err(EngineError::NonFinite { what: "bias", row });
            }
        }
        Ok(Self { vectors, bias, prepared: None })
    }

    /// Keeps the vectors prepared for many searches beside them (on `threads` workers): the
    /// CPU backend's 16-bit copy ([`CpuBackend::prepare`]), so that later searches of these
    /// candidates on the CPU read half the bytes, and the slot where the CUDA backend keeps
    /// them on the device between searches; answers do not change. For candidates searched
    /// many times (a cache): a single search is faster without it.
    pub fn prepare(&mut self, threads: usize, control: &mut dyn Control) -> Result<()> {
        let vectors = &self.vectors;
        let prepared = run_polled(threads, 1, control, |_| Ok(CpuBackend::prepare(vectors)))?;
        self.prepared = Some(Arc::new(prepared));
        Ok(())
    }

    /// Prepares the vectors for many searches without the CPU's 16-bit copy (where host
    /// memory cannot hold it): only the slot where the CUDA backend keeps them on the device.
    pub fn prepare_for_device(&mut self) {
        self.prepared = Some(Arc::new(Prepared::unrounded()));
    }

    /// Bytes [`Candidates::prepare`] would hold at most for `rows × dim` candidates.
    pub fn prepared_bytes_for(rows: usize, dim: usize) -> usize {
        CpuBackend::prepared_bytes(rows, dim)
    }

    /// Bytes held by the prepared copy (0 without one, or where the CPU cannot use one).
    pub fn prepared_bytes(&self) -> usize {
        self.prepared.as_ref().map_or(0, |p| p.bytes())
    }

    /// Device bytes a GPU backend keeps for these candidates between searches (0 when none).
    pub fn device_bytes(&self) -> usize {
        self.prepared.as_ref().map_or(0, |p| p.device_bytes())
    }

    /// The candidate vectors.
    pub fn vectors(&self) -> &Matrix<'a> {
        &self.vectors
    }

    /// One bias per row, if the candidates have them.
    pub fn bias(&self) -> Option<&[f32]> {
        self.bias.as_deref()
    }
}

/// `q·r − α·bias` of one candidate in `f32` arithmetic (callers check the lengths). Where the
/// CPU has the AVX2 kernel, the dot product is the one the CPU backend's exact pass computes,
/// so the score equals that pass's bit for bit; elsewhere a plain sum in dimension order.
pub fn score(query: &[f32], row: &[f32], bias: f32, alpha: f32) -> f32 {
    let dot = if kernel::available() {
        // SAFETY: the CPU has AVX2 and FMA (just checked); the callers pass equal lengths.
        unsafe { kernel::dot(query, row) }
    } else {
        query.iter().zip(row).map(|(a, b)| a * b).sum()
    };
    dot - alpha * bias
}

/// The best `min(k, candidates)` candidates for each query row by `q·r − α·bias(r)`, best
/// first, ties to the lower row. `alpha = 0` (or no biases) is the plain inner product.
pub fn search(
    backend: &dyn Backend,
    candidates: &Candidates,
    alpha: f32,
    queries: &Matrix,
    k: usize,
    control: &mut dyn Control,
) -> Result<TopK> {
    if !alpha.is_finite() {
        return Err(EngineError::InvalidParameter { name: "alpha", value: alpha.to_string() });
    }
    if k == 0 {
        return Err(EngineError::KOutOfRange { k, max: usize::MAX, what: "results per query" });
    }
    queries.check_dim(candidates.vectors.dim(), "query vs candidates")?;
    queries.check_finite("query")?;
    let k = k.min(candidates.vectors.rows());
    if k == 0 {
        return Ok(TopK { rows: queries.rows(), k: 0, values: Vec::new(), indices: Vec::new() });
    }
    let offset: Option<Vec<f32>> = match (&candidates.bias, alpha) {
        (Some(b), a) if a != 0.0 => Some(b.iter().map(|&x| a * x).collect()),
        _ => None,
    };
    let request = TopKRequest {
        a: queries,
        b: &candidates.vectors,
        prepared: candidates.prepared.as_deref(),
        offset: offset.as_deref(),
        k,
    };
    backend.topk(&request, control)
}
