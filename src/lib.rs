//! nnn: Nearest Neighbor Normalization inside PostgreSQL. Thin pgrx glue over `nnn-engine`:
//! `api/` is the SQL surface, `postgres/` reads tables, raises errors and watches interrupts.

use pgrx::prelude::*;

mod api;
mod backends;
mod guc;
mod postgres;

pgrx::pg_module_magic!();

pgrx::extension_sql_file!("../sql/catalog.sql", name = "catalog", bootstrap);

/// Registers the `nnn.*` settings when the library loads.
#[pg_guard]
pub extern "C-unwind" fn _PG_init() {
    guc::init();
}

/// Hooks for `cargo pgrx test`.
#[cfg(test)]
pub mod pg_test {
    /// Runs once before the `#[pg_test]` functions.
    pub fn setup(_options: Vec<&str>) {}

    /// Extra postgresql.conf lines for the test cluster.
    #[must_use]
    pub fn postgresql_conf_options() -> Vec<&'static str> {
        vec![]
    }
}
