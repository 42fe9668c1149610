//! The per-session cache of an index's candidate vectors (or its loaded Faiss structure), and
//! the check that makes it safe:
//! an entry remembers the snapshot it was read under; a later call asks the change log
//! (`nnn.changes`) which ids were written by transactions that snapshot did not see, and
//! re-reads only those rows under its own snapshot. When that cannot be decided (an older
//! snapshot, a TRUNCATE, a pruned log, row-level security, too many changes) the caller
//! reads the whole table instead.

use super::errors::or_raise;
use super::interrupts::StatementControl;
use super::plans::select_first_kept;
use crate::guc;
use nnn_engine::Candidates;
use pgrx::datum::DatumWithOid;
use std::cell::RefCell;
use std::collections::HashMap;

/// What an entry holds.
pub enum Content {
    /// Every candidate row: ids matching the rows of `cands` (vectors and biases, checked once),
    /// and the rows in id order, for searches among given ids ([`Content::row_of`]).
    Rows { ids: Vec<i64>, cands: Candidates<'static>, by_id: Vec<u32> },
    /// An index's Faiss structure as stored in `nnn.ann_chunks`.
    Ann(nnn_engine::faiss::ann::AnnIndex),
}

impl Content {
    /// The row of candidate `id` in a `rows` entry, if it holds one.
    pub fn row_of(&self, id: i64) -> Option<usize> {
        let Content::Rows { ids, by_id, .. } = self else { return None };
        by_id.binary_search_by_key(&id, |&r| ids[r as usize]).ok().map(|i| by_id[i] as usize)
    }

    /// The name `nnn.cache_info()` shows; one entry of each kind per index.
    fn kind(&self) -> &'static str {
        match self {
            Content::Rows { .. } => "rows",
            Content::Ann(_) => "faiss",
        }
    }
}

/// One index's candidates (or structure) as some snapshot saw them.
pub struct Entry {
    /// What the entry was built from (table, catalog row, log epoch); a mismatch discards it.
    pub key: String,
    /// `pg_current_snapshot()` of the read, as text.
    pub snapshot: String,
    /// Candidate rows it covers.
    pub rows: usize,
    /// Memory it holds, counted against `nnn.cache_mb`.
    pub bytes: usize,
    /// The data.
    pub content: Content,
}

impl Entry {
    /// An entry holding every candidate row (see [`prepare`]).
    pub fn rows(key: String, snapshot: String, ids: Vec<i64>, cands: Candidates<'static>) -> Self {
        let rows = ids.len();
        let mut by_id: Vec<u32> = (0..rows as u32).collect();
        by_id.sort_unstable_by_key(|&r| ids[r as usize]);
        let bytes = plain_bytes(&cands) + cands.prepared_bytes();
        Self { key, snapshot, rows, bytes, content: Content::Rows { ids, cands, by_id } }
    }
}

/// Bytes of an entry's ids (and their order), vectors and biases.
fn plain_bytes(cands: &Candidates) -> usize {
    cands.vectors().rows() * 16 + cands.vectors().as_slice().len() * 4
}

/// Prepares candidates about to be cached for many searches: their 16-bit copy (the CPU
/// kernel's rows) when both fit `nnn.cache_mb` and `nnn.max_memory_mb`, so that searches of the
/// entry read half the bytes, and in any case the slot where the CUDA backend keeps them on
/// the device between searches (counted against `nnn.cuda_memory_mb`, freed with the entry).
/// Called before the search that fills the cache, so that it ranks exactly as later searches
/// of the entry do.
pub fn prepare(cands: &mut Candidates, what: &str) {
    let (rows, dim) = (cands.vectors().rows(), cands.vectors().dim());
    let limit = cap().min(guc::MAX_MEMORY_MB.get() as usize * 1024 * 1024);
    if plain_bytes(cands) + Candidates::prepared_bytes_for(rows, dim) <= limit {
        let mut control = StatementControl::new(format!("caching {what}"));
        or_raise(cands.prepare(guc::threads(), &mut control), what);
    } else {
        cands.prepare_for_device();
    }
}

