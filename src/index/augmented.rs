//! NNN inside the planner: an index's augmented column keeps `[r, bias(r)]` as a stored
//! generated pgvector column of the candidate table (optionally under an HNSW or IVFFlat
//! index), and a query becomes `[q, −α]`, so that
//! `ORDER BY nnn_augmented <#> nnn.query_vector(q) LIMIT k` ranks by `−(q·r − α·bias)` with
//! WHERE filters, joins, pgvector's indexes and MVCC coming from PostgreSQL itself.

use super::definition::IndexDef;
use crate::guc;
use crate::postgres::args::vector_arg;
use crate::postgres::coerce::cast;
use crate::postgres::errors::{fail, select_first, spi_or_raise};
use pgrx::datum::DatumWithOid;
use pgrx::prelude::*;
use pgrx::spi::quote_identifier;
use pgrx::PgSqlErrorCode::*;
use pgrx::{AnyElement, FromDatum, IntoDatum};
use std::time::Instant;

/// pgvector's largest `vector`/`halfvec` dimension.
const MAX_DIM: usize = 16_000;

/// The pgvector type that holds augmented vectors.
#[derive(Clone, Copy, PartialEq, Eq)]
enum VectorType {
    /// `vector`: 4 bytes per dimension; HNSW and IVFFlat index up to 2,000 dimensions.
    Vector,
    /// `halfvec`: 2 bytes per dimension; HNSW and IVFFlat index up to 4,000 dimensions.
    Halfvec,
}

impl VectorType {
    fn parse(s: &str) -> Self {
        match s {
            "vector" => Self::Vector,
            "halfvec" => Self::Halfvec,
            _ => fail(
                ERRCODE_INVALID_PARAMETER_VALUE,
                format!("augmented vector type must be 'vector' or 'halfvec', got '{s}'"),
                "Use 'vector' (f32), or 'halfvec' (f16, half the size, indexable up to 4,000 dimensions).",
            ),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::Vector => "vector",
            Self::Halfvec => "halfvec",
        }
    }

    /// The most dimensions pgvector's HNSW and IVFFlat indexes take for this type.
    fn index_max_dim(self) -> usize {
        match self {
            Self::Vector => 2_000,
            Self::Halfvec => 4_000,
        }
    }
}

/// A pgvector index method and the options (`WITH (...)`) it accepts.
fn method_options(method: &str) -> &'static [&'static str] {
    match method {
        "hnsw" => &["m", "ef_construction"],
        "ivfflat" => &["lists"],
        _ => fail(
            ERRCODE_INVALID_PARAMETER_VALUE,
            format!("augmented index method must be 'hnsw' or 'ivfflat', got '{method}'"),
            "Use 'hnsw' (best recall per query time) or 'ivfflat' (faster to build).",
        ),
    }
}

/// Parses `"m = 16, ef_construction = 64"` into a `WITH (...)` clause, accepting only the
/// method's option names and positive integers, so no text of the caller reaches SQL as is.
fn with_clause(method: &str, options: Option<&str>) -> String {
    let allowed = method_options(method);
    let Some(options) = options.map(str::trim).filter(|o| !o.is_empty()) else { return String::new() };
    let mut parts = Vec::new();
    for item in options.split(',') {
        let bad = || -> ! {
            fail(
                ERRCODE_INVALID_PARAMETER_VALUE,
                format!("invalid {method} option \"{}\"", item.trim()),
                format!(
                    "Options are name = positive integer, separated by commas; {method} takes {}.",
                    allowed.join(", ")
                ),
            )
        };
        let Some((name, value)) = item.split_once('=') else { bad() };
        let (name, value) = (name.trim().to_ascii_lowercase(), value.trim());
        if !allowed.contains(&name.as_str()) {
            bad()
        }
        match value.parse::<u32>() {
            Ok(v) if v > 0 => parts.push(format!("{name} = {v}")),
            _ => bad(),
        }
    }
    format!("WITH ({})", parts.join(", "))
}

/// The schema pgvector is installed in (quoted), or an error naming pgvector.
fn pgvector_schema() -> String {
    let schema = select_first(
        "SELECT n.nspname::text FROM pg_catalog.pg_extension e
           JOIN pg_catalog.pg_namespace n ON n.oid = e.extnamespace WHERE e.extname = 'vector'",
        &[],
        "looking up pgvector",
        |t| t.get::<String>(1),
    )
    .flatten();
    match schema {
        Some(s) => quote_identifier(s),
        None => fail(
            ERRCODE_UNDEFINED_OBJECT,
            "pgvector is not installed in this database",
            "Augmented vectors are pgvector columns: install pgvector 0.8 or later on the server \
             (see README, \"Installing pgvector\") and run CREATE EXTENSION vector.",
        ),
    }
}

/// The dimension of the index's embeddings, read from its reference set.
fn dimension(def: &IndexDef) -> usize {
    let dim = select_first(
        &format!(
            "SELECT pg_catalog.array_length({e}::real[], 1) FROM {t} WHERE {e} IS NOT NULL LIMIT 1",
            e = def.reference_embedding,
            t = def.reference().sql
        ),
        &[],
        "reading the reference set",
        |t| t.get::<i32>(1),
    )
    .flatten();
    match dim {
        Some(d) if d > 0 => d as usize,
        _ => fail(
            ERRCODE_DATA_EXCEPTION,
            format!("reference set {} has no non-NULL embeddings visible to you", def.reference().sql),
            "The augmented column's dimension is that of the reference set: load it first.",
        ),
    }
}

