//! Bias builds: fill a bias column from a reference query set (a migration step), for a whole
//! table, for given rows (the triggers), or shard by shard on Citus workers.

use super::family::family_columns;
use crate::backend::backend;
use crate::guc;
use crate::postgres::citus;
use crate::postgres::errors::{fail, or_raise, report, spi_or_raise};
use crate::postgres::interrupts::StatementControl;
use crate::postgres::read::{check_memory, read_vectors};
use crate::postgres::relation::{embedding_expr, require_privilege, Table};
use crate::postgres::write::{write_bias, RowKeys};
use nnn_engine::evaluate::{family_bias, Family};
use nnn_engine::Matrix;
use pgrx::datum::DatumWithOid;
use pgrx::prelude::*;
use pgrx::PgLogLevel::DEBUG1;
use pgrx::PgSqlErrorCode::*;
use std::cell::RefCell;
use std::collections::HashMap;
use std::time::Instant;

/// What a bias build did.
pub struct BuildReport {
    /// Candidate rows that received a bias.
    pub rows: i64,
    /// Candidate rows skipped for a NULL embedding (their bias is NULL).
    pub skipped: i64,
    /// Reference rows used (non-NULL and visible to the caller).
    pub reference_rows: i64,
    /// Seconds the build took.
    pub seconds: f64,
}

/// A bias column and where its values come from: the candidate table and its embedding
/// column, the reference table and its embedding column (names quoted), and the family.
#[derive(Clone, Copy)]
pub struct BiasColumn<'a> {
    /// Candidate table.
    pub candidates: &'a Table,
    /// Quoted candidate embedding column.
    pub embedding: &'a str,
    /// Reference table.
    pub reference: &'a Table,
    /// Quoted reference embedding column.
    pub reference_embedding: &'a str,
    /// Quoted bias column.
    pub column: &'a str,
    /// How the biases are computed.
    pub family: Family,
}

/// Which candidate rows a build covers.
pub enum Scope<'a> {
    /// Every row, found again by ctid under a lock that blocks concurrent writers.
    All,
    /// The rows whose unique integer id column is in `ids`.
    Ids { id_column: &'a str, ids: Vec<i64> },
}

/// Reads the reference embeddings (rows visible to the caller).
pub fn read_reference(reference: &Table, reference_column: &str) -> (Vec<f32>, usize) {
    let sql = format!("SELECT true, {} FROM {}", embedding_expr(reference, reference_column), reference.sql);
    let rows = read_vectors::<bool>(&sql, &[], &format!("reference set {}", reference.sql), None);
    if rows.keys.is_empty() {
        empty_reference(reference);
    }
    (rows.data, rows.dim)
}

fn empty_reference(reference: &Table) -> ! {
    fail(
        ERRCODE_DATA_EXCEPTION,
        format!("reference set {} has no non-NULL embeddings visible to you", reference.sql),
        "Load the reference queries (e.g. training captions) first, and check your privileges and row-level security.",
    )
}

/// Fails unless `k` (NNN's; 0 for the other families) is at most the reference rows.
fn check_k(k: usize, reference_rows: usize) {
    if k > reference_rows {
        fail(
            ERRCODE_INVALID_PARAMETER_VALUE,
            format!("k = {k} is larger than the {reference_rows} reference rows"),
            "Choose k at most the number of reference rows, or load more reference queries.",
        );
    }
}

/// The biases of the candidate rows `cand` (row-major, `dim` each) under `family`, on this
/// call's engine backend; `what` names the work in progress messages and errors.
fn compute(cand: &[f32], reference: &[f32], dim: usize, family: Family, what: &str) -> Vec<f32> {
    let k = family.nnn_k().unwrap_or(0);
    // both sets as f32 and as the CPU kernel's 16-bit copies, plus per candidate about 24 bytes
    // for each of its k similarities: the shortlist, its exact rescoring and the kept top k
    // (log-sum-exp: one row of products per worker thread)
    check_memory((cand.len() + reference.len()) * 6 + cand.len() / dim * k * 24, what);
    // read_vectors checked every value of both as it read them
    let c = or_raise(Matrix::from_slice(cand, dim, "candidates"), what).assume_finite();
    let r = or_raise(Matrix::from_slice(reference, dim, "reference set"), what).assume_finite();
    let mut control = StatementControl::new(what).with_rows(c.rows());
    let b = backend(2.0 * (c.rows() * r.rows() * dim) as f64);
    or_raise(family_bias(&*b, guc::threads(), &c, &r, family, &mut control), what)
}

