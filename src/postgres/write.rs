//! Writing computed biases back into the candidate table in one statement.

use super::errors::spi_or_raise;
use super::relation::Table;
use pgrx::datum::DatumWithOid;
use pgrx::prelude::*;

/// Where rows are found again for the update: by physical row id or by the index's id column.
pub enum RowKeys {
    /// `ctid` values as text (bias builds hold a lock that keeps them stable).
    Ctid(Vec<String>),
    /// Values of a unique integer id column (quoted name).
    Id { column: String, ids: Vec<i64> },
}

/// Sets `bias_column` of each keyed row to its bias; returns the rows updated.
pub fn write_bias(table: &Table, bias_column: &str, keys: RowKeys, bias: Vec<f32>) -> u64 {
    let (sql, keys_arg) = match keys {
        RowKeys::Ctid(ctids) => (
            format!(
                "UPDATE {t} SET {b} = v.bias FROM unnest($1::text[]::tid[], $2::real[]) AS v(row_key, bias)
                 WHERE {t}.ctid = v.row_key",
                t = table.sql,
                b = bias_column
            ),
            DatumWithOid::from(ctids),
        ),
        RowKeys::Id { column, ids } => (
            format!(
                "UPDATE {t} SET {b} = v.bias FROM unnest($1::bigint[], $2::real[]) AS v(row_key, bias)
                 WHERE {t}.{column} = v.row_key",
                t = table.sql,
                b = bias_column
            ),
            DatumWithOid::from(ids),
        ),
    };
    Spi::connect_mut(|client| {
        let r = client.update(sql.as_str(), None, &[keys_arg, DatumWithOid::from(bias)]);
        spi_or_raise(r, "writing biases").len() as u64
    })
}
