//! Evaluation on labelled queries: recall@1/5/10 and MRR of every cell of a grid of rankers
//! (plain, NNN at several k, DN, log-sum-exp at several β; each at several α) in one pass.
//!
//! The reference products are computed once: NNN's biases for every k are prefix means of
//! the sorted top `k_max` ([`ReferenceTopK::bias`]); the query–candidate products are
//! computed once per query and every cell re-ranks them, so a cell costs one pass over the
//! candidates' scores, not a search.

use crate::backend::Backend;
use crate::bias::{check_bias_inputs, reference_topk, ReferenceTopK};
use crate::control::Control;
use crate::error::{EngineError, Result};
use crate::matrix::Matrix;
use crate::run::run_polled;
use rayon::prelude::*;

/// The cut-offs of the reported recalls.
pub const RECALL_AT: [usize; 3] = [1, 5, 10];

/// A per-candidate normaliser; each ranks by `q·r − α·bias(r)`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Family {
    /// No bias: the plain inner product (reported once, α = 0).
    Plain,
    /// NNN: mean of the `k` largest reference similarities.
    Nnn { k: usize },
    /// Distribution Normalization: the mean of all reference similarities, i.e. the
    /// reference mean's product with r (α plays DN's λ; the candidate-side shift adds the
    /// same amount to every candidate of a query and does not change the ranking).
    Dn,
    /// Log-sum-exp: `(1/β)·log Σ_D exp(β·q·r)` (QB-Norm's inverted softmax, per candidate).
    Lse { beta: f32 },
}

impl Family {
    /// NNN's k, or None for the other families.
    pub fn nnn_k(self) -> Option<usize> {
        match self {
            Self::Nnn { k } => Some(k),
            _ => None,
        }
    }
}

/// The rankers to evaluate: NNN at every `ks`, log-sum-exp at every `betas` and DN when
/// `dn`, each at every `alphas`; plain search always.
#[derive(Debug, Clone, Default)]
pub struct Grid {
    /// NNN's k values (each ≤ the reference rows).
    pub ks: Vec<usize>,
    /// Bias weights.
    pub alphas: Vec<f32>,
    /// Log-sum-exp temperatures (each > 0).
    pub betas: Vec<f32>,
    /// Whether DN is in the grid.
    pub dn: bool,
}

/// Recall at [`RECALL_AT`] and mean reciprocal rank, as fractions of the queries.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Metrics {
    /// Share of queries with a right candidate among the first 1, 5, 10.
    pub recall: [f64; 3],
    /// Mean of 1 / rank of the best-ranked right candidate.
    pub mrr: f64,
}

/// One evaluated ranker.
#[derive(Debug, Clone, PartialEq)]
pub struct Cell {
    /// Which bias.
    pub family: Family,
    /// Its weight (0 for [`Family::Plain`]).
    pub alpha: f32,
    /// Its quality on the labelled queries.
    pub metrics: Metrics,
}

/// Queries with the candidate rows that are right answers (at least one each).
pub struct Labelled<'a> {
    queries: Matrix<'a>,
    answers: Vec<Vec<u32>>,
}

impl<'a> Labelled<'a> {
    /// Pairs each query row with its right candidate rows, checked against `candidates` rows.
    pub fn new(queries: Matrix<'a>, answers: Vec<Vec<u32>>, candidates: usize) -> Result<Self> {
        queries.check_not_empty("labelled queries")?;
        if answers.len() != queries.rows() {
            return Err(EngineError::Shape { what: "answers per labelled query", len: answers.len(), dim: 1 });
        }
        for (row, a) in answers.iter().enumerate() {
            if a.is_empty() {
                return Err(EngineError::Empty { what: "right answers of a labelled query" });
            }
            if let Some(&bad) = a.iter().find(|&&c| c as usize >= candidates) {
                return Err(EngineError::InvalidParameter {
                    name: "answer",
                    value: format!("candidate row {bad} of query {row}, but there are {candidates} candidates"),
                });
            }
        }
        queries.check_finite("labelled queries")?;
        Ok(Self { queries, answers })
    }

