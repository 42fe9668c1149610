//! `nnn_search` and `nnn_search_batch`: top-k candidates of an index by `q·r − α·bias(r)`.
//! Answers are exactly what the caller's transaction sees (own uncommitted changes, row-level
//! security): either every candidate row is read under its snapshot, or a per-backend cache
//! is brought up to that snapshot through the change log (see `postgres::cache`).

use super::catalog::{lookup, IndexDef};
use super::score::vector_arg;
use crate::backends::backend;
use crate::postgres::cache::{self, Content, Entry};
use crate::postgres::errors::{fail, or_raise};
use crate::postgres::interrupts::BackendControl;
use crate::postgres::read::read_vectors;
use nnn_engine::{search, Candidates, Matrix};
use pgrx::array::RawArray;
use pgrx::datum::DatumWithOid;
use pgrx::prelude::*;
use pgrx::PgSqlErrorCode::*;
use std::collections::HashSet;

/// One query's results, best first: (id, score).
pub type Hits = Vec<(i64, f32)>;

/// Orders hits best first, equal scores by id, so cached and fresh results merge the same way.
fn rank(hits: &mut Hits) {
    hits.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
}

/// Runs `queries` (row-major, `dim` each) against index `def`: `k` hits per query, among
/// every candidate row or, with `among`, only the rows whose id is in it.
fn run(def: &IndexDef, queries: &[f32], dim: usize, k: i32, among: Option<Vec<i64>>) -> Vec<Hits> {
    if k < 1 {
        fail(ERRCODE_INVALID_PARAMETER_VALUE, format!("k must be at least 1, got {k}"), "Ask for 1 or more results.");
    }
    let k = k as usize;
    let what = def.what();
    #[cfg(feature = "faiss")]
    if among.is_none() {
        if let Some(hits) = super::ann::search(def, queries, dim, k, &what) {
            return hits;
        }
    }
    let among = among.map(|mut ids| {
        ids.sort_unstable();
        ids.dedup();
        ids
    });
    let among = among.as_deref();
    let now = &def.now;
    if now.usable {
        let hit = cache::with_entry(&def.name, "rows", &now.key, |entry| {
            from_cache(def, entry, queries, dim, k, among, &what)
        });
        if let Some(Some(hits)) = hit {
            return hits;
        }
    }
    if let (Some(ids), false) = (among, now.storable) {
        let filter = format!("WHERE {} = ANY($1)", def.id_column);
        let rows = read_vectors::<i64>(&select_rows(def, &filter), &[DatumWithOid::from(ids)], &what, None);
        let cands = candidates(rows.data, rows.extra, if rows.keys.is_empty() { dim } else { rows.dim }, &what);
        return best(def, &cands, &rows.keys, queries, dim, k, None);
    }
    let rows = read_vectors::<i64>(&select_rows(def, ""), &[], &what, None);
    let dim_rows = if rows.keys.is_empty() { dim } else { rows.dim };
    let mut cands = candidates(rows.data, rows.extra, dim_rows, &what);
    if !now.storable {
        return best(def, &cands, &rows.keys, queries, dim, k, None);
    }
    cache::prepare(&mut cands, &what);
    let entry = Entry::rows(now.key.clone(), now.snapshot.clone(), rows.keys, cands);
    let hits = best_in_entry(def, &entry.content, queries, dim, k, among, None);
    cache::store(&def.name, entry);
    hits
}

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

/// Checked candidates from rows read by [`select_rows`].
pub fn candidates(data: Vec<f32>, bias: Vec<f32>, dim: usize, what: &str) -> Candidates<'static> {
    let vectors = or_raise(Matrix::from_vec(data, dim, "candidates"), what);
    or_raise(Candidates::new(vectors, Some(bias)), what)
}

/// The rows of `ids` as the caller sees them now (those still visible and complete): their
/// ids and checked candidates of dimension `rows_dim`.
pub fn read_ids(def: &IndexDef, ids: Vec<i64>, rows_dim: usize, what: &str) -> (Vec<i64>, Candidates<'static>) {
    let rows = read_vectors::<i64>(
        &select_rows(def, &format!("WHERE {} = ANY($1)", def.id_column)),
        &[DatumWithOid::from(ids)],
        what,
        Some(rows_dim),
    );
    (rows.keys, candidates(rows.data, rows.extra, rows_dim, what))
}

