//! nnn-engine: the maths of Nearest Neighbor Normalization (Chowdhury et al., EMNLP 2024),
//! free of PostgreSQL so it can be tested and benchmarked with plain cargo.
//!
//! - [`bias::reference_topk`]: each candidate's k largest similarities to a reference query set,
//!   whose prefix mean is the NNN bias.
//! - [`search::search`]: top-k of `q·r − α·bias(r)` for one query or a batch.
//! - [`dn::DistributionShift`]: the DN ranker's mean shifts.
//! - [`evaluate::evaluate`]: recall and MRR of a grid of rankers on labelled queries.
//! - [`faiss`] (feature `faiss`; without it, the same types report that Faiss is missing):
//!   approximate search over `[r, bias]` and a Faiss backend.
//!
//! Work runs on a rayon pool of an explicit size; a [`control::Control`] polled on the
//! caller's thread can cancel it and sees its progress.

pub mod backend;
pub mod bias;
pub mod buffer;
pub mod control;
pub mod dn;
pub mod error;
pub mod evaluate;
pub mod faiss;
pub mod matrix;
pub mod run;
pub mod search;
pub mod topk;

pub use backend::{cpu::CpuBackend, Backend, Prepared, TopKRequest};
pub use bias::{reference_topk, ReferenceTopK};
pub use control::{Control, Unwatched};
pub use dn::DistributionShift;
pub use error::{EngineError, Result};
pub use matrix::Matrix;
pub use search::{score, search, Candidates};
pub use topk::TopK;
