//! The evaluation grid against the reference package's golden recalls, naive f64 rankings of
//! every family, separate bias builds, and its bad-input errors.

mod common;
use common::*;
use nnn_engine::evaluate::{
    best_cell, evaluate, family_bias, log_sum_exp, mean_products, split, Cell, Family, Grid, Labelled, Metric,
};
use nnn_engine::*;

const DIM: usize = 384;

struct Small {
    cand: Vec<f32>,
    refs: Vec<f32>,
    queries: Vec<f32>,
    gt: Vec<i32>,
}

fn small() -> Small {
    Small {
        cand: read_f16("candidates.f16"),
        refs: read_f16("reference.f16"),
        queries: read_f16("queries.f16"),
        gt: read_i32("queries_gt.i32"),
    }
}

fn labelled<'a>(queries: &'a [f32], gt: &[i32], candidates: usize) -> Labelled<'a> {
    let answers = gt.iter().map(|&g| vec![g as u32]).collect();
    Labelled::new(Matrix::from_slice(queries, DIM, "q").unwrap(), answers, candidates).unwrap()
}

/// Recall@1/5/10 (fractions) and MRR from naive f64 scores of every query, ties to the lower row.
fn naive_metrics(queries: &[f32], cand: &[f32], offset: Option<&[f64]>, gt: &[i32]) -> ([f64; 3], f64) {
    let (mut recall, mut mrr) = ([0.0; 3], 0.0);
    for (q, &g) in queries.chunks_exact(DIM).zip(gt) {
        let s = naive_scores(q, cand, DIM, offset);
        let g = g as usize;
        let rank = 1 + (0..s.len()).filter(|&r| s[r] > s[g] || (s[r] == s[g] && r < g)).count();
        for (x, cut) in recall.iter_mut().zip([1, 5, 10]) {
            *x += f64::from(u8::from(rank <= cut));
        }
        mrr += 1.0 / rank as f64;
    }
    let n = gt.len() as f64;
    (recall.map(|x| x / n), mrr / n)
}

/// Equal up to one query whose rank f32 and f64 arithmetic may order differently.
fn assert_close(cell: &Cell, naive: ([f64; 3], f64), queries: usize) {
    let one = 1.0 / queries as f64 + 1e-12;
    for i in 0..3 {
        assert!((cell.metrics.recall[i] - naive.0[i]).abs() <= one, "{cell:?}: recall {i} vs naive {:?}", naive.0);
    }
    assert!((cell.metrics.mrr - naive.1).abs() <= one, "{cell:?}: mrr vs naive {}", naive.1);
}

fn find(cells: &[Cell], family: Family, alpha: f32) -> &Cell {
    cells.iter().find(|c| c.family == family && c.alpha == alpha).expect("cell in the grid")
}