/// The cached rows (of `among`, when given) minus those changed since the entry's snapshot,
/// plus the changed rows as the caller sees them now; None when the entry cannot be brought
/// up to date.
#[allow(irrefutable_let_patterns)] // a second kind of entry exists with the faiss feature
fn from_cache(
    def: &IndexDef,
    entry: &Entry,
    queries: &[f32],
    dim: usize,
    k: usize,
    among: Option<&[i64]>,
    what: &str,
) -> Option<Vec<Hits>> {
    let Content::Rows { cands, .. } = &entry.content else { return None };
    let mut changed = cache::changed_since(&def.name, &entry.snapshot, None, entry.rows)?;
    let skip: HashSet<i64> = changed.iter().copied().collect();
    let mut hits = best_in_entry(def, &entry.content, queries, dim, k, among, Some(&skip));
    if let Some(wanted) = among {
        changed.retain(|id| wanted.binary_search(id).is_ok());
    }
    merge_fresh(def, changed, cands.vectors().dim(), queries, dim, k, &mut hits, what);
    Some(hits)
}

/// The `k` best rows of a `rows` entry per query, among the ids of `among` (sorted) when
/// given, leaving out the ids in `skip`.
#[allow(clippy::too_many_arguments)]
fn best_in_entry(
    def: &IndexDef,
    content: &Content,
    queries: &[f32],
    dim: usize,
    k: usize,
    among: Option<&[i64]>,
    skip: Option<&HashSet<i64>>,
) -> Vec<Hits> {
    #[allow(irrefutable_let_patterns)] // a second kind of entry exists with the faiss feature
    let Content::Rows { ids, cands, .. } = content
    else {
        return Vec::new();
    };
    let Some(wanted) = among else { return best(def, cands, ids, queries, dim, k, skip) };
    // copy the wanted rows out: a search over them is one small GEMM
    let d = cands.vectors().dim();
    let (v, b) = (cands.vectors().as_slice(), cands.bias().unwrap_or_default());
    let (mut keys, mut data, mut bias) = (Vec::new(), Vec::new(), Vec::new());
    for id in wanted.iter().filter(|id| skip.is_none_or(|s| !s.contains(id))) {
        if let Some(p) = content.row_of(*id) {
            keys.push(*id);
            data.extend_from_slice(&v[p * d..(p + 1) * d]);
            bias.push(b[p]);
        }
    }
    best(def, &candidates(data, bias, d, &def.what()), &keys, queries, dim, k, None)
}

/// Reads the rows of `changed` as the caller sees them now (those still visible) and merges
/// their scores into `hits`, keeping the `k` best per query.
#[allow(clippy::too_many_arguments)]
pub fn merge_fresh(
    def: &IndexDef,
    changed: Vec<i64>,
    rows_dim: usize,
    queries: &[f32],
    dim: usize,
    k: usize,
    hits: &mut [Hits],
    what: &str,
) {
    if changed.is_empty() {
        return;
    }
    let (keys, cands) = read_ids(def, changed, rows_dim, what);
    if !keys.is_empty() {
        for (all, new) in hits.iter_mut().zip(best(def, &cands, &keys, queries, dim, k, None)) {
            all.extend(new);
            rank(all);
            all.truncate(k);
        }
    }
}

/// Scores the ids a Faiss structure proposed for each query exactly, on the rows as the
/// caller sees them now (rows no longer visible drop out), keeping the `k` best per query.
#[cfg(feature = "faiss")]
pub fn best_ann(
    def: &IndexDef,
    proposed: &[Vec<i64>],
    rows_dim: usize,
    queries: &[f32],
    dim: usize,
    k: usize,
    what: &str,
) -> Vec<Hits> {
    let mut ids: Vec<i64> = proposed.iter().flatten().copied().collect();
    ids.sort_unstable();
    ids.dedup();
    let (keys, cands) = read_ids(def, ids, rows_dim, what);
    let at: std::collections::HashMap<i64, usize> = keys.iter().enumerate().map(|(i, &id)| (id, i)).collect();
    let (v, bias) = (cands.vectors().as_slice(), cands.bias().unwrap_or_default());
    let alpha = def.alpha();
    proposed
        .iter()
        .zip(queries.chunks_exact(dim))
        .map(|(ids, q)| {
            let mut hits: Hits = ids
                .iter()
                .filter_map(|id| {
                    at.get(id)
                        .map(|&i| (*id, nnn_engine::score(q, &v[i * rows_dim..(i + 1) * rows_dim], bias[i], alpha)))
                })
                .collect();
            rank(&mut hits);
            hits.truncate(k);
            hits
        })
        .collect()
}

