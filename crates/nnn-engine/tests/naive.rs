//! Engine results against an independent naive f64 implementation, over many random shapes.

mod common;
use common::*;
use nnn_engine::*;

#[test]
fn bias_matches_naive_over_many_shapes() {
    let mut rng = Rng::new(1);
    for case in 0..40 {
        let dim = 1 + rng.below(70);
        let n = rng.below(300);
        let m = 1 + rng.below(2500);
        let k = 1 + rng.below(m.min(200));
        let coarse = case % 3 == 0;
        let cand = rng.matrix(n, dim, coarse);
        let refs = rng.matrix(m, dim, coarse);
        let c = Matrix::from_slice(&cand, dim, "c").unwrap();
        let r = Matrix::from_slice(&refs, dim, "r").unwrap();
        let backend = CpuBackend::new(2).unwrap();
        let top = reference_topk(&backend, &c, &r, k, &mut Unwatched).unwrap();
        let bias = top.bias(k).unwrap();
        let want = naive_bias(&cand, &refs, dim, k);
        assert_eq!(bias.len(), n);
        for (i, (g, w)) in bias.iter().zip(&want).enumerate() {
            assert!((f64::from(*g) - w).abs() < 1e-4, "case {case} ({n}x{m}x{dim}, k={k}) row {i}: {g} vs {w}");
        }
        for row in 0..n {
            let naive = naive_scores(&cand[row * dim..(row + 1) * dim], &refs, dim, None);
            assert_row_matches(
                top.sims.row_indices(row),
                top.sims.row_values(row),
                &naive,
                1e-4,
                &format!("case {case} row {row}"),
            );
        }
    }
}

#[test]
fn search_matches_naive_over_many_shapes() {
    let mut rng = Rng::new(2);
    for case in 0..40 {
        let dim = 1 + rng.below(64);
        let n = 1 + rng.below(5000);
        let q = 1 + rng.below(if case % 2 == 0 { 3 } else { 300 });
        let k = 1 + rng.below(50);
        let alpha = [0.0f32, 0.5, 0.75, 1.0][case % 4];
        let coarse = case % 3 == 0;
        let cand = rng.matrix(n, dim, coarse);
        let bias: Vec<f32> = (0..n).map(|_| rng.unit() * 0.5).collect();
        let queries = rng.matrix(q, dim, coarse);
        let c = Candidates::new(Matrix::from_slice(&cand, dim, "c").unwrap(), Some(bias.clone())).unwrap();
        let qm = Matrix::from_slice(&queries, dim, "q").unwrap();
        let top = search(&CpuBackend::new(2).unwrap(), &c, alpha, &qm, k, &mut Unwatched).unwrap();
        let k_eff = k.min(n);
        assert_eq!((top.rows, top.k), (q, k_eff));
        let offset: Vec<f64> = bias.iter().map(|&b| f64::from(alpha * b)).collect();
        for row in 0..q {
            let naive = naive_scores(&queries[row * dim..(row + 1) * dim], &cand, dim, Some(&offset));
            assert_row_matches(
                top.row_indices(row),
                top.row_values(row),
                &naive,
                1e-4,
                &format!("case {case} query {row}"),
            );
        }
    }
}

#[test]
fn ties_go_to_the_lower_index() {
    // Every candidate scores the same: the answer must be rows 0..k in order.
    let cand = vec![1.0f32; 3000 * 4];
    let c = Candidates::new(Matrix::from_slice(&cand, 4, "c").unwrap(), None).unwrap();
    let q = Matrix::from_slice(&[0.5f32, 0.5, 0.0, 0.0], 4, "q").unwrap();
    let top = search(&CpuBackend::new(2).unwrap(), &c, 0.75, &q, 7, &mut Unwatched).unwrap();
    assert_eq!(top.row_indices(0), &[0, 1, 2, 3, 4, 5, 6]);
}

