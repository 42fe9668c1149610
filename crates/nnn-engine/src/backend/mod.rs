//! Where the fused product + top-k runs: one request type, one trait. Every backend gives the
//! same answer as the CPU one.

pub mod certify;
pub mod cpu;
#[cfg(feature = "cuda")]
pub mod cuda;
#[cfg(not(feature = "cuda"))]
#[path = "cuda_absent.rs"]
pub mod cuda;
pub(crate) mod kernel;
pub(crate) mod quantize;
pub(crate) mod rescore;

use crate::control::Control;
use crate::error::Result;
use crate::matrix::Matrix;
use crate::topk::TopK;

/// One fused product and selection: for every row `a_i` of `a`, the `k` columns `j` of `b`
/// with the largest `a_i·b_j − offset_j`, best first, ties to the lower column.
#[derive(Clone, Copy)]
pub struct TopKRequest<'r> {
    /// The rows to rank for (queries, or candidates in a bias build).
    pub a: &'r Matrix<'r>,
    /// The columns ranked.
    pub b: &'r Matrix<'r>,
    /// `b` prepared once for many requests ([`Prepared`]); a backend that cannot read it
    /// answers from `b` alone.
    pub prepared: Option<&'r Prepared>,
    /// One value subtracted per column of `b` (α·bias), or none.
    pub offset: Option<&'r [f32]>,
    /// Columns kept per row.
    pub k: usize,
}

impl<'r> TopKRequest<'r> {
    /// The `k` largest plain products per row of `a`, with no offsets and nothing prepared.
    pub fn new(a: &'r Matrix<'r>, b: &'r Matrix<'r>, k: usize) -> Self {
        Self { a, b, prepared: None, offset: None, k }
    }

    /// The same request with `offset` subtracted per column.
    pub fn with_offset(self, offset: Option<&'r [f32]>) -> Self {
        Self { offset, ..self }
    }

    /// The largest offset in size (0 without offsets), for the filters' error bounds.
    pub(crate) fn largest_offset(&self) -> f64 {
        self.offset.map_or(0.0, |o| o.iter().fold(0f64, |m, &v| m.max(f64::from(v).abs())))
    }
}

/// Computes top-k requests.
pub trait Backend: Sync {
    /// Fused product and selection. Callers have checked: equal dimensions, finite values,
    /// `1 ≤ k ≤ b.rows()`, one offset per row of `b`.
    fn topk(&self, request: &TopKRequest, control: &mut dyn Control) -> Result<TopK>;
}

/// A matrix prepared once for many requests, kept beside the matrix while it is searched
/// many times (a session's cache). Opaque: only the backends read it; answers are the same
/// with or without it. It holds the CPU backend's 16-bit copy ([`cpu::CpuBackend::prepare`];
/// empty where not made or not usable) and a slot where the CUDA backend keeps the matrix on
/// the device between calls ([`cuda::Resident`]).
pub struct Prepared {
    rounded: cpu::RoundedRows,
    device: cuda::Resident,
}

impl Prepared {
    /// Prepared without the CPU's 16-bit copy: only the device slot.
    pub fn unrounded() -> Self {
        Self::with(cpu::RoundedRows::none())
    }

    /// Prepared with the CPU's 16-bit copy `rounded`.
    pub(crate) fn with(rounded: cpu::RoundedRows) -> Self {
        Self { rounded, device: cuda::Resident::default() }
    }

    /// Host bytes held (the 16-bit copy).
    pub fn bytes(&self) -> usize {
        self.rounded.bytes()
    }

    /// Device bytes held (the CUDA backend's copy; counted against its memory budget).
    pub fn device_bytes(&self) -> usize {
        self.device.bytes()
    }

    /// The CPU backend's 16-bit copy.
    pub(crate) fn rounded(&self) -> &cpu::RoundedRows {
        &self.rounded
    }
}

impl std::fmt::Debug for Prepared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Prepared({:?}, {} device bytes)", self.rounded, self.device_bytes())
    }
}