thread_local! {
    static ENTRIES: RefCell<HashMap<(String, &'static str), Entry>> = RefCell::new(HashMap::new());
}

/// Ids written by transactions that `snapshot` did not see (other than `own_xid`, whose writes
/// a structure built inside it holds), as the caller's snapshot sees the log; None when data
/// read under `snapshot` (`rows` rows) cannot be brought up to date this way. Only entries
/// from the snapshot's xmin on are read (an index range): every older transaction had ended
/// before it was taken, so the cost follows the writes since, not the length of the log.
pub fn changed_since(index: &str, snapshot: &str, own_xid: Option<&str>, rows: usize) -> Option<Vec<i64>> {
    let sql = || {
        "SELECT pg_catalog.pg_snapshot_xmax(s1) >= pg_catalog.pg_snapshot_xmax(s0)
                    AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_snapshot_xip(s1) x
                                    WHERE pg_catalog.pg_visible_in_snapshot(x, s0)),
                    c.truncated, c.ids
             FROM (SELECT pg_catalog.pg_current_snapshot() s1, $2::pg_snapshot s0) s,
                  (SELECT coalesce(bool_or(id IS NULL), false) truncated,
                          coalesce(array_agg(DISTINCT id) FILTER (WHERE id IS NOT NULL), '{}') ids
                   FROM nnn.changes WHERE index_name = $1 AND xid IS DISTINCT FROM $3::xid8
                     AND xid >= pg_catalog.pg_snapshot_xmin($2::pg_snapshot)
                     AND NOT pg_catalog.pg_visible_in_snapshot(xid, $2::pg_snapshot)) c"
            .to_string()
    };
    let (compatible, truncated, ids) = select_first_kept(
        "changed_since",
        sql,
        &[DatumWithOid::from(index), DatumWithOid::from(snapshot), DatumWithOid::from(own_xid)],
        "reading nnn.changes",
        |t| Ok((t.get::<bool>(1)?, t.get::<bool>(2)?, t.get::<Vec<i64>>(3)?)),
    )?;
    let ids = ids.unwrap_or_default();
    let limit = (rows / 8).max(1024);
    (compatible == Some(true) && truncated == Some(false) && ids.len() <= limit).then_some(ids)
}

/// Runs `f` on the `kind` entry of `index` if its key matches; a stale entry is dropped. The
/// entry is taken out of the map while `f` runs (its searches call PostgreSQL, which may raise
/// an error) and put back afterwards, also when `f` raises: the map is never borrowed across
/// a call into PostgreSQL, so no error path can leave it borrowed for the session's next call.
pub fn with_entry<T>(index: &str, kind: &'static str, key: &str, f: impl FnOnce(&Entry) -> T) -> Option<T> {
    /// Returns the entry to the map when dropped, unless a newer one was stored meanwhile.
    struct PutBack(Option<((String, &'static str), Entry)>);
    impl Drop for PutBack {
        fn drop(&mut self) {
            if let Some((slot, entry)) = self.0.take() {
                ENTRIES.with(|e| {
                    e.borrow_mut().entry(slot).or_insert(entry);
                });
            }
        }
    }
    let slot = (index.to_string(), kind);
    let entry = ENTRIES.with(|e| {
        let mut map = e.borrow_mut();
        let entry = map.remove(&slot)?;
        (entry.key == key).then_some(entry)
    })?;
    let back = PutBack(Some((slot, entry)));
    let (_, entry) = back.0.as_ref().expect("just put");
    Some(f(entry))
}

/// `nnn.cache_mb` in bytes.
fn cap() -> usize {
    guc::CACHE_MB.get() as usize * 1024 * 1024
}

/// Keeps `entry` for `index` if it fits `nnn.cache_mb`, evicting other entries first.
pub fn store(index: &str, entry: Entry) {
    let cap = cap();
    if entry.bytes > cap {
        return;
    }
    ENTRIES.with(|e| {
        let mut map = e.borrow_mut();
        let slot = (index.to_string(), entry.content.kind());
        map.remove(&slot);
        while map.values().map(|e| e.bytes).sum::<usize>() + entry.bytes > cap {
            let Some(victim) = map.keys().next().cloned() else { break };
            map.remove(&victim);
        }
        map.insert(slot, entry);
    });
}

/// (index, kind, rows, bytes, snapshot) of every entry this session holds.
pub fn describe() -> Vec<(String, String, i64, i64, String)> {
    ENTRIES.with(|e| {
        let mut out: Vec<_> = e
            .borrow()
            .iter()
            .map(|((name, kind), entry)| {
                (name.clone(), kind.to_string(), entry.rows as i64, entry.bytes as i64, entry.snapshot.clone())
            })
            .collect();
        out.sort();
        out
    })
}
