//! The registry's SQL surface: `nnn.create_index`, `nnn.drop_index`, `nnn.refresh`,
//! `nnn.set_alpha`, `nnn.index_alpha`, and `nnn.refresh_rows`, which the candidate-table
//! triggers call.

use crate::index::build::BuildReport;
use crate::index::definition::lookup;
use crate::index::registry::{self, NewIndex};
use pgrx::prelude::*;
use pgrx::PgRelation;

/// The row the build functions return.
fn report_row(r: BuildReport, k: i32) -> TableIterator<'static, (i64, i64, i64, i32, f64)> {
    TableIterator::once((r.rows, r.skipped, r.reference_rows, k, r.seconds))
}

#[pg_schema]
mod nnn {
    use super::*;

    /// Registers `name`: candidates with a unique integer `id` and an `embedding`, biased
    /// against `reference`'s `reference_embedding` with `k` neighbours. Builds the bias column
    /// and installs triggers that give inserted and updated rows their bias; with `ann`, a
    /// Faiss factory string, also builds a Faiss structure for approximate search; with
    /// `augmented`, the augmented pgvector column (see `nnn.set_augmented`). `family` picks
    /// the bias: `nnn` (mean of the k largest reference similarities), `dn` (the mean of all;
    /// Distribution Normalization) or `lse` (log-sum-exp at `beta`).
    #[pg_extern(volatile, parallel_unsafe, name = "create_index")]
    #[allow(clippy::too_many_arguments)] // the SQL signature: one Rust argument per SQL argument
    fn create_index_augmented(
        name: &str,
        candidates: PgRelation,
        id: &str,
        embedding: &str,
        reference: PgRelation,
        reference_embedding: &str,
        k: default!(i32, 128),
        bias_column: default!(&str, "'nnn_bias'"),
        ann: default!(Option<&str>, "NULL"),
        augmented: default!(Option<&str>, "NULL"),
        augmented_index: default!(Option<&str>, "NULL"),
        augmented_options: default!(Option<&str>, "NULL"),
        family: default!(&str, "'nnn'"),
        beta: default!(Option<f64>, "NULL"),
    ) -> TableIterator<
        'static,
        (name!(rows, i64), name!(skipped, i64), name!(reference_rows, i64), name!(k, i32), name!(seconds, f64)),
    > {
        let new = NewIndex {
            name,
            candidates,
            id,
            embedding,
            reference,
            reference_embedding,
            k,
            bias_column,
            ann,
            augmented,
            augmented_index,
            augmented_options,
            family,
            beta,
        };
        report_row(registry::create(new), k)
    }

    /// 0.1.0's nine-argument `nnn.create_index`, kept as a C entry point without SQL so that a
    /// database still on the 0.1.0 scripts (between installing this library and `ALTER
    /// EXTENSION nnn UPDATE`) can go on creating indexes.
    #[pg_extern(sql = false)]
    #[allow(clippy::too_many_arguments)] // the SQL signature: one Rust argument per SQL argument
    fn create_index(
        name: &str,
        candidates: PgRelation,
        id: &str,
        embedding: &str,
        reference: PgRelation,
        reference_embedding: &str,
        k: i32,
        bias_column: &str,
        ann: Option<&str>,
    ) -> TableIterator<
        'static,
        (name!(rows, i64), name!(skipped, i64), name!(reference_rows, i64), name!(k, i32), name!(seconds, f64)),
    > {
        create_index_augmented(
            name,
            candidates,
            id,
            embedding,
            reference,
            reference_embedding,
            k,
            bias_column,
            ann,
            None,
            None,
            None,
            "nnn",
            None,
        )
    }

    /// Unregisters `name` and removes its triggers; the bias column stays unless
    /// `drop_bias_column` is true.
    #[pg_extern(volatile, parallel_unsafe)]
    fn drop_index(name: &str, drop_bias_column: default!(bool, false)) -> bool {
        registry::drop(name, drop_bias_column);
        true
    }

    /// Recomputes every bias of index `name` (after the reference set changed) and retrains
    /// its Faiss structure, if it has one.
    #[pg_extern(volatile, parallel_unsafe)]
    fn refresh(
        name: &str,
    ) -> TableIterator<
        'static,
        (name!(rows, i64), name!(skipped, i64), name!(reference_rows, i64), name!(k, i32), name!(seconds, f64)),
    > {
        let def = lookup(Some(name));
        report_row(registry::refresh(&def), def.k)
    }

    /// Stores `alpha` as index `name`'s own bias weight, used by its searches unless
    /// `nnn.alpha` is set (NULL: back to `nnn.alpha`). Returns the α its searches now use.
    #[pg_extern(volatile, parallel_unsafe)]
    fn set_alpha(name: &str, alpha: Option<f64>) -> f32 {
        registry::set_alpha(name, alpha)
    }

    /// The α searches of index `name` rank with: `nnn.alpha` when set (SET, ALTER ROLE or
    /// DATABASE … SET, the configuration file), else the index's own (`nnn.set_alpha`,
    /// `nnn.tune`), else `nnn.alpha`'s default. For `nnn.query_vector(q, nnn.index_alpha('…'))`.
    #[pg_extern(stable, parallel_restricted)]
    fn index_alpha(name: &str) -> f32 {
        lookup(Some(name)).alpha()
    }

    /// Recomputes the biases of the rows of index `name` whose id is in `ids` (NULLs ignored);
    /// rows whose embedding is NULL get a NULL bias. Called by the index's triggers.
    #[pg_extern(volatile, parallel_unsafe)]
    fn refresh_rows(name: &str, ids: Vec<Option<i64>>) -> i64 {
        registry::refresh_rows(name, ids.into_iter().flatten().collect())
    }
}
