//! One search call and its exact work: the `k` best of given candidates for its queries on
//! this call's engine backend, rows changed since a cache entry or Faiss structure was made
//! merged in, and the ids a structure proposed re-scored.

use super::definition::IndexDef;
use super::rows::{candidates, read_ids};
use crate::backend::backend;
use crate::postgres::errors::{fail, or_raise};
use crate::postgres::interrupts::StatementControl;
use nnn_engine::{search, Candidates, Matrix};
use pgrx::PgSqlErrorCode::*;
use std::collections::{HashMap, HashSet};

/// One query's results, best first: (id, score).
pub type Hits = Vec<(i64, f32)>;

/// Orders hits best first, equal scores by id, so cached and fresh results merge the same way.
fn rank(hits: &mut Hits) {
    hits.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
}

/// One search call: the index searched, its queries (one per row) and the results wanted per
/// query; `what` names it in messages.
pub struct Search<'a> {
    /// The index, as this statement sees it.
    pub def: &'a IndexDef,
    /// The queries, one per row.
    pub queries: Matrix<'a>,
    /// Results per query.
    pub k: usize,
    /// How messages name the index.
    pub what: String,
}

impl<'a> Search<'a> {
    /// A search of `def` for `queries` (row-major, `dim` each) asking `k` results per query;
    /// fails unless `k` is at least 1.
    pub fn new(def: &'a IndexDef, queries: &'a [f32], dim: usize, k: i32) -> Self {
        if k < 1 {
            fail(
                ERRCODE_INVALID_PARAMETER_VALUE,
                format!("k must be at least 1, got {k}"),
                "Ask for 1 or more results.",
            );
        }
        let what = def.what();
        let queries = or_raise(Matrix::from_slice(queries, dim, "query"), &what);
        Self { def, queries, k: k as usize, what }
    }

    /// The `k` best of `cands` (ids `ids`) per query by the index's α, leaving out the ids in
    /// `skip`.
    pub fn best(&self, cands: &Candidates, ids: &[i64], skip: Option<&HashSet<i64>>) -> Vec<Hits> {
        let (q, what, dim) = (&self.queries, &self.what, self.queries.dim());
        if !ids.is_empty() && cands.vectors().dim() != dim {
            fail(
                ERRCODE_DATA_EXCEPTION,
                format!("query has dimension {dim}, but {what} has dimension {}", cands.vectors().dim()),
                "Embed the query with the model that embedded the candidates.",
            );
        }
        let extra = skip.map_or(0, HashSet::len);
        let mut control = StatementControl::new(format!("search of {what}"));
        let engine = backend(2.0 * (q.rows() * ids.len() * dim) as f64);
        let top = or_raise(search(&*engine, cands, self.def.alpha(), q, self.k + extra, &mut control), what);
        (0..top.rows)
            .map(|r| {
                let mut hits: Hits = top
                    .row_indices(r)
                    .iter()
                    .zip(top.row_values(r))
                    .map(|(&i, &s)| (ids[i as usize], s))
                    .filter(|(id, _)| skip.is_none_or(|s| !s.contains(id)))
                    .take(self.k)
                    .collect();
                rank(&mut hits);
                hits
            })
            .collect()
    }

    /// Reads the rows of `changed` as the caller sees them now (those still visible, of
    /// dimension `rows_dim`) and merges their scores into `hits`, keeping the `k` best per query.
    pub fn merge_fresh(&self, changed: Vec<i64>, rows_dim: usize, hits: &mut [Hits]) {
        if changed.is_empty() {
            return;
        }
        let (keys, cands) = read_ids(self.def, changed, rows_dim, &self.what);
        if !keys.is_empty() {
            for (all, new) in hits.iter_mut().zip(self.best(&cands, &keys, None)) {
                all.extend(new);
                rank(all);
                all.truncate(self.k);
            }
        }
    }

    /// Scores the ids a Faiss structure proposed for each query exactly, on the rows as the
    /// caller sees them now (rows no longer visible drop out), keeping the `k` best per query.
    pub fn rescore(&self, proposed: &[Vec<i64>], rows_dim: usize) -> Vec<Hits> {
        let mut ids: Vec<i64> = proposed.iter().flatten().copied().collect();
        ids.sort_unstable();
        ids.dedup();
        let (keys, cands) = read_ids(self.def, ids, rows_dim, &self.what);
        let at: HashMap<i64, usize> = keys.iter().enumerate().map(|(i, &id)| (id, i)).collect();
        let (v, bias) = (cands.vectors().as_slice(), cands.bias().unwrap_or_default());
        let alpha = self.def.alpha();
        let dim = self.queries.dim();
        proposed
            .iter()
            .zip(self.queries.as_slice().chunks_exact(dim))
            .map(|(ids, q)| {
                let mut hits: Hits = ids
                    .iter()
                    .filter_map(|id| {
                        at.get(id)
                            .map(|&i| (*id, nnn_engine::score(q, &v[i * rows_dim..(i + 1) * rows_dim], bias[i], alpha)))
                    })
                    .collect();
                rank(&mut hits);
                hits.truncate(self.k);
                hits
            })
            .collect()
    }

    /// The wanted rows of a cached candidate set copied out (a search among them is one small
    /// GEMM): `row_of` finds each id's row; ids it does not know, or in `skip`, are left out.
    pub fn best_among(
        &self,
        cands: &Candidates,
        wanted: &[i64],
        skip: Option<&HashSet<i64>>,
        row_of: impl Fn(i64) -> Option<usize>,
    ) -> Vec<Hits> {
        let d = cands.vectors().dim();
        let (v, b) = (cands.vectors().as_slice(), cands.bias().unwrap_or_default());
        let (mut keys, mut data, mut bias) = (Vec::new(), Vec::new(), Vec::new());
        for id in wanted.iter().filter(|id| skip.is_none_or(|s| !s.contains(id))) {
            if let Some(p) = row_of(*id) {
                keys.push(*id);
                data.extend_from_slice(&v[p * d..(p + 1) * d]);
                bias.push(b[p]);
            }
        }
        self.best(&candidates(data, bias, d, &self.what), &keys, None)
    }
}
