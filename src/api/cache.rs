//! `nnn.cache_info()`: what this session's search cache holds (see `postgres::cache`).

use crate::postgres::cache;
use pgrx::prelude::*;

#[pg_schema]
mod nnn {
    use super::*;

    /// One row per index and kind ('rows': candidate vectors; 'faiss': its Faiss structure)
    /// this session has cached: rows, bytes, and the snapshot they were read under. Empty in a
    /// fresh session or with nnn.cache_mb = 0.
    #[pg_extern(volatile, parallel_restricted)]
    #[allow(clippy::type_complexity)]
    fn cache_info() -> TableIterator<
        'static,
        (name!(index_name, String), name!(kind, String), name!(rows, i64), name!(bytes, i64), name!(snapshot, String)),
    > {
        TableIterator::new(cache::describe())
    }
}
