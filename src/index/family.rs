//! Bias families by name, as SQL arguments and the catalog's `family`, `k` and `beta` give them.

use crate::postgres::errors::fail;
use nnn_engine::evaluate::Family;
use pgrx::PgSqlErrorCode::*;

/// The bias family named `name` (nnn, dn, lse) with NNN's `k` and log-sum-exp's `beta`,
/// checked: an error names what is wrong.
pub fn family(name: &str, k: i32, beta: Option<f32>) -> Family {
    match (name, beta) {
        ("nnn", None) if k >= 1 => Family::Nnn { k: k as usize },
        ("nnn", None) => {
            fail(ERRCODE_INVALID_PARAMETER_VALUE, format!("k must be at least 1, got {k}"), "The paper uses k = 128.")
        }
        ("dn", None) => Family::Dn,
        ("lse", Some(beta)) if beta.is_finite() && beta > 0.0 => Family::Lse { beta },
        ("lse", _) => fail(
            ERRCODE_INVALID_PARAMETER_VALUE,
            format!("the lse family needs a positive beta, got {}", beta.map_or("NULL".into(), |b| b.to_string())),
            "Pass beta, e.g. beta => 20 (nnn.evaluate compares several).",
        ),
        ("nnn" | "dn", Some(_)) => fail(
            ERRCODE_INVALID_PARAMETER_VALUE,
            format!("beta is a parameter of the lse family, not of {name}"),
            "Leave beta NULL, or use family => 'lse'.",
        ),
        _ => fail(ERRCODE_INVALID_PARAMETER_VALUE, format!("unknown bias family \"{name}\""), "Use nnn, dn or lse."),
    }
}

/// The family's name and β, as `nnn.indexes` stores them.
pub fn family_columns(family: Family) -> (&'static str, Option<f32>) {
    match family {
        Family::Nnn { .. } | Family::Plain => ("nnn", None),
        Family::Dn => ("dn", None),
        Family::Lse { beta } => ("lse", Some(beta)),
    }
}
