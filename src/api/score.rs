//! `nnn_score`: the NNN score of one row, for `ORDER BY … LIMIT` and ORMs.

use crate::guc;
use crate::postgres::args::slice_arg;
use crate::postgres::errors::fail;
use pgrx::prelude::*;
use pgrx::PgSqlErrorCode::*;

/// Current `nnn.alpha` (used as the default of `nnn_score`'s alpha).
#[pg_extern(stable, parallel_safe, name = "nnn_alpha")]
fn nnn_alpha() -> f64 {
    guc::default_alpha()
}

/// `q·r − alpha·bias`: the NNN score of a candidate embedding for a query, in `real`
/// arithmetic like `nnn_search`. Without `alpha`, the current `nnn.alpha` is used. `bias`
/// and `alpha` are double precision so that ORMs' float parameters fit without casts.
#[pg_extern(immutable, strict, parallel_safe)]
fn nnn_score(embedding: Array<f32>, query: Array<f32>, bias: f64, alpha: default!(f64, "nnn_alpha()")) -> f32 {
    if !alpha.is_finite() {
        fail(
            ERRCODE_INVALID_PARAMETER_VALUE,
            format!("alpha must be finite, got {alpha}"),
            "Pass a finite alpha or SET nnn.alpha.",
        );
    }
    let (r, q) = (slice_arg(&embedding, "embedding"), slice_arg(&query, "query"));
    if r.len() != q.len() {
        fail(
            ERRCODE_DATA_EXCEPTION,
            format!("different vector dimensions {} and {}", r.len(), q.len()),
            "The query must have the dimension of the stored embeddings.",
        );
    }
    nnn_engine::score(q, r, bias as f32, alpha as f32)
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
