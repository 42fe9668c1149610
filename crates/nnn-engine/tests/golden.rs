//! The reference package's own numbers: its toy test, and its golden outputs on wordnet-small.

mod common;
use common::*;
use nnn_engine::*;

#[test]
fn reference_toy_test() {
    let candidates = [[0., 1., 0., 0.], [1., 0., 0., 0.], [0., -1., 0., 0.], [-1., 0., 0., 0.], [0., 0., 1., 0.]];
    let queries = [[0., 0.6, 0.8, 0.], [0.6, 0., 0.8, 0.], [0., -0.6, 0.8, 0.], [-0.6, 0., 0.8, 0.], [0., 0., 1., 0.]];
    let mut reference = Vec::new();
    for axis in [1, 0] {
        for delta in [0.01f32, -0.01] {
            for q in &queries {
                let mut r: [f32; 4] = *q;
                r[axis] += delta;
                reference.extend_from_slice(&r);
            }
        }
    }
    let cand: Vec<f32> = candidates.iter().flatten().copied().collect();
    let qs: Vec<f32> = queries.iter().flatten().copied().collect();
    let b = CpuBackend::new(2).unwrap();
    let c = Matrix::from_slice(&cand, 4, "c").unwrap();
    let bias = reference_topk(&b, &c, &Matrix::from_slice(&reference, 4, "r").unwrap(), 2, &mut Unwatched)
        .unwrap()
        .bias(2)
        .unwrap();
    let q = Matrix::from_slice(&qs, 4, "q").unwrap();
    let cands = Candidates::new(c, Some(bias)).unwrap();
    let nnn = search(&b, &cands, 0.75, &q, 1, &mut Unwatched).unwrap();
    assert_eq!(nnn.indices, vec![0, 1, 2, 3, 4]);
    for (got, want) in nnn.values.iter().zip([0.14625f32, 0.14625, 0.14625, 0.14625, 0.25]) {
        assert!((got - want).abs() < 1e-6, "{got} vs {want}");
    }
    let base = search(&b, &cands, 0.0, &q, 1, &mut Unwatched).unwrap();
    assert_eq!(base.indices, vec![4; 5]);
    for (got, want) in base.values.iter().zip([0.8f32, 0.8, 0.8, 0.8, 1.0]) {
        assert!((got - want).abs() < 1e-6, "{got} vs {want}");
    }
}

/// Golden top-10 rows compared tie-aware: scores within 1e-5 rank by rank, and indices equal
/// wherever the golden score is not tied with a neighbour.
fn assert_golden_topk(top: &TopK, gidx: &[i32], gval: &[f32], what: &str) {
    for q in 0..top.rows {
        let (gi, gv) = (&gidx[q * 10..q * 10 + 10], &gval[q * 10..q * 10 + 10]);
        for r in 0..10 {
            let (i, v) = (top.row_indices(q)[r], top.row_values(q)[r]);
            assert!((v - gv[r]).abs() <= 1e-5, "{what} query {q} rank {r}: score {v} vs golden {}", gv[r]);
            let tied = (r > 0 && (gv[r - 1] - gv[r]).abs() <= 1e-5) || (r < 9 && (gv[r + 1] - gv[r]).abs() <= 1e-5);
            if !tied {
                assert_eq!(i as i32, gi[r], "{what} query {q} rank {r}");
            }
        }
    }
}

#[test]
fn wordnet_small_matches_reference_package() {
    let dim = 384;
    let cand = read_f16("candidates.f16");
    let refs = read_f16("reference.f16");
    let queries = read_f16("queries.f16");
    let gt = read_i32("queries_gt.i32");
    let b = CpuBackend::new(2).unwrap();
    let c = Matrix::from_slice(&cand, dim, "c").unwrap();
    let bias = reference_topk(&b, &c, &Matrix::from_slice(&refs, dim, "r").unwrap(), 128, &mut Unwatched)
        .unwrap()
        .bias(128)
        .unwrap();
    let golden_bias = read_f32("golden_bias_k128.f32");
    assert_eq!(bias.len(), 500);
    for (i, (g, w)) in bias.iter().zip(&golden_bias).enumerate() {
        assert!((g - w).abs() <= 1e-5, "bias row {i}: {g} vs golden {w}");
    }
    let q = Matrix::from_slice(&queries, dim, "q").unwrap();
    let cands = Candidates::new(c, Some(bias)).unwrap();
    let nnn = search(&b, &cands, 0.75, &q, 10, &mut Unwatched).unwrap();
    assert_golden_topk(&nnn, &read_i32("golden_nnn_top10_idx.i32"), &read_f32("golden_nnn_top10_score.f32"), "nnn");
    let base = search(&b, &cands, 0.0, &q, 10, &mut Unwatched).unwrap();
    assert_golden_topk(&base, &read_i32("golden_base_top10_idx.i32"), &read_f32("golden_base_top10_score.f32"), "base");
    // golden.json: base 42.58 / 54.03 / 58.47, NNN 42.58 / 55.30 / 61.44
    let recalls = |t: &TopK| [1, 5, 10].map(|n| recall_at(&t.indices, 10, &gt, n));
    assert_eq!(recalls(&base), [42.58, 54.03, 58.47]);
    assert_eq!(recalls(&nnn), [42.58, 55.30, 61.44]);
}
