//! Reading embeddings out of tables with SPI, row by row as the executor produces them, under
//! the caller's snapshot and privileges (row-level security included), into one contiguous
//! `f32` buffer.

use super::args::all_finite;
use super::errors::{cancel_requested, fail, spi_or_raise};
use crate::guc;
use nnn_engine::buffer::RowBuffer;
use pgrx::array::RawArray;
use pgrx::datum::DatumWithOid;
use pgrx::prelude::*;
use pgrx::{PgMemoryContexts, PgSqlErrorCode::*};
use std::ptr::NonNull;

/// Rows between frees of detoasted copies, checks of `nnn.max_memory_mb` and of interrupts
/// (the executor checks for them as it scans, too).
const BLOCK_ROWS: usize = 4096;

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

/// Reads as [`read_vectors`] or, with `split_last`, as [`read_augmented`]. The executor hands
/// each row straight to a [`Receiver`], which copies its values out (no tuple table of copied
/// rows, as a cursor would build).
fn read<K: FromDatum>(sql: &str, args: &[DatumWithOid], what: &str, dim: Option<usize>, split_last: bool) -> Rows<K> {
    let mut out = Rows { keys: Vec::new(), data: Vec::new(), extra: Vec::new(), dim: dim.unwrap_or(0), skipped: 0 };
    let mut data = RowBuffer::new();
    Spi::connect(|_| {
        let cx = PgMemoryContexts::new("nnn read rows");
        let mut state = ReadState {
            out: &mut out,
            data: &mut data,
            what,
            split_last,
            pgvector: false,
            natts: 0,
            cx: cx.value(),
            since_reset: 0,
        };
        let mut receiver = Receiver {
            base: pg_sys::DestReceiver {
                receiveSlot: Some(receive_slot),
                rStartup: Some(startup),
                rShutdown: Some(nothing),
                rDestroy: Some(nothing),
                mydest: pg_sys::CommandDest::DestNone,
            },
            sink: &mut state,
        };
        let sql = std::ffi::CString::new(sql).expect("SQL text without NUL bytes");
        // SAFETY: inside SPI_connect; `params` and `receiver` outlive the call, which runs the
        // query to its end (or raises an ERROR) before returning.
        let code = unsafe {
            let params = param_list(args);
            let options = pg_sys::SPIExecuteOptions {
                params,
                // read-only (the statement's snapshot) until this transaction has written, as
                // pgrx's own queries: then SPI takes a new one that sees those writes
                read_only: pg_sys::GetCurrentTransactionIdIfAny() == pg_sys::InvalidTransactionId,
                dest: std::ptr::addr_of_mut!(receiver).cast(),
                ..Default::default()
            };
            pg_sys::SPI_execute_extended(sql.as_ptr(), &options)
        };
        if let Ok(e) = pgrx::spi::SpiErrorCodes::try_from(code) {
            spi_or_raise::<()>(Err(e.into()), "reading embeddings");
        }
    });
    out.data = data.into_vec();
    // the last rows, fewer than a block, counted too
    check_memory(out.data.len() * 4, what);
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

/// `args` as a parameter list for SPI (null for none), allocated in the current memory context.
///
/// # Safety
/// Call inside a PostgreSQL transaction, on the main thread.
unsafe fn param_list(args: &[DatumWithOid]) -> pg_sys::ParamListInfo {
    if args.is_empty() {
        return std::ptr::null_mut();
    }
    // SAFETY: makeParamList allocates room for `args.len()` parameters, filled here.
    unsafe {
        let list = pg_sys::makeParamList(args.len() as i32);
        for (slot, arg) in (*list).params.as_mut_slice(args.len()).iter_mut().zip(args) {
            *slot = pg_sys::ParamExternData {
                value: arg.datum().map_or(pg_sys::Datum::null(), |d| d.sans_lifetime()),
                isnull: arg.datum().is_none(),
                pflags: pg_sys::PARAM_FLAG_CONST as u16,
                ptype: arg.oid(),
            };
        }
        list
    }
}

/// Where [`Receiver`] puts each row: a [`ReadState`] of any key type.
trait Sink {
    /// Learns the result's columns.
    fn start(&mut self, desc: pg_sys::TupleDesc);
    /// Takes one row.
    fn take(&mut self, slot: *mut pg_sys::TupleTableSlot);
}

/// A DestReceiver whose rows go to `sink` (`base` first: the executor calls through it).
#[repr(C)]
struct Receiver<'a> {
    base: pg_sys::DestReceiver,
    sink: &'a mut dyn Sink,
}

