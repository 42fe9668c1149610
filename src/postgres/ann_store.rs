//! Where an index's Faiss structure lives: `nnn.ann` (what it holds) and `nnn.ann_chunks`
//! (its bytes in 1 MiB pieces), written in the caller's transaction.

use super::errors::{select_first, spi_or_raise};
use super::read::check_memory;
use pgrx::datum::DatumWithOid;
use pgrx::prelude::*;

/// Bytes per row of `nnn.ann_chunks`.
const CHUNK: usize = 1 << 20;

/// What a saved structure holds, for `nnn.ann`.
pub struct Saved<'a> {
    /// The index's name.
    pub index: &'a str,
    /// Faiss factory string.
    pub factory: &'a str,
    /// Snapshot the rows were read under (taken before reading), as text; None when
    /// nothing was built (no rows yet).
    pub snapshot: Option<&'a str>,
    /// Rows searches can return, and dead slots kept until a rebuild.
    pub live_rows: i64,
    /// Dead slots.
    pub dead_rows: i64,
}

/// The caller's snapshot as text; take it before reading the rows a structure will hold.
pub fn snapshot() -> String {
    select_first("SELECT pg_catalog.pg_current_snapshot()::text", &[], "taking a snapshot", |t| t.get::<String>(1))
        .flatten()
        .unwrap_or_default()
}

/// Replaces the stored structure of `saved.index` with `bytes`, stamped with this transaction.
pub fn save(saved: &Saved, bytes: &[u8]) {
    spi_or_raise(
        Spi::run_with_args(
            "INSERT INTO nnn.ann AS a (index_name, factory, snapshot, build_xid, live_rows, dead_rows, bytes, built_at)
             VALUES ($1, $2, $3::pg_snapshot, pg_catalog.pg_current_xact_id(), $4, $5, $6, now())
             ON CONFLICT (index_name) DO UPDATE SET factory = EXCLUDED.factory, snapshot = EXCLUDED.snapshot,
                 build_xid = EXCLUDED.build_xid, live_rows = EXCLUDED.live_rows, dead_rows = EXCLUDED.dead_rows,
                 bytes = EXCLUDED.bytes, built_at = EXCLUDED.built_at",
            &[
                DatumWithOid::from(saved.index),
                DatumWithOid::from(saved.factory),
                DatumWithOid::from(saved.snapshot),
                DatumWithOid::from(saved.live_rows),
                DatumWithOid::from(saved.dead_rows),
                DatumWithOid::from(bytes.len() as i64),
            ],
        ),
        "writing nnn.ann",
    );
    spi_or_raise(
        Spi::run_with_args("DELETE FROM nnn.ann_chunks WHERE index_name = $1", &[DatumWithOid::from(saved.index)]),
        "writing nnn.ann_chunks",
    );
    for (seq, piece) in bytes.chunks(CHUNK).enumerate() {
        spi_or_raise(
            Spi::run_with_args(
                "INSERT INTO nnn.ann_chunks (index_name, seq, data) VALUES ($1, $2, $3)",
                &[DatumWithOid::from(saved.index), DatumWithOid::from(seq as i32), DatumWithOid::from(piece)],
            ),
            "writing nnn.ann_chunks",
        );
    }
}

/// The stored bytes of `index`'s structure as the caller's snapshot sees them.
pub fn load(index: &str, what: &str) -> Vec<u8> {
    Spi::connect(|client| {
        let rows = client.select(
            "SELECT data FROM nnn.ann_chunks WHERE index_name = $1 ORDER BY seq",
            None,
            &[DatumWithOid::from(index)],
        );
        let mut out = Vec::new();
        for row in spi_or_raise(rows, "reading nnn.ann_chunks") {
            let piece: Option<&[u8]> = spi_or_raise(row.get(1), "reading nnn.ann_chunks");
            out.extend_from_slice(piece.unwrap_or_default());
            check_memory(out.len(), what);
        }
        out
    })
}
