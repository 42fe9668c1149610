//! The few Faiss C API calls the `faiss` crate does not wrap for a shared index: search
//! through `&self`, and (de)serialization to memory through `open_memstream` / `fmemopen`.

use super::faiss_error;
use crate::error::Result;
use faiss::index::{FromInnerPtr, IndexImpl};
use faiss::Index;
use std::os::raw::c_int;

extern "C" {
    fn omp_set_num_threads(n: c_int);
}

/// Limits the OpenMP threads Faiss starts from the calling thread.
pub fn set_threads(threads: usize) {
    // SAFETY: plain libgomp call (libgomp is linked by faiss-sys).
    unsafe { omp_set_num_threads(threads.clamp(1, c_int::MAX as usize) as c_int) }
}

fn check(code: c_int, what: &'static str) -> Result<()> {
    if code == 0 {
        return Ok(());
    }
    // SAFETY: Faiss keeps the last error message per thread; the pointer is valid until the next call.
    let msg = unsafe {
        let p = faiss_sys::faiss_get_last_error();
        if p.is_null() {
            format!("error code {code}")
        } else {
            std::ffi::CStr::from_ptr(p).to_string_lossy().into_owned()
        }
    };
    Err(faiss_error(what, msg))
}

/// `k` best labels and scores of each of the `queries` (row-major, the index's dimension).
pub fn search(index: &IndexImpl, queries: &[f32], k: usize) -> Result<(Vec<f32>, Vec<i64>)> {
    let d = index.d() as usize;
    let n = queries.len() / d;
    let mut scores = vec![0f32; n * k];
    let mut labels = vec![-1i64; n * k];
    // SAFETY: buffers sized n × k, queries n × d; Faiss only reads the index while searching.
    let code = unsafe {
        faiss_sys::faiss_Index_search(
            index.inner_ptr(),
            n as i64,
            queries.as_ptr(),
            k as i64,
            scores.as_mut_ptr(),
            labels.as_mut_ptr(),
        )
    };
    check(code, "search")?;
    Ok((scores, labels))
}

/// The index in Faiss's own file format.
pub fn to_bytes(index: &IndexImpl) -> Result<Vec<u8>> {
    let mut buf: *mut libc::c_char = std::ptr::null_mut();
    let mut len: libc::size_t = 0;
    // SAFETY: open_memstream owns buf until fclose, after which we copy and free it.
    unsafe {
        let f = libc::open_memstream(&mut buf, &mut len);
        if f.is_null() {
            return Err(faiss_error("serialize", "open_memstream failed"));
        }
        let code = faiss_sys::faiss_write_index(index.inner_ptr(), f.cast());
        libc::fclose(f);
        let out = if buf.is_null() { Vec::new() } else { std::slice::from_raw_parts(buf as *const u8, len).to_vec() };
        libc::free(buf.cast());
        check(code, "serialize")?;
        Ok(out)
    }
}

/// An index read back from [`to_bytes`]'s output.
pub fn from_bytes(bytes: &[u8]) -> Result<IndexImpl> {
    if bytes.is_empty() {
        return Err(faiss_error("deserialize", "no data"));
    }
    // SAFETY: fmemopen reads `bytes` in place (mode "r"); the stream is closed before return.
    unsafe {
        let f = libc::fmemopen(bytes.as_ptr() as *mut libc::c_void, bytes.len(), c"r".as_ptr());
        if f.is_null() {
            return Err(faiss_error("deserialize", "fmemopen failed"));
        }
        let mut out = std::ptr::null_mut();
        let code = faiss_sys::faiss_read_index(f.cast(), 0, &mut out);
        libc::fclose(f);
        check(code, "deserialize")?;
        Ok(IndexImpl::from_inner_ptr(out))
    }
}
