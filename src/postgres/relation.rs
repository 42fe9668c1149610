//! Resolving the tables and columns a user names, with clear errors before any work starts.

use super::errors::{fail, select_first, spi_or_raise};
use pgrx::datum::DatumWithOid;
use pgrx::prelude::*;
use pgrx::spi::quote_identifier;
use pgrx::PgSqlErrorCode::*;

/// A table named by `regclass`: its OID and its name quoted for SQL text.
#[derive(Debug, Clone)]
pub struct Table {
    /// pg_class OID.
    pub oid: pg_sys::Oid,
    /// Schema-qualified where needed and quoted: safe to place in SQL text.
    pub sql: String,
}

/// Resolves a `regclass` argument, closing pgrx's relcache reference at once (an open
/// reference would make `ALTER TABLE` on it fail); the lock stays until the transaction ends.
pub fn resolve(rel: pgrx::PgRelation) -> Table {
    let oid = rel.oid();
    drop(rel);
    table(oid)
}

/// Resolves a candidate table: one nnn can add a bias column to and write biases into, an
/// ordinary or a partitioned table (a view, a materialized view or a foreign table is an
/// error naming its kind).
pub fn candidate_table(rel: pgrx::PgRelation) -> Table {
    let table = resolve(rel);
    let kind = select_first(
        "SELECT CASE c.relkind WHEN 'v' THEN 'a view' WHEN 'm' THEN 'a materialized view'
                WHEN 'f' THEN 'a foreign table' WHEN 'S' THEN 'a sequence' END
         FROM pg_catalog.pg_class c WHERE c.oid = $1",
        &[DatumWithOid::from(table.oid)],
        "looking up a table",
        |t| t.get::<String>(1),
    )
    .flatten();
    if let Some(kind) = kind {
        fail(
            ERRCODE_WRONG_OBJECT_TYPE,
            format!("{} is {kind}, not a table: nnn writes biases into the candidate table", table.sql),
            format!("Copy the rows into a table first, e.g. CREATE TABLE t AS SELECT * FROM {}.", table.sql),
        );
    }
    table
}

/// Fails unless the current user has `privilege` (`SELECT` or `UPDATE`) on each column of
/// `table` named in `quoted` (quoted names, as nnn keeps them), before any work: the error
/// names the first column without it, and its hint, after `why`, the `GRANT` of all of them.
pub fn require_privilege(table: &Table, quoted: &[&str], privilege: &str, why: &str) {
    let quoted: Vec<String> = quoted.iter().map(|q| q.to_string()).collect();
    let missing = select_first(
        "SELECT (pg_catalog.array_agg(pg_catalog.quote_ident(a.attname) ORDER BY a.attnum))[1],
                pg_catalog.string_agg(pg_catalog.quote_ident(a.attname), ', ' ORDER BY a.attnum),
                pg_catalog.quote_ident(current_user)
         FROM pg_catalog.pg_attribute a
         WHERE a.attrelid = $1 AND pg_catalog.quote_ident(a.attname) = ANY($2) AND a.attnum > 0
           AND NOT a.attisdropped AND NOT pg_catalog.has_column_privilege(a.attrelid, a.attnum, $3)
         HAVING count(*) > 0",
        &[DatumWithOid::from(table.oid), DatumWithOid::from(quoted), DatumWithOid::from(privilege)],
        "checking privileges",
        |t| Ok([t.get::<String>(1)?, t.get::<String>(2)?, t.get::<String>(3)?].map(Option::unwrap_or_default)),
    );
    if let Some([first, all, user]) = missing {
        fail(
            ERRCODE_INSUFFICIENT_PRIVILEGE,
            format!("permission denied for column {first} of relation {}", table.sql),
            format!("{why} GRANT {privilege} ({all}) ON {} TO {user};", table.sql),
        );
    }
}

/// Resolves a regclass to a table, failing when it no longer exists.
pub fn table(oid: pg_sys::Oid) -> Table {
    let sql = select_first(
        "SELECT c.oid::regclass::text FROM pg_catalog.pg_class c WHERE c.oid = $1",
        &[DatumWithOid::from(oid)],
        "looking up a table",
        |t| t.get::<String>(1),
    )
    .flatten();
    match sql {
        Some(sql) => Table { oid, sql },
        _ => fail(
            ERRCODE_UNDEFINED_TABLE,
            format!("table with OID {} does not exist", oid.to_u32()),
            "The table was dropped; re-create it or drop the nnn index.",
        ),
    }
}

/// What [`column_type`] finds out about a live column.
struct Column {
    /// Its type, as `regtype` prints it.
    ty: String,
    /// Whether it can be read as `real[]` (numeric arrays, types with a cast to `real[]`).
    embedding: bool,
    /// Whether it is `smallint`, `integer` or `bigint`.
    integer: bool,
    /// Whether it alone is the key of a unique index that holds at every statement's end.
    unique: bool,
}

