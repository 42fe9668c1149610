//! `nnn_search` and `nnn_search_batch`: top-k candidates of an index by `q·r − α·bias(r)`,
//! exactly what the caller's transaction sees (see `index::search`).

use crate::index::definition::{lookup, IndexDef};
use crate::index::exact::{Hits, Search};
use crate::index::search::run;
use crate::postgres::args::{batch_arg, packed_arg, vector_arg};
use crate::postgres::errors::fail;
use pgrx::prelude::*;
use pgrx::PgSqlErrorCode::*;

/// One query's rows, best first.
fn single(
    name: Option<&str>,
    query: Array<f32>,
    k: i32,
    among: Option<Vec<i64>>,
) -> TableIterator<'static, (name!(id, i64), name!(score, f32))> {
    let def = lookup(name);
    let q = vector_arg(&query, "query");
    if q.is_empty() {
        fail(ERRCODE_DATA_EXCEPTION, "query is empty", "Pass the query embedding as real[].");
    }
    let mut hits = run(&Search::new(&def, &q, q.len(), k), among);
    TableIterator::new(hits.pop().unwrap_or_default())
}

/// The rows of a batch search of `data` (`dim` per query): (query_no, rank, id, score).
fn batch(
    def: &IndexDef,
    data: &[f32],
    dim: usize,
    k: i32,
) -> TableIterator<'static, (name!(query_no, i32), name!(rank, i32), name!(id, i64), name!(score, f32))> {
    let hits: Vec<Hits> = run(&Search::new(def, data, dim, k), None);
    let mut out = Vec::new();
    for (q, row) in hits.into_iter().enumerate() {
        for (rank, (id, score)) in row.into_iter().enumerate() {
            out.push((q as i32 + 1, rank as i32 + 1, id, score));
        }
    }
    TableIterator::new(out)
}

/// The `k` best rows of the only nnn index for `query`, best first.
#[pg_extern(stable, strict, parallel_restricted, name = "nnn_search")]
fn nnn_search_only(query: Array<f32>, k: i32) -> TableIterator<'static, (name!(id, i64), name!(score, f32))> {
    single(None, query, k, None)
}

/// The `k` best rows of nnn index `name` for `query`, best first: score = q·r − α·bias, α
/// from `nnn.index_alpha(name)`.
#[pg_extern(stable, strict, parallel_restricted, name = "nnn_search")]
fn nnn_search_named(
    name: &str,
    query: Array<f32>,
    k: i32,
) -> TableIterator<'static, (name!(id, i64), name!(score, f32))> {
    single(Some(name), query, k, None)
}

/// The `k` best rows of nnn index `name` for `query` among the rows whose id is in `ids`
/// (e.g. `(SELECT array_agg(id) FROM images WHERE category = 'shoes')`), best first: an exact
/// filtered search. Ids that are not rows of the index are ignored.
#[pg_extern(stable, strict, parallel_restricted, name = "nnn_search")]
fn nnn_search_among(
    name: &str,
    query: Array<f32>,
    k: i32,
    ids: Vec<Option<i64>>,
) -> TableIterator<'static, (name!(id, i64), name!(score, f32))> {
    single(Some(name), query, k, Some(ids.into_iter().flatten().collect()))
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
    let (data, dim) = batch_arg(queries);
    batch(&def, &data, dim, k)
}

/// Many queries at once, sent as binary: `queries` holds them packed as little-endian f32,
/// `dim` values each, query after query (numpy: `q.astype('<f4').tobytes()`), so a client
/// sends 4 bytes per value instead of text. Same rows as the `real[][]` form.
#[pg_extern(stable, strict, parallel_restricted, name = "nnn_search_batch")]
#[allow(clippy::type_complexity)]
fn nnn_search_batch_packed(
    name: &str,
    queries: &[u8],
    dim: i32,
    k: i32,
) -> TableIterator<'static, (name!(query_no, i32), name!(rank, i32), name!(id, i64), name!(score, f32))> {
    let def = lookup(Some(name));
    let data = packed_arg(queries, dim);
    batch(&def, &data, dim as usize, k)
}
