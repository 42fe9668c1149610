//! An index's Faiss structure over `[embedding, bias]`: `nnn.set_ann` and
//! `nnn.merge_changes` (see `index::ann`; `nnn_search` uses the structure).

use crate::index::ann::{self, AnnReport};
use crate::index::definition::{check_owner, lookup};
use crate::postgres::errors::spi_or_raise;
use pgrx::datum::DatumWithOid;
use pgrx::prelude::*;

/// The row `nnn.set_ann` and `nnn.merge_changes` return.
fn report_row(r: AnnReport) -> TableIterator<'static, (i64, i64, i64, f64)> {
    TableIterator::once((r.live_rows, r.dead_rows, r.bytes, r.seconds))
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
            Some(f) => report_row(ann::build(&def, f)),
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
        report_row(ann::merge(&def))
    }
}
