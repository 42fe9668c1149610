//! Evaluating and tuning an index's ranker on labelled queries: recall and MRR of a grid of
//! rankers, and the best (family, k or β, α) picked on one part of the queries and reported
//! on the other.

use super::build::read_reference;
use super::definition::{check_owner, lookup, IndexDef};
use super::family::family_columns;
use crate::backend::backend;
use crate::guc;
use crate::postgres::errors::{fail, or_raise, spi_or_raise};
use crate::postgres::interrupts::StatementControl;
use crate::postgres::read::{check_memory, read_vectors};
use crate::postgres::relation::{answer_column, vector_column, Table};
use nnn_engine::evaluate::{self, best_cell, score_cells, split, Cell, Family, FamilyBias, Grid, Labelled, Metric};
use nnn_engine::Matrix;
use pgrx::datum::DatumWithOid;
use pgrx::prelude::*;
use pgrx::PgSqlErrorCode::*;
use std::collections::HashMap;

/// Labelled queries: a table with an embedding column and a column of right candidate ids.
pub struct LabelledQueries<'a> {
    /// The table.
    pub table: Table,
    /// Its embedding column.
    pub embedding: &'a str,
    /// Its column of right ids (one id or an array of ids per query).
    pub answer: &'a str,
}

/// The rankers to compare: NNN at `ks`, DN, log-sum-exp at `betas` (those of `families`),
/// each at every α of `alphas`, and plain search.
pub struct GridRequest {
    /// NNN's k values.
    pub ks: Vec<i64>,
    /// Bias weights.
    pub alphas: Vec<f64>,
    /// Families: nnn, dn, lse.
    pub families: Vec<String>,
    /// Log-sum-exp's β values.
    pub betas: Vec<f64>,
}

/// How `nnn.tune` picks and what it does with the pick.
pub struct TuneOptions<'a> {
    /// The metric to maximise: recall_1, recall_5, recall_10 or mrr.
    pub metric: &'a str,
    /// The share of queries tuned on; the rest report.
    pub tune_fraction: f64,
    /// Seeds the split.
    pub seed: i64,
    /// Whether to store the pick.
    pub apply: bool,
}

/// A row of `nnn.evaluate`: a cell's family, k, β, α, recall@1/5/10, MRR and the queries.
pub type EvaluateRow = (String, Option<i32>, Option<f32>, f32, f64, f64, f64, f64, i32);

/// A row of `nnn.tune`: which pick, its cell, the tuning metric, its test-part metrics, the
/// test queries and whether it was applied.
pub type TuneRow = (String, String, Option<i32>, Option<f32>, f32, f64, f64, f64, f64, f64, i32, bool);

/// An index's candidates and reference set with labelled queries whose answers are candidate
/// rows, read under the caller's snapshot and privileges.
struct Data {
    candidates: Matrix<'static>,
    reference: Matrix<'static>,
    labelled: Labelled<'static>,
}