/// Computes and stores the biases of `target` (NNN's with its k, DN's, or log-sum-exp's) of
/// the candidate rows in `scope`.
pub fn build(target: BiasColumn, scope: Scope) -> BuildReport {
    let started = Instant::now();
    let BiasColumn { candidates, embedding, reference, reference_embedding, column: bias_column, family } = target;
    let (why, id) = match &scope {
        Scope::All => ("A bias build reads the embeddings and writes the bias column as you:", None),
        Scope::Ids { id_column, .. } => {
            ("Rows written to the table get their biases as the user who writes them:", Some(*id_column))
        }
    };
    let read: Vec<&str> = [embedding].into_iter().chain(id).collect();
    require_privilege(candidates, &read, "SELECT", why);
    require_privilege(candidates, &[bias_column], "UPDATE", why);
    require_privilege(reference, &[reference_embedding], "SELECT", why);
    // only whole-table builds go to the Citus workers: the triggers' row builds skip the lookup
    let distributed = match scope {
        Scope::All => citus::distribution_column(candidates),
        Scope::Ids { .. } => None,
    };
    if let Some((key, unique)) = distributed {
        if !unique {
            fail(
                ERRCODE_FEATURE_NOT_SUPPORTED,
                format!("{} is distributed by Citus on {key}, which has no unique index of its own", candidates.sql),
                "On Citus, nnn finds rows by the distribution column: distribute by a unique integer id (a primary key).",
            );
        }
        let mut report = build_distributed(target, &key);
        report.seconds = started.elapsed().as_secs_f64();
        return report;
    }
    let (ref_data, dim) = read_reference(reference, reference_embedding);
    let reference_rows = ref_data.len() / dim;
    check_k(family.nnn_k().unwrap_or(0), reference_rows);
    let (keys, cand) = match scope {
        Scope::All => {
            spi_or_raise(
                Spi::run(&format!("LOCK TABLE {} IN SHARE ROW EXCLUSIVE MODE", candidates.sql)),
                "locking the candidates",
            );
            spi_or_raise(
                Spi::run(&format!(
                    "UPDATE {t} SET {bias_column} = NULL WHERE {embedding} IS NULL AND {bias_column} IS NOT NULL",
                    t = candidates.sql
                )),
                "clearing biases of NULL embeddings",
            );
            let sql = format!("SELECT ctid::text, {} FROM {}", embedding_expr(candidates, embedding), candidates.sql);
            let rows = read_vectors::<String>(&sql, &[], &format!("candidates {}", candidates.sql), Some(dim));
            (RowKeys::Ctid(rows.keys), (rows.data, rows.skipped))
        }
        Scope::Ids { id_column, ids } => {
            spi_or_raise(
                Spi::run_with_args(
                    &format!(
                        "UPDATE {t} SET {bias_column} = NULL
                         WHERE {id_column} = ANY($1) AND {embedding} IS NULL AND {bias_column} IS NOT NULL",
                        t = candidates.sql
                    ),
                    &[DatumWithOid::from(ids.clone())],
                ),
                "clearing biases of NULL embeddings",
            );
            let sql = format!(
                "SELECT {id_column}::bigint, {} FROM {} WHERE {id_column} = ANY($1)",
                embedding_expr(candidates, embedding),
                candidates.sql
            );
            let rows = read_vectors::<i64>(
                &sql,
                &[DatumWithOid::from(ids)],
                &format!("candidates {}", candidates.sql),
                Some(dim),
            );
            (RowKeys::Id { column: id_column.to_string(), ids: rows.keys }, (rows.data, rows.skipped))
        }
    };
    let (cand_data, skipped) = cand;
    let what = format!("bias of {}", candidates.sql);
    let read = started.elapsed();
    let bias = compute(&cand_data, &ref_data, dim, family, &what);
    let computed = started.elapsed();
    let rows = bias.len() as i64;
    write_bias(candidates, bias_column, keys, bias);
    let seconds = started.elapsed().as_secs_f64();
    // where the time went (SET client_min_messages = debug1): make bench's profile of a build
    report(
        DEBUG1,
        format!(
            "nnn: {what}: {rows} rows in {seconds:.3} s: reading {:.3} s, engine {:.3} s, writing {:.3} s",
            read.as_secs_f64(),
            (computed - read).as_secs_f64(),
            seconds - computed.as_secs_f64()
        ),
    );
    BuildReport { rows, skipped: skipped as i64, reference_rows: reference_rows as i64, seconds }
}

/// A Citus distributed candidate table, keyed by its distribution column `key` (unique): one
/// distributed statement in which every worker computes the biases of its own shards
/// (`nnn.shard_bias`) against its own copy of the reference table, in parallel. The
/// coordinator carries (key, bias) pairs, never vectors, and the update commits on every shard
/// or on none.
fn build_distributed(target: BiasColumn, key: &str) -> BuildReport {
    let BiasColumn { candidates, embedding, reference, reference_embedding, column: bias_column, family } = target;
    let shard = citus::reference_shard(reference, candidates);
    let count = |sql: &str| spi_or_raise(Spi::get_one::<i64>(sql), "counting rows").unwrap_or(0);
    let reference_rows = count(&format!("SELECT count({reference_embedding}) FROM {}", reference.sql));
    if reference_rows == 0 {
        empty_reference(reference);
    }
    let (name, beta) = family_columns(family);
    let k = family.nnn_k().unwrap_or(0);
    check_k(k, reference_rows as usize);
    let t = &candidates.sql;
    let sql = format!(
        "WITH b AS MATERIALIZED (
             SELECT {key} AS key, nnn.shard_bias(tableoid, {key}::bigint, $1, $2, $3, $4, $5, $6, $7) AS bias FROM {t})
         UPDATE {t} SET {bias_column} = b.bias FROM b WHERE {t}.{key} = b.key"
    );
    let args = [
        DatumWithOid::from(embedding),
        DatumWithOid::from(key),
        DatumWithOid::from(shard.as_str()),
        DatumWithOid::from(reference_embedding),
        DatumWithOid::from(name),
        DatumWithOid::from(k as i32),
        DatumWithOid::from(beta),
    ];
    spi_or_raise(Spi::run_with_args(&sql, &args), "updating the shards' biases");
    let rows = count(&format!("SELECT count({embedding}) FROM {t}"));
    BuildReport { rows, skipped: count(&format!("SELECT count(*) FROM {t}")) - rows, reference_rows, seconds: 0.0 }
}