/// What `nnn.set_augmented` made.
pub struct Augmented {
    /// The generated column (NULL when removed).
    pub column: Option<String>,
    /// Its dimension, embedding dimension + 1.
    pub dimensions: Option<i32>,
    /// The pgvector index over it, if one was asked for.
    pub index: Option<String>,
    /// Seconds it took (adding the column rewrites the table; the index is built over it).
    pub seconds: f64,
}

/// Replaces the augmented column of `def` by one of type `ty` named `column` (none when `ty`
/// is None), with a pgvector index of `method` and `options` over it when `method` is given.
pub fn set(def: &IndexDef, ty: Option<&str>, column: &str, method: Option<&str>, options: Option<&str>) -> Augmented {
    let started = Instant::now();
    let table = &def.candidates.sql;
    let kind = ty.map(VectorType::parse);
    if kind.is_none() && method.is_some() {
        fail(
            ERRCODE_INVALID_PARAMETER_VALUE,
            "an augmented index needs an augmented column",
            "Pass the column type too, e.g. augmented => 'vector', augmented_index => 'hnsw'.",
        );
    }
    let with = method.map(|m| with_clause(m, options));
    if let Some(old) = &def.augmented {
        let sql = format!("ALTER TABLE {table} DROP COLUMN IF EXISTS {old}");
        spi_or_raise(Spi::run(&sql), "dropping the augmented column");
    }
    let mut made = Augmented { column: None, dimensions: None, index: None, seconds: 0.0 };
    if let Some(kind) = kind {
        let schema = pgvector_schema();
        let dims = dimension(def) + 1;
        if dims > MAX_DIM {
            fail(
                ERRCODE_PROGRAM_LIMIT_EXCEEDED,
                format!("augmented vectors of nnn index \"{}\" would have {dims} dimensions, more than pgvector's {MAX_DIM}", def.name),
                "Augmented vectors hold the embedding and its bias; use nnn_search for embeddings this wide.",
            );
        }
        if method.is_some() && dims > kind.index_max_dim() {
            fail(
                ERRCODE_PROGRAM_LIMIT_EXCEEDED,
                format!(
                    "augmented vectors of nnn index \"{}\" have {dims} dimensions, more than the {} pgvector indexes in {} columns",
                    def.name,
                    kind.index_max_dim(),
                    kind.name()
                ),
                "Use augmented => 'halfvec' (indexable up to 4,000 dimensions), or no index (exact ORDER BY).",
            );
        }
        let col = quote_identifier(column);
        let ty_sql = format!("{schema}.{}({dims})", kind.name());
        let (e, b) = (&def.embedding, &def.bias_column);
        spi_or_raise(
            Spi::run(&format!(
                "ALTER TABLE {table} ADD COLUMN {col} {ty_sql} GENERATED ALWAYS AS (
                   CASE WHEN {e} IS NULL OR {b} IS NULL THEN NULL
                        ELSE pg_catalog.array_append({e}::real[], {b})::{ty_sql} END) STORED"
            )),
            "adding the augmented column",
        );
        if let (Some(method), Some(with)) = (method, &with) {
            let index = quote_identifier(format!("nnn_{}_augmented", def.name));
            spi_or_raise(
                Spi::run(&format!(
                    "CREATE INDEX {index} ON {table} USING {method} ({col} {schema}.{}_ip_ops) {with}",
                    kind.name()
                )),
                "creating the augmented index",
            );
            made.index = Some(index);
        }
        made.column = Some(column.to_string());
        made.dimensions = Some(dims as i32);
    }
    spi_or_raise(
        Spi::run_with_args(
            "UPDATE nnn.indexes SET augmented_column = $2 WHERE name = $1",
            &[DatumWithOid::from(def.name.as_str()), DatumWithOid::from(made.column.as_deref())],
        ),
        "updating nnn.indexes",
    );
    made.seconds = started.elapsed().as_secs_f64();
    made
}

/// `[query, −alpha]` in the query's own type (`real[]`, pgvector's `vector` or `halfvec`);
/// without `alpha`, the current `nnn.alpha`.
pub fn query_vector(query: AnyElement, alpha: Option<f64>) -> AnyElement {
    let alpha = alpha.unwrap_or_else(guc::default_alpha);
    if !alpha.is_finite() {
        fail(
            ERRCODE_INVALID_PARAMETER_VALUE,
            format!("alpha must be finite, got {alpha}"),
            "Pass a finite alpha or SET nnn.alpha.",
        );
    }
    let ty = query.oid();
    let real_array = pg_sys::FLOAT4ARRAYOID;
    let datum = cast(query.datum(), ty, real_array, "query");
    // SAFETY: `datum` is a non-null real[] (the cast's result or the argument itself).
    let array = unsafe { Array::<f32>::from_datum(datum, false) }.expect("a non-null real[]");
    let mut q = vector_arg(&array, "query");
    if q.is_empty() {
        fail(ERRCODE_DATA_EXCEPTION, "query is empty", "Pass the query embedding.");
    }
    q.push(-alpha as f32);
    let out = cast(q.into_datum().expect("an array datum"), real_array, ty, "query");
    // SAFETY: `out` is a non-null datum of type `ty`, the function's declared result type.
    unsafe { AnyElement::from_polymorphic_datum(out, false, ty) }.expect("a non-null datum")
}
