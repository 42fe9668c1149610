//! The Faiss index operations both users share: build (factory, train, add), set the search
//! knobs, and add or search in blocks with a cancellation check between Faiss calls. Called on
//! a worker of the engine's pool.

use super::ann::AnnParams;
use super::{faiss_error, native};
use crate::error::{EngineError, Result};
use crate::run::Progress;
use faiss::index::autotune::ParameterSpace;
use faiss::index::IndexImpl;
use faiss::{index_factory, Index, MetricType};

/// Rows added, or queries searched, per Faiss call.
const BLOCK: usize = 4096;

/// A `factory` structure over rows of `row` values, trained on `data` if it needs training,
/// holding all of `data` (one progress unit per row added).
pub fn trained(factory: &str, row: usize, metric: MetricType, data: &[f32], progress: &Progress) -> Result<IndexImpl> {
    let mut index = index_factory(row as u32, factory, metric).map_err(|e| faiss_error("factory", e))?;
    if !index.is_trained() {
        index.train(data).map_err(|e| faiss_error("train", e))?;
    }
    add_blocks(&mut index, data, row, progress)?;
    Ok(index)
}

/// Adds `data` (rows of `row` values), one progress unit per row.
pub fn add_blocks(index: &mut IndexImpl, data: &[f32], row: usize, progress: &Progress) -> Result<()> {
    for block in data.chunks(BLOCK * row) {
        if progress.cancelled() {
            return Err(EngineError::Cancelled);
        }
        index.add(block).map_err(|e| faiss_error("add", e))?;
        progress.add((block.len() / row) as u64);
    }
    Ok(())
}

/// The `k` best scores and labels of each query (rows of `row` values), one progress unit
/// per query.
pub fn search_blocks(
    index: &IndexImpl,
    queries: &[f32],
    row: usize,
    k: usize,
    progress: &Progress,
) -> Result<(Vec<f32>, Vec<i64>)> {
    let n = queries.len() / row;
    let (mut values, mut labels) = (Vec::with_capacity(n * k), Vec::with_capacity(n * k));
    for block in queries.chunks(BLOCK * row) {
        if progress.cancelled() {
            return Err(EngineError::Cancelled);
        }
        let (v, l) = native::search(index, block, k)?;
        values.extend(v);
        labels.extend(l);
        progress.add((block.len() / row) as u64);
    }
    Ok((values, labels))
}

/// Sets the knobs of `params` that apply to a `factory` structure: `nprobe` for IVF,
/// `efSearch` for HNSW (of the quantizer when HNSW is not the top level); 0 leaves a knob.
pub fn tune(index: &IndexImpl, factory: &str, params: AnnParams) -> Result<()> {
    let space = ParameterSpace::new().map_err(|e| faiss_error("parameters", e))?;
    let upper = factory.to_ascii_uppercase();
    if params.probes > 0 && upper.contains("IVF") {
        space.set_index_parameter(index, "nprobe", params.probes as f64).map_err(|e| faiss_error("nprobe", e))?;
    }
    if params.ef_search > 0 && upper.contains("HNSW") {
        let name = if upper.starts_with("HNSW") { "efSearch" } else { "quantizer_efSearch" };
        space.set_index_parameter(index, name, params.ef_search as f64).map_err(|e| faiss_error("efSearch", e))?;
    }
    Ok(())
}