#[test]
fn grid_on_wordnet_small_equals_golden_and_naive_rankings() {
    let d = small();
    let b = CpuBackend::new(2).unwrap();
    let (c, r) = (Matrix::from_slice(&d.cand, DIM, "c").unwrap(), Matrix::from_slice(&d.refs, DIM, "r").unwrap());
    let l = labelled(&d.queries, &d.gt, c.rows());
    let grid = Grid { ks: vec![16, 128], alphas: vec![0.5, 0.75], betas: vec![20.0], dn: true };
    let cells = evaluate(&b, 2, &c, &r, &l, &grid, &mut Unwatched).unwrap();
    assert_eq!(cells.len(), 1 + 4 * 2);

    // the reference package's recalls (golden.json, percent with 2 decimals)
    let pct = |c: &Cell| c.metrics.recall.map(|x| (x * 10000.0).round() / 100.0);
    assert_eq!(pct(&cells[0]), [42.58, 54.03, 58.47]);
    assert_eq!(pct(find(&cells, Family::Nnn { k: 128 }, 0.75)), [42.58, 55.3, 61.44]);

    // every family against naive f64 biases and scores
    let n = d.gt.len();
    assert_close(&cells[0], naive_metrics(&d.queries, &d.cand, None, &d.gt), n);
    for k in [16, 128] {
        let bias = naive_bias(&d.cand, &d.refs, DIM, k);
        for alpha in [0.5f32, 0.75] {
            let off: Vec<f64> = bias.iter().map(|b| f64::from(alpha) * b).collect();
            assert_close(
                find(&cells, Family::Nnn { k }, alpha),
                naive_metrics(&d.queries, &d.cand, Some(&off), &d.gt),
                n,
            );
        }
    }
    let lse: Vec<f64> = d
        .cand
        .chunks_exact(DIM)
        .map(|c| {
            let s = naive_scores(c, &d.refs, DIM, None);
            s.iter().map(|v| (20.0 * v).exp()).sum::<f64>().ln() / 20.0
        })
        .collect();
    let off: Vec<f64> = lse.iter().map(|b| 0.5 * b).collect();
    assert_close(
        find(&cells, Family::Lse { beta: 20.0 }, 0.5),
        naive_metrics(&d.queries, &d.cand, Some(&off), &d.gt),
        n,
    );

    // DN: the reference package's DNRanker shifts both sides by λ times their means and ranks
    // by the plain product (α = 0); candidates as their own dev set, the reference as the
    // query side's
    let mean = |m: &[f32]| -> Vec<f64> {
        let rows = m.len() / DIM;
        (0..DIM).map(|j| (0..rows).map(|i| f64::from(m[i * DIM + j])).sum::<f64>() / rows as f64).collect()
    };
    let shift = |m: &[f32], mu: &[f64], lambda: f64| -> Vec<f32> {
        m.chunks_exact(DIM)
            .flat_map(|r| r.iter().zip(mu).map(move |(v, u)| (f64::from(*v) - lambda * u) as f32))
            .collect()
    };
    for lambda in [0.5f32, 0.75] {
        let (sc, sq) =
            (shift(&d.cand, &mean(&d.cand), lambda.into()), shift(&d.queries, &mean(&d.refs), lambda.into()));
        assert_close(find(&cells, Family::Dn, lambda), naive_metrics(&sq, &sc, None, &d.gt), n);
    }
}

#[test]
fn log_sum_exp_equals_naive_f64() {
    let mut rng = Rng::new(11);
    let dim = 24;
    let (c, r) = (rng.matrix(70, dim, false), rng.matrix(300, dim, false));
    let betas = [0.5f32, 4.0, 30.0];
    let got = log_sum_exp(
        2,
        &Matrix::from_slice(&c, dim, "c").unwrap(),
        &Matrix::from_slice(&r, dim, "r").unwrap(),
        &betas,
        &mut Unwatched,
    )
    .unwrap();
    for (bi, &beta) in betas.iter().enumerate() {
        for (ci, row) in c.chunks_exact(dim).enumerate() {
            let s = naive_scores(row, &r, dim, None);
            let want = s.iter().map(|v| (f64::from(beta) * v).exp()).sum::<f64>().ln() / f64::from(beta);
            assert!((f64::from(got[bi][ci]) - want).abs() <= 1e-5 * want.abs().max(1.0), "beta {beta} row {ci}");
        }
    }
}

