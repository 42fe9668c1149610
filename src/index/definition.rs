//! An index's definition: its row of `nnn.indexes` (and `nnn.ann`) with names checked and
//! quoted, read together with the caller's snapshot and the search cache's key, so that one
//! query per call says what to search and what the cache may do.

use super::build::BiasColumn;
use super::family::family;
use crate::guc;
use crate::postgres::citus;
use crate::postgres::errors::{fail, spi_or_raise};
use crate::postgres::plans::select_kept;
use crate::postgres::relation::{column_has, Table, PGVECTOR, READ_IN_PLACE};
use nnn_engine::evaluate::Family;
use pgrx::datum::DatumWithOid;
use pgrx::prelude::*;
use pgrx::spi::quote_identifier;
use pgrx::PgSqlErrorCode::*;

/// A registered index with its names checked and quoted, as this statement sees it.
pub struct IndexDef {
    /// The index's name in `nnn.indexes`.
    pub name: String,
    /// Candidate table.
    pub candidates: Table,
    /// Quoted id column.
    pub id_column: String,
    /// Quoted embedding column.
    pub embedding: String,
    /// Reference table; None once it was dropped (see [`IndexDef::reference`]).
    pub reference_set: Option<Table>,
    /// Quoted reference embedding column.
    pub reference_embedding: String,
    /// Quoted bias column.
    pub bias_column: String,
    /// Neighbours averaged per bias (NNN's k; kept, unused, for the other families).
    pub k: i32,
    /// How its biases are computed (`nnn.create_index`'s `family`, `k` and `beta`).
    pub family: Family,
    /// The caller's snapshot and what it allows the search cache to do.
    pub now: Situation,
    /// The index's Faiss structure, if it has one (`nnn.set_ann`).
    pub ann: Option<AnnDef>,
    /// Quoted name of its augmented pgvector column, if it has one (`nnn.set_augmented`).
    pub augmented: Option<String>,
    /// Whether that column is a `vector` one (not `halfvec`), which holds each row's embedding
    /// and bias exactly as `real`: then rows are read from it, in the row and in place, rather
    /// than from the embedding (which the wide row pushes out of line) and the bias.
    pub read_augmented: bool,
    /// Whether the embedding column is read in place (`real[]` or pgvector's `vector`), not
    /// cast to `real[]` row by row.
    pub embedding_in_place: bool,
    /// The index's own bias weight (`nnn.set_alpha`, `nnn.tune`), if it has one.
    pub stored_alpha: Option<f32>,
}

impl IndexDef {
    /// The α its searches rank with ([`guc::alpha_for`]).
    pub fn alpha(&self) -> f32 {
        guc::alpha_for(self.stored_alpha)
    }

    /// How messages name it.
    pub fn what(&self) -> String {
        format!("nnn index \"{}\"", self.name)
    }

    /// Its reference table, which biases are computed from; an error naming the index when
    /// the table was dropped (searches do without it, builds and new rows cannot).
    pub fn reference(&self) -> &Table {
        self.reference_set.as_ref().unwrap_or_else(|| {
            fail(
                ERRCODE_UNDEFINED_TABLE,
                format!("the reference set of {} was dropped", self.what()),
                format!(
                    "New and changed rows of {} need it for their biases: drop the index (nnn.drop_index('{}')) and create it again over a reference set.",
                    self.candidates.sql, self.name
                ),
            )
        })
    }

    /// Its bias column and where the values come from, for a build.
    pub fn bias_column(&self) -> BiasColumn<'_> {
        BiasColumn {
            candidates: &self.candidates,
            embedding: &self.embedding,
            reference: self.reference(),
            reference_embedding: &self.reference_embedding,
            column: &self.bias_column,
            family: self.family,
        }
    }
}

/// An index's row of `nnn.ann`.
pub struct AnnDef {
    /// Faiss factory string.
    pub factory: String,
    /// Snapshot its rows were read under (None until built).
    pub snapshot: Option<String>,
    /// The transaction that built it, whose own writes it holds.
    pub build_xid: Option<String>,
    /// Cache key: changes whenever the structure is rewritten.
    pub key: String,
}

