//! The registry of searchable sets: `nnn.create_index`, `nnn.drop_index`, `nnn.refresh`,
//! and `nnn.refresh_rows`, which the candidate-table triggers call.

use super::augmented;
use super::bias::{build, family, family_columns, BuildReport, Scope};
use crate::guc;
use crate::postgres::cache::Situation;
use crate::postgres::citus;
use crate::postgres::errors::{self, fail, spi_or_raise};
use crate::postgres::relation::{ensure_bias_column, id_column, resolve, vector_column, Table};
use nnn_engine::evaluate::Family;
use pgrx::datum::DatumWithOid;
use pgrx::prelude::*;
use pgrx::spi::{quote_identifier, quote_literal};
use pgrx::PgLogLevel::NOTICE;
use pgrx::PgRelation;
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
    /// Reference table.
    pub reference: Table,
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
}

/// An index's row of `nnn.ann`.
#[cfg_attr(not(feature = "faiss"), allow(dead_code))] // searched through with the faiss feature only
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
        let rows = client.select(
            "SELECT i.name, i.candidates::oid, i.candidates::regclass::text, i.id_column::text,
                    i.embedding_column::text, i.reference::oid, i.reference::regclass::text,
                    i.reference_embedding::text, i.bias_column::text, i.k,
                    pg_catalog.pg_current_snapshot()::text,
                    pg_catalog.pg_current_xact_id_if_assigned() IS NULL,
                    c.relrowsecurity IS NOT FALSE OR NOT pg_catalog.has_table_privilege(c.oid, 'SELECT'),
                    format('%s|%s|%s|%s', c.oid, c.relfilenode, i.built_at, i.log_epoch),
                    a.factory, a.snapshot::text, a.build_xid::text, format('%s|%s|%s', c.oid, c.relfilenode, a.xmin),
                    pg_catalog.to_jsonb(i) ->> 'augmented_column', (pg_catalog.to_jsonb(i) ->> 'alpha')::real,
                    coalesce(pg_catalog.to_jsonb(i) ->> 'family', 'nnn'), (pg_catalog.to_jsonb(i) ->> 'beta')::real,
                    EXISTS (SELECT 1 FROM pg_catalog.pg_extension WHERE extname = 'citus')
             FROM nnn.indexes i LEFT JOIN pg_catalog.pg_class c ON c.oid = i.candidates
                  LEFT JOIN nnn.ann a ON a.index_name = i.name
             WHERE $1::text IS NULL OR i.name = $1 ORDER BY i.name LIMIT 2",
            None,
            &[DatumWithOid::from(name)],
        );
        let mut out = Vec::new();
        for row in spi_or_raise(rows, "reading nnn.indexes") {
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
                reference: Table { oid: oid(6), sql: text(7) },
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

/// The index's triggers on its candidate table: (quoted name, timing and event, transition tables).
fn triggers(name: &str) -> [(String, &'static str, &'static str); 4] {
    let q = |event: &str| quote_identifier(format!("nnn_{name}_{event}"));
    [
        (q("insert"), "AFTER INSERT", "REFERENCING NEW TABLE AS nnn_new"),
        (q("update"), "AFTER UPDATE", "REFERENCING OLD TABLE AS nnn_old NEW TABLE AS nnn_new"),
        (q("delete"), "AFTER DELETE", "REFERENCING OLD TABLE AS nnn_old"),
        (q("truncate"), "AFTER TRUNCATE", ""),
    ]
}

fn report_row(r: BuildReport, k: i32) -> TableIterator<'static, (i64, i64, i64, i32, f64)> {
    TableIterator::once((r.rows, r.skipped, r.reference_rows, k, r.seconds))
}

/// Computes and stores the biases of index `def`'s rows in `scope`.
fn build_rows(def: &IndexDef, scope: Scope) -> BuildReport {
    build(
        &def.candidates,
        &def.embedding,
        &def.reference,
        &def.reference_embedding,
        &def.bias_column,
        def.family,
        scope,
    )
}

/// Rebuilds every bias of an index and stamps the catalog.
fn rebuild(def: &IndexDef) -> BuildReport {
    let r = build_rows(def, Scope::All);
    // The rebuild logged every row it rewrote; prune the log (caches rebuild on the new epoch).
    for sql in ["UPDATE nnn.indexes SET built_at = now() WHERE name = $1", "SELECT nnn.prune_changes($1)"] {
        spi_or_raise(Spi::run_with_args(sql, &[DatumWithOid::from(def.name.as_str())]), "updating nnn.indexes");
    }
    r
}

#[pg_schema]
mod nnn {
    use super::*;