#[test]
fn each_family_builds_the_bias_the_grid_ranks_with() {
    let d = small();
    let b = CpuBackend::new(2).unwrap();
    let (c, r) = (Matrix::from_slice(&d.cand, DIM, "c").unwrap(), Matrix::from_slice(&d.refs, DIM, "r").unwrap());
    let nnn = family_bias(&b, 2, &c, &r, Family::Nnn { k: 32 }, &mut Unwatched).unwrap();
    assert_eq!(nnn, reference_topk(&b, &c, &r, 32, &mut Unwatched).unwrap().bias(32).unwrap());
    assert_eq!(family_bias(&b, 2, &c, &r, Family::Dn, &mut Unwatched).unwrap(), mean_products(&c, &r));
    let lse = family_bias(&b, 2, &c, &r, Family::Lse { beta: 20.0 }, &mut Unwatched).unwrap();
    assert_eq!(lse, log_sum_exp(2, &c, &r, &[20.0], &mut Unwatched).unwrap()[0]);
    // DN's bias is the mean of all similarities: NNN with k = every reference row
    let all = reference_topk(&b, &c, &r, d.refs.len() / DIM, &mut Unwatched).unwrap().bias(d.refs.len() / DIM).unwrap();
    let dn = mean_products(&c, &r);
    assert!(all.iter().zip(&dn).all(|(x, y)| (x - y).abs() <= 1e-5));
}

#[test]
fn prefix_means_equal_separate_builds() {
    let d = small();
    let b = CpuBackend::new(2).unwrap();
    let (c, r) = (Matrix::from_slice(&d.cand, DIM, "c").unwrap(), Matrix::from_slice(&d.refs, DIM, "r").unwrap());
    let once = reference_topk(&b, &c, &r, 128, &mut Unwatched).unwrap();
    for k in [1, 16, 64, 127] {
        let alone = reference_topk(&b, &c, &r, k, &mut Unwatched).unwrap().bias(k).unwrap();
        for (x, y) in once.bias(k).unwrap().iter().zip(alone) {
            assert!((x - y).abs() <= 1e-6, "k = {k}: {x} vs {y}");
        }
    }
}

#[test]
fn the_split_depends_on_the_seed_and_the_rows_only() {
    let d = small();
    let l = labelled(&d.queries, &d.gt, 500);
    let (tune, test) = split(&l, 0.5, 7);
    assert_eq!(split(&l, 0.5, 7), (tune.clone(), test.clone()));
    assert_ne!(split(&l, 0.5, 8).0, tune);
    assert_eq!(tune.len() + test.len(), l.len());
    assert!((150..=322).contains(&tune.len()), "{} of {}", tune.len(), l.len());
    // reversed rows: the same queries land on the same side
    let rev: Vec<usize> = (0..l.len()).rev().collect();
    let (rtune, _) = split(&l.subset(&rev).unwrap(), 0.5, 7);
    let mut back: Vec<usize> = rtune.iter().map(|&i| rev[i]).collect();
    back.sort_unstable();
    assert_eq!(back, tune);
    assert_eq!(split(&l, 0.0, 7).0.len(), 0);
    assert_eq!(split(&l, 1.0, 7).1.len(), 0);
}

#[test]
fn best_cell_takes_the_first_of_equals() {
    let d = small();
    let b = CpuBackend::new(2).unwrap();
    let (c, r) = (Matrix::from_slice(&d.cand, DIM, "c").unwrap(), Matrix::from_slice(&d.refs, DIM, "r").unwrap());
    let l = labelled(&d.queries, &d.gt, c.rows());
    let grid = Grid { ks: vec![128], alphas: vec![0.0, 0.75], ..Grid::default() };
    let cells = evaluate(&b, 2, &c, &r, &l, &grid, &mut Unwatched).unwrap();
    // plain and NNN at α = 0 tie on every metric: the first (plain) wins
    assert_eq!(cells[0].metrics, cells[1].metrics);
    assert_eq!(best_cell(&cells, Metric::Recall(0), |_| true).unwrap().family, Family::Plain);
    let best = best_cell(&cells, Metric::Recall(2), |c| matches!(c.family, Family::Nnn { .. })).unwrap();
    assert_eq!((best.family, best.alpha), (Family::Nnn { k: 128 }, 0.75));
}

