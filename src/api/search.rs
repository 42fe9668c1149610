//! `nnn_search` and `nnn_search_batch`: top-k candidates of an index by `q·r − α·bias(r)`.
//! Every call reads the candidate rows under the caller's snapshot and privileges, so the
//! answer is exactly what that transaction sees (own uncommitted changes, row-level security).

use super::bias::backend;
use super::catalog::{lookup, IndexDef};
use super::score::vector_arg;
use crate::guc;
use crate::postgres::errors::{fail, or_raise};
use crate::postgres::interrupts::BackendControl;
use crate::postgres::read::read_vectors;
use nnn_engine::{search, Candidates, Matrix, TopK};
use pgrx::array::RawArray;
use pgrx::prelude::*;
use pgrx::PgSqlErrorCode::*;

/// Runs `queries` (row-major, `dim` each) against index `def`; returns the ids and the result.
fn run(def: &IndexDef, queries: &[f32], dim: usize, k: i32) -> (Vec<i64>, TopK) {
    if k < 1 {
        fail(ERRCODE_INVALID_PARAMETER_VALUE, format!("k must be at least 1, got {k}"), "Ask for 1 or more results.");
    }
    let alpha = guc::ALPHA.get() as f32;
    let sql = format!(
        "SELECT {id}::bigint, {e}::real[], {b} FROM {t}",
        id = def.id_column,
        e = def.embedding,
        b = def.bias_column,
        t = def.candidates.sql
    );
    let what = format!("nnn index \"{}\"", def.name);
    let rows = read_vectors::<i64>(&sql, &[], &what, None);
    if rows.dim != 0 && rows.dim != dim {
        fail(
            ERRCODE_DATA_EXCEPTION,
            format!("query has dimension {dim}, but {what} has dimension {}", rows.dim),
            "Embed the query with the model that embedded the candidates.",
        );
    }
    let vectors = or_raise(Matrix::from_vec(rows.data, dim, "candidates"), &what);
    let cands = or_raise(Candidates::new(vectors, Some(rows.extra)), &what);
    let q = or_raise(Matrix::from_slice(queries, dim, "query"), &what);
    let mut control = BackendControl::new(format!("search of {what}"));
    let top = or_raise(search(&backend(), &cands, alpha, &q, k as usize, &mut control), &what);
    (rows.keys, top)
}

/// Results of query row `q` as `(id, score)` pairs.
fn row_results<'a>(ids: &'a [i64], top: &'a TopK, q: usize) -> impl Iterator<Item = (i64, f32)> + 'a {
    top.row_indices(q).iter().zip(top.row_values(q)).map(move |(&i, &s)| (ids[i as usize], s))
}

fn single(
    name: Option<&str>,
    query: Array<f32>,
    k: i32,
) -> TableIterator<'static, (name!(id, i64), name!(score, f32))> {
    let def = lookup(name);
    let q = vector_arg(&query, "query");
    if q.is_empty() {
        fail(ERRCODE_DATA_EXCEPTION, "query is empty", "Pass the query embedding as real[].");
    }
    let (ids, top) = run(&def, &q, q.len(), k);
    TableIterator::new(row_results(&ids, &top, 0).collect::<Vec<_>>())
}

/// The `k` best rows of the only nnn index for `query`, best first.
#[pg_extern(stable, strict, parallel_restricted, name = "nnn_search")]
fn nnn_search_only(query: Array<f32>, k: i32) -> TableIterator<'static, (name!(id, i64), name!(score, f32))> {
    single(None, query, k)
}

/// The `k` best rows of nnn index `name` for `query`, best first: score = q·r − nnn.alpha·bias.
#[pg_extern(stable, strict, parallel_restricted, name = "nnn_search")]
fn nnn_search_named(
    name: &str,
    query: Array<f32>,
    k: i32,
) -> TableIterator<'static, (name!(id, i64), name!(score, f32))> {
    single(Some(name), query, k)
}

/// Many queries at once (a 2-D array, one query per row) in one fused GEMM: for each query
/// its `k` best rows as (query_no, rank, id, score), query_no and rank from 1.
#[pg_extern(stable, strict, parallel_restricted)]
#[allow(clippy::type_complexity)]
fn nnn_search_batch(
    name: &str,
    queries: Array<f32>,
    k: i32,
) -> TableIterator<'static, (name!(query_no, i32), name!(rank, i32), name!(id, i64), name!(score, f32))> {
    let def = lookup(Some(name));
    // SAFETY: the array came in as a valid datum and lives for this call.
    let Some(mut raw) = (unsafe { RawArray::from_array(queries) }) else {
        fail(ERRCODE_DATA_EXCEPTION, "queries is not an array", "Pass queries as real[][].");
    };
    let dims = raw.dims().to_vec();
    if dims.len() != 2 || dims[1] == 0 {
        fail(
            ERRCODE_ARRAY_ELEMENT_ERROR,
            format!("queries must be a 2-dimensional array, got {} dimension(s)", dims.len()),
            "Pass one query per row, e.g. ARRAY[ARRAY[...], ARRAY[...]]::real[][].",
        );
    }
    if unsafe { raw.any_nulls() } {
        fail(
            ERRCODE_NULL_VALUE_NOT_ALLOWED,
            "queries contain a NULL element",
            "Vectors must not contain NULL elements.",
        );
    }
    let data: Vec<f32> = unsafe { raw.data::<f32>().as_ref() }.to_vec();
    if data.iter().any(|v| !v.is_finite()) {
        fail(ERRCODE_DATA_EXCEPTION, "queries contain NaN or Infinity", "Vectors must be finite.");
    }
    let (ids, top) = run(&def, &data, dims[1] as usize, k);
    let mut out = Vec::with_capacity(top.rows * top.k);
    for q in 0..top.rows {
        for (rank, (id, score)) in row_results(&ids, &top, q).enumerate() {
            out.push((q as i32 + 1, rank as i32 + 1, id, score));
        }
    }
    TableIterator::new(out)
}
