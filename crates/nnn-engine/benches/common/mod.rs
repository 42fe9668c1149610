//! What the benchmarks share.

use rayon::prelude::*;

/// `rows` random rows of `dim` values, each scaled to norm 1 (xorshift per row from `seed`, on
/// every core).
pub fn unit_rows(rows: usize, dim: usize, seed: u64) -> Vec<f32> {
    let mut out = vec![0f32; rows * dim];
    out.par_chunks_mut(dim).enumerate().for_each(|(r, row)| {
        let mut s = (seed ^ (r as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)) | 1;
        for v in row.iter_mut() {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            *v = (s >> 40) as f32 / (1u64 << 23) as f32 - 1.0;
        }
        let n = row.iter().map(|v| v * v).sum::<f32>().sqrt();
        row.iter_mut().for_each(|v| *v /= n);
    });
    out
}
