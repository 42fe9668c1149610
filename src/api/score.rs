//! `nnn_score`: the NNN score of one row, for `ORDER BY … LIMIT` and ORMs.

use crate::guc;
use crate::postgres::args::{check_finite, null_element, RealArray};
use crate::postgres::errors::fail;
use pgrx::prelude::*;
use pgrx::PgSqlErrorCode::*;

/// Current `nnn.alpha` (used as the default of `nnn_score`'s alpha).
#[pg_extern(stable, parallel_safe, name = "nnn_alpha")]
fn nnn_alpha() -> f64 {
    guc::default_alpha()
}

/// `q·r − alpha·bias`: the NNN score of a candidate embedding for a query, in `real`
/// arithmetic like `nnn_search` (with AVX2, the same dot product as its exact pass). Without
/// `alpha`, the current `nnn.alpha` is used. `bias` and `alpha` are double precision so that
/// ORMs' float parameters fit without casts.
///
/// Per row the vectors are only read once: NaN or Infinity in either makes the dot product
/// non-finite (both propagate through products and sums, and 0·∞ is NaN), so they are looked
/// for only then, and errors come in the order of the checks they replace (embedding before
/// query, values before dimensions).
#[pg_extern(immutable, strict, parallel_safe)]
fn nnn_score(embedding: RealArray, query: RealArray, bias: f64, alpha: default!(f64, "nnn_alpha()")) -> f32 {
    if !alpha.is_finite() {
        fail(
            ERRCODE_INVALID_PARAMETER_VALUE,
            format!("alpha must be finite, got {alpha}"),
            "Pass a finite alpha or SET nnn.alpha.",
        );
    }
    let r = embedding.values().unwrap_or_else(|| null_element("embedding"));
    let Some(q) = query.values() else {
        check_finite(r, "embedding");
        null_element("query")
    };
    let both_finite = || {
        check_finite(r, "embedding");
        check_finite(q, "query");
    };
    if r.len() != q.len() {
        both_finite();
        fail(
            ERRCODE_DATA_EXCEPTION,
            format!("different vector dimensions {} and {}", r.len(), q.len()),
            "The query must have the dimension of the stored embeddings.",
        );
    }
    let score = nnn_engine::score(q, r, bias as f32, alpha as f32);
    if !score.is_finite() {
        both_finite();
    }
    score
}

#[cfg(any(test, feature = "pg_test"))]
#[pg_schema]
mod tests {
    use pgrx::prelude::*;

    #[pg_test]
    fn score_is_dot_minus_alpha_bias() {
        let s = Spi::get_one::<f32>("SELECT nnn_score(ARRAY[1,2,3]::real[], ARRAY[0.5,0.5,1]::real[], 2, 0.25)")
            .unwrap()
            .unwrap();
        assert!((s - (4.5 - 0.5)).abs() < 1e-6);
    }

    #[pg_test]
    fn score_defaults_to_the_alpha_setting() {
        Spi::run("SET nnn.alpha = 0.5").unwrap();
        let s = Spi::get_one::<f32>("SELECT nnn_score(ARRAY[1,0]::real[], ARRAY[1,0]::real[], 1)").unwrap().unwrap();
        assert!((s - 0.5).abs() < 1e-6);
    }

    #[pg_test(error = "different vector dimensions 2 and 3")]
    fn score_rejects_dimension_mismatch() {
        Spi::get_one::<f32>("SELECT nnn_score(ARRAY[1,0]::real[], ARRAY[1,0,0]::real[], 1)").unwrap();
    }
}
