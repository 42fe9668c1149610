//! NNN inside the planner: `nnn.set_augmented` and `nnn.query_vector`, for
//! `ORDER BY nnn_augmented <#> nnn.query_vector(q) LIMIT k` (see `index::augmented`).

use crate::index::augmented;
use crate::index::definition::lookup;
use pgrx::prelude::*;
use pgrx::AnyElement;

#[pg_schema]
mod nnn {
    use super::*;

    /// Gives index `name` a stored generated column `column` of pgvector type `vector_type`
    /// (`'vector'` or `'halfvec'`) holding `[embedding, bias]`, always consistent with the row,
    /// and with `method` (`'hnsw'` or `'ivfflat'`) an inner-product index over it built with
    /// `options` (e.g. `'m = 16, ef_construction = 64'`, `'lists = 100'`). A NULL `type`
    /// removes the column. Rank with `ORDER BY column <#> nnn.query_vector(q) LIMIT k`.
    #[pg_extern(volatile, parallel_unsafe)]
    #[allow(clippy::type_complexity)]
    fn set_augmented(
        name: &str,
        vector_type: Option<&str>,
        method: default!(Option<&str>, "NULL"),
        options: default!(Option<&str>, "NULL"),
        column: default!(&str, "'nnn_augmented'"),
    ) -> TableIterator<
        'static,
        (
            name!(column_name, Option<String>),
            name!(dimensions, Option<i32>),
            name!(index_name, Option<String>),
            name!(seconds, f64),
        ),
    > {
        let def = lookup(Some(name));
        let made = augmented::set(&def, vector_type, column, method, options);
        TableIterator::once((made.column, made.dimensions, made.index, made.seconds))
    }

    /// `[query, −alpha]` in the query's own type (`real[]`, pgvector's `vector` or `halfvec`):
    /// the other side of `ORDER BY augmented <#> nnn.query_vector(q)`, whose `<#>` is then
    /// `−(q·r − alpha·bias)`. Without `alpha`, the current `nnn.alpha`.
    #[pg_extern(stable, parallel_safe)]
    fn query_vector(query: Option<AnyElement>, alpha: default!(Option<f64>, "NULL")) -> Option<AnyElement> {
        Some(augmented::query_vector(query?, alpha))
    }
}
