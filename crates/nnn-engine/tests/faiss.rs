//! The `faiss` feature: the Faiss backend against the reference package's numbers, and the
//! approximate index against exact search (naive f64) on random and clustered data.
#![cfg(feature = "faiss")]

mod common;
use common::*;
use nnn_engine::backend::TopKRequest;
use nnn_engine::faiss::ann::{AnnIndex, AnnParams, AnnSearch};
use nnn_engine::faiss::backend::FaissBackend;
use nnn_engine::*;
use std::collections::HashSet;

fn none() -> HashSet<i64> {
    HashSet::new()
}

/// Exact NNN top-k ids by naive f64 scores (ties to the lower row).
fn naive_top(q: &[f32], cand: &[f32], bias: &[f32], dim: usize, alpha: f32, ids: &[i64], k: usize) -> Vec<i64> {
    let off: Vec<f64> = bias.iter().map(|&b| f64::from(alpha) * f64::from(b)).collect();
    let s = naive_scores(q, cand, dim, Some(&off));
    let mut order: Vec<usize> = (0..s.len()).collect();
    order.sort_by(|&a, &b| s[b].partial_cmp(&s[a]).unwrap().then(a.cmp(&b)));
    order[..k].iter().map(|&i| ids[i]).collect()
}

/// `n` unit rows around `centers` random centres (a Gaussian-like mixture on the sphere).
fn clustered(rng: &mut Rng, n: usize, dim: usize, centers: usize, spread: f32) -> Vec<f32> {
    let c = rng.matrix(centers, dim, false);
    let mut out = Vec::with_capacity(n * dim);
    for _ in 0..n {
        let j = rng.below(centers);
        let mut row: Vec<f32> = (0..dim).map(|d| c[j * dim + d] + spread * rng.unit()).collect();
        let norm = row.iter().map(|x| x * x).sum::<f32>().sqrt();
        row.iter_mut().for_each(|x| *x /= norm);
        out.extend(row);
    }
    out
}

#[test]
fn faiss_flat_backend_matches_reference_package() {
    check_wordnet_small(&FaissBackend::new("Flat", AnnParams::default(), 2).unwrap());
}

#[test]
fn faiss_backend_with_offsets_matches_naive() {
    let mut rng = Rng::new(7);
    let (m, n, dim, k) = (37, 300, 24, 9);
    let (a, b) = (rng.matrix(m, dim, false), rng.matrix(n, dim, false));
    let off: Vec<f32> = (0..n).map(|_| rng.unit()).collect();
    let backend = FaissBackend::new("Flat", AnnParams::default(), 2).unwrap();
    let (am, bm) = (Matrix::from_slice(&a, dim, "a").unwrap(), Matrix::from_slice(&b, dim, "b").unwrap());
    let top = backend.topk(&TopKRequest::new(&am, &bm, k).with_offset(Some(&off)), &mut Unwatched).unwrap();
    let off64: Vec<f64> = off.iter().map(|&o| f64::from(o)).collect();
    for r in 0..m {
        let naive = naive_scores(&a[r * dim..(r + 1) * dim], &b, dim, Some(&off64));
        assert_row_matches(top.row_indices(r), top.row_values(r), &naive, 1e-4, &format!("row {r}"));
    }
}

#[test]
fn faiss_backend_rejects_a_bad_factory() {
    let a = vec![1.0f32; 8];
    let m = Matrix::from_slice(&a, 4, "a").unwrap();
    let backend = FaissBackend::new("NoSuchIndex", AnnParams::default(), 1).unwrap();
    let err = backend.topk(&TopKRequest::new(&m, &m, 1), &mut Unwatched).unwrap_err();
    assert!(matches!(err, EngineError::Faiss { what: "factory", .. }), "{err:?}");
}

