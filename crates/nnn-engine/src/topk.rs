//! Per-row top-k selection with a total order: larger value first, lower index on ties.

/// `true` when `(v, i)` ranks before `(w, j)`.
#[inline]
pub fn ranks_before(v: f32, i: u32, w: f32, j: u32) -> bool {
    v > w || (v == w && i < j)
}

/// A `u64` whose ascending order is "ranks before": larger value first, then lower index, so
/// selections and sorts compare plain integers. Both zeros encode as +0 (they tie by index).
#[inline]
fn rank_key(v: f32, i: u32) -> u64 {
    let b = if v == 0.0 { 0 } else { v.to_bits() };
    let up = if b & 0x8000_0000 != 0 { !b } else { b | 0x8000_0000 };
    (u64::from(!up) << 32) | u64::from(i)
}

/// The value and index a [`rank_key`] encodes.
#[inline]
fn key_parts(key: u64) -> (f32, u32) {
    let up = !((key >> 32) as u32);
    let b = if up & 0x8000_0000 != 0 { up & 0x7fff_ffff } else { !up };
    (f32::from_bits(b), key as u32)
}

/// The running top-k of many rows, each in a buffer of 2k entries: an entry above the row's
/// threshold is appended (cheap); when the buffer is full the k best are kept and the k-th
/// value becomes the threshold. Columns must be offered in increasing index order per row, so
/// an entry equal to the threshold (a later, higher index) can be dropped.
pub struct RowsTopK {
    k: usize,
    cap: usize,
    buf: Vec<u64>,
    lens: Vec<usize>,
    thresholds: Vec<f32>,
}

impl RowsTopK {
    /// Empty buffers for `rows` rows keeping `k ≥ 1` entries each.
    pub fn new(rows: usize, k: usize) -> Self {
        let cap = 2 * k.max(1);
        Self { k, cap, buf: vec![0; rows * cap], lens: vec![0; rows], thresholds: vec![f32::NEG_INFINITY; rows] }
    }

    /// Values at or below this cannot enter row `r` (−∞ until its buffer first fills).
    #[inline]
    pub fn threshold(&self, r: usize) -> f32 {
        self.thresholds[r]
    }

    /// Adds `(v, i)` to row `r`; the caller has checked `v > threshold(r)`.
    #[inline]
    pub fn push(&mut self, r: usize, v: f32, i: u32) {
        let len = self.lens[r];
        self.buf[r * self.cap + len] = rank_key(v, i);
        self.lens[r] = len + 1;
        if len + 1 == self.cap {
            let row = &mut self.buf[r * self.cap..(r + 1) * self.cap];
            row.select_nth_unstable(self.k - 1);
            self.lens[r] = self.k;
            self.thresholds[r] = key_parts(row[self.k - 1]).0;
        }
    }

    /// The k best of each row, best first, as flat `(values, indices)`; `None` names the first
    /// row that received fewer than k entries (only NaN scores can cause that).
    pub fn finish(mut self) -> std::result::Result<(Vec<f32>, Vec<u32>), usize> {
        let rows = self.lens.len();
        let (mut vals, mut idx) = (Vec::with_capacity(rows * self.k), Vec::with_capacity(rows * self.k));
        for r in 0..rows {
            let len = self.lens[r];
            if len < self.k {
                return Err(r);
            }
            let row = &mut self.buf[r * self.cap..r * self.cap + len];
            if len > self.k {
                row.select_nth_unstable(self.k - 1);
            }
            let best = &mut row[..self.k];
            best.sort_unstable();
            for &key in best.iter() {
                let (v, i) = key_parts(key);
                vals.push(v);
                idx.push(i);
            }
        }
        Ok((vals, idx))
    }
}

/// Sorts `(vals, idx)` pairs best first, in place.
pub fn sort_best_first(vals: &mut [f32], idx: &mut [u32]) {
    let mut keys: Vec<u64> = vals.iter().zip(idx.iter()).map(|(&v, &i)| rank_key(v, i)).collect();
    keys.sort_unstable();
    for (n, key) in keys.into_iter().enumerate() {
        (vals[n], idx[n]) = key_parts(key);
    }
}

/// The k best columns of each row, best first: `values[r*k..(r+1)*k]` and `indices` alike.
#[derive(Debug, Clone, PartialEq)]
pub struct TopK {
    /// Number of rows (queries or candidates).
    pub rows: usize,
    /// Entries kept per row.
    pub k: usize,
    /// Scores, row-major, best first within each row.
    pub values: Vec<f32>,
    /// Column indices matching `values`.
    pub indices: Vec<u32>,
}

impl TopK {
    /// Values of row `r`, best first.
    pub fn row_values(&self, r: usize) -> &[f32] {
        &self.values[r * self.k..(r + 1) * self.k]
    }

    /// Column indices of row `r`, best first.
    pub fn row_indices(&self, r: usize) -> &[u32] {
        &self.indices[r * self.k..(r + 1) * self.k]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rank_keys_order_like_ranks_before_and_round_trip() {
        let values = [f32::NEG_INFINITY, -3.5, -1e-30, -0.0, 0.0, 1e-30, 2.0, 7.25, f32::INFINITY];
        let entries: Vec<(f32, u32)> = values.iter().flat_map(|&v| [(v, 0u32), (v, 1), (v, u32::MAX)]).collect();
        for &(v, i) in &entries {
            let (w, j) = key_parts(rank_key(v, i));
            assert!(w == v && j == i, "({v}, {i}) came back as ({w}, {j})");
            for &(x, k) in &entries {
                let tie = v == x && i == k;
                assert_eq!(rank_key(v, i) < rank_key(x, k), !tie && ranks_before(v, i, x, k), "({v},{i}) vs ({x},{k})");
            }
        }
    }
}
