//! Shared by the engine's tests: a seeded generator, the naive f64 reference maths, and the
//! in-repo wordnet-small data with the reference package's golden outputs.
#![allow(dead_code)]

use nnn_engine::*;
use std::path::PathBuf;

/// xorshift64*: reproducible random data without a dependency.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    /// Uniform in [-1, 1).
    pub fn unit(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 23) as f32 - 1.0
    }
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
    /// `rows × dim` values; with `coarse`, values on a grid of 1/4 so that ties are frequent.
    pub fn matrix(&mut self, rows: usize, dim: usize, coarse: bool) -> Vec<f32> {
        (0..rows * dim)
            .map(|_| {
                let v = self.unit();
                if coarse {
                    (v * 4.0).round() / 4.0
                } else {
                    v
                }
            })
            .collect()
    }
}

/// Naive f64 scores of query row `q` against every row of `b`, minus `offset`.
pub fn naive_scores(q: &[f32], b: &[f32], dim: usize, offset: Option<&[f64]>) -> Vec<f64> {
    b.chunks_exact(dim)
        .enumerate()
        .map(|(j, r)| {
            let dot: f64 = q.iter().zip(r).map(|(x, y)| f64::from(*x) * f64::from(*y)).sum();
            dot - offset.map_or(0.0, |o| o[j])
        })
        .collect()
}

/// Naive f64 NNN bias: mean of the k largest similarities of each candidate to the reference.
pub fn naive_bias(cand: &[f32], reference: &[f32], dim: usize, k: usize) -> Vec<f64> {
    cand.chunks_exact(dim)
        .map(|c| {
            let mut s = naive_scores(c, reference, dim, None);
            s.sort_by(|a, b| b.partial_cmp(a).unwrap());
            s[..k].iter().sum::<f64>() / k as f64
        })
        .collect()
}

/// Checks one result row against naive scores, tolerant of ties: the returned scores are the
/// naive scores of the returned indices, sorted, distinct, and as good as the naive k-th best.
pub fn assert_row_matches(got_idx: &[u32], got_val: &[f32], naive: &[f64], tol: f64, ctx: &str) {
    let k = got_idx.len();
    let mut sorted = naive.to_vec();
    sorted.sort_by(|a, b| b.partial_cmp(a).unwrap());
    let mut seen = std::collections::HashSet::new();
    for (r, (&i, &v)) in got_idx.iter().zip(got_val).enumerate() {
        assert!(seen.insert(i), "{ctx}: index {i} returned twice");
        let want = naive[i as usize];
        assert!((f64::from(v) - want).abs() <= tol, "{ctx}: rank {r} index {i} score {v} vs naive {want}");
        assert!((f64::from(v) - sorted[r]).abs() <= tol, "{ctx}: rank {r} score {v} vs naive rank score {}", sorted[r]);
        if r > 0 {
            assert!(got_val[r - 1] >= v, "{ctx}: not sorted at rank {r}");
        }
    }
    assert!(k <= naive.len());
}

/// The repository's data/wordnet-small, or `$NNN_DATA` (test binaries run from another checkout).
fn data_dir() -> PathBuf {
    // cargo sets CARGO_MANIFEST_DIR for the tests it runs: a binary cached from a build in
    // another checkout still reads this one's data; the compile-time value is the fallback
    let crate_dir = std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into());
    std::env::var_os("NNN_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(crate_dir).join("../../data/wordnet-small"))
}

pub fn read_f16(name: &str) -> Vec<f32> {
    let bytes = std::fs::read(data_dir().join(name)).expect("wordnet-small data in the repo");
    bytes.chunks_exact(2).map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32()).collect()
}

pub fn read_f32(name: &str) -> Vec<f32> {
    let bytes = std::fs::read(data_dir().join(name)).unwrap();
    bytes.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()
}

pub fn read_i32(name: &str) -> Vec<i32> {
    let bytes = std::fs::read(data_dir().join(name)).unwrap();
    bytes.chunks_exact(4).map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()
}

/// Recall@n in percent, rounded to 2 decimals as golden.json has it.
pub fn recall_at(indices: &[u32], k: usize, gt: &[i32], n: usize) -> f64 {
    let hits = gt.iter().enumerate().filter(|(q, &g)| indices[q * k..q * k + n].contains(&(g as u32))).count();
    (hits as f64 * 10000.0 / gt.len() as f64).round() / 100.0
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

/// Bias, NNN and base top-10 and recalls of `b` on wordnet-small equal the reference package's.
pub fn check_wordnet_small(b: &dyn Backend) {
    let dim = 384;
    let cand = read_f16("candidates.f16");
    let refs = read_f16("reference.f16");
    let queries = read_f16("queries.f16");
    let gt = read_i32("queries_gt.i32");
    let c = Matrix::from_slice(&cand, dim, "c").unwrap();
    let bias = reference_topk(b, &c, &Matrix::from_slice(&refs, dim, "r").unwrap(), 128, &mut Unwatched)
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
    let nnn = search(b, &cands, 0.75, &q, 10, &mut Unwatched).unwrap();
    assert_golden_topk(&nnn, &read_i32("golden_nnn_top10_idx.i32"), &read_f32("golden_nnn_top10_score.f32"), "nnn");
    let base = search(b, &cands, 0.0, &q, 10, &mut Unwatched).unwrap();
    assert_golden_topk(&base, &read_i32("golden_base_top10_idx.i32"), &read_f32("golden_base_top10_score.f32"), "base");
    // golden.json: base 42.58 / 54.03 / 58.47, NNN 42.58 / 55.30 / 61.44
    let recalls = |t: &TopK| [1, 5, 10].map(|n| recall_at(&t.indices, 10, &gt, n));
    assert_eq!(recalls(&base), [42.58, 54.03, 58.47]);
    assert_eq!(recalls(&nnn), [42.58, 55.30, 61.44]);
}
