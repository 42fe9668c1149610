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

#[test]
fn wordnet_small_matches_reference_package() {
    check_wordnet_small(&CpuBackend::new(2).unwrap());
}