    /// Number of queries.
    pub fn len(&self) -> usize {
        self.queries.rows()
    }

    /// Whether there are no queries (never, once built).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The labelled queries at `rows`, in that order.
    pub fn subset(&self, rows: &[usize]) -> Result<Labelled<'static>> {
        let dim = self.queries.dim();
        let data = rows.iter().flat_map(|&r| self.queries.rows_slice(r, r + 1).iter().copied()).collect();
        Ok(Labelled {
            queries: Matrix::from_vec(data, dim, "labelled queries")?,
            answers: rows.iter().map(|&r| self.answers[r].clone()).collect(),
        })
    }
}

/// Every cell of `grid` on `labelled` (plain first, then NNN by k, DN, log-sum-exp by β; α in
/// the grid's order within each): [`biases`], then [`score_cells`].
pub fn evaluate(
    backend: &dyn Backend,
    threads: usize,
    candidates: &Matrix,
    reference: &Matrix,
    labelled: &Labelled,
    grid: &Grid,
    control: &mut dyn Control,
) -> Result<Vec<Cell>> {
    let biases = biases(backend, threads, candidates, reference, grid, control)?;
    score_cells(threads, candidates, labelled, &biases, &grid.alphas, control)
}

/// A family's bias of every candidate.
pub type FamilyBias = (Family, Vec<f32>);

/// Plain search and every bias of `biases` at every α of `alphas`, on `labelled`: the
/// query–candidate products once per query, then each cell re-ranks them.
pub fn score_cells(
    threads: usize,
    candidates: &Matrix,
    labelled: &Labelled,
    biases: &[FamilyBias],
    alphas: &[f32],
    control: &mut dyn Control,
) -> Result<Vec<Cell>> {
    labelled.queries.check_dim(candidates.dim(), "labelled queries vs candidates")?;
    if alphas.is_empty() {
        return Err(EngineError::Empty { what: "evaluation grid" });
    }
    if let Some(a) = alphas.iter().find(|a| !a.is_finite()) {
        return Err(EngineError::InvalidParameter { name: "alpha", value: a.to_string() });
    }
    let n = candidates.rows();
    if let Some(&bad) = labelled.answers.iter().flatten().find(|&&c| c as usize >= n) {
        return Err(EngineError::InvalidParameter { name: "answer", value: format!("candidate row {bad} of {n}") });
    }
    let mut cells: Vec<(Family, f32, Option<&[f32]>)> = vec![(Family::Plain, 0.0, None)];
    for (family, bias) in biases {
        cells.extend(alphas.iter().map(|&a| (*family, a, Some(bias.as_slice()))));
    }
    // ranks per query, summed afterwards in query order: the same metrics on every run
    let ranks: Vec<Vec<usize>> = run_polled(threads, labelled.len() as u64, control, |progress| {
        labelled
            .queries
            .as_slice()
            .par_chunks(labelled.queries.dim())
            .zip(&labelled.answers)
            .map(|(q, answers)| {
                if progress.cancelled() {
                    return Err(EngineError::Cancelled);
                }
                let products: Vec<f32> = (0..n).map(|r| dot(q, candidates.rows_slice(r, r + 1))).collect();
                let ranks = cells.iter().map(|&(_, a, b)| best_rank(&products, a, b, answers)).collect();
                progress.add(1);
                Ok(ranks)
            })
            .collect()
    })?;
    let mut sums = vec![Metrics::default(); cells.len()];
    for query in &ranks {
        for (m, &rank) in sums.iter_mut().zip(query) {
            add_rank(m, rank);
        }
    }
    let count = labelled.len() as f64;
    Ok(cells
        .iter()
        .zip(sums)
        .map(|(&(family, alpha, _), m)| Cell {
            family,
            alpha,
            metrics: Metrics { recall: m.recall.map(|r| r / count), mrr: m.mrr / count },
        })
        .collect())
}

