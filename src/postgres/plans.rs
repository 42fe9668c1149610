//! Plans kept for the session: the queries every search runs (its index's definition, the
//! change log since its cache) are parsed and planned once per session instead of at every
//! call, where planning them took about half of a small cached search's time (perf).
//! PostgreSQL plans a kept query again by itself when what it reads changes (DDL, statistics).

use super::errors::{first_row, spi_or_raise};
use pgrx::datum::DatumWithOid;
use pgrx::spi::{OwnedPreparedStatement, SpiClient, SpiTupleTable};
use pgrx::PgOid;
use std::cell::RefCell;
use std::collections::HashMap;

thread_local! {
    /// Kept plans by name. Never freed: a handful per session, in PostgreSQL's cache memory
    /// until the session ends (freeing them at thread exit would call into a server that may
    /// be gone).
    static KEPT: RefCell<HashMap<&'static str, &'static OwnedPreparedStatement>> = RefCell::new(HashMap::new());
}

/// Runs the session's kept query `name` through `client` with `args` (their types are the
/// parameters' types), at most `limit` rows; its text comes from `sql` at the first use in the
/// session. `context` names it in errors.
pub fn select_kept<'conn>(
    client: &SpiClient<'conn>,
    name: &'static str,
    sql: impl FnOnce() -> String,
    args: &[DatumWithOid],
    limit: Option<i64>,
    context: &str,
) -> SpiTupleTable<'conn> {
    let plan = match KEPT.with(|k| k.borrow().get(name).copied()) {
        Some(plan) => plan,
        None => {
            let types: Vec<PgOid> = args.iter().map(|a| PgOid::from(a.oid())).collect();
            let kept = spi_or_raise(client.prepare(sql().as_str(), &types), context).keep();
            let plan: &'static OwnedPreparedStatement = Box::leak(Box::new(kept));
            KEPT.with(|k| k.borrow_mut().insert(name, plan));
            plan
        }
    };
    spi_or_raise(client.select(plan, limit, args), context)
}

/// [`super::errors::select_first`] through the session's kept query `name` (text from `sql`
/// at its first use): `row` applied to the first row, `None` without one.
pub fn select_first_kept<T>(
    name: &'static str,
    sql: impl FnOnce() -> String,
    args: &[DatumWithOid],
    context: &str,
    row: impl FnOnce(&SpiTupleTable) -> Result<T, pgrx::spi::SpiError>,
) -> Option<T> {
    pgrx::spi::Spi::connect(|client| first_row(select_kept(client, name, sql, args, Some(1), context), context, row))
}
