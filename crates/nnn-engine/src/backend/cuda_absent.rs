//! Stand-in for builds without the `cuda` feature: opening the backend reports that this
//! build has none, as a missing GPU is reported, so callers need no feature switch.

use super::{Backend, TopKRequest};
use crate::control::Control;
use crate::error::{EngineError, Result};
use crate::topk::TopK;
use std::convert::Infallible;

/// The CUDA backend of a build without CUDA: never constructed.
#[derive(Debug)]
pub struct CudaBackend {
    never: Infallible,
}

impl CudaBackend {
    /// Always [`EngineError::Unavailable`]: this build has no CUDA backend.
    pub fn new(_memory_limit: usize) -> Result<Self> {
        Err(EngineError::Unavailable {
            what: "CUDA",
            why: "this build of nnn has no CUDA backend (build it with the cuda feature)".into(),
        })
    }

    /// Unreachable: no value exists.
    pub fn set_memory_limit(&self, _bytes: usize) {
        match self.never {}
    }

    /// Unreachable: no value exists.
    pub fn set_tf32(&self, _on: bool) {
        match self.never {}
    }

    /// Unreachable: no value exists.
    pub fn device_name(&self) -> &str {
        match self.never {}
    }
}

/// The device slot of [`super::Prepared`] in a build without CUDA: always empty.
#[derive(Debug, Default)]
pub struct Resident {
    _empty: (),
}

impl Resident {
    /// Device bytes held: none.
    pub fn bytes(&self) -> usize {
        0
    }
}

impl Backend for CudaBackend {
    fn topk(&self, _request: &TopKRequest, _control: &mut dyn Control) -> Result<TopK> {
        match self.never {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absent_cuda_reports_that_the_build_lacks_it() {
        let err = CudaBackend::new(0).expect_err("no CUDA backend in this build");
        assert!(matches!(err, EngineError::Unavailable { what: "CUDA", .. }), "{err:?}");
        assert!(err.to_string().contains("build it with the cuda feature"), "{err}");
    }
}
