//! The engine's [`Control`] for a backend: stops on cancel/timeout, reports progress.

use super::errors::cancel_requested;
use crate::guc;
use nnn_engine::Control;
use std::time::{Duration, Instant};

/// How often progress NOTICEs are sent at most.
const REPORT_EVERY: Duration = Duration::from_secs(5);

/// Polled by the engine on the backend's main thread between blocks of work.
pub struct BackendControl {
    what: String,
    started: Instant,
    last_report: Instant,
}

impl BackendControl {
    /// A control whose progress messages describe `what`.
    pub fn new(what: impl Into<String>) -> Self {
        let now = Instant::now();
        Self { what: what.into(), started: now, last_report: now }
    }
}

impl Control for BackendControl {
    fn keep_going(&mut self, done: u64, total: u64) -> bool {
        if cancel_requested() {
            return false;
        }
        if guc::PROGRESS.get() && self.last_report.elapsed() >= REPORT_EVERY && total > 0 {
            self.last_report = Instant::now();
            pgrx::notice!(
                "nnn: {}: {:.1}% done after {:.0} s",
                self.what,
                100.0 * done as f64 / total as f64,
                self.started.elapsed().as_secs_f64()
            );
        }
        true
    }
}
