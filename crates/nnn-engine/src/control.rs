//! How a caller watches and stops long engine work from its own thread.

/// Polled on the caller's thread between blocks of work (never on a worker thread), so a
/// database backend can look at its interrupt flags and report progress there.
pub trait Control {
    /// `done` of `total` work units are finished; return `false` to cancel.
    fn keep_going(&mut self, done: u64, total: u64) -> bool;
}

/// A control that never cancels and reports nothing.
pub struct Unwatched;

impl Control for Unwatched {
    fn keep_going(&mut self, _done: u64, _total: u64) -> bool {
        true
    }
}