/// Reads what an evaluation of `def` needs from `queries`.
fn read(def: &IndexDef, queries: &LabelledQueries) -> Data {
    let what = def.what();
    let table = &queries.table;
    let embedding = vector_column(table, queries.embedding);
    let answers = answer_column(table, queries.answer);
    let (refs, dim) = read_reference(def.reference(), &def.reference_embedding);
    let sql = format!("SELECT {}::bigint, {}::real[] FROM {}", def.id_column, def.embedding, def.candidates.sql);
    let cands = read_vectors::<i64>(&sql, &[], &what, Some(dim));
    let sql = format!("SELECT {answers}, {embedding}::real[] FROM {}", table.sql);
    let labelled = read_vectors::<Vec<Option<i64>>>(&sql, &[], &format!("labelled queries {}", table.sql), Some(dim));
    if labelled.keys.is_empty() {
        fail(
            ERRCODE_DATA_EXCEPTION,
            format!("labelled queries {} has no row with a non-NULL embedding and answer", table.sql),
            "Load queries with the id of their right candidate (e.g. held-out captions of the candidate images).",
        );
    }
    check_memory((cands.data.len() + refs.len() + labelled.data.len()) * 4 + cands.keys.len() * 64, &what);
    let row_of: HashMap<i64, u32> = cands.keys.iter().enumerate().map(|(r, &id)| (id, r as u32)).collect();
    let answers = labelled
        .keys
        .iter()
        .enumerate()
        .map(|(q, ids)| {
            if ids.is_empty() || ids.iter().any(Option::is_none) {
                fail(
                    ERRCODE_NULL_VALUE_NOT_ALLOWED,
                    format!("labelled query {} of {} has an empty answer or a NULL id in it", q + 1, table.sql),
                    "Each query needs the id of at least one right candidate.",
                );
            }
            ids.iter()
                .flatten()
                .map(|id| match row_of.get(id) {
                    Some(&r) => r,
                    None => fail(
                        ERRCODE_DATA_EXCEPTION,
                        format!("labelled query {} of {}: answer {id} is not a candidate of {what}", q + 1, table.sql),
                        "Answers are ids of the index's candidate rows that have an embedding (and that you can see).",
                    ),
                })
                .collect()
        })
        .collect();
    // read_vectors checked every value as it read them
    let matrix = |data, name| or_raise(Matrix::from_vec(data, dim, name), &what).assume_finite();
    let candidates = matrix(cands.data, "candidates");
    let labelled =
        or_raise(Labelled::new(matrix(labelled.data, "labelled queries"), answers, candidates.rows()), &what);
    Data { candidates, reference: matrix(refs, "reference set"), labelled }
}

/// Checks the k values of a grid: at least one, each from 1 to the reference rows.
fn checked_ks(ks: &[i64], reference_rows: usize) -> Vec<usize> {
    if ks.is_empty() {
        fail(ERRCODE_INVALID_PARAMETER_VALUE, "ks is empty", "Pass the NNN k values to try, e.g. '{8,32,128}'.");
    }
    ks.iter()
        .map(|&k| {
            if k < 1 || k as usize > reference_rows {
                fail(
                    ERRCODE_INVALID_PARAMETER_VALUE,
                    format!("k = {k} is out of range: the reference set has {reference_rows} rows"),
                    "Each k must be from 1 to the number of reference rows.",
                );
            }
            k as usize
        })
        .collect()
}

/// Checks the α values of a grid: at least one, all finite.
fn checked_alphas(alphas: &[f64]) -> Vec<f32> {
    let alphas: Vec<f32> = alphas.iter().map(|&a| a as f32).collect();
    if alphas.is_empty() || alphas.iter().any(|a| !a.is_finite()) {
        fail(
            ERRCODE_INVALID_PARAMETER_VALUE,
            "alphas must be a non-empty list of finite numbers",
            "Pass the bias weights to try, e.g. '{0.25,0.5,0.75,1}'.",
        );
    }
    alphas
}

/// Checks the β values of a grid: at least one, all positive and finite.
fn checked_betas(betas: &[f64]) -> Vec<f32> {
    let betas: Vec<f32> = betas.iter().map(|&b| b as f32).collect();
    if betas.is_empty() || betas.iter().any(|b| !(b.is_finite() && *b > 0.0)) {
        fail(
            ERRCODE_INVALID_PARAMETER_VALUE,
            "betas must be a non-empty list of positive numbers",
            "Pass the log-sum-exp temperatures to try, e.g. '{10,20,50}' (larger is closer to the top-1 similarity).",
        );
    }
    betas
}

