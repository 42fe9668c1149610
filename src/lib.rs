//! nnn: Nearest Neighbor Normalization inside PostgreSQL, over the `nnn-engine` crate:
//! - `api/`: the SQL surface, thin `#[pg_extern]` wrappers, one file per concept;
//! - `index/`: what nnn does with an index (definition, bias builds, searches, Faiss
//!   structures, augmented columns, tuning);
//! - `postgres/`: PostgreSQL helpers (arguments, errors, interrupts, reading and writing
//!   rows, the session's search cache, Citus);
//! - `backend.rs`: the engine backend a call runs on; `guc.rs`: the `nnn.*` settings.

use pgrx::prelude::*;

mod api;
mod backend;
mod guc;
mod index;
mod postgres;

pgrx::pg_module_magic!();

pgrx::extension_sql_file!("../sql/catalog.sql", name = "catalog", bootstrap);

/// Registers the `nnn.*` settings when the library loads, and keeps Rust backtraces out of
/// error reports: with RUST_BACKTRACE set in the server's environment, pgrx would append one
/// to the DETAIL of every error raised through SPI, and users must see PostgreSQL's message,
/// SQLSTATE and hint, never a Rust stack. (`_PG_init` runs before nnn starts any thread.)
/// Also stops the threads OpenBLAS (linked by Faiss) started when the library loaded, which
/// would otherwise spin on the session's CPUs for about 0.1 s.
#[pg_guard]
pub extern "C-unwind" fn _PG_init() {
    std::env::set_var("RUST_LIB_BACKTRACE", "0");
    guc::init();
    nnn_engine::faiss::stop_idle_blas_threads();
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
