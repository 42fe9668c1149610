//! `nnn.build_bias`: fill a bias column from a reference query set (a migration step).

use crate::backends::backend;
use crate::guc;
use crate::postgres::citus;
use crate::postgres::errors::{fail, or_raise, spi_or_raise};
use crate::postgres::interrupts::BackendControl;
use crate::postgres::read::{check_memory, read_vectors};
use crate::postgres::relation::{ensure_bias_column, resolve, vector_column, Table};
use crate::postgres::write::{write_bias, RowKeys};
use nnn_engine::evaluate::{family_bias, Family};
use nnn_engine::Matrix;
use pgrx::datum::DatumWithOid;
use pgrx::prelude::*;
use pgrx::PgRelation;
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

/// Which candidate rows a build covers.
pub enum Scope<'a> {
    /// Every row, found again by ctid under a lock that blocks concurrent writers.
    All,
    /// The rows whose unique integer id column is in `ids`.
    Ids { id_column: &'a str, ids: Vec<i64> },
}

/// The bias family named `name` (nnn, dn, lse) with NNN's `k` and log-sum-exp's `beta`,
/// checked: an error names what is wrong.
pub fn family(name: &str, k: i32, beta: Option<f32>) -> Family {
    match (name, beta) {
        ("nnn", None) if k >= 1 => Family::Nnn { k: k as usize },
        ("nnn", None) => {
            fail(ERRCODE_INVALID_PARAMETER_VALUE, format!("k must be at least 1, got {k}"), "The paper uses k = 128.")
        }
        ("dn", None) => Family::Dn,
        ("lse", Some(beta)) if beta.is_finite() && beta > 0.0 => Family::Lse { beta },
        ("lse", _) => fail(
            ERRCODE_INVALID_PARAMETER_VALUE,
            format!("the lse family needs a positive beta, got {}", beta.map_or("NULL".into(), |b| b.to_string())),
            "Pass beta, e.g. beta => 20 (nnn.evaluate compares several).",
        ),
        ("nnn" | "dn", Some(_)) => fail(
            ERRCODE_INVALID_PARAMETER_VALUE,
            format!("beta is a parameter of the lse family, not of {name}"),
            "Leave beta NULL, or use family => 'lse'.",
        ),
        _ => fail(ERRCODE_INVALID_PARAMETER_VALUE, format!("unknown bias family \"{name}\""), "Use nnn, dn or lse."),
    }
}

/// The family's name and β, as `nnn.indexes` stores them.
pub fn family_columns(family: Family) -> (&'static str, Option<f32>) {
    match family {
        Family::Nnn { .. } | Family::Plain => ("nnn", None),
        Family::Dn => ("dn", None),
        Family::Lse { beta } => ("lse", Some(beta)),
    }
}