/// The bias of every family of `grid` over all candidates (NNN's from one top-`k_max` pass).
/// Checks the grid: some family, β > 0, k within the reference rows (its α are not used).
pub fn biases(
    backend: &dyn Backend,
    threads: usize,
    candidates: &Matrix,
    reference: &Matrix,
    grid: &Grid,
    control: &mut dyn Control,
) -> Result<Vec<FamilyBias>> {
    if grid.ks.is_empty() && grid.betas.is_empty() && !grid.dn {
        return Err(EngineError::Empty { what: "evaluation grid" });
    }
    if let Some(b) = grid.betas.iter().find(|b| !(b.is_finite() && **b > 0.0)) {
        return Err(EngineError::InvalidParameter { name: "beta", value: b.to_string() });
    }
    let k_max = grid.ks.iter().copied().max().unwrap_or(1);
    check_bias_inputs(candidates, reference, k_max)?;
    if let Some(&k) = grid.ks.iter().find(|&&k| k == 0) {
        return Err(EngineError::KOutOfRange { k, max: reference.rows(), what: "reference rows" });
    }
    let mut out = Vec::new();
    if !grid.ks.is_empty() {
        let top: ReferenceTopK = reference_topk(backend, candidates, reference, k_max, control)?;
        for &k in &grid.ks {
            out.push((Family::Nnn { k }, top.bias(k)?));
        }
    }
    if grid.dn {
        out.push((Family::Dn, mean_products(candidates, reference)));
    }
    if !grid.betas.is_empty() {
        let lse = log_sum_exp(threads, candidates, reference, &grid.betas, control)?;
        out.extend(grid.betas.iter().zip(lse).map(|(&beta, b)| (Family::Lse { beta }, b)));
    }
    Ok(out)
}

/// The bias of every candidate under `family`, as an index stores it: NNN's mean of the top
/// k, DN's mean similarity, or log-sum-exp's at its β. [`Family::Plain`] has no bias.
pub fn family_bias(
    backend: &dyn Backend,
    threads: usize,
    candidates: &Matrix,
    reference: &Matrix,
    family: Family,
    control: &mut dyn Control,
) -> Result<Vec<f32>> {
    let grid = match family {
        Family::Plain => return Err(EngineError::InvalidParameter { name: "family", value: "plain".into() }),
        Family::Nnn { k } => Grid { ks: vec![k], ..Grid::default() },
        Family::Dn => Grid { dn: true, ..Grid::default() },
        Family::Lse { beta } => Grid { betas: vec![beta], ..Grid::default() },
    };
    let mut all = biases(backend, threads, candidates, reference, &grid, control)?;
    Ok(all.pop().map(|(_, b)| b).unwrap_or_default())
}

/// Each candidate's mean similarity to the reference rows, `(mean of D)·r`, in f64.
pub fn mean_products(candidates: &Matrix, reference: &Matrix) -> Vec<f32> {
    let dim = reference.dim();
    let mut mean = vec![0f64; dim];
    for row in reference.as_slice().chunks(dim) {
        mean.iter_mut().zip(row).for_each(|(m, &v)| *m += f64::from(v));
    }
    let rows = reference.rows() as f64;
    candidates
        .as_slice()
        .chunks(dim)
        .map(|r| (r.iter().zip(&mean).map(|(&v, m)| f64::from(v) * m).sum::<f64>() / rows) as f32)
        .collect()
}

