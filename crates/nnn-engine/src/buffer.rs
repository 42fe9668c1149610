//! A growing `f32` buffer whose next pages a helper thread faults in ahead of the writer.
//!
//! Reading 100,000 rows × 384 into fresh memory takes 37,500 page faults; in a database
//! backend's reading thread they were a third of the time it spent reading (perf, a bias build
//! through SQL). The helper asks the kernel to map the pages just ahead of the writer
//! (`MADV_POPULATE_WRITE`, which never changes their contents, so it cannot race with the
//! writer's stores), on a core that is otherwise idle while rows are read.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

/// Bytes the helper keeps mapped ahead of the writer.
const AHEAD: usize = 8 << 20;
/// Bytes per request to the kernel.
const STEP: usize = 1 << 20;
/// Spare capacity below this is left to ordinary page faults (not worth a thread).
const MIN_SPARE: usize = 2 * AHEAD;

/// A `Vec<f32>` that only grows at its end ([`RowBuffer::extend_from_slice`]), with its spare
/// capacity mapped ahead of the writer by a helper thread (on Linux; elsewhere a plain `Vec`).
pub struct RowBuffer {
    data: Vec<f32>,
    helper: Option<Helper>,
}

/// The thread mapping pages of one allocation, and what it shares with the writer.
struct Helper {
    shared: Arc<Shared>,
    thread: JoinHandle<()>,
}

/// Written by the writer, read by the helper.
#[derive(Default)]
struct Shared {
    /// Bytes of the allocation the writer has filled.
    written: AtomicUsize,
    /// Set when the allocation is about to move or be freed: the helper returns.
    stop: AtomicBool,
    /// Bytes from the allocation's start the helper has mapped (or that the writer had
    /// filled when it started), for tests.
    mapped: AtomicUsize,
}

impl Default for RowBuffer {
    fn default() -> Self {
        Self::new()
    }
}

impl RowBuffer {
    /// An empty buffer.
    pub fn new() -> Self {
        Self { data: Vec::new(), helper: None }
    }

    /// Values written so far.
    pub fn len(&self) -> usize {
        self.data.len()
    }

    /// Whether nothing was written.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// Appends `values`, growing the allocation (its capacity at least doubles) when it is full.
    pub fn extend_from_slice(&mut self, values: &[f32]) {
        if self.data.len() + values.len() > self.data.capacity() {
            self.stop_helper();
            self.data.reserve(values.len());
            self.start_helper();
        }
        self.data.extend_from_slice(values);
        if let Some(h) = &self.helper {
            let written = self.data.len() * 4;
            // wake the helper once per STEP written (unpark costs an atomic swap at most)
            if written / STEP != h.shared.written.swap(written, Ordering::Relaxed) / STEP {
                h.thread.thread().unpark();
            }
        }
    }

    /// The values, as a plain vector (the helper stopped).
    pub fn into_vec(mut self) -> Vec<f32> {
        self.stop_helper();
        std::mem::take(&mut self.data)
    }

    /// Starts a helper over the spare capacity, when there is enough of it to pay.
    fn start_helper(&mut self) {
        let spare = (self.data.capacity() - self.data.len()) * 4;
        if !cfg!(target_os = "linux") || spare < MIN_SPARE {
            return;
        }
        let written = self.data.len() * 4;
        let shared = Arc::new(Shared {
            written: AtomicUsize::new(written),
            stop: AtomicBool::new(false),
            mapped: written.into(),
        });
        let (base, bytes) = (self.data.as_mut_ptr() as usize, self.data.capacity() * 4);
        let theirs = shared.clone();
        let spawned =
            crate::run::without_signals(|| std::thread::Builder::new().spawn(move || map_ahead(base, bytes, &theirs)));
        // without a thread (none can be made now), the writer takes the page faults itself
        self.helper = spawned.ok().map(|thread| Helper { shared, thread });
    }

    /// Stops and joins the helper, so the allocation may move or be freed.
    fn stop_helper(&mut self) {
        if let Some(h) = self.helper.take() {
            h.shared.stop.store(true, Ordering::Relaxed);
            h.thread.thread().unpark();
            // a panic there (none is expected) only means fewer pages were mapped ahead
            let _ = h.thread.join();
        }
    }

    /// Test hook: waits until the helper has mapped all it will for what was written so far
    /// (or has given up), and returns how many bytes from the allocation's start it mapped.
    #[cfg(test)]
    fn settled(&self) -> usize {
        let Some(h) = &self.helper else { return 0 };
        let target = (self.data.len() * 4 + AHEAD).min(self.data.capacity() * 4);
        let base = self.data.as_ptr() as usize;
        let end = (base + target) / page_size() * page_size() - base;
        while h.shared.mapped.load(Ordering::Acquire) < end && !h.thread.is_finished() {
            std::thread::yield_now();
        }
        h.shared.mapped.load(Ordering::Acquire)
    }
}