thread_local! {
    /// The biases `nnn.shard_bias` computed for one shard in one statement, by key.
    static SHARD: RefCell<Option<(String, HashMap<i64, f32>)>> = const { RefCell::new(None) };
}

/// Fails unless `quoted` is the quoted name of a column of `table` (the callers pass names
/// `quote_ident` made).
fn check_quoted_column(table: &Table, quoted: &str) {
    let found = spi_or_raise(
        Spi::get_one_with_args::<bool>(
            "SELECT true FROM pg_catalog.pg_attribute WHERE attrelid = $1 AND attnum > 0 AND NOT attisdropped
               AND pg_catalog.quote_ident(attname) = $2",
            &[DatumWithOid::from(table.oid), DatumWithOid::from(quoted)],
        ),
        "looking up a column",
    );
    if found != Some(true) {
        fail(
            ERRCODE_UNDEFINED_COLUMN,
            format!("column {quoted} of relation {} does not exist", table.sql),
            "nnn.shard_bias is called by nnn.build_bias on Citus; pass quoted column names.",
        );
    }
}

/// One Citus shard of a distributed candidate table and what `nnn.shard_bias` computes its
/// biases from: column names come quoted from `nnn.build_bias`, and are checked.
pub struct Shard<'a> {
    /// The shard (a worker's table).
    pub shard: pg_sys::Oid,
    /// Quoted embedding column.
    pub embedding: &'a str,
    /// Quoted distribution column (the rows' unique key).
    pub key_column: &'a str,
    /// The worker's placement of the reference table.
    pub reference_shard: &'a str,
    /// Quoted reference embedding column.
    pub reference_embedding: &'a str,
    /// How the biases are computed.
    pub family: Family,
}

/// The bias of the row with key `key` of `shard`. The first call for a shard in a statement
/// computes all of the shard's biases in one engine call; the others look them up.
pub fn shard_bias(shard: &Shard, key: i64) -> Option<f32> {
    // SAFETY: plain reads of this session's statement clock and command counter.
    let (started, command) =
        unsafe { (pg_sys::GetCurrentStatementStartTimestamp(), pg_sys::GetCurrentCommandId(false)) };
    let Shard { embedding, key_column, reference_shard, reference_embedding, family, .. } = shard;
    let cache_key = format!(
        "{}|{started}|{command}|{embedding}|{key_column}|{reference_shard}|{reference_embedding}|{family:?}",
        shard.shard.to_u32()
    );
    let cached = SHARD.with(|s| match &*s.borrow() {
        Some((k, biases)) if *k == cache_key => Some(biases.get(&key).copied()),
        _ => None,
    });
    if let Some(bias) = cached {
        return bias;
    }
    let biases = shard_biases(shard);
    let bias = biases.get(&key).copied();
    SHARD.with(|s| *s.borrow_mut() = Some((cache_key, biases)));
    bias
}

/// Biases of every row of the shard (by its key column) against its reference placement.
fn shard_biases(shard: &Shard) -> HashMap<i64, f32> {
    let Shard { embedding, key_column, reference_shard, reference_embedding, family, .. } = *shard;
    let table = crate::postgres::relation::table(shard.shard);
    let reference_oid = spi_or_raise(
        Spi::get_one_with_args::<pg_sys::Oid>("SELECT $1::regclass::oid", &[DatumWithOid::from(reference_shard)]),
        "looking up the reference shard",
    );
    let reference = crate::postgres::relation::table(reference_oid.unwrap_or(pg_sys::InvalidOid));
    for (t, column) in [(&table, embedding), (&table, key_column), (&reference, reference_embedding)] {
        check_quoted_column(t, column);
    }
    let (ref_data, dim) = read_reference(&reference, reference_embedding);
    let what = format!("bias of shard {}", table.sql);
    let sql = format!("SELECT {key_column}::bigint, {} FROM {}", embedding_expr(&table, embedding), table.sql);
    let rows = read_vectors::<i64>(&sql, &[], &what, Some(dim));
    let bias = compute(&rows.data, &ref_data, dim, family, &what);
    rows.keys.into_iter().zip(bias).collect()
}