/// The grid of `request`'s families (any of nnn, dn, lse) at its ks (NNN), betas
/// (log-sum-exp) and alphas, checked against the reference set's `reference_rows`.
fn grid(request: &GridRequest, reference_rows: usize) -> Grid {
    let GridRequest { ks, alphas, families, betas } = request;
    for f in families {
        if !["nnn", "dn", "lse"].contains(&f.as_str()) {
            fail(ERRCODE_INVALID_PARAMETER_VALUE, format!("unknown family \"{f}\""), "Use nnn, dn or lse.");
        }
    }
    let has = |f: &str| families.iter().any(|x| x == f);
    Grid {
        ks: if has("nnn") { checked_ks(ks, reference_rows) } else { Vec::new() },
        alphas: checked_alphas(alphas),
        betas: if has("lse") { checked_betas(betas) } else { Vec::new() },
        dn: has("dn"),
    }
}

/// The biases of `grid` and the cells of `grid.alphas` on `labelled`, on this call's engine backend.
fn biases(def: &IndexDef, data: &Data, grid: &Grid, control: &mut StatementControl) -> Vec<FamilyBias> {
    let flop = 2.0 * (data.candidates.rows() * data.reference.rows() * data.candidates.dim()) as f64;
    let b = backend(flop);
    or_raise(evaluate::biases(&*b, guc::threads(), &data.candidates, &data.reference, grid, control), &def.what())
}

/// Percent, as recall is usually reported.
fn pct(x: f64) -> f64 {
    100.0 * x
}

/// The row of a cell: family, k, β, α, recall@1/5/10 (percent), MRR.
type CellRow = (String, Option<i32>, Option<f32>, f32, f64, f64, f64, f64);

/// A cell's row.
fn cell_row(c: &Cell) -> CellRow {
    let (family, k, beta) = match c.family {
        Family::Plain => ("plain", None, None),
        Family::Nnn { k } => ("nnn", Some(k as i32), None),
        Family::Dn => ("dn", None, None),
        Family::Lse { beta } => ("lse", None, Some(beta)),
    };
    let [r1, r5, r10] = c.metrics.recall.map(pct);
    (family.to_string(), k, beta, c.alpha, r1, r5, r10, c.metrics.mrr)
}

/// The metric named `name`.
fn metric(name: &str) -> Metric {
    match name {
        "recall_1" => Metric::Recall(0),
        "recall_5" => Metric::Recall(1),
        "recall_10" => Metric::Recall(2),
        "mrr" => Metric::Mrr,
        _ => fail(
            ERRCODE_INVALID_PARAMETER_VALUE,
            format!("unknown metric \"{name}\""),
            "Use recall_1, recall_5, recall_10 or mrr.",
        ),
    }
}

/// The cell of `family` at `alpha` in `cells`.
fn find(cells: &[Cell], family: Family, alpha: f32) -> &Cell {
    let alpha = if family == Family::Plain { 0.0 } else { alpha };
    cells.iter().find(|c| c.family == family && c.alpha == alpha).expect("the cell was in the grid")
}

/// Recall@1/5/10 (percent) and MRR of plain search and of every cell of `request` on
/// `queries`, for index `name`'s candidates and reference set.
pub fn evaluate(name: &str, queries: &LabelledQueries, request: &GridRequest) -> Vec<EvaluateRow> {
    let def = lookup(Some(name));
    let data = read(&def, queries);
    let grid = grid(request, data.reference.rows());
    let mut control = StatementControl::new(format!("evaluation of {}", def.what()));
    let biases = biases(&def, &data, &grid, &mut control);
    let cells = or_raise(
        score_cells(guc::threads(), &data.candidates, &data.labelled, &biases, &grid.alphas, &mut control),
        &def.what(),
    );
    let n = data.labelled.len() as i32;
    cells.iter().map(cell_row).map(|(f, k, b, a, r1, r5, r10, m)| (f, k, b, a, r1, r5, r10, m, n)).collect()
}

