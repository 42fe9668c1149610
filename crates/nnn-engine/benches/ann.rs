//! Faiss structures against exact NNN search: recall@10 and single-query throughput, side by
//! side in one run, on wordnet-dev (its 32,000 reference rows as candidates, biased against
//! its 2,000 candidate rows, its queries as queries) and on 1,000,000 clustered synthetic
//! rows. Not a test: it only reports.
//!
//! `cargo bench -p nnn-engine --features faiss --bench ann -- [--threads T] [--quick]`
//! Proposals are re-scored exactly, as nnn_search does (2 × k proposals per query).

use nnn_engine::faiss::ann::{AnnIndex, AnnParams, AnnSearch};
use nnn_engine::faiss::backend::FaissBackend;
use nnn_engine::{reference_topk, score, search, Candidates, CpuBackend, Matrix, Unwatched};
use std::collections::HashSet;
use std::time::Instant;

mod common;
use common::wordnet_dev;

const K: usize = 10;
const ALPHA: f32 = 0.75;
/// Noise norm around each mixture centre (unit norm): 1.6 makes neighbours in the same cluster
/// only moderately closer than others, so recall depends on the probes.
const SPREAD: f32 = 1.6;
/// Mixture components: fewer than the lists, so a query's neighbours spread over several.
const CLUSTERS: usize = 100;

/// xorshift generator with Gaussian draws (Box–Muller).
struct Rng(u64);

