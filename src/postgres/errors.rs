//! Turning engine errors and bad input into SQL errors that carry a hint.

use nnn_engine::EngineError;
use pgrx::pg_sys;
use pgrx::{PgLogLevel, PgSqlErrorCode};

/// Raises an SQL ERROR with a SQLSTATE, a message and a hint. Never returns.
pub fn fail(code: PgSqlErrorCode, message: impl Into<String>, hint: impl Into<String>) -> ! {
    pgrx::pg_sys::panic::ErrorReport::new(code, message.into(), "nnn").set_hint(hint).report(PgLogLevel::ERROR);
    unreachable!("ERROR returned")
}

/// Reports `message` at `level`, which must be below ERROR (NOTICE, WARNING, DEBUG1), with
/// interrupts held off. PostgreSQL's `errfinish` checks for a pending cancel after sending a
/// report, and pgrx calls it unguarded: a cancel raised there would longjmp over the Rust
/// frames between here and the SQL function, skipping their destructors, among them the join
/// of the engine's worker threads, which would go on reading freed memory. Held off, the
/// cancel is seen at the caller's next check.
pub fn report(level: PgLogLevel, message: impl Into<String>) {
    let code = if level == PgLogLevel::WARNING {
        PgSqlErrorCode::ERRCODE_WARNING
    } else {
        PgSqlErrorCode::ERRCODE_SUCCESSFUL_COMPLETION
    };
    debug_assert!(level < PgLogLevel::ERROR);
    // SAFETY: the session's interrupt holdoff counter, on its main thread, raised and lowered
    // around one call as HOLD_INTERRUPTS/RESUME_INTERRUPTS do (error recovery resets it).
    unsafe { pg_sys::InterruptHoldoffCount += 1 };
    pgrx::pg_sys::panic::ErrorReport::new(code, message.into(), "nnn").report(level);
    // SAFETY: as above.
    unsafe { pg_sys::InterruptHoldoffCount -= 1 };
}

/// Raises the SQL error matching an engine error; `context` says what was being done.
pub fn raise(err: EngineError, context: &str) -> ! {
    use PgSqlErrorCode::*;
    let (code, hint) = match &err {
        EngineError::Cancelled => {
            // The engine stops when PostgreSQL flagged a cancel or timeout: let it report it.
            pgrx::check_for_interrupts!();
            fail(ERRCODE_QUERY_CANCELED, format!("{context}: cancelled"), "The statement was cancelled.")
        }
        EngineError::DimensionMismatch { .. } | EngineError::Shape { .. } => (
            ERRCODE_DATA_EXCEPTION,
            "All vectors of an index, its reference set and its queries must have the same dimension.",
        ),
        EngineError::Empty { .. } => (
            ERRCODE_DATA_EXCEPTION,
            "The reference set must hold at least one non-NULL embedding; load the reference queries first.",
        ),
        EngineError::KOutOfRange { .. } => (
            ERRCODE_INVALID_PARAMETER_VALUE,
            "Choose k between 1 and the number of reference rows (the paper uses k = 128).",
        ),
        EngineError::NonFinite { .. } => (ERRCODE_DATA_EXCEPTION, "Embeddings must not contain NaN or Infinity."),
        EngineError::InvalidParameter { .. } => (ERRCODE_INVALID_PARAMETER_VALUE, "Check nnn.alpha and nnn.threads."),
        EngineError::Faiss { .. } => (
            ERRCODE_EXTERNAL_ROUTINE_EXCEPTION,
            "Check the Faiss factory string (e.g. 'IVF1024,Flat', 'HNSW32,Flat'); IVF structures need at least as many rows as lists to train.",
        ),
        EngineError::Unavailable { what: "Faiss", .. } => (
            ERRCODE_FEATURE_NOT_SUPPORTED,
            "Build the extension with the faiss feature (make install does), or SET nnn.backend = 'cpu'.",
        ),
        EngineError::Unavailable { .. } => (
            ERRCODE_FEATURE_NOT_SUPPORTED,
            "SET nnn.backend = 'cpu' (or 'auto', which uses a GPU only when one is usable).",
        ),
        EngineError::Device { .. } => (
            ERRCODE_EXTERNAL_ROUTINE_EXCEPTION,
            "Lower nnn.cuda_memory_mb or free device memory, or SET nnn.backend = 'cpu'.",
        ),
        EngineError::WorkerPanic(_) => {
            (ERRCODE_INTERNAL_ERROR, "This is a bug in nnn; the session stays usable. Please report it.")
        }
    };
    fail(code, format!("{context}: {err}"), hint)
}

