//! Reading embeddings out of tables with SPI, in blocks, under the caller's snapshot and
//! privileges (row-level security included), into one contiguous `f32` buffer.

use super::args::all_finite;
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

/// Runs `sql`, whose columns are `(key, embedding [, extra real])`, the embedding a `real[]`
/// or pgvector's `vector` (read in place: see `relation::embedding_expr`), and collects the
/// rows. `what` names the set in errors; `dim` is the expected dimension, if known.
pub fn read_vectors<K: FromDatum>(sql: &str, args: &[DatumWithOid], what: &str, dim: Option<usize>) -> Rows<K> {
    read(sql, args, what, dim, false)
}

/// [`read_vectors`] for `sql` whose columns are `(key, augmented vector)`: the last value of
/// each vector is the row's extra value (its bias), the others its embedding (`dim` of them).
pub fn read_augmented<K: FromDatum>(sql: &str, args: &[DatumWithOid], what: &str, dim: Option<usize>) -> Rows<K> {
    read(sql, args, what, dim, true)
}

/// Reads as [`read_vectors`] or, with `split_last`, as [`read_augmented`].
fn read<K: FromDatum>(sql: &str, args: &[DatumWithOid], what: &str, dim: Option<usize>, split_last: bool) -> Rows<K> {
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
                cx.switch_to(|_| read_block(&mut out, n, what, split_last));
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

/// Appends the `n` rows of `SPI_tuptable` to `out`; with `split_last`, each vector's last
/// value is the row's extra value.
///
/// # Safety
/// `SPI_tuptable` must hold the `n` rows just fetched, with the column layout documented above.
unsafe fn read_block<K: FromDatum>(out: &mut Rows<K>, n: usize, what: &str, split_last: bool) {
    // SAFETY: SPI_tuptable holds the `n` rows just fetched with the documented columns (see # Safety); the datums read are detoasted before use.
    unsafe {
        let tt = pg_sys::SPI_tuptable;
        let desc = (*tt).tupdesc;
        let natts = (*desc).natts;
        let pgvector = is_pgvector(pg_sys::SPI_gettypeid(desc, 2));
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
            let detoasted = pg_sys::pg_detoast_datum(vec_datum.cast_mut_ptr());
            let values: &[f32] = if pgvector {
                pgvector_values(detoasted, what)
            } else {
                let mut raw = RawArray::from_ptr(NonNull::new_unchecked(detoasted.cast::<pg_sys::ArrayType>()));
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
                raw.data::<f32>().as_ref()
            };
            let (values, extra) = match (split_last, values.split_last()) {
                (true, Some((bias, embedding))) => (embedding, Some(*bias)),
                _ => (values, extra),
            };
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
            if !all_finite(values) {
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

/// Whether `typid` is pgvector's `vector` (its input function is `vector_in`, the test of
/// [`super::relation::PGVECTOR`] in SQL); any other embedding comes as `real[]`.
fn is_pgvector(typid: pg_sys::Oid) -> bool {
    if typid == pg_sys::FLOAT4ARRAYOID {
        return false;
    }
    let (mut input, mut param) = (pg_sys::InvalidOid, pg_sys::InvalidOid);
    // SAFETY: catalog lookups of a type this query returns, on the session's main thread.
    unsafe {
        pg_sys::getTypeInputInfo(typid, &mut input, &mut param);
        let name = pg_sys::get_func_name(input);
        !name.is_null() && std::ffi::CStr::from_ptr(name) == c"vector_in"
    }
}

/// The values of a detoasted pgvector `vector` (a varlena: 4-byte length, int16 dimension,
/// int16 unused, then the float4 values), checked against its length.
///
/// # Safety
/// `datum` must point to a detoasted `vector` value that lives as long as the result is used.
unsafe fn pgvector_values<'a>(datum: *mut pg_sys::varlena, what: &str) -> &'a [f32] {
    // SAFETY: a detoasted varlena with a 4-byte header (see # Safety).
    unsafe {
        let size = pgrx::varlena::varsize_any(datum);
        let dim = datum.cast::<u8>().add(4).cast::<i16>().read_unaligned();
        if dim < 0 || size != 8 + 4 * dim as usize {
            fail(
                ERRCODE_DATA_CORRUPTED,
                format!("{what}: a vector value of {size} bytes does not hold its {dim} dimensions"),
                "This is not pgvector's vector layout: cast the column to real[].",
            );
        }
        std::slice::from_raw_parts(datum.cast::<u8>().add(8).cast::<f32>(), dim as usize)
    }
}
