//! Reading an index's candidate rows under the caller's snapshot and privileges: all of them
//! or those of given ids, as checked engine candidates.

use super::definition::IndexDef;
use crate::postgres::errors::or_raise;
use crate::postgres::read::{read_augmented, read_vectors, Rows};
use crate::postgres::relation::{in_place_or_cast, require_privilege};
use nnn_engine::{Candidates, Matrix};
use pgrx::datum::DatumWithOid;

/// Reads candidate rows of `def` (those `filter`, an optional WHERE, keeps): their ids, and
/// their embeddings (`real[]` and `vector` in place, other types cast to `real[]`, whatever
/// the column's type is now, e.g. after an ALTER TABLE) and biases cast to `real`, or, where
/// the index has a `vector` augmented column ([`IndexDef::read_augmented`]), both from that
/// column.
fn read(def: &IndexDef, filter: &str, args: &[DatumWithOid], what: &str, dim: Option<usize>) -> Rows<i64> {
    let (id, t) = (&def.id_column, &def.candidates.sql);
    let augmented = def.augmented.as_ref().filter(|_| def.read_augmented);
    if !def.now.readable {
        // no SELECT on the whole table (or row-level security): say which column is missing
        let columns = match augmented {
            Some(a) => vec![id.as_str(), a.as_str()],
            None => vec![id.as_str(), def.embedding.as_str(), def.bias_column.as_str()],
        };
        require_privilege(&def.candidates, &columns, "SELECT", "Searches read the rows as you:");
    }
    match augmented {
        Some(augmented) => {
            read_augmented(&format!("SELECT {id}::bigint, {augmented} FROM {t} {filter}"), args, what, dim)
        }
        None => {
            let (e, b) = (in_place_or_cast(&def.embedding, def.embedding_in_place), &def.bias_column);
            read_vectors(&format!("SELECT {id}::bigint, {e}, {b}::real FROM {t} {filter}"), args, what, dim)
        }
    }
}

/// Every row of index `def` (with an embedding and a bias) as the caller sees it now.
pub fn read_all(def: &IndexDef, what: &str) -> Rows<i64> {
    read(def, "", &[], what, None)
}

/// The rows of `ids` as the caller sees them now (those still visible and complete), of
/// dimension `dim` when it is known.
pub fn read_some(def: &IndexDef, ids: Vec<i64>, dim: Option<usize>, what: &str) -> Rows<i64> {
    let filter = format!("WHERE {} = ANY($1)", def.id_column);
    read(def, &filter, &[DatumWithOid::from(ids)], what, dim)
}

/// Checked candidates from rows read here (or copied from candidates made here): their
/// vectors were checked finite as they were read, so only their biases are checked again.
pub fn candidates(data: Vec<f32>, bias: Vec<f32>, dim: usize, what: &str) -> Candidates<'static> {
    let vectors = or_raise(Matrix::from_vec(data, dim, "candidates"), what).assume_finite();
    or_raise(Candidates::new(vectors, Some(bias)), what)
}

/// The rows of `ids` as the caller sees them now: their ids and checked candidates of
/// dimension `rows_dim`.
pub fn read_ids(def: &IndexDef, ids: Vec<i64>, rows_dim: usize, what: &str) -> (Vec<i64>, Candidates<'static>) {
    let rows = read_some(def, ids, Some(rows_dim), what);
    (rows.keys, candidates(rows.data, rows.extra, rows_dim, what))
}
