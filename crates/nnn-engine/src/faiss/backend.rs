//! The Faiss backend: the fused product and top-k through a Faiss index over `b` — exact with
//! `Flat` (Faiss's BLAS path), approximate with e.g. `IVF256,Flat`.

use super::ann::AnnParams;
use super::index::{search_blocks, trained, tune};
use super::{augmented, faiss_error, native};
use crate::backend::{Backend, TopKRequest};
use crate::control::Control;
use crate::error::{EngineError, Result};
use crate::run::run_polled;
use crate::topk::{sort_best_first, TopK};
use faiss::MetricType;
use std::borrow::Cow;

/// Top-k through a Faiss index built over `b` on every call.
#[derive(Debug, Clone)]
pub struct FaissBackend {
    threads: usize,
    factory: String,
    params: AnnParams,
}

impl FaissBackend {
    /// A backend building `factory` (e.g. `Flat`) with OpenMP limited to `threads`.
    pub fn new(factory: &str, params: AnnParams, threads: usize) -> Result<Self> {
        if threads == 0 {
            return Err(EngineError::InvalidParameter { name: "threads", value: "0".into() });
        }
        Ok(Self { threads, factory: factory.to_string(), params })
    }
}

impl Backend for FaissBackend {
    fn topk(&self, request: &TopKRequest, control: &mut dyn Control) -> Result<TopK> {
        let TopKRequest { a, b, offset, k, .. } = *request;
        // a·b_j − offset_j = [a, 1]·[b_j, −offset_j]; without offsets both sides as they are
        let (a_data, b_data, d): (Cow<[f32]>, Cow<[f32]>, usize) = match offset {
            Some(off) => (
                augmented(a.as_slice(), a.dim(), std::iter::repeat(1.0)).into(),
                augmented(b.as_slice(), b.dim(), off.iter().map(|&o| -o)).into(),
                a.dim() + 1,
            ),
            None => (a.as_slice().into(), b.as_slice().into(), a.dim()),
        };
        let rows = a.rows();
        // progress: rows of `b` added, then rows of `a` searched
        let total = (b.rows() + rows) as u64;
        let (mut values, labels) = run_polled(self.threads, total, control, |progress| {
            native::set_threads(self.threads);
            let index = trained(&self.factory, d, MetricType::InnerProduct, &b_data, progress)?;
            tune(&index, &self.factory, self.params)?;
            search_blocks(&index, &a_data, d, k, progress)
        })?;
        if labels.iter().any(|&l| l < 0) {
            return Err(faiss_error(
                "search",
                format!(
                    "the {} index found fewer than k = {k} neighbours for some rows; visit more lists",
                    self.factory
                ),
            ));
        }
        let mut indices: Vec<u32> = labels.into_iter().map(|l| l as u32).collect();
        for (v, i) in values.chunks_mut(k).zip(indices.chunks_mut(k)) {
            sort_best_first(v, i);
        }
        Ok(TopK { rows, k, values, indices })
    }
}