/// Unwraps an engine result or raises its SQL error.
pub fn or_raise<T>(r: nnn_engine::Result<T>, context: &str) -> T {
    r.unwrap_or_else(|e| raise(e, context))
}

/// Unwraps an SPI result; SPI failures are internal errors with the query's purpose.
pub fn spi_or_raise<T>(r: Result<T, pgrx::spi::SpiError>, context: &str) -> T {
    r.unwrap_or_else(|e| {
        fail(
            PgSqlErrorCode::ERRCODE_INTERNAL_ERROR,
            format!("{context}: {e}"),
            "This is a bug in nnn; please report it.",
        )
    })
}

/// Runs a read-only query and hands its first row (if any) to `row`. Unlike pgrx's
/// `Spi::get_*`, it never assigns a transaction id, so it works on a hot standby.
pub fn select_first<T>(
    sql: &str,
    args: &[pgrx::datum::DatumWithOid],
    context: &str,
    row: impl FnOnce(&pgrx::spi::SpiTupleTable) -> Result<T, pgrx::spi::SpiError>,
) -> Option<T> {
    pgrx::spi::Spi::connect(|client| first_row(spi_or_raise(client.select(sql, Some(1), args), context), context, row))
}

/// `row` applied to the first row of `table`, `None` without one; `context` names the query in
/// errors.
pub fn first_row<T>(
    table: pgrx::spi::SpiTupleTable,
    context: &str,
    row: impl FnOnce(&pgrx::spi::SpiTupleTable) -> Result<T, pgrx::spi::SpiError>,
) -> Option<T> {
    let table = table.first();
    (!table.is_empty()).then(|| spi_or_raise(row(&table), context))
}

/// Whether PostgreSQL has asked this session to cancel the statement or exit.
pub fn cancel_requested() -> bool {
    // SAFETY: plain reads of sig_atomic_t flags on the main thread.
    unsafe { pg_sys::QueryCancelPending != 0 || pg_sys::ProcDiePending != 0 }
}

#[cfg(any(test, feature = "pg_test"))]
#[pgrx::pg_schema]
mod tests {
    use nnn_engine::run::run_polled;
    use nnn_engine::Unwatched;
    use pgrx::prelude::*;

    /// A report sent while a cancel is pending returns (the cancel waits for the next check)
    /// instead of raising it from inside the report, which would skip the Rust frames above.
    #[pg_test]
    fn a_report_does_not_raise_a_pending_cancel() {
        // SAFETY: the test's own session flags, set and cleared on its main thread.
        unsafe {
            pgrx::pg_sys::QueryCancelPending = 1;
            pgrx::pg_sys::InterruptPending = 1;
        }
        super::report(pgrx::PgLogLevel::NOTICE, "nnn: a progress report");
        let still_pending = super::cancel_requested();
        // SAFETY: as above.
        unsafe {
            pgrx::pg_sys::QueryCancelPending = 0;
            pgrx::pg_sys::InterruptPending = 0;
        }
        assert!(still_pending);
    }

    /// A panic on a rayon worker inside a real session comes back as an SQL ERROR.
    #[pg_test(error = "worker: a worker thread panicked: injected worker failure")]
    fn a_worker_panic_is_an_sql_error() {
        let r: nnn_engine::Result<()> = run_polled(2, 1, &mut Unwatched, |_| panic!("injected worker failure"));
        super::or_raise(r, "worker");
    }
}