/// Looks up index `name`, or the only index when `name` is None, in one read-only query that
/// also takes the caller's snapshot for the search cache. Columns added to `nnn.indexes` after
/// 0.1.0 are read through `to_jsonb`, so a new library works on a 0.1.0 catalog until
/// `ALTER EXTENSION nnn UPDATE`.
pub fn lookup(name: Option<&str>) -> IndexDef {
    let mut citus_here = false;
    let mut found: Vec<IndexDef> = Spi::connect(|client| {
        let sql = || {
            let augmented_is_vector = column_has(
                "a.attrelid = c.oid AND a.attname = pg_catalog.to_jsonb(i) ->> 'augmented_column'",
                PGVECTOR,
            );
            let embedding_in_place =
                column_has("a.attrelid = c.oid AND a.attname = i.embedding_column::text", READ_IN_PLACE);
            format!(
                "SELECT i.name, i.candidates::oid, i.candidates::regclass::text, i.id_column::text,
                    i.embedding_column::text, i.reference::oid,
                    (SELECT r.oid::regclass::text FROM pg_catalog.pg_class r WHERE r.oid = i.reference),
                    i.reference_embedding::text, i.bias_column::text, i.k,
                    pg_catalog.pg_current_snapshot()::text,
                    pg_catalog.pg_current_xact_id_if_assigned() IS NULL,
                    c.relrowsecurity IS NOT FALSE OR NOT pg_catalog.has_table_privilege(c.oid, 'SELECT'),
                    format('%s|%s|%s|%s', c.oid, c.relfilenode, i.built_at, i.log_epoch),
                    a.factory, a.snapshot::text, a.build_xid::text, format('%s|%s|%s', c.oid, c.relfilenode, a.xmin),
                    pg_catalog.to_jsonb(i) ->> 'augmented_column', (pg_catalog.to_jsonb(i) ->> 'alpha')::real,
                    coalesce(pg_catalog.to_jsonb(i) ->> 'family', 'nnn'), (pg_catalog.to_jsonb(i) ->> 'beta')::real,
                    EXISTS (SELECT 1 FROM pg_catalog.pg_extension WHERE extname = 'citus'),
                    {augmented_is_vector}, {embedding_in_place}
             FROM nnn.indexes i LEFT JOIN pg_catalog.pg_class c ON c.oid = i.candidates
                  LEFT JOIN nnn.ann a ON a.index_name = i.name
             WHERE $1::text IS NULL OR i.name = $1 ORDER BY i.name LIMIT 2"
            )
        };
        let rows = select_kept(client, "lookup", sql, &[DatumWithOid::from(name)], None, "reading nnn.indexes");
        let mut out = Vec::new();
        for row in rows {
            let maybe = |i| spi_or_raise(row.get::<String>(i), "reading nnn.indexes");
            let text = |i| maybe(i).unwrap_or_default();
            let oid = |i| spi_or_raise(row.get::<pg_sys::Oid>(i), "reading nnn.indexes").unwrap_or(pg_sys::InvalidOid);
            let flag = |i| spi_or_raise(row.get::<bool>(i), "reading nnn.indexes").unwrap_or(false);
            let k = spi_or_raise(row.get::<i32>(10), "reading nnn.indexes").unwrap_or(0);
            let readable = !flag(13);
            let usable = readable && guc::CACHE_MB.get() > 0;
            citus_here |= flag(23);
            out.push(IndexDef {
                name: text(1),
                candidates: Table { oid: oid(2), sql: text(3) },
                id_column: quote_identifier(text(4)),
                embedding: quote_identifier(text(5)),
                reference_set: maybe(7).map(|sql| Table { oid: oid(6), sql }),
                reference_embedding: quote_identifier(text(8)),
                bias_column: quote_identifier(text(9)),
                k,
                now: Situation { key: text(14), snapshot: text(11), readable, usable, storable: usable && flag(12) },
                ann: maybe(15).map(|factory| AnnDef {
                    factory,
                    snapshot: maybe(16),
                    build_xid: maybe(17),
                    key: text(18),
                }),
                augmented: maybe(19).map(quote_identifier),
                read_augmented: flag(24),
                embedding_in_place: flag(25),
                stored_alpha: spi_or_raise(row.get::<f32>(20), "reading nnn.indexes"),
                family: family(&text(21), k, spi_or_raise(row.get::<f32>(22), "reading nnn.indexes")),
            });
        }
        out
    });
    if citus_here {
        // a Citus distributed table has no triggers to log changes: neither a cache nor a
        // Faiss structure can be brought up to date, every search reads the rows
        for def in found.iter_mut().filter(|d| citus::distribution_column(&d.candidates).is_some()) {
            def.now.readable = false;
            def.now.usable = false;
            def.now.storable = false;
        }
    }
    match (found.len(), name) {
        (0, Some(n)) => fail(
            ERRCODE_UNDEFINED_OBJECT,
            format!("nnn index \"{n}\" does not exist"),
            "See SELECT name FROM nnn.indexes; create one with nnn.create_index.",
        ),
        (0, None) => fail(ERRCODE_UNDEFINED_OBJECT, "no nnn index exists", "Create one with nnn.create_index(...)."),
        (2, None) => fail(
            ERRCODE_AMBIGUOUS_PARAMETER,
            "there is more than one nnn index",
            "Name it: nnn_search('index name', query, k).",
        ),
        _ => found.into_iter().next().unwrap(),
    }
}

/// Fails unless the current user may change index `name` (a member of the role that owns its
/// candidate table).
pub fn check_owner(name: &str) {
    let owns = spi_or_raise(
        Spi::get_one_with_args::<bool>("SELECT nnn.owns_index($1)", &[DatumWithOid::from(name)]),
        "reading nnn.indexes",
    );
    if owns != Some(true) {
        fail(
            ERRCODE_INSUFFICIENT_PRIVILEGE,
            format!("must be a member of the owner of nnn index \"{name}\"'s candidate table"),
            "Ask the table's owner to run this.",
        );
    }
}

/// What the caller's transaction allows the search cache to do, read once per call with the
/// index's definition.
pub struct Situation {
    /// The cache entry key of this index now: the candidate table and its storage, when the
    /// biases were built and the change log's epoch ([`lookup`] writes it; a mismatch discards
    /// an entry).
    pub key: String,
    /// The caller's snapshot as text.
    pub snapshot: String,
    /// Whether the caller reads the table whole: no row-level security on it and table-level
    /// SELECT (otherwise only a full read under PostgreSQL's own checks is right).
    pub readable: bool,
    /// Whether an entry may be used at all: `readable` and the cache on.
    pub usable: bool,
    /// Whether a fresh read may become an entry: also no writes yet in this transaction, so
    /// an entry never holds uncommitted data.
    pub storable: bool,
}

impl Situation {
    /// A situation in which the cache is neither used nor filled.
    pub fn none() -> Self {
        Self { key: String::new(), snapshot: String::new(), readable: false, usable: false, storable: false }
    }
}