#[test]
fn flat_ann_index_is_exact_and_follows_changes() {
    let mut rng = Rng::new(11);
    let (n, dim, k) = (400, 16, 10);
    let data = rng.matrix(n, dim, false);
    let bias: Vec<f32> = (0..n).map(|_| rng.unit().abs()).collect();
    let ids: Vec<i64> = (0..n as i64).map(|i| i * 3 - 500).collect();
    let cands = Candidates::new(Matrix::from_slice(&data, dim, "c").unwrap(), Some(bias.clone())).unwrap();
    let mut index = AnnIndex::build("Flat", &cands, &ids, 2, &mut Unwatched).unwrap();
    let queries = rng.matrix(5, dim, false);
    let q = Matrix::from_slice(&queries, dim, "q").unwrap();
    for alpha in [0.0f32, 0.75, 2.0] {
        let got = index
            .search(
                &AnnSearch { queries: &q, alpha, k, skip: &none(), params: AnnParams::default() },
                2,
                &mut Unwatched,
            )
            .unwrap();
        for (r, row) in got.iter().enumerate() {
            let want = naive_top(&queries[r * dim..(r + 1) * dim], &data, &bias, dim, alpha, &ids, k);
            assert_eq!(row, &want, "alpha {alpha} query {r}");
        }
    }
    // Skipped ids never come back; the list is still k long.
    let best = index
        .search(
            &AnnSearch { queries: &q, alpha: 0.75, k: 1, skip: &none(), params: AnnParams::default() },
            1,
            &mut Unwatched,
        )
        .unwrap()[0][0];
    let skip: HashSet<i64> = [best].into();
    let got = index
        .search(
            &AnnSearch { queries: &q, alpha: 0.75, k, skip: &skip, params: AnnParams::default() },
            1,
            &mut Unwatched,
        )
        .unwrap();
    assert!(!got[0].contains(&best) && got[0].len() == k);
    // Replace that row by a copy of the query with a large negative bias (longer than every
    // row at build time): it is proposed once; remove another and it disappears.
    let q0 = queries[..dim].to_vec();
    let new = Candidates::new(Matrix::from_slice(&q0, dim, "n").unwrap(), Some(vec![-10.0])).unwrap();
    index.add(&new, &[best], 1, &mut Unwatched).unwrap();
    assert_eq!((index.live_rows(), index.dead_rows()), (n, 1));
    let got = index
        .search(
            &AnnSearch { queries: &q, alpha: 0.75, k, skip: &none(), params: AnnParams::default() },
            1,
            &mut Unwatched,
        )
        .unwrap();
    assert_eq!(got[0].iter().filter(|&&i| i == best).count(), 1);
    assert_eq!(got[0].len(), k + 1, "k found plus the row outside the radius");
    let gone = got[0][0];
    index.remove(&[gone].into());
    let got = index
        .search(
            &AnnSearch { queries: &q, alpha: 0.75, k, skip: &none(), params: AnnParams::default() },
            1,
            &mut Unwatched,
        )
        .unwrap();
    assert!(!got[0].contains(&gone) && got[0].contains(&best));
    // Round trip through bytes: same answers; damaged bytes are an error, not a crash.
    let bytes = index.to_bytes().unwrap();
    let back = AnnIndex::from_bytes(&bytes).unwrap();
    assert_eq!((back.live_rows(), back.dead_rows(), back.factory(), back.dim()), (n - 1, 2, "Flat", dim));
    assert_eq!(
        back.search(
            &AnnSearch { queries: &q, alpha: 0.75, k, skip: &none(), params: AnnParams::default() },
            1,
            &mut Unwatched
        )
        .unwrap(),
        got
    );
    for cut in [0, 7, 40, bytes.len() - 9] {
        assert!(matches!(AnnIndex::from_bytes(&bytes[..cut]), Err(EngineError::Faiss { .. })), "cut at {cut}");
    }
    let mut bad = bytes.clone();
    bad[0] = b'X';
    assert!(AnnIndex::from_bytes(&bad).is_err());
    // With most rows removed, searches still fill k from the survivors.
    let mut sparse = back;
    let removed: HashSet<i64> = ids.iter().copied().filter(|i| i.rem_euclid(10) != 0).collect();
    sparse.remove(&removed);
    let got = sparse
        .search(
            &AnnSearch { queries: &q, alpha: 0.75, k, skip: &none(), params: AnnParams::default() },
            1,
            &mut Unwatched,
        )
        .unwrap();
    assert!(got.iter().all(|row| row.iter().filter(|i| !removed.contains(i)).count() == k));
}