/// The rows read so far and how to read the next.
struct ReadState<'a, K> {
    /// Everything but the embeddings, which go to `data`.
    out: &'a mut Rows<K>,
    /// The embeddings: their next pages are mapped by a helper thread as rows arrive.
    data: &'a mut RowBuffer,
    what: &'a str,
    split_last: bool,
    /// Whether the embedding column is pgvector's `vector` (else `real[]`).
    pgvector: bool,
    /// Columns of the result.
    natts: i32,
    /// Detoasted copies are made here, and freed every [`BLOCK_ROWS`] rows.
    cx: pg_sys::MemoryContext,
    since_reset: usize,
}

/// The executor's call for each row: hands it to the receiver's sink.
#[pg_guard]
unsafe extern "C-unwind" fn receive_slot(
    slot: *mut pg_sys::TupleTableSlot,
    receiver: *mut pg_sys::DestReceiver,
) -> bool {
    // SAFETY: the executor passes back the Receiver given to SPI_execute_extended.
    unsafe { (*receiver.cast::<Receiver>()).sink.take(slot) };
    true
}

/// The executor's call before the first row: tells the sink the result's columns.
#[pg_guard]
unsafe extern "C-unwind" fn startup(receiver: *mut pg_sys::DestReceiver, _operation: i32, desc: pg_sys::TupleDesc) {
    // SAFETY: as in `receive_slot`.
    unsafe { (*receiver.cast::<Receiver>()).sink.start(desc) };
}

/// The executor's calls after the last row and to free the receiver: nothing to do.
#[pg_guard]
unsafe extern "C-unwind" fn nothing(_receiver: *mut pg_sys::DestReceiver) {}

impl<K: FromDatum> Sink for ReadState<'_, K> {
    fn start(&mut self, desc: pg_sys::TupleDesc) {
        // SAFETY: the executor's description of the result, with at least the two columns
        // every caller's query has.
        unsafe {
            self.natts = (*desc).natts;
            self.pgvector = is_pgvector((*desc).attrs.as_slice(self.natts as usize)[1].atttypid);
        }
    }

    fn take(&mut self, slot: *mut pg_sys::TupleTableSlot) {
        // SAFETY: a row of the result `start` described; detoasted copies go to `cx`, which
        // outlives them (reset only between rows).
        unsafe {
            let old = pg_sys::MemoryContextSwitchTo(self.cx);
            self.take_row(slot);
            pg_sys::MemoryContextSwitchTo(old);
        }
        self.since_reset += 1;
        if self.since_reset == BLOCK_ROWS {
            self.since_reset = 0;
            // SAFETY: nothing made in `cx` is used after its row.
            unsafe { pg_sys::MemoryContextReset(self.cx) };
            check_memory(self.data.len() * 4, self.what);
            if cancel_requested() {
                pgrx::check_for_interrupts!();
            }
        }
    }
}

impl<K: FromDatum> ReadState<'_, K> {
    /// Appends the row in `slot` to `out` (or counts it skipped); with `split_last`, the
    /// vector's last value is the row's extra value.
    ///
    /// # Safety
    /// `slot` holds a row of the result `start` described.
    unsafe fn take_row(&mut self, slot: *mut pg_sys::TupleTableSlot) {
        let (out, data, what) = (&mut *self.out, &mut *self.data, self.what);
        // SAFETY: columns 1 to natts of the row in `slot` (see # Safety); datums are detoasted
        // before their bytes are read.
        unsafe {
            let mut null = false;
            let key_datum = pg_sys::slot_getattr(slot, 1, &mut null);
            let Some(key) = K::from_datum(key_datum, null) else {
                out.skipped += 1;
                return;
            };
            let vec_datum = pg_sys::slot_getattr(slot, 2, &mut null);
            if null {
                out.skipped += 1;
                return;
            }
            let extra = if self.natts >= 3 {
                let d = pg_sys::slot_getattr(slot, 3, &mut null);
                if null {
                    out.skipped += 1;
                    return;
                }
                Some(f32::from_datum(d, false).unwrap_or(0.0))
            } else {
                None
            };
            let detoasted = pg_sys::pg_detoast_datum(vec_datum.cast_mut_ptr());
            let values: &[f32] = if self.pgvector {
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
            let (values, extra) = match (self.split_last, values.split_last()) {
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
            data.extend_from_slice(values);
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