#[test]
fn results_are_identical_for_any_thread_count() {
    let mut rng = Rng::new(3);
    let dim = 48;
    let cand = rng.matrix(3000, dim, false);
    let refs = rng.matrix(5000, dim, false);
    let queries = rng.matrix(70, dim, true);
    let c = Matrix::from_slice(&cand, dim, "c").unwrap();
    let r = Matrix::from_slice(&refs, dim, "r").unwrap();
    let q = Matrix::from_slice(&queries, dim, "q").unwrap();
    let mut first = None;
    for threads in [1, 2, 3, 5] {
        let b = CpuBackend::new(threads).unwrap();
        let top = reference_topk(&b, &c, &r, 16, &mut Unwatched).unwrap();
        let cands = Candidates::new(c.clone(), Some(top.bias(16).unwrap())).unwrap();
        let s = search(&b, &cands, 0.75, &q, 10, &mut Unwatched).unwrap();
        let got = (top.sims, s);
        match &first {
            None => first = Some(got),
            Some(f) => assert_eq!(f, &got, "threads = {threads}"),
        }
    }
}

#[test]
fn bias_prefix_equals_a_build_with_smaller_k() {
    let mut rng = Rng::new(4);
    let dim = 16;
    let cand = rng.matrix(200, dim, false);
    let refs = rng.matrix(900, dim, false);
    let c = Matrix::from_slice(&cand, dim, "c").unwrap();
    let r = Matrix::from_slice(&refs, dim, "r").unwrap();
    let b = CpuBackend::new(2).unwrap();
    let big = reference_topk(&b, &c, &r, 64, &mut Unwatched).unwrap();
    let small = reference_topk(&b, &c, &r, 10, &mut Unwatched).unwrap();
    assert_eq!(big.bias(10).unwrap(), small.bias(10).unwrap());
    assert!(big.bias(65).is_err());
}

#[test]
fn dn_ranker_matches_naive() {
    let mut rng = Rng::new(5);
    let dim = 12;
    let (cand, refs, queries) = (rng.matrix(400, dim, false), rng.matrix(600, dim, false), rng.matrix(20, dim, false));
    let (cdev, qdev) = (rng.matrix(50, dim, false), rng.matrix(70, dim, false));
    let lambda = 0.5f32;
    let shift = DistributionShift::from_dev(
        &Matrix::from_slice(&cdev, dim, "cd").unwrap(),
        &Matrix::from_slice(&qdev, dim, "qd").unwrap(),
        lambda,
    )
    .unwrap();
    let b = CpuBackend::new(2).unwrap();
    let c2 = shift.candidates(&Matrix::from_slice(&cand, dim, "c").unwrap()).unwrap();
    let r2 = shift.queries(&Matrix::from_slice(&refs, dim, "r").unwrap()).unwrap();
    let q2 = shift.queries(&Matrix::from_slice(&queries, dim, "q").unwrap()).unwrap();
    let bias = reference_topk(&b, &c2, &r2, 8, &mut Unwatched).unwrap().bias(8).unwrap();
    let top = search(&b, &Candidates::new(c2, Some(bias)).unwrap(), 0.75, &q2, 5, &mut Unwatched).unwrap();

    let mean = |m: &[f32]| -> Vec<f64> {
        let rows = m.len() / dim;
        (0..dim).map(|j| (0..rows).map(|i| f64::from(m[i * dim + j])).sum::<f64>() / rows as f64).collect()
    };
    let shift_by = |m: &[f32], mu: &[f64]| -> Vec<f32> {
        m.chunks_exact(dim)
            .flat_map(|r| r.iter().zip(mu).map(|(v, u)| (f64::from(*v) - f64::from(lambda) * u) as f32))
            .collect()
    };
    let (cm, qm) = (mean(&cdev), mean(&qdev));
    let (nc, nr, nq) = (shift_by(&cand, &cm), shift_by(&refs, &qm), shift_by(&queries, &qm));
    let nbias: Vec<f64> = naive_bias(&nc, &nr, dim, 8).iter().map(|b| 0.75 * b).collect();
    for row in 0..20 {
        let naive = naive_scores(&nq[row * dim..(row + 1) * dim], &nc, dim, Some(&nbias));
        assert_row_matches(top.row_indices(row), top.row_values(row), &naive, 1e-4, &format!("DN query {row}"));
    }
}