/// Reads the reference embeddings (rows visible to the caller).
pub fn read_reference(reference: &Table, reference_column: &str) -> (Vec<f32>, usize) {
    let sql = format!("SELECT true, {reference_column}::real[] FROM {}", reference.sql);
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
/// call's backend; `what` names the work in progress messages and errors.
fn compute(cand: &[f32], reference: &[f32], dim: usize, family: Family, what: &str) -> Vec<f32> {
    let k = family.nnn_k().unwrap_or(0);
    // both sets as f32 and as the CPU kernel's 16-bit copies, plus per candidate about 24 bytes
    // for each of its k similarities: the shortlist, its exact rescoring and the kept top k
    // (log-sum-exp: one row of products per worker thread)
    check_memory((cand.len() + reference.len()) * 6 + cand.len() / dim * k * 24, what);
    let c = or_raise(Matrix::from_slice(cand, dim, "candidates"), what);
    let r = or_raise(Matrix::from_slice(reference, dim, "reference set"), what);
    let mut control = BackendControl::new(what).with_rows(c.rows());
    let b = backend(2.0 * (c.rows() * r.rows() * dim) as f64);
    or_raise(family_bias(&*b, guc::threads(), &c, &r, family, &mut control), what)
}

/// Computes and stores the bias under `family` (NNN's with its k, DN's, or log-sum-exp's) of
/// the candidate rows in `scope`.
pub fn build(
    candidates: &Table,
    embedding: &str,
    reference: &Table,
    reference_embedding: &str,
    bias_column: &str,
    family: Family,
    scope: Scope,
) -> BuildReport {
    let started = Instant::now();
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
        let mut report =
            build_distributed(candidates, embedding, reference, reference_embedding, bias_column, family, &key);
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
            let sql = format!("SELECT ctid::text, {embedding}::real[] FROM {}", candidates.sql);
            let rows = read_vectors::<String>(&sql, &[], &format!("candidates {}", candidates.sql), Some(dim));
            (RowKeys::Ctid(rows.keys), (rows.data, rows.skipped))
        }
        Scope::Ids { id_column, ids } => {
            let sql = format!(
                "SELECT {id_column}::bigint, {embedding}::real[] FROM {} WHERE {id_column} = ANY($1)",
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
    let bias = compute(&cand_data, &ref_data, dim, family, &format!("bias of {}", candidates.sql));
    let rows = bias.len() as i64;
    write_bias(candidates, bias_column, keys, bias);
    BuildReport {
        rows,
        skipped: skipped as i64,
        reference_rows: reference_rows as i64,
        seconds: started.elapsed().as_secs_f64(),
    }
}

/// A Citus distributed candidate table, keyed by its distribution column `key` (unique): one
/// distributed statement in which every worker computes the biases of its own shards
/// (`nnn.shard_bias`) against its own copy of the reference table, in parallel. The
/// coordinator carries (key, bias) pairs, never vectors, and the update commits on every shard
/// or on none.
fn build_distributed(
    candidates: &Table,
    embedding: &str,
    reference: &Table,
    reference_embedding: &str,
    bias_column: &str,
    family: Family,
    key: &str,
) -> BuildReport {
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

/// Biases of every row of shard `shard` (by `key_column`) against `reference_shard`.
fn shard_biases(
    shard: pg_sys::Oid,
    embedding: &str,
    key_column: &str,
    reference_shard: &str,
    reference_embedding: &str,
    family: Family,
) -> HashMap<i64, f32> {
    let table = crate::postgres::relation::table(shard);
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
    let sql = format!("SELECT {key_column}::bigint, {embedding}::real[] FROM {}", table.sql);
    let rows = read_vectors::<i64>(&sql, &[], &what, Some(dim));
    let bias = compute(&rows.data, &ref_data, dim, family, &what);
    rows.keys.into_iter().zip(bias).collect()
}

#[pg_schema]
mod nnn {
    use super::*;

    /// Internal, for `nnn.build_bias` on a Citus distributed table: the bias of the row with
    /// key `key` of shard `shard`, run on the worker that holds it. The first call for a shard
    /// in a statement computes all of the shard's biases in one engine call against
    /// `reference_shard` (its local copy of the reference table); the others look them up.
    /// Column names come quoted.
    #[pg_extern(volatile, parallel_unsafe)]
    #[allow(clippy::too_many_arguments)]
    fn shard_bias(
        shard: pg_sys::Oid,
        key: i64,
        embedding: &str,
        key_column: &str,
        reference_shard: &str,
        reference_embedding: &str,
        family: &str,
        k: i32,
        beta: Option<f32>,
    ) -> Option<f32> {
        // SAFETY: plain reads of this backend's statement clock and command counter.
        let (started, command) =
            unsafe { (pg_sys::GetCurrentStatementStartTimestamp(), pg_sys::GetCurrentCommandId(false)) };
        let cache_key = format!(
            "{}|{started}|{command}|{embedding}|{key_column}|{reference_shard}|{reference_embedding}|{family}|{k}|{beta:?}",
            shard.to_u32()
        );
        let cached = SHARD.with(|s| match &*s.borrow() {
            Some((k, biases)) if *k == cache_key => Some(biases.get(&key).copied()),
            _ => None,
        });
        if let Some(bias) = cached {
            return bias;
        }
        let chosen = super::family(family, k, beta);
        let biases = shard_biases(shard, embedding, key_column, reference_shard, reference_embedding, chosen);
        let bias = biases.get(&key).copied();
        SHARD.with(|s| *s.borrow_mut() = Some((cache_key, biases)));
        bias
    }

    /// Adds (if missing) and fills the `real` column `bias_column` of `candidates` with each
    /// row's NNN bias: the mean of its `k` largest similarities to the `reference` embeddings.
    /// Runs in the caller's transaction: an error or cancel leaves the table as it was.
    #[pg_extern(volatile, parallel_unsafe)]
    fn build_bias(
        candidates: PgRelation,
        embedding: &str,
        reference: PgRelation,
        reference_embedding: &str,
        bias_column: default!(&str, "'nnn_bias'"),
        k: default!(i32, 128),
    ) -> TableIterator<
        'static,
        (name!(rows, i64), name!(skipped, i64), name!(reference_rows, i64), name!(k, i32), name!(seconds, f64)),
    > {
        let cand = resolve(candidates);
        let refs = resolve(reference);
        let emb = vector_column(&cand, embedding);
        let ref_emb = vector_column(&refs, reference_embedding);
        let bias = ensure_bias_column(&cand, bias_column);
        let r = build(&cand, &emb, &refs, &ref_emb, &bias, super::family("nnn", k, None), Scope::All);
        TableIterator::once((r.rows, r.skipped, r.reference_rows, k, r.seconds))
    }
}

#[cfg(any(test, feature = "pg_test"))]
#[pg_schema]
mod tests {
    use pgrx::prelude::*;

    /// The reference package's toy test: biases with k = 2 give NNN scores 0.14625 and 0.25.
    #[pg_test]
    fn toy_bias_matches_reference_package() {
        Spi::run(
            "CREATE TABLE img(id int PRIMARY KEY, emb real[]);
             INSERT INTO img VALUES (0,'{0,1,0,0}'),(1,'{1,0,0,0}'),(2,'{0,-1,0,0}'),(3,'{-1,0,0,0}'),(4,'{0,0,1,0}');
             CREATE TABLE q(emb real[]);
             CREATE TABLE cap(emb real[]);
             INSERT INTO q VALUES ('{0,0.6,0.8,0}'),('{0.6,0,0.8,0}'),('{0,-0.6,0.8,0}'),('{-0.6,0,0.8,0}'),('{0,0,1,0}');
             INSERT INTO cap SELECT ARRAY[emb[1], emb[2] + d, emb[3], emb[4]] FROM q, unnest(ARRAY[0.01, -0.01]::real[]) d;
             INSERT INTO cap SELECT ARRAY[emb[1] + d, emb[2], emb[3], emb[4]] FROM q, unnest(ARRAY[0.01, -0.01]::real[]) d;",
        )
        .unwrap();
        let rows = Spi::get_one::<i64>("SELECT rows FROM nnn.build_bias('img', 'emb', 'cap', 'emb', k => 2)")
            .unwrap()
            .unwrap();
        assert_eq!(rows, 5);
        let top = Spi::get_two::<i32, f32>(
            "SELECT id, nnn_score(emb, '{0,0,1,0}', nnn_bias, 0.75) s FROM img ORDER BY s DESC LIMIT 1",
        )
        .unwrap();
        assert_eq!(top.0, Some(4));
        assert!((top.1.unwrap() - 0.25).abs() < 1e-6);
        let s0 = Spi::get_one::<f32>("SELECT nnn_score(emb, '{0,0.6,0.8,0}', nnn_bias, 0.75) FROM img WHERE id = 0")
            .unwrap()
            .unwrap();
        assert!((s0 - 0.14625).abs() < 1e-6);
    }
}