#[test]
fn bad_grids_and_labels_are_errors() {
    let b = CpuBackend::new(1).unwrap();
    let data = [1.0f32, 0.0, 0.0, 1.0, 0.5, 0.5];
    let c = Matrix::from_slice(&data, 2, "c").unwrap();
    let q = || Matrix::from_slice(&data[..2], 2, "q").unwrap();
    let l = Labelled::new(q(), vec![vec![1]], 3).unwrap();
    let run = |g: Grid| evaluate(&b, 1, &c, &c, &l, &g, &mut Unwatched);
    let grid = |ks: Vec<usize>, alphas: Vec<f32>, betas: Vec<f32>| Grid { ks, alphas, betas, dn: false };
    assert_eq!(run(grid(vec![], vec![0.5], vec![])).unwrap_err(), EngineError::Empty { what: "evaluation grid" });
    assert_eq!(run(grid(vec![1], vec![], vec![])).unwrap_err(), EngineError::Empty { what: "evaluation grid" });
    assert!(family_bias(&b, 1, &c, &c, Family::Plain, &mut Unwatched).is_err());
    assert!(matches!(run(grid(vec![4], vec![0.5], vec![])), Err(EngineError::KOutOfRange { k: 4, max: 3, .. })));
    assert!(matches!(run(grid(vec![0, 1], vec![0.5], vec![])), Err(EngineError::KOutOfRange { k: 0, .. })));
    assert!(matches!(
        run(grid(vec![1], vec![f32::NAN], vec![])),
        Err(EngineError::InvalidParameter { name: "alpha", .. })
    ));
    assert!(matches!(run(grid(vec![], vec![0.5], vec![0.0])), Err(EngineError::InvalidParameter { name: "beta", .. })));
    assert!(run(grid(vec![3], vec![0.5], vec![1.0])).is_ok());
    assert!(matches!(Labelled::new(q(), vec![vec![3]], 3), Err(EngineError::InvalidParameter { name: "answer", .. })));
    assert!(matches!(Labelled::new(q(), vec![vec![]], 3), Err(EngineError::Empty { .. })));
    let nan = [f32::NAN, 0.0];
    assert!(matches!(
        Labelled::new(Matrix::from_slice(&nan, 2, "q").unwrap(), vec![vec![0]], 3),
        Err(EngineError::NonFinite { .. })
    ));
    assert!(matches!(
        Labelled::new(Matrix::from_slice(&[], 2, "q").unwrap(), vec![], 3),
        Err(EngineError::Empty { what: "labelled queries" })
    ));
}

#[test]
fn several_right_answers_count_the_best_ranked() {
    let b = CpuBackend::new(1).unwrap();
    // query [1, 0]: candidate 0 scores 1, candidate 1 scores 0.5, candidate 2 scores 0
    let data = [1.0f32, 0.0, 0.5, 0.5, 0.0, 1.0];
    let c = Matrix::from_slice(&data, 2, "c").unwrap();
    let l = Labelled::new(Matrix::from_slice(&[1.0, 0.0], 2, "q").unwrap(), vec![vec![2, 1]], 3).unwrap();
    let cells =
        evaluate(&b, 1, &c, &c, &l, &Grid { ks: vec![1], alphas: vec![0.0], ..Grid::default() }, &mut Unwatched)
            .unwrap();
    assert_eq!(cells[0].metrics.recall, [0.0, 1.0, 1.0]);
    assert!((cells[0].metrics.mrr - 0.5).abs() < 1e-12);
}

#[test]
fn metrics_are_the_same_bits_on_every_run() {
    let d = small();
    let b = CpuBackend::new(2).unwrap();
    let (c, r) = (Matrix::from_slice(&d.cand, DIM, "c").unwrap(), Matrix::from_slice(&d.refs, DIM, "r").unwrap());
    let l = labelled(&d.queries, &d.gt, c.rows());
    let grid = Grid { ks: vec![16], alphas: vec![0.5, 0.75], dn: true, ..Grid::default() };
    let first = evaluate(&b, 2, &c, &r, &l, &grid, &mut Unwatched).unwrap();
    for _ in 0..3 {
        assert_eq!(evaluate(&b, 2, &c, &r, &l, &grid, &mut Unwatched).unwrap(), first);
    }
}
