//! An index's Faiss structure over `[embedding, bias]`: `nnn.set_ann`, `nnn.merge_changes`,
//! and nnn_search's approximate path. Searches stay MVCC-correct: the structure proposes ids,
//! which are re-read and re-scored under the caller's snapshot, and rows changed since it was
//! built (from `nnn.changes`) are scored exactly beside it.

use super::catalog::{check_owner, lookup, IndexDef};
use crate::postgres::errors::{fail, spi_or_raise};
use pgrx::datum::DatumWithOid;
use pgrx::prelude::*;
use pgrx::PgSqlErrorCode::*;

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

fn report_row(r: AnnReport) -> TableIterator<'static, (i64, i64, i64, f64)> {
    TableIterator::once((r.live_rows, r.dead_rows, r.bytes, r.seconds))
}

#[cfg(not(feature = "faiss"))]
fn no_faiss() -> ! {
    fail(
        ERRCODE_FEATURE_NOT_SUPPORTED,
        "this build of nnn has no Faiss support",
        "Build the extension with the faiss feature (make install does).",
    )
}

/// Builds the structure of `def` from `factory` over its current rows and stores it.
#[cfg(not(feature = "faiss"))]
pub fn build(_def: &IndexDef, _factory: &str) -> AnnReport {
    no_faiss()
}

#[cfg(not(feature = "faiss"))]
fn merge(_def: &IndexDef) -> AnnReport {
    no_faiss()
}

#[cfg(feature = "faiss")]
use with_faiss::merge;
#[cfg(feature = "faiss")]
pub use with_faiss::{build, search};

#[cfg(feature = "faiss")]
mod with_faiss {
    use super::super::search::{best_ann, candidates, merge_fresh, read_ids, select_rows, Hits};
    use super::*;
    use crate::guc;
    use crate::postgres::ann_store::{load, save, snapshot, Saved};
    use crate::postgres::cache::{self, Content, Entry};
    use crate::postgres::errors::{or_raise, report, select_first};
    use crate::postgres::interrupts::BackendControl;
    use crate::postgres::read::{check_memory, read_vectors};
    use nnn_engine::faiss::ann::AnnIndex;
    use nnn_engine::Matrix;
    use pgrx::PgLogLevel::{DEBUG1, NOTICE};
    use std::collections::HashSet;
    use std::time::Instant;

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
        let started = Instant::now();
        let what = what(def);
        let snap = snapshot();
        let rows = read_vectors::<i64>(&select_rows(def, ""), &[], &what, None);
        if rows.keys.is_empty() {
            // Nothing to train on: record the choice; searches scan exactly until nnn.refresh.
            report(
                NOTICE,
                format!("nnn: {what}: no rows to train on yet; run nnn.refresh('{}') once there are", def.name),
            );
            save(&Saved { index: &def.name, factory, snapshot: None, live_rows: 0, dead_rows: 0 }, &[]);
            return AnnReport { live_rows: 0, dead_rows: 0, bytes: 0, seconds: started.elapsed().as_secs_f64() };
        }
        check_memory(rows.data.len() * 8, &what);
        let n = rows.keys.len();
        let cands = candidates(rows.data, rows.extra, rows.dim, &what);
        let mut control = BackendControl::new(format!("building the {what}")).with_rows(n);
        let ann = or_raise(AnnIndex::build(factory, &cands, &rows.keys, guc::threads(), &mut control), &what);
        store(def, factory, &snap, &ann, started)
    }

    /// Adds the rows written since the structure was built and drops deleted ones.
    pub fn merge(def: &IndexDef) -> AnnReport {
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
        let mut control = BackendControl::new(format!("adding rows to the {what}")).with_rows(n);
        or_raise(index.add(&cands, &keys, guc::threads(), &mut control), &what);
        store(def, &ann.factory, &snap, &index, started)
    }

    /// nnn_search through the structure of `def`; None when it has none, nnn.ann is off, the
    /// caller may not read the table whole, or the change log cannot bring it up to date
    /// (then the caller scans exactly).
    pub fn search(def: &IndexDef, queries: &[f32], dim: usize, k: usize, what: &str) -> Option<Vec<Hits>> {
        let ann = def.ann.as_ref()?;
        let snapshot = ann.snapshot.as_ref()?;
        if !guc::ANN.get() || !def.now.readable {
            return None;
        }
        if let Some(hits) =
            cache::with_entry(&def.name, "faiss", &ann.key, |e| from_entry(def, e, queries, dim, k, what))
        {
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
        let hits = from_entry(def, &entry, queries, dim, k, what);
        if def.now.usable {
            cache::store(&def.name, entry);
        }
        hits
    }

    fn from_entry(
        def: &IndexDef,
        entry: &Entry,
        queries: &[f32],
        dim: usize,
        k: usize,
        what: &str,
    ) -> Option<Vec<Hits>> {
        let Content::Ann(index) = &entry.content else { return None };
        let build_xid = def.ann.as_ref().and_then(|a| a.build_xid.as_deref());
        let Some(changed) = cache::changed_since(&def.name, &entry.snapshot, build_xid, entry.rows) else {
            report(DEBUG1, format!("nnn: {what}: too many changes since it was built; scanning exactly"));
            return None;
        };
        let skip: HashSet<i64> = changed.iter().copied().collect();
        let q = or_raise(Matrix::from_slice(queries, dim, "query"), what);
        let want = ((k as f64) * guc::RERANK_FACTOR.get()).ceil() as usize;
        let mut control = BackendControl::new(format!("search of {what}"));
        let alpha = def.alpha();
        let proposed =
            or_raise(index.search(&q, alpha, want, &skip, guc::ann_params(), guc::threads(), &mut control), what);
        let mut hits = best_ann(def, &proposed, index.dim(), queries, dim, k, what);
        merge_fresh(def, changed, index.dim(), queries, dim, k, &mut hits, what);
        Some(hits)
    }
}

#[pg_schema]
mod nnn {
    use super::*;

    /// Gives index `name` a Faiss structure over `[embedding, bias]` built from `factory`
    /// (e.g. 'IVF1024,Flat', 'HNSW32', 'IVF4096,PQ64x4fs'), replacing any it had; NULL drops
    /// it. nnn_search then uses it while nnn.ann is on.
    #[pg_extern(volatile, parallel_unsafe)]
    fn set_ann(
        name: &str,
        factory: Option<&str>,
    ) -> TableIterator<'static, (name!(live_rows, i64), name!(dead_rows, i64), name!(bytes, i64), name!(seconds, f64))>
    {
        let def = lookup(Some(name));
        check_owner(name);
        match factory {
            Some(f) => report_row(build(&def, f)),
            None => {
                spi_or_raise(
                    Spi::run_with_args("DELETE FROM nnn.ann WHERE index_name = $1", &[DatumWithOid::from(name)]),
                    "writing nnn.ann",
                );
                report_row(AnnReport { live_rows: 0, dead_rows: 0, bytes: 0, seconds: 0.0 })
            }
        }
    }

    /// Brings the Faiss structure of index `name` up to date without retraining: rows written
    /// since it was built are added, deleted ones dropped. nnn.refresh retrains.
    #[pg_extern(volatile, parallel_unsafe)]
    fn merge_changes(
        name: &str,
    ) -> TableIterator<'static, (name!(live_rows, i64), name!(dead_rows, i64), name!(bytes, i64), name!(seconds, f64))>
    {
        let def = lookup(Some(name));
        check_owner(name);
        report_row(merge(&def))
    }
}
