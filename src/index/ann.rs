//! An index's Faiss structure over `[embedding, bias]`: building it, merging the rows written
//! since, and the approximate search path. Searches stay MVCC-correct: the structure proposes
//! ids, which are re-read and re-scored under the caller's snapshot, and rows changed since it
//! was built (from `nnn.changes`) are scored exactly beside it.

use super::definition::IndexDef;
use super::exact::{Hits, Search};
use super::rows::{candidates, read_all, read_ids};
use crate::guc;
use crate::postgres::ann_store::{load, save, snapshot, Saved};
use crate::postgres::cache::{self, Content, Entry};
use crate::postgres::errors::{fail, or_raise, report, select_first};
use crate::postgres::interrupts::StatementControl;
use crate::postgres::read::check_memory;
use nnn_engine::faiss::ann::AnnIndex;
use nnn_engine::faiss::AnnSearch;
use pgrx::datum::DatumWithOid;
use pgrx::PgLogLevel::{DEBUG1, NOTICE};
use pgrx::PgSqlErrorCode::*;
use std::collections::HashSet;
use std::time::Instant;

/// What building or merging a structure did.
pub struct AnnReport {
    /// Rows searches can return.
    pub live_rows: i64,
    /// Slots of deleted or replaced rows kept until the next rebuild.
    pub dead_rows: i64,
    /// Size of the stored structure.
    pub bytes: i64,
    /// Seconds it took.
    pub seconds: f64,
}

/// Fails unless this build has Faiss.
fn require_faiss() {
    if !nnn_engine::faiss::AVAILABLE {
        fail(
            ERRCODE_FEATURE_NOT_SUPPORTED,
            "this build of nnn has no Faiss support",
            "Build the extension with the faiss feature (make install does).",
        );
    }
}

fn what(def: &IndexDef) -> String {
    format!("Faiss structure of nnn index \"{}\"", def.name)
}

fn store(def: &IndexDef, factory: &str, snapshot: &str, ann: &AnnIndex, started: Instant) -> AnnReport {
    let bytes = or_raise(ann.to_bytes(), &what(def));
    let (live_rows, dead_rows) = (ann.live_rows() as i64, ann.dead_rows() as i64);
    save(&Saved { index: &def.name, factory, snapshot: Some(snapshot), live_rows, dead_rows }, &bytes);
    AnnReport { live_rows, dead_rows, bytes: bytes.len() as i64, seconds: started.elapsed().as_secs_f64() }
}

/// Builds the structure of `def` from `factory` over its current rows and stores it.
pub fn build(def: &IndexDef, factory: &str) -> AnnReport {
    require_faiss();
    let started = Instant::now();
    let what = what(def);
    let snap = snapshot();
    let rows = read_all(def, &what);
    if rows.keys.is_empty() {
        // Nothing to train on: record the choice; searches scan exactly until nnn.refresh.
        report(NOTICE, format!("nnn: {what}: no rows to train on yet; run nnn.refresh('{}') once there are", def.name));
        save(&Saved { index: &def.name, factory, snapshot: None, live_rows: 0, dead_rows: 0 }, &[]);
        return AnnReport { live_rows: 0, dead_rows: 0, bytes: 0, seconds: started.elapsed().as_secs_f64() };
    }
    check_memory(rows.data.len() * 8, &what);
    let n = rows.keys.len();
    let cands = candidates(rows.data, rows.extra, rows.dim, &what);
    let mut control = StatementControl::new(format!("building the {what}")).with_rows(n);
    let ann = or_raise(AnnIndex::build(factory, &cands, &rows.keys, guc::threads(), &mut control), &what);
    store(def, factory, &snap, &ann, started)
}

