//! `nnn.build_bias`: fill a bias column from a reference query set (a migration step).

use crate::backends::backend;
use crate::guc;
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

/// Reads the reference embeddings (rows visible to the caller).
pub fn read_reference(reference: &Table, reference_column: &str) -> (Vec<f32>, usize) {
    let sql = format!("SELECT true, {reference_column}::real[] FROM {}", reference.sql);
    let rows = read_vectors::<bool>(&sql, &[], &format!("reference set {}", reference.sql), None);
    if rows.keys.is_empty() {
        fail(
            ERRCODE_DATA_EXCEPTION,
            format!("reference set {} has no non-NULL embeddings visible to you", reference.sql),
            "Load the reference queries (e.g. training captions) first, and check your privileges and row-level security.",
        );
    }
    (rows.data, rows.dim)
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
    let k = match family {
        Family::Nnn { k } => k,
        _ => 0,
    };
    if matches!(family, Family::Nnn { k: 0 }) {
        fail(ERRCODE_INVALID_PARAMETER_VALUE, "k must be at least 1, got 0", "The paper uses k = 128.");
    }
    let (ref_data, dim) = read_reference(reference, reference_embedding);
    let reference_rows = ref_data.len() / dim;
    if k > reference_rows {
        fail(
            ERRCODE_INVALID_PARAMETER_VALUE,
            format!("k = {k} is larger than the {reference_rows} reference rows"),
            "Choose k at most the number of reference rows, or load more reference queries.",
        );
    }
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
    let what = format!("bias of {}", candidates.sql);
    // both sets as f32 and as the CPU kernel's 16-bit copies, plus per candidate about 24 bytes
    // for each of its k similarities: the shortlist, its exact rescoring and the kept top k
    // (log-sum-exp: one row of products per worker thread)
    check_memory((cand_data.len() + ref_data.len()) * 6 + cand_data.len() / dim * k * 24, &what);
    let c = or_raise(Matrix::from_slice(&cand_data, dim, "candidates"), &what);
    let r = or_raise(Matrix::from_slice(&ref_data, dim, "reference set"), &what);
    let mut control = BackendControl::new(&what).with_rows(c.rows());
    let b = backend(2.0 * (c.rows() * r.rows() * dim) as f64);
    let bias = or_raise(family_bias(&*b, guc::threads(), &c, &r, family, &mut control), &what);
    let rows = bias.len() as i64;
    write_bias(candidates, bias_column, keys, bias);
    BuildReport {
        rows,
        skipped: skipped as i64,
        reference_rows: reference_rows as i64,
        seconds: started.elapsed().as_secs_f64(),
    }
}

#[pg_schema]
mod nnn {
    use super::*;

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
        if k < 1 {
            fail(ERRCODE_INVALID_PARAMETER_VALUE, format!("k must be at least 1, got {k}"), "The paper uses k = 128.");
        }
        let r = build(&cand, &emb, &refs, &ref_emb, &bias, Family::Nnn { k: k as usize }, Scope::All);
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
