//! Converting a value between its own type and `real[]` through the casts PostgreSQL knows, so
//! that pgvector's `vector` and `halfvec` (whose casts to and from `real[]` pgvector defines)
//! reach nnn without nnn knowing their layout, and nnn needs no pgvector to build or load.

use super::errors::fail;
use pgrx::pg_sys::{self, CoercionContext, CoercionPathType, Datum, Oid};
use pgrx::PgSqlErrorCode::*;
use std::ffi::CStr;

/// The SQL name of type `ty`, for messages.
pub fn type_name(ty: Oid) -> String {
    // SAFETY: format_type_be returns a palloc'd C string for any OID (or "???").
    unsafe { CStr::from_ptr(pg_sys::format_type_be(ty)).to_string_lossy().into_owned() }
}

/// Casts `datum` of type `from` to type `to` as `value::to` would (explicit context, no
/// type modifier). Types without such a cast, or with one that is not a plain function or
/// binary-compatible relabelling, are an error naming `what`.
pub fn cast(datum: Datum, from: Oid, to: Oid, what: &str) -> Datum {
    if from == to {
        return datum;
    }
    let mut func = pg_sys::InvalidOid;
    // SAFETY: a catalog lookup on the main thread; `func` is a valid out-pointer.
    let path = unsafe { pg_sys::find_coercion_pathway(to, from, CoercionContext::COERCION_EXPLICIT, &mut func) };
    match path {
        CoercionPathType::COERCION_PATH_RELABELTYPE => datum,
        CoercionPathType::COERCION_PATH_FUNC if func != pg_sys::InvalidOid => {
            // SAFETY: `func` is the cast function from `from` to `to`; cast functions take the
            // value, optionally the target type modifier (-1: none) and whether the cast is
            // explicit, and are strict, so a non-null datum of type `from` is a valid call.
            unsafe {
                match pg_sys::get_func_nargs(func) {
                    1 => pg_sys::OidFunctionCall1Coll(func, pg_sys::InvalidOid, datum),
                    2 => pg_sys::OidFunctionCall2Coll(func, pg_sys::InvalidOid, datum, Datum::from(-1i32)),
                    _ => pg_sys::OidFunctionCall3Coll(
                        func,
                        pg_sys::InvalidOid,
                        datum,
                        Datum::from(-1i32),
                        Datum::from(true),
                    ),
                }
            }
        }
        _ => fail(
            ERRCODE_DATATYPE_MISMATCH,
            format!("{what} has type {}, which cannot be cast to {}", type_name(from), type_name(to)),
            "Pass the vector as real[], or as pgvector's vector or halfvec.",
        ),
    }
}
