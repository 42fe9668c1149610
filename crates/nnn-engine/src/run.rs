//! Runs work on a rayon pool of a chosen size while the calling thread polls a [`Control`].

use crate::control::Control;
use crate::error::{EngineError, Result};
use rayon::ThreadPool;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

/// How often the calling thread wakes up to poll its control while workers run.
const POLL_INTERVAL: Duration = Duration::from_millis(20);

/// Shared between workers and the polling thread: progress made and a stop request.
#[derive(Default)]
pub struct Progress {
    done: AtomicU64,
    cancel: AtomicBool,
}

impl Progress {
    /// Records `units` more work units as finished.
    pub fn add(&self, units: u64) {
        self.done.fetch_add(units, Ordering::Relaxed);
    }

    /// Whether workers should stop at their next block boundary.
    pub fn cancelled(&self) -> bool {
        self.cancel.load(Ordering::Relaxed)
    }
}

/// Sets the stop flag when dropped, so workers stop even if the polling thread unwinds.
struct StopOnDrop<'a>(&'a Progress);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.cancel.store(true, Ordering::Relaxed);
    }
}

static POOL: Mutex<Option<(usize, Arc<ThreadPool>)>> = Mutex::new(None);

/// The process-wide pool of `threads` workers, rebuilt when the size changes.
fn pool(threads: usize) -> Result<Arc<ThreadPool>> {
    let mut guard = POOL.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((n, p)) = guard.as_ref() {
        if *n == threads {
            return Ok(p.clone());
        }
    }
    let built = without_signals(|| {
        rayon::ThreadPoolBuilder::new().num_threads(threads).thread_name(|i| format!("nnn-worker-{i}")).build()
    })
    .map_err(|e| EngineError::InvalidParameter { name: "threads", value: e.to_string() })?;
    let p = Arc::new(built);
    *guard = Some((threads, p.clone()));
    Ok(p)
}

/// Runs `f` with every signal blocked on this thread, so threads it spawns inherit a full
/// mask and signals keep going to the caller's thread (a database backend's handlers). The
/// caller's mask comes back when `f` returns or panics (else a panic would leave the backend
/// deaf to cancels for the rest of the session).
pub(crate) fn without_signals<T>(f: impl FnOnce() -> T) -> T {
    #[cfg(unix)]
    {
        /// Puts the saved signal mask back when dropped.
        struct Restore(libc::sigset_t);
        impl Drop for Restore {
            fn drop(&mut self) {
                // SAFETY: sets this thread's mask to one pthread_sigmask returned.
                unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &self.0, std::ptr::null_mut()) };
            }
        }
        // SAFETY: plain sigset_t values filled by libc before use; pthread_sigmask changes
        // only this thread's mask and writes the old one to `old`.
        let _restore = unsafe {
            let mut all: libc::sigset_t = std::mem::zeroed();
            let mut old: libc::sigset_t = std::mem::zeroed();
            libc::sigfillset(&mut all);
            libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut old);
            Restore(old)
        };
        f()
    }
    #[cfg(not(unix))]
    f()
}

/// The first index of `data` at which `bad` holds, searched by up to `threads` threads that
/// each take one contiguous part (spawned with every signal blocked, like the pool's workers,
/// so a database backend's handlers keep running on its own thread). For checks of large
/// buffers that would otherwise hold the calling thread for a memory-bound pass.
pub(crate) fn first_parallel<T: Sync>(
    data: &[T],
    threads: usize,
    bad: impl Fn(&[T]) -> Option<usize> + Sync,
) -> Option<usize> {
    let part = data.len().div_ceil(threads.max(1)).max(1);
    if part >= data.len() {
        return bad(data);
    }
    let bad = &bad;
    std::thread::scope(|s| {
        let handles: Vec<_> = without_signals(|| {
            data.chunks(part).enumerate().map(|(i, c)| s.spawn(move || bad(c).map(|p| i * part + p))).collect()
        });
        handles.into_iter().filter_map(|h| h.join().unwrap_or(None)).min()
    })
}

/// Runs `work` on a pool of `threads` workers; meanwhile the calling thread polls `control`
/// with the progress out of `total` units. Cancellation and worker panics become errors.
pub fn run_polled<T: Send>(
    threads: usize,
    total: u64,
    control: &mut dyn Control,
    work: impl FnOnce(&Progress) -> Result<T> + Send,
) -> Result<T> {
    if threads == 0 {
        return Err(EngineError::InvalidParameter { name: "threads", value: "0".into() });
    }
    if !control.keep_going(0, total) {
        return Err(EngineError::Cancelled);
    }
    let pool = pool(threads)?;
    let progress = Progress::default();
    let (tx, rx) = mpsc::channel();
    std::thread::scope(|s| {
        let stop = StopOnDrop(&progress);
        let progress = &progress;
        let pool = &pool;
        without_signals(|| {
            s.spawn(move || {
                let r = catch_unwind(AssertUnwindSafe(|| pool.install(|| work(progress))));
                let _ = tx.send(r);
            })
        });
        let outcome = loop {
            match rx.recv_timeout(POLL_INTERVAL) {
                Ok(r) => break r,
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    let done = stop.0.done.load(Ordering::Relaxed);
                    if !control.keep_going(done, total) {
                        stop.0.cancel.store(true, Ordering::Relaxed);
                        let _ = rx.recv();
                        return Err(EngineError::Cancelled);
                    }
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    return Err(EngineError::WorkerPanic("worker thread vanished".into()))
                }
            }
        };
        match outcome {
            Ok(r) => r,
            Err(payload) => Err(EngineError::WorkerPanic(panic_message(payload.as_ref()))),
        }
    })
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "unknown panic".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blocked(signal: i32) -> bool {
        // SAFETY: reads this thread's mask into a zeroed sigset_t.
        unsafe {
            let mut now: libc::sigset_t = std::mem::zeroed();
            libc::pthread_sigmask(libc::SIG_SETMASK, std::ptr::null(), &mut now);
            libc::sigismember(&now, signal) == 1
        }
    }

    #[test]
    fn a_panic_inside_without_signals_gives_the_thread_its_mask_back() {
        std::thread::spawn(|| {
            assert!(!blocked(libc::SIGINT));
            assert!(without_signals(|| blocked(libc::SIGINT)));
            assert!(!blocked(libc::SIGINT));
            let r = catch_unwind(|| without_signals(|| panic!("inside")));
            assert!(r.is_err());
            assert!(!blocked(libc::SIGINT), "a panic left every signal blocked");
        })
        .join()
        .unwrap();
    }
}
