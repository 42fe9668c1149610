//! Reading an index's candidate rows under the caller's snapshot and privileges: all of them
//! or those of given ids, as checked engine candidates.

use super::definition::IndexDef;
use crate::postgres::errors::or_raise;
use crate::postgres::read::{read_vectors, Rows};
use nnn_engine::{Candidates, Matrix};
use pgrx::datum::DatumWithOid;

/// The candidate rows' query: id, embedding and bias cast to bigint, real[] and real (whatever
/// the columns' types are now, e.g. after an ALTER TABLE); `filter` is an optional WHERE.
pub fn select_rows(def: &IndexDef, filter: &str) -> String {
    format!(
        "SELECT {id}::bigint, {e}::real[], {b}::real FROM {t} {filter}",
        id = def.id_column,
        e = def.embedding,
        b = def.bias_column,
        t = def.candidates.sql
    )
}

/// Every row of index `def` (with an embedding and a bias) as the caller sees it now.
pub fn read_all(def: &IndexDef, what: &str) -> Rows<i64> {
    read_vectors::<i64>(&select_rows(def, ""), &[], what, None)
}

/// The rows of `ids` as the caller sees them now (those still visible and complete), of
/// dimension `dim` when it is known.
pub fn read_some(def: &IndexDef, ids: Vec<i64>, dim: Option<usize>, what: &str) -> Rows<i64> {
    let filter = format!("WHERE {} = ANY($1)", def.id_column);
    read_vectors::<i64>(&select_rows(def, &filter), &[DatumWithOid::from(ids)], what, dim)
}

/// Checked candidates from rows read by [`select_rows`].
pub fn candidates(data: Vec<f32>, bias: Vec<f32>, dim: usize, what: &str) -> Candidates<'static> {
    let vectors = or_raise(Matrix::from_vec(data, dim, "candidates"), what);
    or_raise(Candidates::new(vectors, Some(bias)), what)
}

/// The rows of `ids` as the caller sees them now: their ids and checked candidates of
/// dimension `rows_dim`.
pub fn read_ids(def: &IndexDef, ids: Vec<i64>, rows_dim: usize, what: &str) -> (Vec<i64>, Candidates<'static>) {
    let rows = read_some(def, ids, Some(rows_dim), what);
    (rows.keys, candidates(rows.data, rows.extra, rows_dim, what))
}
