//! What the benchmarks share (each uses some of it).
#![allow(dead_code)]

use rayon::prelude::*;
use std::path::PathBuf;

/// The f16 file `name` of the repository's wordnet-dev set as f32 values, None when it cannot
/// be read. The repository is found from where cargo runs the benchmark (a binary cached from
/// a build in another checkout still reads this one's data), else from where it was built.
pub fn wordnet_dev(name: &str) -> Option<Vec<f32>> {
    let crate_dir = std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into());
    let path = PathBuf::from(crate_dir).join("../../data/wordnet-dev").join(name);
    let bytes = std::fs::read(&path).map_err(|e| println!("SKIPPED wordnet-dev: {}: {e}", path.display())).ok()?;
    Some(bytes.chunks_exact(2).map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32()).collect())
}

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