/// For every β, each candidate's `(1/β)·log Σ_D exp(β·q·r)` (one result vector per β), from
/// one pass over the products, accumulated in f64 around the row's largest product.
pub fn log_sum_exp(
    threads: usize,
    candidates: &Matrix,
    reference: &Matrix,
    betas: &[f32],
    control: &mut dyn Control,
) -> Result<Vec<Vec<f32>>> {
    check_bias_inputs(candidates, reference, 1)?;
    let rows: Vec<Vec<f32>> = run_polled(threads, candidates.rows() as u64, control, |progress| {
        candidates
            .as_slice()
            .par_chunks(candidates.dim())
            .map(|c| {
                if progress.cancelled() {
                    return Err(EngineError::Cancelled);
                }
                let products: Vec<f32> = reference.as_slice().chunks(reference.dim()).map(|q| dot(q, c)).collect();
                let max = f64::from(products.iter().copied().fold(f32::NEG_INFINITY, f32::max));
                let lse = betas.iter().map(|&beta| {
                    let beta = f64::from(beta);
                    let sum: f64 = products.iter().map(|&s| (beta * (f64::from(s) - max)).exp()).sum();
                    (max + sum.ln() / beta) as f32
                });
                progress.add(1);
                Ok(lse.collect())
            })
            .collect()
    })?;
    Ok((0..betas.len()).map(|b| rows.iter().map(|r| r[b]).collect()).collect())
}

/// `a·b` in f32 with eight partial sums (vectorised by the compiler).
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let (a8, b8) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = a8.remainder().iter().zip(b8.remainder()).map(|(x, y)| x * y).sum();
    for (x, y) in a8.zip(b8) {
        for i in 0..8 {
            acc[i] += x[i] * y[i];
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// The best (smallest) 1-based rank among `answers` when candidates score `p − α·bias`, ties
/// to the lower row as in search.
fn best_rank(products: &[f32], alpha: f32, bias: Option<&[f32]>, answers: &[u32]) -> usize {
    let scores: Vec<f32> = match bias {
        Some(b) => products.iter().zip(b).map(|(&p, &b)| p - alpha * b).collect(),
        None => products.to_vec(),
    };
    let ahead = |r: usize, a: usize| scores[r] > scores[a] || (scores[r] == scores[a] && r < a);
    let a = answers.iter().map(|&a| a as usize).reduce(|x, y| if ahead(y, x) { y } else { x });
    let a = a.expect("labelled queries have answers");
    1 + (0..scores.len()).filter(|&r| ahead(r, a)).count()
}

/// What a tuning run maximises.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Metric {
    /// Recall at 1, 5 or 10 (index into [`RECALL_AT`]).
    Recall(usize),
    /// Mean reciprocal rank.
    Mrr,
}

impl Metric {
    /// The metric's value in `m`.
    pub fn of(self, m: &Metrics) -> f64 {
        match self {
            Self::Recall(i) => m.recall[i],
            Self::Mrr => m.mrr,
        }
    }
}

/// The cell of `cells` that `keep` accepts with the highest `metric`; the first such in grid
/// order on ties.
pub fn best_cell(cells: &[Cell], metric: Metric, keep: impl Fn(&Cell) -> bool) -> Option<&Cell> {
    cells
        .iter()
        .filter(|c| keep(c))
        .reduce(|best, c| if metric.of(&c.metrics) > metric.of(&best.metrics) { c } else { best })
}

/// Splits the query rows into a tuning part (about `fraction` of them) and a test part. Each
/// row's side depends only on `seed` and the row's own values and answers (a hash), so the
/// split is the same whatever order the rows are read in.
pub fn split(labelled: &Labelled, fraction: f64, seed: u64) -> (Vec<usize>, Vec<usize>) {
    let dim = labelled.queries.dim();
    (0..labelled.len()).partition(|&r| {
        let mut h = splitmix(seed);
        for v in labelled.queries.rows_slice(r, r + 1) {
            h = splitmix(h ^ u64::from(v.to_bits()));
        }
        for &a in &labelled.answers[r] {
            h = splitmix(h ^ u64::from(a) ^ (dim as u64) << 32);
        }
        ((h >> 11) as f64 / (1u64 << 53) as f64) < fraction
    })
}

/// One step of SplitMix64, a well-mixed 64-bit hash.
fn splitmix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn add_rank(m: &mut Metrics, rank: usize) {
    for (r, &cut) in m.recall.iter_mut().zip(&RECALL_AT) {
        *r += f64::from(u8::from(rank <= cut));
    }
    m.mrr += 1.0 / rank as f64;
}