    /// Registers `name`: candidates with a unique integer `id` and an `embedding`, biased
    /// against `reference`'s `reference_embedding` with `k` neighbours. Builds the bias column
    /// and installs triggers that give inserted and updated rows their bias; with `ann`, a
    /// Faiss factory string, also builds a Faiss structure for approximate search; with
    /// `augmented`, the augmented pgvector column (see `nnn.set_augmented`). `family` picks
    /// the bias: `nnn` (mean of the k largest reference similarities), `dn` (the mean of all;
    /// Distribution Normalization) or `lse` (log-sum-exp at `beta`).
    #[pg_extern(volatile, parallel_unsafe, name = "create_index")]
    #[allow(clippy::too_many_arguments)]
    fn create_index_augmented(
        name: &str,
        candidates: PgRelation,
        id: &str,
        embedding: &str,
        reference: PgRelation,
        reference_embedding: &str,
        k: default!(i32, 128),
        bias_column: default!(&str, "'nnn_bias'"),
        ann: default!(Option<&str>, "NULL"),
        augmented: default!(Option<&str>, "NULL"),
        augmented_index: default!(Option<&str>, "NULL"),
        augmented_options: default!(Option<&str>, "NULL"),
        family: default!(&str, "'nnn'"),
        beta: default!(Option<f64>, "NULL"),
    ) -> TableIterator<
        'static,
        (name!(rows, i64), name!(skipped, i64), name!(reference_rows, i64), name!(k, i32), name!(seconds, f64)),
    > {
        if name.is_empty() || name.len() > 40 {
            fail(
                ERRCODE_INVALID_NAME,
                format!("invalid nnn index name \"{name}\""),
                "Use a name of 1 to 40 characters.",
            );
        }
        let exists = spi_or_raise(
            Spi::get_one_with_args::<bool>(
                "SELECT EXISTS (SELECT 1 FROM nnn.indexes WHERE name = $1)",
                &[DatumWithOid::from(name)],
            ),
            "reading nnn.indexes",
        );
        if exists == Some(true) {
            fail(
                ERRCODE_DUPLICATE_OBJECT,
                format!("nnn index \"{name}\" already exists"),
                "Drop it with nnn.drop_index, or use nnn.refresh to rebuild it.",
            );
        }
        let chosen = super::family(family, k, beta.map(|b| b as f32));
        let cand = resolve(candidates);
        let refs = resolve(reference);
        let def = IndexDef {
            name: name.to_string(),
            id_column: id_column(&cand, id),
            embedding: vector_column(&cand, embedding),
            reference_embedding: vector_column(&refs, reference_embedding),
            bias_column: ensure_bias_column(&cand, bias_column),
            candidates: cand,
            reference: refs,
            k,
            family: chosen,
            now: Situation::none(),
            ann: None,
            augmented: None,
            stored_alpha: None,
        };
        // the family's columns only when it is not NNN: a 0.1.0 catalog (before ALTER
        // EXTENSION nnn UPDATE) has none, and NNN is their default
        let (family_name, beta) = family_columns(chosen);
        let (columns, values) = match chosen {
            Family::Nnn { .. } => ("", ""),
            _ => (", family, beta", ", $9, $10"),
        };
        spi_or_raise(
            Spi::run_with_args(
                &format!(
                    "INSERT INTO nnn.indexes (name, candidates, id_column, embedding_column, reference, reference_embedding, bias_column, k{columns})
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8{values})"
                ),
                &[
                    DatumWithOid::from(name),
                    DatumWithOid::from(def.candidates.oid),
                    DatumWithOid::from(id),
                    DatumWithOid::from(embedding),
                    DatumWithOid::from(def.reference.oid),
                    DatumWithOid::from(reference_embedding),
                    DatumWithOid::from(bias_column),
                    DatumWithOid::from(k),
                    DatumWithOid::from(family_name),
                    DatumWithOid::from(beta),
                ][..if columns.is_empty() { 8 } else { 10 }],
            ),
            "registering the index",
        );
        let mut report = rebuild(&def);
        if augmented.is_some() || augmented_index.is_some() {
            let made = augmented::set(&def, augmented, "nnn_augmented", augmented_index, augmented_options);
            report.seconds += made.seconds;
        }
        let arg = quote_literal(name);
        let t = &def.candidates.sql;
        let distributed = citus::distribution_column(&def.candidates).is_some();
        if distributed {
            errors::report(
                NOTICE,
                format!("nnn: {t} is distributed by Citus, which runs no triggers on it: after writes, give new and changed rows their bias with nnn.refresh_rows('{name}', ids) (or nnn.refresh('{name}'))"),
            );
        }
        for (trigger, event, transition) in triggers(name).into_iter().filter(|_| !distributed) {
            spi_or_raise(
                Spi::run(&format!(
                    "CREATE TRIGGER {trigger} {event} ON {t} {transition}
                       FOR EACH STATEMENT EXECUTE FUNCTION nnn.candidates_changed({arg})"
                )),
                "creating the triggers",
            );
        }
        if let Some(factory) = ann {
            crate::api::ann::build(&def, factory);
        }
        report_row(report, k)
    }

    /// 0.1.0's nine-argument `nnn.create_index`, kept as a C entry point without SQL so that a
    /// database still on the 0.1.0 scripts (between installing this library and `ALTER
    /// EXTENSION nnn UPDATE`) can go on creating indexes.
    #[pg_extern(sql = false)]
    #[allow(clippy::too_many_arguments)]
    fn create_index(
        name: &str,
        candidates: PgRelation,
        id: &str,
        embedding: &str,
        reference: PgRelation,
        reference_embedding: &str,
        k: i32,
        bias_column: &str,
        ann: Option<&str>,
    ) -> TableIterator<
        'static,
        (name!(rows, i64), name!(skipped, i64), name!(reference_rows, i64), name!(k, i32), name!(seconds, f64)),
    > {
        create_index_augmented(
            name,
            candidates,
            id,
            embedding,
            reference,
            reference_embedding,
            k,
            bias_column,
            ann,
            None,
            None,
            None,
            "nnn",
            None,
        )
    }

    /// Unregisters `name` and removes its triggers; the bias column stays unless
    /// `drop_bias_column` is true.
    #[pg_extern(volatile, parallel_unsafe)]
    fn drop_index(name: &str, drop_bias_column: default!(bool, false)) -> bool {
        let def = lookup(Some(name));
        let t = &def.candidates.sql;
        for (trigger, _, _) in triggers(name) {
            spi_or_raise(Spi::run(&format!("DROP TRIGGER IF EXISTS {trigger} ON {t}")), "dropping the triggers");
        }
        if drop_bias_column {
            // the augmented column is generated from the bias: it goes first
            let columns: Vec<_> =
                def.augmented.iter().chain([&def.bias_column]).map(|c| format!("DROP COLUMN IF EXISTS {c}")).collect();
            spi_or_raise(Spi::run(&format!("ALTER TABLE {t} {}", columns.join(", "))), "dropping the bias column");
        }
        for sql in ["SELECT nnn.prune_changes($1)", "DELETE FROM nnn.indexes WHERE name = $1"] {
            spi_or_raise(Spi::run_with_args(sql, &[DatumWithOid::from(name)]), "unregistering the index");
        }
        true
    }

    /// Recomputes every bias of index `name` (after the reference set changed) and retrains
    /// its Faiss structure, if it has one.
    #[pg_extern(volatile, parallel_unsafe)]
    fn refresh(
        name: &str,
    ) -> TableIterator<
        'static,
        (name!(rows, i64), name!(skipped, i64), name!(reference_rows, i64), name!(k, i32), name!(seconds, f64)),
    > {
        let def = lookup(Some(name));
        let k = def.k;
        let report = rebuild(&def);
        if let Some(ann) = &def.ann {
            crate::api::ann::build(&def, &ann.factory);
        }
        report_row(report, k)
    }

    /// Stores `alpha` as index `name`'s own bias weight, used by its searches unless
    /// `nnn.alpha` is set (NULL: back to `nnn.alpha`). Returns the α its searches now use.
    #[pg_extern(volatile, parallel_unsafe)]
    fn set_alpha(name: &str, alpha: Option<f64>) -> f32 {
        lookup(Some(name));
        check_owner(name);
        if alpha.is_some_and(|a| !(a.is_finite() && (-1000.0..=1000.0).contains(&a))) {
            fail(
                ERRCODE_INVALID_PARAMETER_VALUE,
                format!("alpha must be a finite number from -1000 to 1000, got {}", alpha.unwrap_or_default()),
                "The paper's default is 0.75; nnn.tune finds the best for your data.",
            );
        }
        spi_or_raise(
            Spi::run_with_args(
                "UPDATE nnn.indexes SET alpha = $2 WHERE name = $1",
                &[DatumWithOid::from(name), DatumWithOid::from(alpha.map(|a| a as f32))],
            ),
            "updating nnn.indexes",
        );
        lookup(Some(name)).alpha()
    }

    /// The α searches of index `name` rank with: `nnn.alpha` when set (SET, ALTER ROLE or
    /// DATABASE … SET, the configuration file), else the index's own (`nnn.set_alpha`,
    /// `nnn.tune`), else `nnn.alpha`'s default. For `nnn.query_vector(q, nnn.index_alpha('…'))`.
    #[pg_extern(stable, parallel_restricted)]
    fn index_alpha(name: &str) -> f32 {
        lookup(Some(name)).alpha()
    }

    /// Recomputes the biases of the rows of index `name` whose id is in `ids`; rows whose
    /// embedding is NULL get a NULL bias. Called by the index's triggers.
    #[pg_extern(volatile, parallel_unsafe)]
    fn refresh_rows(name: &str, ids: Vec<i64>) -> i64 {
        let def = lookup(Some(name));
        spi_or_raise(
            Spi::run_with_args(
                &format!(
                    "UPDATE {t} SET {b} = NULL WHERE {id} = ANY($1) AND {e} IS NULL AND {b} IS NOT NULL",
                    t = def.candidates.sql,
                    b = def.bias_column,
                    id = def.id_column,
                    e = def.embedding
                ),
                &[DatumWithOid::from(ids.clone())],
            ),
            "clearing biases of NULL embeddings",
        );
        build_rows(&def, Scope::Ids { id_column: &def.id_column, ids }).rows
    }
}
