//! Citus: whether a table is distributed, by which column, and the local name of a reference
//! table's shard (every node holds a copy). Everything here answers "not distributed" where
//! the citus extension is absent.

use super::errors::{fail, select_first};
use super::relation::{Table, UNIQUE_ALONE};
use pgrx::datum::DatumWithOid;
use pgrx::spi::quote_identifier;
use pgrx::PgSqlErrorCode::*;

/// Whether the citus extension is installed in this database.
pub fn installed() -> bool {
    select_first("SELECT true FROM pg_catalog.pg_extension WHERE extname = 'citus'", &[], "looking up Citus", |t| {
        t.get::<bool>(1)
    })
    .flatten()
    .unwrap_or(false)
}

/// The distribution column (quoted) of `table` when Citus distributes it by hash, with
/// whether a unique index keeps that column unique ([`UNIQUE_ALONE`]); None for a local table,
/// a reference table, or without Citus.
pub fn distribution_column(table: &Table) -> Option<(String, bool)> {
    if !installed() {
        return None;
    }
    select_first(
        &format!(
            "SELECT a.attname::text, {UNIQUE_ALONE}
             FROM pg_catalog.pg_dist_partition p
             JOIN pg_catalog.pg_attribute a ON a.attrelid = p.logicalrelid
                  AND a.attname = pg_catalog.column_to_column_name(p.logicalrelid, p.partkey)
             WHERE p.logicalrelid = $1 AND p.partmethod = 'h'"
        ),
        &[DatumWithOid::from(table.oid)],
        "looking up the Citus distribution",
        |t| Ok((t.get::<String>(1)?.unwrap_or_default(), t.get::<bool>(2)?.unwrap_or(false))),
    )
    .map(|(column, unique)| (quote_identifier(column), unique))
}

/// The name, valid on every node, of the one shard of Citus reference table `table`; an
/// error naming `create_reference_table` when `table` is not one.
pub fn reference_shard(table: &Table, candidates: &Table) -> String {
    let shard = select_first(
        "SELECT pg_catalog.shard_name(p.logicalrelid, s.shardid) FROM pg_catalog.pg_dist_partition p
         JOIN pg_catalog.pg_dist_shard s USING (logicalrelid)
         WHERE p.logicalrelid = $1 AND p.partmethod = 'n' AND p.repmodel = 't'",
        &[DatumWithOid::from(table.oid)],
        "looking up the reference table's shard",
        |t| t.get::<String>(1),
    )
    .flatten();
    shard.unwrap_or_else(|| {
        fail(
            ERRCODE_FEATURE_NOT_SUPPORTED,
            format!(
                "{} is distributed by Citus, but the reference set {} is not a Citus reference table",
                candidates.sql, table.sql
            ),
            format!(
                "Each worker computes its shards' biases against its own copy of the reference set: SELECT create_reference_table('{}');",
                table.sql
            ),
        )
    })
}
