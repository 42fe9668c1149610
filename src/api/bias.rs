//! `nnn.build_bias`: fill a bias column from a reference query set (a migration step), and
//! `nnn.shard_bias`, its per-shard part on Citus workers (see `index::build`).

use crate::index::build::{self, BiasColumn, Scope, Shard};
use crate::index::family::family;
use crate::postgres::relation::{candidate_table, ensure_bias_column, resolve, vector_column};
use pgrx::prelude::*;
use pgrx::PgRelation;

#[pg_schema]
mod nnn {
    use super::*;

    /// Internal, for `nnn.build_bias` on a Citus distributed table: the bias of the row with
    /// key `key` of shard `shard`, run on the worker that holds it. The first call for a shard
    /// in a statement computes all of the shard's biases in one engine call against
    /// `reference_shard` (its local copy of the reference table); the others look them up.
    /// Column names come quoted.
    #[pg_extern(volatile, parallel_unsafe)]
    #[allow(clippy::too_many_arguments)] // the SQL signature: one Rust argument per SQL argument
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
        let shard = Shard {
            shard,
            embedding,
            key_column,
            reference_shard,
            reference_embedding,
            family: crate::index::family::family(family, k, beta),
        };
        build::shard_bias(&shard, key)
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
        let cand = candidate_table(candidates);
        let refs = resolve(reference);
        let emb = vector_column(&cand, embedding);
        let ref_emb = vector_column(&refs, reference_embedding);
        let column = ensure_bias_column(&cand, bias_column);
        let target = BiasColumn {
            candidates: &cand,
            embedding: &emb,
            reference: &refs,
            reference_embedding: &ref_emb,
            column: &column,
            family: family("nnn", k, None),
        };
        let r = build::build(target, Scope::All);
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
