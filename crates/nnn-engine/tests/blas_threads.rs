//! `faiss::stop_idle_blas_threads`, in a test binary of its own: it must run while no other
//! BLAS call does (as at library load), which parallel tests in one process would not ensure.
#![cfg(feature = "faiss")]

mod common;
use common::*;
use nnn_engine::backend::TopKRequest;
use nnn_engine::faiss::ann::AnnParams;
use nnn_engine::faiss::backend::FaissBackend;
use nnn_engine::*;

/// Threads of this process.
fn threads() -> usize {
    std::fs::read_dir("/proc/self/task").unwrap().count()
}

/// A Faiss flat search with enough queries for its BLAS path, checked against naive f64.
fn faiss_search_is_right(seed: u64) {
    let mut rng = Rng::new(seed);
    let (m, n, dim, k) = (256, 2000, 64, 5);
    let (a, b) = (rng.matrix(m, dim, false), rng.matrix(n, dim, false));
    let backend = FaissBackend::new("Flat", AnnParams::default(), 2).unwrap();
    let (am, bm) = (Matrix::from_slice(&a, dim, "a").unwrap(), Matrix::from_slice(&b, dim, "b").unwrap());
    let top = backend.topk(&TopKRequest::new(&am, &bm, k), &mut Unwatched).unwrap();
    for r in 0..m {
        let naive = naive_scores(&a[r * dim..(r + 1) * dim], &b, dim, None);
        assert_row_matches(top.row_indices(r), top.row_values(r), &naive, 1e-4, &format!("row {r}"));
    }
}

#[test]
fn blas_threads_stop_and_come_back_for_the_next_blas_call() {
    // SAFETY: looks up OpenBLAS's thread count getter; called only if found (no arguments).
    let blas_threads = unsafe {
        let f = libc::dlsym(libc::RTLD_DEFAULT, c"openblas_get_num_threads".as_ptr());
        assert!(!f.is_null(), "Faiss is linked to OpenBLAS here (make setup installs it)");
        let get: unsafe extern "C" fn() -> std::os::raw::c_int = std::mem::transmute(f);
        get() as usize
    };
    faiss_search_is_right(1);
    let before = threads();
    nnn_engine::faiss::stop_idle_blas_threads();
    assert_eq!(before - threads(), blas_threads - 1, "OpenBLAS's own threads (all but the caller's) stopped");
    nnn_engine::faiss::stop_idle_blas_threads();
    faiss_search_is_right(2);
}
