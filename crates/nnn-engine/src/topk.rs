//! Per-row top-k selection with a total order: larger value first, lower index on ties.

/// `true` when `(v, i)` ranks before `(w, j)`.
#[inline]
pub fn ranks_before(v: f32, i: u32, w: f32, j: u32) -> bool {
    v > w || (v == w && i < j)
}

/// A bounded min-heap (worst entry at the root) over borrowed storage of capacity k.
pub struct RowHeap<'a> {
    vals: &'a mut [f32],
    idx: &'a mut [u32],
    len: usize,
}

impl<'a> RowHeap<'a> {
    /// A heap over `vals`/`idx` (same length k ≥ 1) whose first `len` entries already form a heap.
    pub fn resume(vals: &'a mut [f32], idx: &'a mut [u32], len: usize) -> Self {
        debug_assert_eq!(vals.len(), idx.len());
        Self { vals, idx, len }
    }

    /// Values at or below this never enter (−∞ while the heap is not full).
    #[inline]
    pub fn threshold(&self) -> f32 {
        if self.len < self.vals.len() {
            f32::NEG_INFINITY
        } else {
            self.vals[0]
        }
    }

    /// Offers an entry; it is kept when the heap is not full or it ranks before the worst.
    #[inline]
    pub fn offer(&mut self, v: f32, i: u32) {
        let cap = self.vals.len();
        if self.len < cap {
            let mut pos = self.len;
            self.len += 1;
            while pos > 0 {
                let parent = (pos - 1) / 2;
                if ranks_before(self.vals[parent], self.idx[parent], v, i) {
                    self.vals[pos] = self.vals[parent];
                    self.idx[pos] = self.idx[parent];
                    pos = parent;
                } else {
                    break;
                }
            }
            self.vals[pos] = v;
            self.idx[pos] = i;
        } else if ranks_before(v, i, self.vals[0], self.idx[0]) {
            let mut pos = 0;
            loop {
                let l = 2 * pos + 1;
                if l >= cap {
                    break;
                }
                let r = l + 1;
                let worst =
                    if r < cap && ranks_before(self.vals[l], self.idx[l], self.vals[r], self.idx[r]) { r } else { l };
                if ranks_before(v, i, self.vals[worst], self.idx[worst]) {
                    self.vals[pos] = self.vals[worst];
                    self.idx[pos] = self.idx[worst];
                    pos = worst;
                } else {
                    break;
                }
            }
            self.vals[pos] = v;
            self.idx[pos] = i;
        }
    }

    /// Number of entries held.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the heap holds nothing.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// Sorts `(vals, idx)` pairs best first, in place.
pub fn sort_best_first(vals: &mut [f32], idx: &mut [u32]) {
    let mut pairs: Vec<(f32, u32)> = vals.iter().copied().zip(idx.iter().copied()).collect();
    pairs.sort_unstable_by(|a, b| {
        if ranks_before(a.0, a.1, b.0, b.1) {
            std::cmp::Ordering::Less
        } else if ranks_before(b.0, b.1, a.0, a.1) {
            std::cmp::Ordering::Greater
        } else {
            std::cmp::Ordering::Equal
        }
    });
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