/// The `k` best of `cands` (ids `ids`) per query by index `def`'s α, leaving out the ids in
/// `skip`.
fn best(
    def: &IndexDef,
    cands: &Candidates,
    ids: &[i64],
    queries: &[f32],
    dim: usize,
    k: usize,
    skip: Option<&HashSet<i64>>,
) -> Vec<Hits> {
    let what = &def.what();
    if !ids.is_empty() && cands.vectors().dim() != dim {
        fail(
            ERRCODE_DATA_EXCEPTION,
            format!("query has dimension {dim}, but {what} has dimension {}", cands.vectors().dim()),
            "Embed the query with the model that embedded the candidates.",
        );
    }
    let q = or_raise(Matrix::from_slice(queries, dim, "query"), what);
    let extra = skip.map_or(0, HashSet::len);
    let mut control = BackendControl::new(format!("search of {what}"));
    let alpha = def.alpha();
    let top = or_raise(
        search(&*backend(2.0 * (q.rows() * ids.len() * dim) as f64), cands, alpha, &q, k + extra, &mut control),
        what,
    );
    (0..top.rows)
        .map(|r| {
            let mut hits: Hits = top
                .row_indices(r)
                .iter()
                .zip(top.row_values(r))
                .map(|(&i, &s)| (ids[i as usize], s))
                .filter(|(id, _)| skip.is_none_or(|s| !s.contains(id)))
                .take(k)
                .collect();
            rank(&mut hits);
            hits
        })
        .collect()
}

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
    let mut hits = run(&def, &q, q.len(), k, among);
    TableIterator::new(hits.pop().unwrap_or_default())
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
    // SAFETY: `raw` views the argument array, valid for this call.
    if unsafe { raw.any_nulls() } {
        fail(
            ERRCODE_NULL_VALUE_NOT_ALLOWED,
            "queries contain a NULL element",
            "Vectors must not contain NULL elements.",
        );
    }
    // SAFETY: as above; the array is real[] with no NULLs (checked just before).
    let data: Vec<f32> = unsafe { raw.data::<f32>().as_ref() }.to_vec();
    batch(&def, &data, dims[1] as usize, k)
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
    if dim < 1 || queries.is_empty() || !queries.len().is_multiple_of(4 * dim as usize) {
        fail(
            ERRCODE_INVALID_PARAMETER_VALUE,
            format!("{} bytes are not whole queries of dimension {dim} (4 bytes per value)", queries.len()),
            "Pack the queries as little-endian float32, query after query: numpy's q.astype('<f4').tobytes().",
        );
    }
    let data: Vec<f32> = queries.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
    batch(&def, &data, dim as usize, k)
}

/// The rows of a batch search of `data` (`dim` per query): (query_no, rank, id, score).
fn batch(
    def: &IndexDef,
    data: &[f32],
    dim: usize,
    k: i32,
) -> TableIterator<'static, (name!(query_no, i32), name!(rank, i32), name!(id, i64), name!(score, f32))> {
    if data.iter().any(|v| !v.is_finite()) {
        fail(ERRCODE_DATA_EXCEPTION, "queries contain NaN or Infinity", "Vectors must be finite.");
    }
    let hits = run(def, data, dim, k, None);
    let mut out = Vec::new();
    for (q, row) in hits.into_iter().enumerate() {
        for (rank, (id, score)) in row.into_iter().enumerate() {
            out.push((q as i32 + 1, rank as i32 + 1, id, score));
        }
    }
    TableIterator::new(out)
}