#[test]
fn ivf_recall_on_clustered_data_grows_with_probes() {
    let mut rng = Rng::new(3);
    let (n, dim, k) = (20_000, 32, 10);
    let data = clustered(&mut rng, n, dim, 64, 0.3);
    let bias: Vec<f32> = (0..n).map(|_| 0.1 * rng.unit().abs()).collect();
    let ids: Vec<i64> = (0..n as i64).collect();
    let cands = Candidates::new(Matrix::from_slice(&data, dim, "c").unwrap(), Some(bias.clone())).unwrap();
    let index = AnnIndex::build("IVF64,Flat", &cands, &ids, 2, &mut Unwatched).unwrap();
    let queries = clustered(&mut rng, 50, dim, 64, 0.3);
    let q = Matrix::from_slice(&queries, dim, "q").unwrap();
    let recall = |probes| {
        let params = AnnParams { probes, ef_search: 0 };
        let got =
            index.search(&AnnSearch { queries: &q, alpha: 0.75, k, skip: &none(), params }, 2, &mut Unwatched).unwrap();
        let mut hits = 0;
        for (r, row) in got.iter().enumerate() {
            let want = naive_top(&queries[r * dim..(r + 1) * dim], &data, &bias, dim, 0.75, &ids, k);
            hits += row.iter().filter(|i| want.contains(i)).count();
        }
        hits as f64 / (k * got.len()) as f64
    };
    let (low, high) = (recall(1), recall(64));
    assert!(high >= 0.999, "all 64 lists visited must be exact, got recall {high}");
    assert!(low < high, "one list ({low}) should miss some of what all lists ({high}) find");
}

#[test]
fn ann_index_rejects_bad_input() {
    let data = vec![0.5f32; 40];
    let cands = Candidates::new(Matrix::from_slice(&data, 4, "c").unwrap(), Some(vec![0.0; 10])).unwrap();
    let ids: Vec<i64> = (0..10).collect();
    let bad = AnnIndex::build("IVF4096,Flat", &cands, &ids, 1, &mut Unwatched);
    assert!(matches!(bad, Err(EngineError::Faiss { .. })), "too few rows to train 4096 lists");
    assert!(matches!(
        AnnIndex::build("Flat", &cands, &ids[..3], 1, &mut Unwatched),
        Err(EngineError::DimensionMismatch { .. })
    ));
    let index = AnnIndex::build("Flat", &cands, &ids, 1, &mut Unwatched).unwrap();
    let q3 = vec![1.0f32; 3];
    let q = Matrix::from_slice(&q3, 3, "q").unwrap();
    let p = AnnParams::default();
    assert!(matches!(
        index.search(&AnnSearch { queries: &q, alpha: 0.5, k: 1, skip: &none(), params: p }, 1, &mut Unwatched),
        Err(EngineError::DimensionMismatch { .. })
    ));
    let q4 = [1.0f32, f32::NAN, 0.0, 0.0];
    let q = Matrix::from_slice(&q4, 4, "q").unwrap();
    assert!(matches!(
        index.search(&AnnSearch { queries: &q, alpha: 0.5, k: 1, skip: &none(), params: p }, 1, &mut Unwatched),
        Err(EngineError::NonFinite { .. })
    ));
    let q4 = [1.0f32; 4];
    let q = Matrix::from_slice(&q4, 4, "q").unwrap();
    assert!(matches!(
        index.search(&AnnSearch { queries: &q, alpha: 0.5, k: 0, skip: &none(), params: p }, 1, &mut Unwatched),
        Err(EngineError::KOutOfRange { .. })
    ));
    assert!(matches!(
        index.search(&AnnSearch { queries: &q, alpha: f32::NAN, k: 1, skip: &none(), params: p }, 1, &mut Unwatched),
        Err(EngineError::InvalidParameter { .. })
    ));
}
