//! `nnn.evaluate` and `nnn.tune`: recall and MRR of rankers on labelled queries, and the
//! best ranker of an index, picked on one part of the queries and reported on the other (see
//! `index::tune`).

use crate::index::tune::{self, GridRequest, LabelledQueries, TuneOptions};
use crate::postgres::relation::resolve;
use pgrx::prelude::*;
use pgrx::PgRelation;

#[pg_schema]
mod nnn {
    use super::*;

    /// Recall@1/5/10 (percent) and MRR of plain search and of every (family, k or β, α) cell
    /// on the labelled queries of `queries` (embedding column `query_embedding`, the right
    /// candidate id or ids in `answer`), for index `name`'s candidates and reference set. All
    /// NNN k share one pass over the reference (prefix means); all α reuse the same products.
    /// `families`: any of nnn, dn (Distribution Normalization; α is its λ), lse (log-sum-exp
    /// at each of `betas`).
    #[pg_extern(stable, parallel_restricted)]
    #[allow(clippy::too_many_arguments, clippy::type_complexity)] // the SQL signature and its rows
    fn evaluate(
        name: &str,
        queries: PgRelation,
        query_embedding: &str,
        answer: &str,
        ks: default!(Vec<i64>, "'{8,32,128,512}'"),
        alphas: default!(Vec<f64>, "'{0.25,0.5,0.75,1,1.25}'"),
        families: default!(Vec<String>, "'{nnn}'"),
        betas: default!(Vec<f64>, "'{10,20,50}'"),
    ) -> TableIterator<
        'static,
        (
            name!(family, String),
            name!(k, Option<i32>),
            name!(beta, Option<f32>),
            name!(alpha, f32),
            name!(recall_1, f64),
            name!(recall_5, f64),
            name!(recall_10, f64),
            name!(mrr, f64),
            name!(queries, i32),
        ),
    > {
        let queries = LabelledQueries { table: resolve(queries), embedding: query_embedding, answer };
        TableIterator::new(tune::evaluate(name, &queries, &GridRequest { ks, alphas, families, betas }))
    }

    /// Picks index `name`'s best ranker — plain search or a (family, k or β, α) cell of
    /// `families` — on a tuning part of the labelled queries (`tune_fraction` of them, chosen
    /// by a hash of each query and `seed`) by `metric` (recall_1, recall_5, recall_10 or mrr),
    /// and reports it on the other part next to the index's current ranker and plain search.
    /// With `apply`, stores the pick: the index's family, k and β (rebuilding its biases when
    /// they change) and its own α (`nnn.index_alpha`).
    #[pg_extern(volatile, parallel_unsafe)]
    #[allow(clippy::too_many_arguments, clippy::type_complexity)] // the SQL signature and its rows
    fn tune(
        name: &str,
        queries: PgRelation,
        query_embedding: &str,
        answer: &str,
        ks: default!(Vec<i64>, "'{8,32,128,512}'"),
        alphas: default!(Vec<f64>, "'{0.25,0.5,0.75,1,1.25}'"),
        metric: default!(&str, "'recall_1'"),
        tune_fraction: default!(f64, 0.5),
        seed: default!(i64, 0),
        apply: default!(bool, false),
        families: default!(Vec<String>, "'{nnn}'"),
        betas: default!(Vec<f64>, "'{10,20,50}'"),
    ) -> TableIterator<
        'static,
        (
            name!(pick, String),
            name!(family, String),
            name!(k, Option<i32>),
            name!(beta, Option<f32>),
            name!(alpha, f32),
            name!(tuning, f64),
            name!(recall_1, f64),
            name!(recall_5, f64),
            name!(recall_10, f64),
            name!(mrr, f64),
            name!(test_queries, i32),
            name!(applied, bool),
        ),
    > {
        let queries = LabelledQueries { table: resolve(queries), embedding: query_embedding, answer };
        let options = TuneOptions { metric, tune_fraction, seed, apply };
        TableIterator::new(tune::tune(name, &queries, &GridRequest { ks, alphas, families, betas }, &options))
    }
}
