//! Engine benchmark: NNN bias build and batch search against a plain sgemm of the same
//! product (the FLOP-rate ceiling), side by side in one run. Not a test: it only reports.
//!
//! `cargo bench -p nnn-engine --bench engine -- [--threads T] [--quick]`
//! Prints one `RESULT name seconds gflops` line per measurement for scripts/bench_compare.py.

use nnn_engine::backend::cpu::products;
use nnn_engine::{reference_topk, search, Candidates, CpuBackend, Matrix, Unwatched};
use std::time::Instant;

mod common;
use common::{unit_rows, wordnet_dev};

/// Seconds of one wall-clock run of `f`.
fn timed(f: impl FnOnce()) -> f64 {
    let t = Instant::now();
    f();
    t.elapsed().as_secs_f64()
}

/// Best of `reps` wall-clock runs, in seconds.
fn best_of(reps: usize, mut f: impl FnMut()) -> f64 {
    (0..reps).map(|_| timed(&mut f)).fold(f64::INFINITY, f64::min)
}

fn report(name: &str, secs: f64, flop: f64) {
    println!("RESULT {name:<34} {secs:>9.4} s {:>8.1} GFLOP/s", flop / secs / 1e9);
}

fn bias_case(name: &str, cand: &[f32], refs: &[f32], d: usize, k: usize, threads: usize, reps: usize) {
    let backend = CpuBackend::new(threads).unwrap();
    let c = Matrix::from_slice(cand, d, "c").unwrap();
    let r = Matrix::from_slice(refs, d, "r").unwrap();
    let flop = 2.0 * (cand.len() / d) as f64 * (refs.len() / d) as f64 * d as f64;
    println!(
        "# {name}: {} candidates x {} reference x d={d}, k={k}, {threads} threads",
        cand.len() / d,
        refs.len() / d
    );
    // The plain sgemm writes the whole product into a buffer touched beforehand, so the
    // FLOP-rate ceiling is not charged for page faults. Engine and sgemm runs alternate, so a
    // noisy spell on the machine hits both sides; each side reports its best run.
    let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
    let mut out = vec![1f32; (cand.len() / d) * (refs.len() / d)];
    let (mut engine, mut sgemm) = (f64::INFINITY, f64::INFINITY);
    for _ in 0..reps {
        engine = engine.min(timed(|| {
            reference_topk(&backend, &c, &r, k, &mut Unwatched).unwrap();
        }));
        sgemm = sgemm.min(timed(|| pool.install(|| products(cand, refs, d, &mut out, threads))));
    }
    drop(out);
    report(&format!("{name}.engine_bias"), engine, flop);
    report(&format!("{name}.plain_sgemm"), sgemm, flop);
    println!("RATIO {name}.engine_vs_sgemm_rate {:.3}", sgemm / engine);
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let threads = args.iter().position(|a| a == "--threads").and_then(|i| args.get(i + 1)?.parse().ok()).unwrap_or(2);
    let quick = args.iter().any(|a| a == "--quick");
    let d = 384;
    if let (Some(cand), Some(refs)) = (wordnet_dev("candidates.f16"), wordnet_dev("reference.f16")) {
        bias_case("wordnet_dev", &cand, &refs, d, 128, threads, 5);
    }
    let (n, m, q) = if quick { (2_000, 20_000, 2_000) } else { (10_000, 100_000, 10_000) };
    let cand = unit_rows(n, d, 11);
    let refs = unit_rows(m, d, 12);
    bias_case("synthetic", &cand, &refs, d, 128, threads, if quick { 2 } else { 3 });

    let queries = unit_rows(q, d, 13);
    let backend = CpuBackend::new(threads).unwrap();
    let c = Matrix::from_slice(&cand, d, "c").unwrap();
    let bias = reference_topk(&backend, &c, &Matrix::from_slice(&refs[..n * d], d, "r").unwrap(), 128, &mut Unwatched)
        .unwrap()
        .bias(128)
        .unwrap();
    let cands = Candidates::new(c, Some(bias)).unwrap();
    let qm = Matrix::from_slice(&queries, d, "q").unwrap();
    println!("# batch search: {q} queries x {n} candidates x d={d}, k=10, alpha=0.75, {threads} threads");
    let flop = 2.0 * (q * n * d) as f64;
    let batch = best_of(3, || {
        search(&backend, &cands, 0.75, &qm, 10, &mut Unwatched).unwrap();
    });
    report("search.batch", batch, flop);
    let one = Matrix::from_slice(&queries[..d], d, "q").unwrap();
    let single = best_of(20, || {
        search(&backend, &cands, 0.75, &one, 10, &mut Unwatched).unwrap();
    });
    report("search.single_query", single, 2.0 * (n * d) as f64);
    // the shape of the SQL benchmark (scripts/bench_sql.py): one query over every reference row
    let big = Candidates::new(Matrix::from_slice(&refs, d, "c").unwrap(), Some(vec![0.1; m])).unwrap();
    let single_big = best_of(20, || {
        search(&backend, &big, 0.75, &one, 10, &mut Unwatched).unwrap();
    });
    report(&format!("search.single_query_{}", m), single_big, 2.0 * (m * d) as f64);
    // the same candidates with their 16-bit copy, as nnn_search's cache keeps them: one query
    // and a batch of 24 (below the 128 rows from which a call rounds the candidates itself)
    let mut cached = big.clone();
    cached.prepare(threads, &mut Unwatched).unwrap();
    let single_cached = best_of(20, || {
        search(&backend, &cached, 0.75, &one, 10, &mut Unwatched).unwrap();
    });
    report(&format!("search.single_query_{}_cached", m), single_cached, 2.0 * (m * d) as f64);
    println!("RATIO search.single_query_cached_vs_plain {:.2}", single_big / single_cached);
    let few = Matrix::from_slice(&queries[..24 * d], d, "q").unwrap();
    let (batch24, batch24_cached) = (
        best_of(5, || {
            search(&backend, &big, 0.75, &few, 10, &mut Unwatched).unwrap();
        }),
        best_of(5, || {
            search(&backend, &cached, 0.75, &few, 10, &mut Unwatched).unwrap();
        }),
    );
    report(&format!("search.batch24_{}", m), batch24, 2.0 * (24 * m * d) as f64);
    report(&format!("search.batch24_{}_cached", m), batch24_cached, 2.0 * (24 * m * d) as f64);
    println!("RATIO search.batch24_cached_vs_plain {:.2}", batch24 / batch24_cached);
}
