//! The registry of indexes: creating one (catalog row, biases, triggers, optional augmented
//! column and Faiss structure), dropping it, rebuilding its biases, storing its own α, and
//! giving given rows their bias (the triggers' work).

use super::ann;
use super::augmented;
use super::build::{build, BuildReport, Scope};
use super::definition::{check_owner, lookup, IndexDef, Situation};
use super::family::{family, family_columns};
use crate::postgres::citus;
use crate::postgres::errors::{self, fail, spi_or_raise};
use crate::postgres::relation::{
    candidate_table, ensure_bias_column, id_column, reads_in_place, resolve, vector_column,
};
use nnn_engine::evaluate::Family;
use pgrx::datum::DatumWithOid;
use pgrx::prelude::*;
use pgrx::spi::{quote_identifier, quote_literal};
use pgrx::PgLogLevel::NOTICE;
use pgrx::PgRelation;
use pgrx::PgSqlErrorCode::*;

/// What `nnn.create_index` is asked to make (its SQL arguments).
pub struct NewIndex<'a> {
    /// The index's name.
    pub name: &'a str,
    /// Candidate table.
    pub candidates: PgRelation,
    /// Its unique integer id column.
    pub id: &'a str,
    /// Its embedding column.
    pub embedding: &'a str,
    /// Reference table.
    pub reference: PgRelation,
    /// Its embedding column.
    pub reference_embedding: &'a str,
    /// NNN's k.
    pub k: i32,
    /// The bias column (added when missing).
    pub bias_column: &'a str,
    /// A Faiss factory string for an approximate-search structure, if any.
    pub ann: Option<&'a str>,
    /// The augmented column's pgvector type, if any.
    pub augmented: Option<&'a str>,
    /// The pgvector index method over it, if any.
    pub augmented_index: Option<&'a str>,
    /// That index's options.
    pub augmented_options: Option<&'a str>,
    /// The bias family's name.
    pub family: &'a str,
    /// Log-sum-exp's β.
    pub beta: Option<f64>,
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

/// Rebuilds every bias of an index and stamps the catalog.
fn rebuild(def: &IndexDef) -> BuildReport {
    let r = build(def.bias_column(), Scope::All);
    // The rebuild logged every row it rewrote; prune the log (caches rebuild on the new epoch).
    for sql in ["UPDATE nnn.indexes SET built_at = now() WHERE name = $1", "SELECT nnn.prune_changes($1)"] {
        spi_or_raise(Spi::run_with_args(sql, &[DatumWithOid::from(def.name.as_str())]), "updating nnn.indexes");
    }
    r
}

/// Registers `new`, builds its biases, installs its triggers (none on a Citus distributed
/// table: a NOTICE names the call that replaces them) and makes what else it asks for.
pub fn create(new: NewIndex) -> BuildReport {
    let NewIndex { name, id, embedding, reference_embedding, k, bias_column, .. } = new;
    if name.is_empty() || name.len() > 40 {
        fail(ERRCODE_INVALID_NAME, format!("invalid nnn index name \"{name}\""), "Use a name of 1 to 40 characters.");
    }
    // one registration of a name at a time: a second waits for the first to commit and then
    // sees its row below (each statement here takes a new snapshot) instead of failing on
    // the catalog's primary key
    spi_or_raise(
        Spi::run_with_args(
            "SELECT pg_catalog.pg_advisory_xact_lock(pg_catalog.hashtext('nnn.create_index'), pg_catalog.hashtext($1))",
            &[DatumWithOid::from(name)],
        ),
        "waiting for another registration of the name",
    );
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
    let chosen = family(new.family, k, new.beta.map(|b| b as f32));
    let cand = candidate_table(new.candidates);
    let refs = resolve(new.reference);
    let quoted_embedding = vector_column(&cand, embedding);
    let def = IndexDef {
        name: name.to_string(),
        id_column: id_column(&cand, id),
        embedding_in_place: reads_in_place(&cand, &quoted_embedding),
        embedding: quoted_embedding,
        reference_embedding: vector_column(&refs, reference_embedding),
        bias_column: ensure_bias_column(&cand, bias_column),
        candidates: cand,
        reference_set: Some(refs),
        k,
        family: chosen,
        now: Situation::none(),
        ann: None,
        augmented: None,
        read_augmented: false,
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
                DatumWithOid::from(def.reference().oid),
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
    if new.augmented.is_some() || new.augmented_index.is_some() {
        let made = augmented::set(&def, new.augmented, "nnn_augmented", new.augmented_index, new.augmented_options);
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
    if let Some(factory) = new.ann {
        ann::build(&def, factory);
    }
    report
}

/// Unregisters index `name` and removes its triggers; its bias (and augmented) column goes
/// too when `drop_bias_column` is true.
pub fn drop(name: &str, drop_bias_column: bool) {
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
}

/// Recomputes every bias of index `def` and retrains its Faiss structure, if it has one.
pub fn refresh(def: &IndexDef) -> BuildReport {
    let report = rebuild(def);
    if let Some(ann) = &def.ann {
        ann::build(def, &ann.factory);
    }
    report
}

/// Stores `alpha` as index `name`'s own bias weight (None: back to `nnn.alpha`); returns the
/// α its searches now use.
pub fn set_alpha(name: &str, alpha: Option<f64>) -> f32 {
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

/// Recomputes the biases of the rows of index `name` whose id is in `ids`; rows whose
/// embedding is NULL get a NULL bias. Returns the rows given a bias.
pub fn refresh_rows(name: &str, ids: Vec<i64>) -> i64 {
    let def = lookup(Some(name));
    build(def.bias_column(), Scope::Ids { id_column: &def.id_column, ids }).rows
}
