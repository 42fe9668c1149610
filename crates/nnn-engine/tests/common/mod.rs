//! Shared by the engine's tests: a seeded generator, the naive f64 reference maths, and the
//! in-repo wordnet-small data with the reference package's golden outputs.
#![allow(dead_code)]

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

fn data_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../data/wordnet-small")
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