impl Drop for RowBuffer {
    fn drop(&mut self) {
        self.stop_helper();
    }
}

/// The helper's loop: maps the pages of `base .. base + bytes` up to [`AHEAD`] past what the
/// writer has filled, then parks until the writer moves on; returns when stopped, when all is
/// mapped, or when the kernel refuses (e.g. before Linux 5.14, which lacks the request).
fn map_ahead(base: usize, bytes: usize, shared: &Shared) {
    let page = page_size();
    let end = (base + bytes) / page * page;
    // pages before the writer are mapped already (it wrote them)
    let mut mapped = (base + shared.written.load(Ordering::Relaxed)).next_multiple_of(page);
    while mapped < end && !shared.stop.load(Ordering::Relaxed) {
        let target = (base + shared.written.load(Ordering::Relaxed) + AHEAD).min(end);
        if mapped >= target {
            std::thread::park();
            continue;
        }
        let upto = (mapped + STEP).min(target).next_multiple_of(page).min(end);
        if !populate(mapped, upto - mapped) {
            return;
        }
        mapped = upto;
        shared.mapped.store(mapped - base, Ordering::Release);
    }
}

#[cfg(target_os = "linux")]
fn page_size() -> usize {
    // SAFETY: sysconf reads a constant of the system.
    (unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).max(4096) as usize
}

#[cfg(not(target_os = "linux"))]
fn page_size() -> usize {
    4096
}

/// Maps `len` bytes of writable memory from `addr` (page-aligned, inside an allocation that
/// outlives the call) without changing what they hold; false when the kernel refuses.
#[cfg(target_os = "linux")]
fn populate(addr: usize, len: usize) -> bool {
    // SAFETY: advice on whole pages of a live allocation; the contents are not changed.
    unsafe { libc::madvise(addr as *mut libc::c_void, len, libc::MADV_POPULATE_WRITE) == 0 }
}

#[cfg(not(target_os = "linux"))]
fn populate(_addr: usize, _len: usize) -> bool {
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_buffer_holds_what_was_written_across_growths() {
        let mut buf = RowBuffer::new();
        let mut plain = Vec::new();
        // rows of 384 values up to 40 MB: several growths with a helper running
        for r in 0..27_000u32 {
            let row: Vec<f32> = (0..384).map(|i| (r * 384 + i) as f32 * 0.5).collect();
            buf.extend_from_slice(&row);
            plain.extend_from_slice(&row);
        }
        assert_eq!(buf.len(), plain.len());
        assert!(buf.into_vec() == plain);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn the_pages_ahead_of_the_writer_are_mapped() {
        let mut buf = RowBuffer::new();
        buf.extend_from_slice(&vec![1.0; (3 * AHEAD) / 4]);
        // a growth that leaves more spare than MIN_SPARE starts a helper
        buf.extend_from_slice(&[2.0; 1000]);
        assert!(buf.helper.is_some(), "no helper for {} spare bytes", (buf.data.capacity() - buf.len()) * 4);
        let start = buf.data.as_ptr() as usize;
        let target = buf.settled();
        assert!(!buf.helper.as_ref().unwrap().thread.is_finished(), "the helper gave up");
        let page = page_size();
        let first = (start + buf.len() * 4).next_multiple_of(page);
        let last = (start + target) / page * page;
        assert!(last - first >= AHEAD / 2, "too little ahead: {} bytes", last - first);
        let mut resident = vec![0u8; (last - first) / page];
        // SAFETY: a range of whole pages inside the buffer's allocation.
        assert_eq!(unsafe { libc::mincore(first as *mut libc::c_void, last - first, resident.as_mut_ptr()) }, 0);
        let missing = resident.iter().filter(|&&r| r & 1 == 0).count();
        assert_eq!(missing, 0, "{missing} of {} pages ahead of the writer are not mapped", resident.len());
        // and the pages past the window are not (the helper stays AHEAD in front)
        let beyond = (start + buf.data.capacity() * 4) / page * page;
        if beyond > last + page {
            let mut rest = vec![0u8; (beyond - last) / page];
            // SAFETY: as above.
            unsafe { libc::mincore(last as *mut libc::c_void, beyond - last, rest.as_mut_ptr()) };
            assert!(rest.iter().any(|&r| r & 1 == 0), "the helper mapped past its window");
        }
    }
}