/// Picks index `name`'s best ranker among plain search and the cells of `request` on a
/// tuning part of `queries` and reports it on the other part next to the index's current
/// ranker and plain search; with `options.apply`, stores the pick.
pub fn tune(name: &str, queries: &LabelledQueries, request: &GridRequest, options: &TuneOptions) -> Vec<TuneRow> {
    let def = lookup(Some(name));
    let TuneOptions { metric, tune_fraction, seed, apply } = *options;
    let by = self::metric(metric);
    if !(tune_fraction > 0.0 && tune_fraction < 1.0) {
        fail(
            ERRCODE_INVALID_PARAMETER_VALUE,
            format!("tune_fraction must be between 0 and 1 (exclusive), got {tune_fraction}"),
            "0.5 tunes on half of the queries and reports on the other half.",
        );
    }
    if apply {
        check_owner(name);
    }
    let data = read(&def, queries);
    let mut grid = grid(request, data.reference.rows());
    // the index's current ranker is a cell too
    let (now, now_alpha) = (def.family, def.alpha());
    match now {
        Family::Nnn { k } if k > data.reference.rows() => fail(
            ERRCODE_DATA_EXCEPTION,
            format!("{}'s k = {k} is larger than its {} reference rows", def.what(), data.reference.rows()),
            "Load more reference queries, or lower the index's k (nnn.tune with apply => true picks one).",
        ),
        Family::Nnn { k } if !grid.ks.contains(&k) => grid.ks.push(k),
        Family::Dn => grid.dn = true,
        Family::Lse { beta } if !grid.betas.contains(&beta) => grid.betas.push(beta),
        _ => {}
    }
    if !grid.alphas.contains(&now_alpha) {
        grid.alphas.push(now_alpha);
    }
    let (tuning, test) = split(&data.labelled, tune_fraction, seed as u64);
    if tuning.is_empty() || test.is_empty() {
        fail(
            ERRCODE_DATA_EXCEPTION,
            format!("{} labelled queries are too few to split at {tune_fraction}", data.labelled.len()),
            "Load more labelled queries, or move tune_fraction towards 0.5.",
        );
    }
    let what = def.what();
    let mut control = StatementControl::new(format!("tuning of {what}"));
    let biases = biases(&def, &data, &grid, &mut control);
    let mut cells = |rows: &[usize]| {
        let part = or_raise(data.labelled.subset(rows), &what);
        or_raise(score_cells(guc::threads(), &data.candidates, &part, &biases, &grid.alphas, &mut control), &what)
    };
    let (on_tuning, on_test) = (cells(&tuning), cells(&test));
    let pick = best_cell(&on_tuning, by, |_| true).expect("plain search is always a cell");
    let picks = [("tuned", pick.family, pick.alpha), ("current", now, now_alpha), ("plain", Family::Plain, 0.0)];
    // plain search is any family at α = 0: it keeps the current biases
    let family = if pick.family == Family::Plain { now } else { pick.family };
    let applied = apply && (family, pick.alpha) != (now, now_alpha);
    if applied {
        let (family_name, beta) = family_columns(family);
        let k = family.nnn_k().map_or(def.k, |k| k as i32);
        spi_or_raise(
            Spi::run_with_args(
                "UPDATE nnn.indexes SET family = $2, k = $3, beta = $4, alpha = $5 WHERE name = $1",
                &[
                    DatumWithOid::from(name),
                    DatumWithOid::from(family_name),
                    DatumWithOid::from(k),
                    DatumWithOid::from(beta),
                    DatumWithOid::from(pick.alpha),
                ],
            ),
            "updating nnn.indexes",
        );
        if family != now {
            spi_or_raise(
                Spi::run_with_args("SELECT nnn.refresh($1)", &[DatumWithOid::from(name)]),
                "rebuilding with the tuned bias",
            );
        }
    }
    let n = test.len() as i32;
    picks
        .iter()
        .map(|&(label, family, alpha)| {
            let (f, k, b, a, r1, r5, r10, m) = cell_row(find(&on_test, family, alpha));
            let tuned = by.of(&find(&on_tuning, family, alpha).metrics);
            let tuned = if matches!(by, Metric::Mrr) { tuned } else { pct(tuned) };
            (label.to_string(), f, k, b, a, tuned, r1, r5, r10, m, n, label == "tuned" && applied)
        })
        .collect()
}