impl Rng {
    fn uniform(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        ((self.0 >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }

    fn gauss(&mut self) -> f32 {
        ((-2.0 * self.uniform().ln()).sqrt() * (std::f64::consts::TAU * self.uniform()).cos()) as f32
    }
}

fn normalize(row: &mut [f32]) {
    let n = row.iter().map(|v| v * v).sum::<f32>().sqrt();
    row.iter_mut().for_each(|v| *v /= n);
}

/// `n` unit rows of a mixture of `centers` Gaussians on the sphere: centre + noise of norm ~`spread`.
fn mixture(rng: &mut Rng, centers: &[f32], dim: usize, n: usize, spread: f32) -> Vec<f32> {
    let count = centers.len() / dim;
    let mut out = Vec::with_capacity(n * dim);
    let scale = spread / (dim as f32).sqrt();
    for _ in 0..n {
        let c = (rng.uniform() * count as f64) as usize % count;
        let mut row: Vec<f32> = (0..dim).map(|j| centers[c * dim + j] + scale * rng.gauss()).collect();
        normalize(&mut row);
        out.extend(row);
    }
    out
}

/// One problem: candidates with biases, queries, and the exact NNN top-10 of each query.
struct Problem {
    name: String,
    dim: usize,
    cands: Candidates<'static>,
    queries: Vec<f32>,
    exact: Vec<Vec<i64>>,
    threads: usize,
}

impl Problem {
    fn new(name: &str, cand: Vec<f32>, bias: Vec<f32>, queries: Vec<f32>, dim: usize, threads: usize) -> Self {
        let cands = Candidates::new(Matrix::from_vec(cand, dim, "c").unwrap(), Some(bias)).unwrap();
        let backend = CpuBackend::new(threads).unwrap();
        let q = Matrix::from_slice(&queries, dim, "q").unwrap();
        let top = search(&backend, &cands, ALPHA, &q, K, &mut Unwatched).unwrap();
        let exact = (0..top.rows).map(|r| top.row_indices(r).iter().map(|&i| i as i64).collect()).collect();
        println!(
            "# {name}: {} candidates x d={dim}, {} queries, k={K}, alpha={ALPHA}, {threads} threads",
            cands.vectors().rows(),
            top.rows
        );
        Self { name: name.to_string(), dim, cands, queries, exact, threads }
    }

    fn query(&self, i: usize) -> &[f32] {
        &self.queries[i * self.dim..(i + 1) * self.dim]
    }

    /// Queries per second of exact search, one query per call, over `n` queries.
    fn exact_qps(&self, n: usize) -> f64 {
        let backend = CpuBackend::new(self.threads).unwrap();
        let t = Instant::now();
        for i in 0..n {
            let q = Matrix::from_slice(self.query(i), self.dim, "q").unwrap();
            search(&backend, &self.cands, ALPHA, &q, K, &mut Unwatched).unwrap();
        }
        let qps = n as f64 / t.elapsed().as_secs_f64();
        println!("RESULT {}.exact {:>38} qps {qps:>9.1}", self.name, "recall@10 1.000");
        qps
    }

    /// Recall@10 against exact and queries per second, one query per call, for each setting.
    fn measure(&self, factory: &str, settings: &[AnnParams], exact_qps: f64) {
        let ids: Vec<i64> = (0..self.cands.vectors().rows() as i64).collect();
        let t = Instant::now();
        let index = AnnIndex::build(factory, &self.cands, &ids, self.threads, &mut Unwatched).unwrap();
        println!("# {}: {factory} built in {:.1} s", self.name, t.elapsed().as_secs_f64());
        let (v, bias, dim) = (self.cands.vectors().as_slice(), self.cands.bias().unwrap(), self.dim);
        for &p in settings {
            let n = self.exact.len();
            let mut hits = 0;
            let t = Instant::now();
            for i in 0..n {
                let q = Matrix::from_slice(self.query(i), dim, "q").unwrap();
                let proposed = index
                    .search(
                        &AnnSearch { queries: &q, alpha: ALPHA, k: 2 * K, skip: &HashSet::new(), params: p },
                        self.threads,
                        &mut Unwatched,
                    )
                    .unwrap();
                let mut scored: Vec<(f32, i64)> = proposed[0]
                    .iter()
                    .map(|&id| {
                        (
                            score(
                                self.query(i),
                                &v[id as usize * dim..(id as usize + 1) * dim],
                                bias[id as usize],
                                ALPHA,
                            ),
                            id,
                        )
                    })
                    .collect();
                scored.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
                hits += scored.iter().take(K).filter(|(_, id)| self.exact[i].contains(id)).count();
            }
            let qps = n as f64 / t.elapsed().as_secs_f64();
            let knob = if p.probes > 0 { format!("probes={}", p.probes) } else { format!("ef_search={}", p.ef_search) };
            println!(
                "RESULT {}.{factory:<12} {knob:<14} recall@10 {:.3} qps {qps:>9.1} x{:.1} exact",
                self.name,
                hits as f64 / (n * K) as f64,
                qps / exact_qps
            );
        }
    }
}

/// Biases of wordnet-dev's candidates (k = 128) through Faiss backends against the exact CPU
/// engine: time and error (`nnn.backend = 'faiss'` with `nnn.faiss_backend_index`).
fn bias_errors(cand: &[f32], refs: &[f32], d: usize, threads: usize) {
    let (c, r) = (Matrix::from_slice(cand, d, "c").unwrap(), Matrix::from_slice(refs, d, "r").unwrap());
    let t = Instant::now();
    let exact =
        reference_topk(&CpuBackend::new(threads).unwrap(), &c, &r, 128, &mut Unwatched).unwrap().bias(128).unwrap();
    println!(
        "# bias of {} candidates over {} reference rows, k=128: exact CPU engine {:.3} s",
        c.rows(),
        r.rows(),
        t.elapsed().as_secs_f64()
    );
    for (factory, probes) in [("Flat", 0), ("IVF256,Flat", 8), ("IVF256,Flat", 32)] {
        let backend = FaissBackend::new(factory, AnnParams { probes, ef_search: 0 }, threads).unwrap();
        let t = Instant::now();
        let bias = reference_topk(&backend, &c, &r, 128, &mut Unwatched).unwrap().bias(128).unwrap();
        let secs = t.elapsed().as_secs_f64();
        let err: Vec<f64> = bias.iter().zip(&exact).map(|(a, b)| f64::from((a - b).abs())).collect();
        let max = err.iter().copied().fold(0.0, f64::max);
        let mean = err.iter().sum::<f64>() / err.len() as f64;
        println!(
            "RESULT bias.faiss {factory:<12} probes={probes:<3} {secs:>7.3} s  max |error| {max:.2e}  mean {mean:.2e}"
        );
    }
}

fn probes(list: &[usize]) -> Vec<AnnParams> {
    list.iter().map(|&p| AnnParams { probes: p, ef_search: 0 }).collect()
}

fn efs(list: &[usize]) -> Vec<AnnParams> {
    list.iter().map(|&e| AnnParams { probes: 0, ef_search: e }).collect()
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let threads = args.iter().position(|a| a == "--threads").and_then(|i| args.get(i + 1)?.parse().ok()).unwrap_or(2);
    let quick = args.iter().any(|a| a == "--quick");
    if let (Some(cand), Some(refs), Some(queries)) =
        (wordnet_dev("candidates.f16"), wordnet_dev("reference.f16"), wordnet_dev("queries.f16"))
    {
        let d = 384;
        let backend = CpuBackend::new(threads).unwrap();
        bias_errors(&cand, &refs, d, threads);
        // the largest real set at hand: the 32,000 reference rows serve as candidates
        let (cand, refs) = (refs, cand);
        let c = Matrix::from_slice(&cand, d, "c").unwrap();
        let bias = reference_topk(&backend, &c, &Matrix::from_slice(&refs, d, "r").unwrap(), 128, &mut Unwatched)
            .unwrap()
            .bias(128)
            .unwrap();
        let nq = (queries.len() / d).min(if quick { 200 } else { 1000 });
        let p = Problem::new("wordnet_dev", cand, bias, queries[..nq * d].to_vec(), d, threads);
        let exact = p.exact_qps(nq.min(200));
        p.measure("IVF256,Flat", &probes(&[4, 16, 32, 64]), exact);
        p.measure("HNSW32", &efs(&[16, 64, 128]), exact);
    }
    // 1M rows (100k with --quick) of 100 clusters, each spread over several lists; biases from
    // 2,000 reference queries of the same mixture with k = 16 (a full-size reference set would
    // dominate the run).
    let (n, d, lists) = if quick { (100_000, 128, 256) } else { (1_000_000, 128, 1024) };
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut centers: Vec<f32> = (0..CLUSTERS * d).map(|_| rng.gauss()).collect();
    centers.chunks_exact_mut(d).for_each(normalize);
    let cand = mixture(&mut rng, &centers, d, n, SPREAD);
    let refs = mixture(&mut rng, &centers, d, 2000, SPREAD);
    let queries = mixture(&mut rng, &centers, d, 500, SPREAD);
    let backend = CpuBackend::new(threads).unwrap();
    let c = Matrix::from_slice(&cand, d, "c").unwrap();
    let bias = reference_topk(&backend, &c, &Matrix::from_slice(&refs, d, "r").unwrap(), 16, &mut Unwatched)
        .unwrap()
        .bias(16)
        .unwrap();
    let p = Problem::new(&format!("mixture_{n}"), cand, bias, queries, d, threads);
    let exact = p.exact_qps(if quick { 100 } else { 30 });
    p.measure(&format!("IVF{lists},Flat"), &probes(&[4, 8, 16, 32, 64, 128]), exact);
    p.measure(&format!("IVF{lists},SQ8"), &probes(&[16, 32]), exact);
}
