//! Per-row top-k selection with a total order: larger value first, lower index on ties.

/// `true` when `(v, i)` ranks before `(w, j)`.
#[inline]
pub fn ranks_before(v: f32, i: u32, w: f32, j: u32) -> bool {
    v > w || (v == w && i < j)
}

/// Total order "ranks before" as an [`std::cmp::Ordering`] (best first).
#[inline]
fn best_first(a: &(f32, u32), b: &(f32, u32)) -> std::cmp::Ordering {
    if ranks_before(a.0, a.1, b.0, b.1) {
        std::cmp::Ordering::Less
    } else if ranks_before(b.0, b.1, a.0, a.1) {
        std::cmp::Ordering::Greater
    } else {
        std::cmp::Ordering::Equal
    }
}

/// The running top-k of many rows, each in a buffer of 2k entries: an entry above the row's
/// threshold is appended (cheap); when the buffer is full the k best are kept and the k-th
/// value becomes the threshold. Columns must be offered in increasing index order per row, so
/// an entry equal to the threshold (a later, higher index) can be dropped.
pub struct RowsTopK {
    k: usize,
    cap: usize,
    buf: Vec<(f32, u32)>,
    lens: Vec<usize>,
    thresholds: Vec<f32>,
}

impl RowsTopK {
    /// Empty buffers for `rows` rows keeping `k ≥ 1` entries each.
    pub fn new(rows: usize, k: usize) -> Self {
        let cap = 2 * k.max(1);
        Self { k, cap, buf: vec![(0.0, 0); rows * cap], lens: vec![0; rows], thresholds: vec![f32::NEG_INFINITY; rows] }
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
        self.buf[r * self.cap + len] = (v, i);
        self.lens[r] = len + 1;
        if len + 1 == self.cap {
            let row = &mut self.buf[r * self.cap..(r + 1) * self.cap];
            row.select_nth_unstable_by(self.k - 1, best_first);
            self.lens[r] = self.k;
            self.thresholds[r] = row[self.k - 1].0;
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
                row.select_nth_unstable_by(self.k - 1, best_first);
            }
            let best = &mut row[..self.k];
            best.sort_unstable_by(best_first);
            vals.extend(best.iter().map(|e| e.0));
            idx.extend(best.iter().map(|e| e.1));
        }
        Ok((vals, idx))
    }
}

/// Sorts `(vals, idx)` pairs best first, in place.
pub fn sort_best_first(vals: &mut [f32], idx: &mut [u32]) {
    let mut pairs: Vec<(f32, u32)> = vals.iter().copied().zip(idx.iter().copied()).collect();
    pairs.sort_unstable_by(best_first);
    for (n, (v, i)) in pairs.into_iter().enumerate() {
        vals[n] = v;
        idx[n] = i;
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
