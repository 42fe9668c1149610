//! The per-backend cache of an index's candidate vectors, and the check that makes it safe:
//! an entry remembers the snapshot it was read under; a later call asks the change log
//! (`nnn.changes`) which ids were written by transactions that snapshot did not see, and
//! re-reads only those rows under its own snapshot. When that cannot be decided (an older
//! snapshot, a TRUNCATE, a pruned log, row-level security, too many changes) the caller
//! reads the whole table instead.

use super::errors::select_first;
use crate::guc;
use nnn_engine::Candidates;
use pgrx::datum::DatumWithOid;
use std::cell::RefCell;
use std::collections::HashMap;

/// Candidate vectors of one index as some snapshot saw them.
pub struct Entry {
    /// What the entry was built from (table, catalog row, log epoch); a mismatch discards it.
    pub key: String,
    /// `pg_current_snapshot()` of the read, as text.
    pub snapshot: String,
    /// Row ids, matching the rows of `cands`.
    pub ids: Vec<i64>,
    /// The vectors and biases, checked once.
    pub cands: Candidates<'static>,
}

impl Entry {
    fn bytes(&self) -> usize {
        self.ids.len() * 8 + self.cands.vectors().as_slice().len() * 4 + self.ids.len() * 4
    }
}

thread_local! {
    static ENTRIES: RefCell<HashMap<String, Entry>> = RefCell::new(HashMap::new());
}

/// What the caller's transaction allows, read once per call.
pub struct Situation {
    /// The entry key for this index now.
    pub key: String,
    /// The caller's snapshot as text.
    pub snapshot: String,
    /// Whether an entry may be used at all: cache on, no row-level security on the table, and
    /// table-level SELECT (otherwise the full read applies PostgreSQL's own checks).
    pub usable: bool,
    /// Whether a fresh read may become an entry: also no writes yet in this transaction, so
    /// an entry never holds uncommitted data.
    pub storable: bool,
}

impl Situation {
    /// A situation in which the cache is neither used nor filled.
    pub fn none() -> Self {
        Self { key: String::new(), snapshot: String::new(), usable: false, storable: false }
    }
}

/// Ids written by transactions that `entry`'s snapshot did not see, as the caller's snapshot
/// sees the log; None when the entry cannot be brought up to date this way.
pub fn changed_since(index: &str, entry: &Entry) -> Option<Vec<i64>> {
    let (compatible, truncated, ids) = select_first(
        "SELECT pg_catalog.pg_snapshot_xmax(s1) >= pg_catalog.pg_snapshot_xmax(s0)
                    AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_snapshot_xip(s1) x
                                    WHERE pg_catalog.pg_visible_in_snapshot(x, s0)),
                    c.truncated, c.ids
             FROM (SELECT pg_catalog.pg_current_snapshot() s1, $2::pg_snapshot s0) s,
                  (SELECT coalesce(bool_or(id IS NULL), false) truncated,
                          coalesce(array_agg(DISTINCT id) FILTER (WHERE id IS NOT NULL), '{}') ids
                   FROM nnn.changes WHERE index_name = $1
                     AND NOT pg_catalog.pg_visible_in_snapshot(xid, $2::pg_snapshot)) c",
        &[DatumWithOid::from(index), DatumWithOid::from(entry.snapshot.as_str())],
        "reading nnn.changes",
        |t| Ok((t.get::<bool>(1)?, t.get::<bool>(2)?, t.get::<Vec<i64>>(3)?)),
    )?;
    let ids = ids.unwrap_or_default();
    let limit = (entry.ids.len() / 8).max(1024);
    (compatible == Some(true) && truncated == Some(false) && ids.len() <= limit).then_some(ids)
}

/// Runs `f` on the entry of `index` if its key matches; a stale entry is dropped.
pub fn with_entry<T>(index: &str, key: &str, f: impl FnOnce(&Entry) -> T) -> Option<T> {
    ENTRIES.with(|e| {
        let mut map = e.borrow_mut();
        match map.get(index) {
            Some(entry) if entry.key == key => Some(f(entry)),
            Some(_) => {
                map.remove(index);
                None
            }
            None => None,
        }
    })
}

/// Keeps `entry` for `index` if it fits `nnn.cache_mb`, evicting other indexes' entries first.
pub fn store(index: &str, entry: Entry) {
    let cap = guc::CACHE_MB.get() as usize * 1024 * 1024;
    if entry.bytes() > cap {
        return;
    }
    ENTRIES.with(|e| {
        let mut map = e.borrow_mut();
        map.remove(index);
        while map.values().map(Entry::bytes).sum::<usize>() + entry.bytes() > cap {
            let Some(victim) = map.keys().next().cloned() else { break };
            map.remove(&victim);
        }
        map.insert(index.to_string(), entry);
    });
}

/// (index, rows, bytes, snapshot) of every entry this backend holds.
pub fn describe() -> Vec<(String, i64, i64, String)> {
    ENTRIES.with(|e| {
        let mut out: Vec<_> = e
            .borrow()
            .iter()
            .map(|(name, entry)| (name.clone(), entry.ids.len() as i64, entry.bytes() as i64, entry.snapshot.clone()))
            .collect();
        out.sort();
        out
    })
}
