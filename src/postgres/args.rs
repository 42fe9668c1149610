//! Decoding vector arguments of SQL functions: `real[]` (one vector), `real[][]` and packed
//! little-endian `bytea` (a batch), each checked for NULL elements and non-finite values.

use super::errors::fail;
use pgrx::array::RawArray;
use pgrx::callconv::{Arg, ArgAbi};
use pgrx::pgrx_sql_entity_graph::metadata::{
    ArgumentError, ReturnsError, ReturnsRef, SqlMappingRef, SqlTranslatable, TypeOrigin,
};
use pgrx::prelude::*;
use pgrx::PgSqlErrorCode::*;
use std::ptr::NonNull;

/// A `real[]` argument read where it lies: detoasted when it is stored out of line or
/// compressed, never copied otherwise, and without the per-call element-type lookup and
/// allocation of pgrx's `Array`. For functions called once per row (`nnn_score`). Declared to
/// SQL exactly as `Array<f32>` is (`real[]`).
pub struct RealArray<'fcx> {
    /// The values, row-major; None when the array holds a NULL element.
    values: Option<&'fcx [f32]>,
}

impl<'fcx> RealArray<'fcx> {
    /// The values (all dimensions flattened), or None when a NULL element is among them.
    pub fn values(&self) -> Option<&'fcx [f32]> {
        self.values
    }
}

impl FromDatum for RealArray<'_> {
    unsafe fn from_polymorphic_datum(datum: pg_sys::Datum, is_null: bool, _typoid: pg_sys::Oid) -> Option<Self> {
        let ptr = NonNull::new(datum.cast_mut_ptr::<pg_sys::varlena>()).filter(|_| !is_null)?;
        // SAFETY: a non-null datum of a real[] argument: a varlena PostgreSQL hands this call,
        // detoasted (a copy in the call's memory context only when it was toasted or short)
        // into an ArrayType of float4 elements that outlives the call.
        unsafe {
            let array = NonNull::new_unchecked(pg_sys::pg_detoast_datum(ptr.as_ptr()).cast::<pg_sys::ArrayType>());
            let mut raw = RawArray::from_ptr(array);
            // no NULL bitmap (dataoffset 0, PostgreSQL's ARR_HASNULL) means no NULL element
            let nulls = (*array.as_ptr()).dataoffset != 0 && raw.any_nulls();
            let values = (!nulls).then(|| raw.data::<f32>().as_ref());
            Some(Self { values })
        }
    }
}

// SAFETY: unboxed through `FromDatum` like pgrx's own by-reference types; a NULL argument is
// an error (the functions taking it are STRICT, so PostgreSQL never passes one).
unsafe impl<'fcx> ArgAbi<'fcx> for RealArray<'fcx> {
    unsafe fn unbox_arg_unchecked(arg: Arg<'_, 'fcx>) -> Self {
        let index = arg.index();
        // SAFETY: the argument is declared real[] (see the SqlTranslatable impl).
        unsafe { arg.unbox_arg_using_from_datum() }.unwrap_or_else(|| panic!("argument {index} must not be null"))
    }
}

// SAFETY: declared to SQL exactly as pgrx declares `Array<f32>`, whose datums it reads.
unsafe impl SqlTranslatable for RealArray<'_> {
    const TYPE_IDENT: &'static str = <Array<'static, f32> as SqlTranslatable>::TYPE_IDENT;
    const TYPE_ORIGIN: TypeOrigin = <Array<'static, f32> as SqlTranslatable>::TYPE_ORIGIN;
    const ARGUMENT_SQL: Result<SqlMappingRef, ArgumentError> = <Array<'static, f32> as SqlTranslatable>::ARGUMENT_SQL;
    const RETURN_SQL: Result<ReturnsRef, ReturnsError> = <Array<'static, f32> as SqlTranslatable>::RETURN_SQL;
}

/// Raises the error of a vector argument `what` with a NULL element.
pub fn null_element(what: &str) -> ! {
    fail(
        ERRCODE_NULL_VALUE_NOT_ALLOWED,
        format!("{what} contains a NULL element"),
        "Vectors must not contain NULL elements.",
    )
}

/// Whether every value is finite: one pass without early exit, so it vectorises (the
/// vectors checked are finite nearly always).
pub fn all_finite(values: &[f32]) -> bool {
    values.iter().fold(true, |ok, v| ok & v.is_finite())
}

/// Fails when the vector argument `what` holds NaN or Infinity.
pub fn check_finite(values: &[f32], what: &str) {
    if !all_finite(values) {
        fail(ERRCODE_DATA_EXCEPTION, format!("{what} contains NaN or Infinity"), "Vectors must be finite.");
    }
}

/// Copies a `real[]` argument into a vector, rejecting NULL elements and non-finite values.
pub fn vector_arg(arr: &Array<f32>, what: &str) -> Vec<f32> {
    let values = arr.as_slice().unwrap_or_else(|_| null_element(what));
    check_finite(values, what);
    values.to_vec()
}

/// A batch of queries given as a 2-D `real[][]`, one query per row: the values row-major and
/// the dimension.
pub fn batch_arg(queries: Array<f32>) -> (Vec<f32>, usize) {
    // SAFETY: the array came in as a valid datum and lives for this call.
    let Some(mut raw) = (unsafe { RawArray::from_array(queries) }) else {
        fail(ERRCODE_DATA_EXCEPTION, "queries is not an array", "Pass queries as real[][].");
    };
    let dims = raw.dims().to_vec();
    if dims.len() != 2 || dims[1] == 0 {
        fail(
            ERRCODE_ARRAY_ELEMENT_ERROR,
            format!("queries must be a 2-dimensional array, got {} dimension(s)", dims.len()),
            "Pass one query per row, e.g. ARRAY[ARRAY[...], ARRAY[...]]::real[][].",
        );
    }
    // SAFETY: `raw` views the argument array, valid for this call.
    if unsafe { raw.any_nulls() } {
        fail(
            ERRCODE_NULL_VALUE_NOT_ALLOWED,
            "queries contain a NULL element",
            "Vectors must not contain NULL elements.",
        );
    }
    // SAFETY: as above; the array is real[] with no NULLs (checked just before).
    let data: Vec<f32> = unsafe { raw.data::<f32>().as_ref() }.to_vec();
    finite_batch(&data);
    (data, dims[1] as usize)
}

/// A batch of queries packed as little-endian f32, `dim` values each, query after query.
pub fn packed_arg(queries: &[u8], dim: i32) -> Vec<f32> {
    if dim < 1 || queries.is_empty() || !queries.len().is_multiple_of(4 * dim as usize) {
        fail(
            ERRCODE_INVALID_PARAMETER_VALUE,
            format!("{} bytes are not whole queries of dimension {dim} (4 bytes per value)", queries.len()),
            "Pack the queries as little-endian float32, query after query: numpy's q.astype('<f4').tobytes().",
        );
    }
    let data: Vec<f32> = queries.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
    finite_batch(&data);
    data
}

/// Fails when a batch holds NaN or Infinity.
fn finite_batch(data: &[f32]) {
    if !all_finite(data) {
        fail(ERRCODE_DATA_EXCEPTION, "queries contain NaN or Infinity", "Vectors must be finite.");
    }
}