/// SQL test that the column `a` (a `pg_attribute` row) alone is the key of a valid, immediate,
/// non-partial unique index: a primary key or a `UNIQUE` constraint, not a deferrable one.
pub const UNIQUE_ALONE: &str = "EXISTS (SELECT 1 FROM pg_catalog.pg_index i
        WHERE i.indrelid = a.attrelid AND i.indnkeyatts = 1 AND i.indkey[0] = a.attnum
          AND i.indisunique AND i.indimmediate AND i.indisvalid AND i.indpred IS NULL)";

/// The live column `column` of `table`, when there is one.
fn column_type(table: &Table, column: &str) -> Option<Column> {
    select_first(
        &format!(
            "SELECT a.atttypid::regtype::text,
                (t.typcategory = 'A' AND t.typelem IN ('float4'::regtype, 'float8'::regtype,
                    'int2'::regtype, 'int4'::regtype, 'int8'::regtype, 'numeric'::regtype))
                OR EXISTS (SELECT 1 FROM pg_catalog.pg_cast c
                           WHERE c.castsource = a.atttypid AND c.casttarget = 'real[]'::regtype),
                a.atttypid IN ('int2'::regtype, 'int4'::regtype, 'int8'::regtype),
                {UNIQUE_ALONE}
         FROM pg_catalog.pg_attribute a JOIN pg_catalog.pg_type t ON t.oid = a.atttypid
         WHERE a.attrelid = $1 AND a.attname = $2 AND a.attnum > 0 AND NOT a.attisdropped"
        ),
        &[DatumWithOid::from(table.oid), DatumWithOid::from(column)],
        "looking up a column",
        |t| {
            Ok(Column {
                ty: t.get::<String>(1)?.unwrap_or_default(),
                embedding: t.get::<bool>(2)?.unwrap_or(false),
                integer: t.get::<bool>(3)?.unwrap_or(false),
                unique: t.get::<bool>(4)?.unwrap_or(false),
            })
        },
    )
}

/// SQL test on a column type, for [`column_has`]: `real[]` or pgvector's `vector`, which
/// [`super::read::read_vectors`] reads in place (no cast that builds a new array per row).
pub const READ_IN_PLACE: &str = "a.atttypid = 'real[]'::regtype OR p.proname = 'vector_in'";

/// SQL test on a column type, for [`column_has`]: pgvector's `vector` (its input function is
/// `vector_in`; the same test as `read`'s on the types a query returns).
pub const PGVECTOR: &str = "p.proname = 'vector_in'";

/// An SQL boolean: whether the live column that `which` picks (a condition on `a`,
/// pg_attribute) has a type for which `test` (on `a`, its type `t` and the type's input
/// function `p`) holds.
pub fn column_has(which: &str, test: &str) -> String {
    format!(
        "EXISTS (SELECT 1 FROM pg_catalog.pg_attribute a JOIN pg_catalog.pg_type t ON t.oid = a.atttypid
                      JOIN pg_catalog.pg_proc p ON p.oid = t.typinput
                 WHERE {which} AND a.attnum > 0 AND NOT a.attisdropped AND ({test}))"
    )
}

/// Whether column `quoted` (a quoted name) of `table` is read in place ([`READ_IN_PLACE`]).
pub fn reads_in_place(table: &Table, quoted: &str) -> bool {
    let which = "a.attrelid = $1 AND pg_catalog.quote_ident(a.attname) = $2";
    select_first(
        &format!("SELECT {}", column_has(which, READ_IN_PLACE)),
        &[DatumWithOid::from(table.oid), DatumWithOid::from(quoted)],
        "looking up a column",
        |t| t.get::<bool>(1),
    )
    .flatten()
        == Some(true)
}

/// How to select the embedding column `quoted` (a quoted name) of `table` for
/// [`super::read::read_vectors`]: as it is where [`READ_IN_PLACE`], else cast to `real[]`.
pub fn embedding_expr(table: &Table, quoted: &str) -> String {
    in_place_or_cast(quoted, reads_in_place(table, quoted))
}

/// `quoted` as it is, or cast to `real[]`.
pub fn in_place_or_cast(quoted: &str, in_place: bool) -> String {
    if in_place {
        quoted.to_string()
    } else {
        format!("{quoted}::real[]")
    }
}

fn missing_column(table: &Table, column: &str) -> ! {
    fail(
        ERRCODE_UNDEFINED_COLUMN,
        format!("column \"{column}\" of relation {} does not exist", table.sql),
        "Column names are case sensitive here: pass the name as stored (see \\d of the table).",
    )
}

/// Checks that `column` holds embeddings (real[], float8[], other numeric arrays, or a type
/// with a cast to real[] such as pgvector's `vector`) and returns it quoted.
pub fn vector_column(table: &Table, column: &str) -> String {
    match column_type(table, column) {
        None => missing_column(table, column),
        Some(c) if c.embedding => quote_identifier(column),
        Some(c) => fail(
            ERRCODE_DATATYPE_MISMATCH,
            format!("column \"{column}\" of relation {} has type {}, which is not an embedding type", table.sql, c.ty),
            "Embedding columns must be real[], double precision[] or pgvector's vector.",
        ),
    }
}

