//! The engine's [`Control`] for a statement: stops on cancel/timeout, reports progress.

use super::errors::{cancel_requested, report};
use crate::guc;
use nnn_engine::Control;
use pgrx::PgLogLevel::NOTICE;
use std::time::{Duration, Instant};

/// How often progress NOTICEs are sent at most.
const REPORT_EVERY: Duration = Duration::from_secs(2);

/// Polled by the engine on the session's main thread between blocks of work.
pub struct StatementControl {
    what: String,
    rows: Option<u64>,
    started: Instant,
    last_report: Instant,
}

impl StatementControl {
    /// A control whose progress messages describe `what`.
    pub fn new(what: impl Into<String>) -> Self {
        let now = Instant::now();
        Self { what: what.into(), rows: None, started: now, last_report: now }
    }

    /// Reports progress as rows done of `rows` (work is spread evenly over the rows).
    pub fn with_rows(mut self, rows: usize) -> Self {
        self.rows = Some(rows as u64);
        self
    }
}

impl Control for StatementControl {
    fn keep_going(&mut self, done: u64, total: u64) -> bool {
        if cancel_requested() {
            return false;
        }
        if guc::PROGRESS.get() && self.last_report.elapsed() >= REPORT_EVERY && total > 0 {
            self.last_report = Instant::now();
            let pct = 100.0 * done as f64 / total as f64;
            let secs = self.started.elapsed().as_secs_f64();
            match self.rows {
                Some(rows) => {
                    let done_rows = (done as u128 * rows as u128 / total as u128) as u64;
                    report(
                        NOTICE,
                        format!("nnn: {}: {done_rows} of {rows} rows ({pct:.1}%) after {secs:.0} s", self.what),
                    )
                }
                None => report(NOTICE, format!("nnn: {}: {pct:.1}% done after {secs:.0} s", self.what)),
            }
        }
        true
    }
}
