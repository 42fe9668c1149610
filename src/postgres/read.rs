//! Reading embeddings out of tables with SPI, in blocks, under the caller's snapshot and
//! privileges (row-level security included), into one contiguous `f32` buffer.

use super::errors::{cancel_requested, fail, spi_or_raise};
use crate::guc;
use pgrx::array::RawArray;
use pgrx::datum::DatumWithOid;
use pgrx::prelude::*;
use pgrx::{PgMemoryContexts, PgSqlErrorCode::*};
use std::ptr::NonNull;

/// Rows fetched from the cursor at a time; interrupts are checked between blocks.
const FETCH_ROWS: i64 = 4096;

/// Rows read by [`read_vectors`]: a key per row, the vectors row-major, an optional extra
/// `real` per row (the bias), and how many rows were skipped for a NULL embedding or extra.
pub struct Rows<K> {
    /// The first column of each kept row.
    pub keys: Vec<K>,
    /// The embeddings, row after row.
    pub data: Vec<f32>,
    /// The third column of each kept row, when the query has one.
    pub extra: Vec<f32>,
    /// Embedding dimension (0 when no row was read).
    pub dim: usize,
    /// Rows skipped because the embedding (or the extra column) was NULL.
    pub skipped: u64,
}

/// Runs `sql`, whose columns are `(key, embedding::real[] [, extra real])`, and collects the
/// rows. `what` names the set in errors; `dim` is the expected dimension, if known.
pub fn read_vectors<K: FromDatum>(sql: &str, args: &[DatumWithOid], what: &str, dim: Option<usize>) -> Rows<K> {
    let mut out = Rows { keys: Vec::new(), data: Vec::new(), extra: Vec::new(), dim: dim.unwrap_or(0), skipped: 0 };
    Spi::connect(|client| {
        let mut cursor = spi_or_raise(client.try_open_cursor(sql, args), "reading embeddings");
        let mut cx = PgMemoryContexts::new("nnn read block");
        loop {
            if cancel_requested() {
                pgrx::check_for_interrupts!();
            }
            let n = spi_or_raise(cursor.fetch(FETCH_ROWS), "reading embeddings").len();
            if n == 0 {
                break;
            }
            // SAFETY: the block's rows are in SPI_tuptable; the context only holds detoasted
            // copies made while reading them, and the tuple table is not used afterwards.
            unsafe {
                cx.switch_to(|_| read_block(&mut out, n, what));
                cx.reset();
                pg_sys::SPI_freetuptable(pg_sys::SPI_tuptable);
            }
            check_memory(out.data.len() * 4, what);
        }
    });
    out
}

/// Fails, naming `nnn.max_memory_mb`, when `bytes` of working memory would exceed it.
pub fn check_memory(bytes: usize, what: &str) {
    let cap = guc::MAX_MEMORY_MB.get() as usize * 1024 * 1024;
    if bytes > cap {
        fail(
            ERRCODE_PROGRAM_LIMIT_EXCEEDED,
            format!("{what}: the embeddings need more than nnn.max_memory_mb = {} MiB", guc::MAX_MEMORY_MB.get()),
            "SET nnn.max_memory_mb to a larger value (the server must have that much memory free).",
        );
    }
}

/// Appends the `n` rows of `SPI_tuptable` to `out`.
///
/// # Safety
/// `SPI_tuptable` must hold the `n` rows just fetched, with the column layout documented above.
unsafe fn read_block<K: FromDatum>(out: &mut Rows<K>, n: usize, what: &str) {
    // SAFETY: SPI_tuptable holds the `n` rows just fetched with the documented columns (see # Safety); the datums read are detoasted before use.
    unsafe {
        let tt = pg_sys::SPI_tuptable;
        let desc = (*tt).tupdesc;
        let natts = (*desc).natts;
        for i in 0..n {
            let tup = *(*tt).vals.add(i);
            let mut null = false;
            let key_datum = pg_sys::SPI_getbinval(tup, desc, 1, &mut null);
            let Some(key) = K::from_datum(key_datum, null) else {
                out.skipped += 1;
                continue;
            };
            let vec_datum = pg_sys::SPI_getbinval(tup, desc, 2, &mut null);
            if null {
                out.skipped += 1;
                continue;
            }
            let extra = if natts >= 3 {
                let d = pg_sys::SPI_getbinval(tup, desc, 3, &mut null);
                if null {
                    out.skipped += 1;
                    continue;
                }
                Some(f32::from_datum(d, false).unwrap_or(0.0))
            } else {
                None
            };
            let arr = pg_sys::pg_detoast_datum(vec_datum.cast_mut_ptr()) as *mut pg_sys::ArrayType;
            let mut raw = RawArray::from_ptr(NonNull::new_unchecked(arr));
            if raw.any_nulls() {
                fail(
                    ERRCODE_NULL_VALUE_NOT_ALLOWED,
                    format!(
                        "{what}: row {} has an embedding with a NULL component",
                        out.keys.len() + out.skipped as usize + 1
                    ),
                    "Embeddings must not contain NULL elements; fix or remove the row.",
                );
            }
            let values: &[f32] = raw.data::<f32>().as_ref();
            if out.dim == 0 {
                out.dim = values.len();
            }
            if values.len() != out.dim || values.is_empty() {
                fail(
                    ERRCODE_DATA_EXCEPTION,
                    format!("{what}: an embedding has dimension {}, expected {}", values.len(), out.dim),
                    "All embeddings of a table, its reference set and the queries must have the same dimension.",
                );
            }
            if values.iter().any(|v| !v.is_finite()) {
                fail(
                    ERRCODE_DATA_EXCEPTION,
                    format!("{what}: an embedding contains NaN or Infinity"),
                    "Embeddings must be finite; fix or remove the row.",
                );
            }
            out.data.extend_from_slice(values);
            out.keys.push(key);
            if let Some(e) = extra {
                out.extra.push(e);
            }
        }
    }
}
