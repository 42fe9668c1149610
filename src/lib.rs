//! nnn: Nearest Neighbor Normalization inside PostgreSQL. Thin pgrx glue over `nnn-engine`:
//! `api/` is the SQL surface, `postgres/` reads tables, raises errors and watches interrupts.

use pgrx::prelude::*;

mod api;
mod backends;
mod guc;
mod postgres;

pgrx::pg_module_magic!();

pgrx::extension_sql_file!("../sql/catalog.sql", name = "catalog", bootstrap);

/// Registers the `nnn.*` settings when the library loads, and keeps Rust backtraces out of
/// error reports: with RUST_BACKTRACE set in the server's environment, pgrx would append one
/// to the DETAIL of every error raised through SPI, and users must see PostgreSQL's message,
/// SQLSTATE and hint, never a Rust stack. (`_PG_init` runs before nnn starts any thread.)
#[pg_guard]
pub extern "C-unwind" fn _PG_init() {
    std::env::set_var("RUST_LIB_BACKTRACE", "0");
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
