//! How many rows the exact TF32 mode certifies, in CPU emulation (no GPU needed): N = 200 rows
//! against M = 1,000,000 random unit rows of d = 512 (`--quick`: M / 10), k = 10 and 128. The
//! estimates are the CPU backend's top `k'` over rows rounded to TF32 (toward zero, then to
//! nearest): TF32 inputs, exact products, f32 accumulation, as a tensor core computes them. For
//! each shortlist width `k'` it prints how many rows the certificate of `certify::tf32_margin`
//! accepts with the worst-case error of TF32 inputs (2⁻¹⁰ of each norm) and with each row's
//! measured error ([`RowSize`]), the median margin of each, and the gap between the k-th and
//! k'-th exact scores. Every certified row's shortlist must hold the exact top k: a failure
//! would disprove the bound, and is counted. Not a test: it only reports.

use nnn_engine::backend::certify::{row_sizes, tf32, tf32_margin, RowSize};
use nnn_engine::backend::TopKRequest;
use nnn_engine::{score, Backend, CpuBackend, Matrix, TopK, Unwatched};

mod common;
use common::unit_rows;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let (n, m, d) = (200, if quick { 100_000 } else { 1_000_000 }, 512);
    let threads = std::thread::available_parallelism().map_or(1, |t| t.get());
    let cpu = CpuBackend::new(threads).unwrap();
    let (a, b) = (unit_rows(n, d, 11), unit_rows(m, d, 12));
    let (am, bm) = (Matrix::from_slice(&a, d, "a").unwrap(), Matrix::from_slice(&b, d, "b").unwrap());
    let (a_sizes, b_largest) = (row_sizes(&am), RowSize::largest(&row_sizes(&bm)));
    let worst = |s: RowSize| RowSize { norm: s.norm, tf32_error: s.norm / 1024.0 };
    let widest = 512;
    let exact = cpu.topk(&TopKRequest::new(&am, &bm, widest), &mut Unwatched).unwrap();
    println!(
        "# {n} x {m} x d={d} random unit rows; b's largest norm {:.4}, largest TF32 error {:.3e} (worst case {:.3e})",
        b_largest.norm,
        b_largest.tf32_error,
        b_largest.norm / 1024.0
    );
    for nearest in [false, true] {
        println!("# inputs rounded {}", if nearest { "to nearest" } else { "toward zero" });
        let (ra, rb): (Vec<f32>, Vec<f32>) =
            (a.iter().map(|&v| tf32(v, nearest)).collect(), b.iter().map(|&v| tf32(v, nearest)).collect());
        let (ram, rbm) = (Matrix::from_slice(&ra, d, "a").unwrap(), Matrix::from_slice(&rb, d, "b").unwrap());
        let est: TopK = cpu.topk(&TopKRequest::new(&ram, &rbm, widest), &mut Unwatched).unwrap();
        drop(rb);
        for k in [10, 128] {
            let mut wides: Vec<usize> = vec![k + 16, k + 32, k + 64, 2 * k, 4 * k];
            wides.sort_unstable();
            wides.dedup();
            for wide in wides {
                let (mut certified, mut measured, mut wrong, mut gaps) = (0, 0, 0, Vec::new());
                let (mut m_worst, mut m_measured) = (Vec::new(), Vec::new());
                for (r, &a_size) in a_sizes.iter().enumerate() {
                    let x = am.rows_slice(r, r + 1);
                    let short = &est.row_indices(r)[..wide];
                    let mut scored: Vec<(f32, u32)> = short
                        .iter()
                        .map(|&j| (score(x, bm.rows_slice(j as usize, j as usize + 1), 0.0, 0.0), j))
                        .collect();
                    scored.sort_by(|p, q| q.0.total_cmp(&p.0).then(p.1.cmp(&q.1)));
                    let kth = f64::from(scored[k - 1].0);
                    let unseen = f64::from(est.row_values(r)[wide - 1]);
                    let (mw, mm) =
                        (tf32_margin(worst(a_size), worst(b_largest), d, 0.0), tf32_margin(a_size, b_largest, d, 0.0));
                    let right = scored[..k].iter().map(|p| p.1).eq(exact.row_indices(r)[..k].iter().copied());
                    for (margin, count) in [(mw, &mut certified), (mm, &mut measured)] {
                        if unseen + margin < kth {
                            *count += 1;
                            wrong += usize::from(!right);
                        }
                    }
                    gaps.push(f64::from(exact.row_values(r)[k - 1] - exact.row_values(r)[wide - 1]));
                    m_worst.push(mw);
                    m_measured.push(mm);
                }
                println!(
                    "RESULT certify.{} k={k:<3} k'={wide:<3}: certified {certified:>3}/{n} (worst-case bound, median {:.2e}), {measured:>3}/{n} (measured errors, median {:.2e}); median gap k-th to k'-th exact score {:.2e}; certified but wrong: {wrong}",
                    if nearest { "rn" } else { "rz" },
                    median(m_worst),
                    median(m_measured),
                    median(gaps)
                );
            }
        }
    }
}
