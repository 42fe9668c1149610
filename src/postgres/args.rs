//! Decoding vector arguments of SQL functions: `real[]` (one vector), `real[][]` and packed
//! little-endian `bytea` (a batch), each checked for NULL elements and non-finite values.

use super::errors::fail;
use pgrx::array::RawArray;
use pgrx::prelude::*;
use pgrx::PgSqlErrorCode::*;

/// A `real[]` argument as a slice of its own storage, rejecting NULL elements and
/// non-finite values: no copy per row, for `nnn_score` in an `ORDER BY` over many rows.
pub fn slice_arg<'a>(arr: &'a Array<f32>, what: &str) -> &'a [f32] {
    let Ok(values) = arr.as_slice() else {
        fail(
            ERRCODE_NULL_VALUE_NOT_ALLOWED,
            format!("{what} contains a NULL element"),
            "Vectors must not contain NULL elements.",
        )
    };
    if !values.iter().fold(true, |ok, v| ok & v.is_finite()) {
        fail(ERRCODE_DATA_EXCEPTION, format!("{what} contains NaN or Infinity"), "Vectors must be finite.");
    }
    values
}

/// Copies a `real[]` argument into a vector, rejecting NULL elements and non-finite values.
pub fn vector_arg(arr: &Array<f32>, what: &str) -> Vec<f32> {
    slice_arg(arr, what).to_vec()
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
    if data.iter().any(|v| !v.is_finite()) {
        fail(ERRCODE_DATA_EXCEPTION, "queries contain NaN or Infinity", "Vectors must be finite.");
    }
}
