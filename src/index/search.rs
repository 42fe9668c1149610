//! Searching an index: top-k candidates by `q·r − α·bias(r)`, exactly what the caller's
//! transaction sees (own uncommitted changes, row-level security). The answer comes from the
//! index's Faiss structure when it has one, else from this session's cache brought up to the
//! caller's snapshot through the change log (see `postgres::cache`), else from every row
//! read under that snapshot.

use super::ann;
use super::exact::{Hits, Search};
use super::rows::{candidates, read_all, read_some};
use crate::postgres::cache::{self, Content, Entry};
use std::collections::HashSet;

/// Runs `search` among every candidate row or, with `among`, only the rows whose id is in it.
pub fn run(search: &Search, among: Option<Vec<i64>>) -> Vec<Hits> {
    let (def, what) = (search.def, &search.what);
    let dim = search.queries.dim();
    if among.is_none() {
        if let Some(hits) = ann::search(search) {
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
        let hit = cache::with_entry(&def.name, "rows", &now.key, |entry| from_cache(search, entry, among));
        if let Some(Some(hits)) = hit {
            return hits;
        }
    }
    if let (Some(ids), false) = (among, now.storable) {
        let rows = read_some(def, ids.to_vec(), None, what);
        let cands = candidates(rows.data, rows.extra, if rows.keys.is_empty() { dim } else { rows.dim }, what);
        return search.best(&cands, &rows.keys, None);
    }
    let rows = read_all(def, what);
    let dim_rows = if rows.keys.is_empty() { dim } else { rows.dim };
    let mut cands = candidates(rows.data, rows.extra, dim_rows, what);
    if !now.storable {
        return search.best(&cands, &rows.keys, None);
    }
    cache::prepare(&mut cands, what);
    let entry = Entry::rows(now.key.clone(), now.snapshot.clone(), rows.keys, cands);
    let hits = best_in_entry(search, &entry.content, among, None);
    cache::store(&def.name, entry);
    hits
}

/// The cached rows (of `among`, when given) minus those changed since the entry's snapshot,
/// plus the changed rows as the caller sees them now; None when the entry cannot be brought
/// up to date.
fn from_cache(search: &Search, entry: &Entry, among: Option<&[i64]>) -> Option<Vec<Hits>> {
    let Content::Rows { cands, .. } = &entry.content else { return None };
    let mut changed = cache::changed_since(&search.def.name, &entry.snapshot, None, entry.rows)?;
    let skip: HashSet<i64> = changed.iter().copied().collect();
    let mut hits = best_in_entry(search, &entry.content, among, Some(&skip));
    if let Some(wanted) = among {
        changed.retain(|id| wanted.binary_search(id).is_ok());
    }
    search.merge_fresh(changed, cands.vectors().dim(), &mut hits);
    Some(hits)
}

/// The `k` best rows of a `rows` entry per query, among the ids of `among` (sorted) when
/// given, leaving out the ids in `skip`.
fn best_in_entry(search: &Search, content: &Content, among: Option<&[i64]>, skip: Option<&HashSet<i64>>) -> Vec<Hits> {
    let Content::Rows { ids, cands, .. } = content else {
        return Vec::new();
    };
    match among {
        None => search.best(cands, ids, skip),
        Some(wanted) => search.best_among(cands, wanted, skip, |id| content.row_of(id)),
    }
}
