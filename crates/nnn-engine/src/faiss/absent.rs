//! Stand-ins for builds without the `faiss` feature: every constructor reports that this
//! build has no Faiss ([`EngineError::Unavailable`]), so no value of these types exists.

use crate::error::EngineError;

/// Why nothing here works.
fn unavailable() -> EngineError {
    EngineError::Unavailable {
        what: "Faiss",
        why: "this build of nnn has no Faiss (build it with the faiss feature)".into(),
    }
}

/// Approximate search structures of a build without Faiss.
pub mod ann {
    pub use super::super::{AnnParams, AnnSearch};
    use crate::control::Control;
    use crate::error::Result;
    use crate::search::Candidates;
    use std::collections::HashSet;
    use std::convert::Infallible;

    /// Never constructed: [`AnnIndex::build`] and [`AnnIndex::from_bytes`] always fail.
    pub struct AnnIndex {
        never: Infallible,
    }

    impl AnnIndex {
        /// Always unavailable.
        pub fn build(_: &str, _: &Candidates, _: &[i64], _: usize, _: &mut dyn Control) -> Result<Self> {
            Err(super::unavailable())
        }

        /// Always unavailable.
        pub fn from_bytes(_: &[u8]) -> Result<Self> {
            Err(super::unavailable())
        }

        /// Unreachable: no value exists.
        pub fn add(&mut self, _: &Candidates, _: &[i64], _: usize, _: &mut dyn Control) -> Result<()> {
            match self.never {}
        }

        /// Unreachable: no value exists.
        pub fn remove(&mut self, _: &HashSet<i64>) {
            match self.never {}
        }

        /// Unreachable: no value exists.
        pub fn search(&self, _: &AnnSearch, _: usize, _: &mut dyn Control) -> Result<Vec<Vec<i64>>> {
            match self.never {}
        }

        /// Unreachable: no value exists.
        pub fn dim(&self) -> usize {
            match self.never {}
        }

        /// Unreachable: no value exists.
        pub fn live_rows(&self) -> usize {
            match self.never {}
        }

        /// Unreachable: no value exists.
        pub fn dead_rows(&self) -> usize {
            match self.never {}
        }

        /// Unreachable: no value exists.
        pub fn to_bytes(&self) -> Result<Vec<u8>> {
            match self.never {}
        }
    }
}

/// The Faiss backend of a build without Faiss.
pub mod backend {
    use super::super::AnnParams;
    use crate::backend::{Backend, TopKRequest};
    use crate::control::Control;
    use crate::error::Result;
    use crate::topk::TopK;
    use std::convert::Infallible;

    /// Never constructed: [`FaissBackend::new`] always fails.
    #[derive(Debug)]
    pub struct FaissBackend {
        never: Infallible,
    }

    impl FaissBackend {
        /// Always unavailable.
        pub fn new(_factory: &str, _params: AnnParams, _threads: usize) -> Result<Self> {
            Err(super::unavailable())
        }
    }

    impl Backend for FaissBackend {
        fn topk(&self, _request: &TopKRequest, _control: &mut dyn Control) -> Result<TopK> {
            match self.never {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::ann::AnnIndex;
    use super::backend::FaissBackend;
    use crate::error::EngineError;

    #[test]
    fn absent_faiss_reports_that_the_build_lacks_it() {
        let lacks = |e: EngineError| matches!(e, EngineError::Unavailable { what: "Faiss", .. });
        assert!(AnnIndex::from_bytes(b"NNNANN01").err().is_some_and(lacks));
        assert!(FaissBackend::new("Flat", Default::default(), 1).err().is_some_and(lacks));
    }
}