/// Adds the rows written since the structure was built and drops deleted ones.
pub fn merge(def: &IndexDef) -> AnnReport {
    require_faiss();
    let started = Instant::now();
    let what = what(def);
    let Some((ann, Some(old_snapshot))) = def.ann.as_ref().map(|a| (a, a.snapshot.clone())) else {
        fail(
            ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
            format!("nnn index \"{}\" has no built Faiss structure", def.name),
            "Give it one with nnn.set_ann(name, 'IVF1024,Flat'), or build it with nnn.refresh(name) once the table has rows.",
        );
    };
    let snap = snapshot();
    // Changes the stored structure lacks that this transaction sees (its own included).
    let (truncated, changed) = select_first(
        "SELECT coalesce(bool_or(id IS NULL), false),
                coalesce(array_agg(DISTINCT id) FILTER (WHERE id IS NOT NULL), '{}')
         FROM nnn.changes
         WHERE index_name = $1 AND xid IS DISTINCT FROM $3::xid8
           AND NOT pg_catalog.pg_visible_in_snapshot(xid, $2::pg_snapshot)
           AND (pg_catalog.pg_visible_in_snapshot(xid, $4::pg_snapshot) OR xid = pg_catalog.pg_current_xact_id())",
        &[
            DatumWithOid::from(def.name.as_str()),
            DatumWithOid::from(old_snapshot.as_str()),
            DatumWithOid::from(ann.build_xid.as_deref()),
            DatumWithOid::from(snap.as_str()),
        ],
        "reading nnn.changes",
        |t| Ok((t.get::<bool>(1)?, t.get::<Vec<i64>>(2)?)),
    )
    .unwrap_or_default();
    if truncated == Some(true) {
        fail(
            ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
            format!("{what}: the candidate table was truncated since it was built"),
            format!("Rebuild it with SELECT * FROM nnn.refresh('{}').", def.name),
        );
    }
    let changed = changed.unwrap_or_default();
    let mut index = or_raise(AnnIndex::from_bytes(&load(&def.name, &what)), &what);
    let (keys, cands) = read_ids(def, changed.clone(), index.dim(), &what);
    index.remove(&changed.into_iter().collect());
    let n = keys.len();
    let mut control = StatementControl::new(format!("adding rows to the {what}")).with_rows(n);
    or_raise(index.add(&cands, &keys, guc::threads(), &mut control), &what);
    store(def, &ann.factory, &snap, &index, started)
}

/// `search` through the structure of its index; None when it has none, this build has no
/// Faiss, nnn.ann is off, the caller may not read the table whole, or the change log cannot
/// bring it up to date (then the caller scans exactly).
pub fn search(search: &Search) -> Option<Vec<Hits>> {
    let (def, what) = (search.def, &search.what);
    let ann = def.ann.as_ref()?;
    let snapshot = ann.snapshot.as_ref()?;
    if !nnn_engine::faiss::AVAILABLE || !guc::ANN.get() || !def.now.readable {
        return None;
    }
    if let Some(hits) = cache::with_entry(&def.name, "faiss", &ann.key, |e| from_entry(search, e)) {
        return hits;
    }
    let bytes = load(&def.name, what);
    let index = or_raise(AnnIndex::from_bytes(&bytes), what);
    let entry = Entry {
        key: ann.key.clone(),
        snapshot: snapshot.clone(),
        rows: index.live_rows(),
        bytes: bytes.len(),
        content: Content::Ann(index),
    };
    let hits = from_entry(search, &entry);
    if def.now.usable {
        cache::store(&def.name, entry);
    }
    hits
}

fn from_entry(search: &Search, entry: &Entry) -> Option<Vec<Hits>> {
    let (def, what) = (search.def, &search.what);
    let Content::Ann(index) = &entry.content else { return None };
    let build_xid = def.ann.as_ref().and_then(|a| a.build_xid.as_deref());
    let Some(changed) = cache::changed_since(&def.name, &entry.snapshot, build_xid, entry.rows) else {
        report(DEBUG1, format!("nnn: {what}: too many changes since it was built; scanning exactly"));
        return None;
    };
    let skip: HashSet<i64> = changed.iter().copied().collect();
    let want = ((search.k as f64) * guc::RERANK_FACTOR.get()).ceil() as usize;
    let mut control = StatementControl::new(format!("search of {what}"));
    let request =
        AnnSearch { queries: &search.queries, alpha: def.alpha(), k: want, skip: &skip, params: guc::ann_params() };
    let proposed = or_raise(index.search(&request, guc::threads(), &mut control), what);
    let mut hits = search.rescore(&proposed, index.dim());
    search.merge_fresh(changed, index.dim(), &mut hits);
    Some(hits)
}