/// Checks that `column` is an integer id column (smallint, integer, bigint) that a unique
/// index keeps unique ([`UNIQUE_ALONE`]), and returns it quoted: triggers and searches find
/// rows by their id.
pub fn id_column(table: &Table, column: &str) -> String {
    match column_type(table, column) {
        None => missing_column(table, column),
        Some(c) if !c.integer => fail(
            ERRCODE_DATATYPE_MISMATCH,
            format!("id column \"{column}\" of relation {} has type {}", table.sql, c.ty),
            "The id column must be smallint, integer or bigint, and unique (a primary key).",
        ),
        Some(c) if !c.unique => fail(
            ERRCODE_INVALID_COLUMN_REFERENCE,
            format!("id column \"{column}\" of relation {} has no unique index of its own", table.sql),
            format!(
                "nnn finds rows by their id: make it a primary key, e.g. ALTER TABLE {} ADD PRIMARY KEY ({}); a unique index must be on that column alone, not partial and not deferrable.",
                table.sql,
                quote_identifier(column)
            ),
        ),
        Some(_) => quote_identifier(column),
    }
}

/// Checks that `column` holds candidate ids, one (smallint, integer, bigint) or several (an
/// array of those), and returns an SQL expression reading it as `bigint[]`.
pub fn answer_column(table: &Table, column: &str) -> String {
    let q = quote_identifier(column);
    match column_type(table, column) {
        None => missing_column(table, column),
        Some(c) if c.integer => format!("ARRAY[{q}::bigint]"),
        Some(c) if ["smallint[]", "integer[]", "bigint[]"].contains(&c.ty.as_str()) => format!("{q}::bigint[]"),
        Some(c) => fail(
            ERRCODE_DATATYPE_MISMATCH,
            format!("answer column \"{column}\" of relation {} has type {}", table.sql, c.ty),
            "The answer column holds the id of the right candidate (an integer type) or several ids (an integer array).",
        ),
    }
}

/// Makes sure `table` has a `real` column `column` for biases, adding it when missing.
/// Returns the quoted column name. An empty name, an existing column of another type, or the
/// bias column of an nnn index (which its own k, family and triggers keep) is an error.
pub fn ensure_bias_column(table: &Table, column: &str) -> String {
    if column.is_empty() {
        fail(
            ERRCODE_INVALID_NAME,
            "the bias column name is empty",
            "Pass a column name, e.g. bias_column => 'nnn_bias'.",
        );
    }
    let owner = select_first(
        "SELECT name FROM nnn.indexes WHERE candidates = $1 AND bias_column = $2",
        &[DatumWithOid::from(table.oid), DatumWithOid::from(column)],
        "reading nnn.indexes",
        |t| t.get::<String>(1),
    )
    .flatten();
    if let Some(owner) = owner {
        fail(
            ERRCODE_DUPLICATE_COLUMN,
            format!("bias column \"{column}\" of relation {} belongs to nnn index \"{owner}\"", table.sql),
            format!(
                "Its triggers keep that column at the index's own k and family: pass another bias_column, rebuild it with nnn.refresh('{owner}'), or drop the index first."
            ),
        );
    }
    match column_type(table, column) {
        Some(c) if c.ty == "real" => {}
        Some(c) => fail(
            ERRCODE_DATATYPE_MISMATCH,
            format!("bias column \"{column}\" of relation {} exists with type {}, not real", table.sql, c.ty),
            "Pass another bias_column name, or drop or alter that column.",
        ),
        None => {
            let sql = format!("ALTER TABLE {} ADD COLUMN {} real", table.sql, quote_identifier(column));
            let owner = select_first(
                "SELECT pg_catalog.pg_has_role(c.relowner, 'USAGE'), pg_catalog.quote_ident(current_user)
                 FROM pg_catalog.pg_class c WHERE c.oid = $1",
                &[DatumWithOid::from(table.oid)],
                "looking up the table's owner",
                |t| Ok((t.get::<bool>(1)?.unwrap_or(false), t.get::<String>(2)?.unwrap_or_default())),
            );
            if let Some((false, user)) = owner {
                fail(
                    ERRCODE_INSUFFICIENT_PRIVILEGE,
                    format!(
                        "bias column \"{column}\" of relation {} does not exist, and only the table's owner can add it",
                        table.sql
                    ),
                    format!(
                        "Ask the owner to run {sql}; GRANT UPDATE ({}) ON {} TO {user};",
                        quote_identifier(column),
                        table.sql
                    ),
                );
            }
            spi_or_raise(Spi::run(&sql), "adding the bias column");
        }
    }
    quote_identifier(column)
}
