//! Per-row top-k selection with a total order: larger value first, lower index on ties.

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
pub(crate) struct RowsTopK {
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

/// Per row, every column whose *estimated* value (within `margin` of its exact value) could
/// still be among the row's k best exact values: those above the k-th best estimate less twice
/// the margin. Exact values of the survivors then give the exact top k. Columns must be offered
/// in increasing index order per row.
///
/// Each row has room for `2k + 64` entries. Where many estimates lie within the margins of each
/// other (near-duplicate rows), a row stays crowded after dropping what cannot matter;
/// [`RowsShortlist::push`] then asks the caller to [`settle`](RowsShortlist::settle) it with
/// exact values.
pub(crate) struct RowsShortlist {
    k: usize,
    cap: usize,
    margins: Vec<f64>,
    buf: Vec<u64>,
    lens: Vec<usize>,
    floors: Vec<f32>,
}

/// The shortlisted columns of many rows, flat: row `i`'s are `cols[starts[i]..starts[i + 1]]`,
/// ascending.
#[derive(Debug, Default)]
pub(crate) struct Shortlists {
    /// Where each row's columns begin in `cols`, and the total at the end.
    pub starts: Vec<usize>,
    /// All rows' columns, row after row.
    pub cols: Vec<u32>,
}

impl RowsShortlist {
    /// Empty shortlists keeping at least `k ≥ 1` entries, row `r` with margin `margins[r] > 0`.
    pub fn new(k: usize, margins: Vec<f64>) -> Self {
        debug_assert!(margins.iter().all(|&m| m > 0.0));
        let k = k.max(1);
        let cap = 2 * k + 64;
        let rows = margins.len();
        Self { k, cap, margins, buf: vec![0; rows * cap], lens: vec![0; rows], floors: vec![f32::NEG_INFINITY; rows] }
    }

    /// Estimates at or below this cannot matter to row `r`.
    #[inline]
    pub fn floor(&self, r: usize) -> f32 {
        self.floors[r]
    }

    /// Adds estimate `v` of column `i` to row `r` (the caller has checked `v > floor(r)`).
    /// Returns `true` when the row stays crowded and should be settled.
    #[inline]
    pub fn push(&mut self, r: usize, v: f32, i: u32) -> bool {
        let len = self.lens[r];
        self.buf[r * self.cap + len] = rank_key(v, i);
        self.lens[r] = len + 1;
        len + 1 == self.cap && self.compact(r)
    }

    /// Drops the entries of row `r` that can no longer matter and raises its floor; `true`
    /// when more than half of the room beyond k stays taken.
    fn compact(&mut self, r: usize) -> bool {
        let (k, len) = (self.k, self.lens[r]);
        if len < k {
            return false;
        }
        let row = &mut self.buf[r * self.cap..r * self.cap + len];
        row.select_nth_unstable(k - 1);
        let floor = f32_at_most(f64::from(key_parts(row[k - 1]).0) - 2.0 * self.margins[r]);
        // The k best are above the floor; of the rest keep those ranking before (floor, 0).
        let limit = rank_key(floor, 0);
        let mut kept = k;
        for j in k..len {
            if row[j] < limit {
                row[kept] = row[j];
                kept += 1;
            }
        }
        self.lens[r] = kept;
        self.floors[r] = floor;
        kept > k + (self.cap - k) / 2
    }

    /// Replaces row `r`'s estimates by `exact(column)` and keeps only the k best: the exact
    /// values of the k kept are at least as good as any later estimate's column can need.
    pub fn settle(&mut self, r: usize, exact: impl Fn(u32) -> f32) {
        let row = &mut self.buf[r * self.cap..r * self.cap + self.lens[r]];
        for key in row.iter_mut() {
            let i = *key as u32;
            *key = rank_key(exact(i), i);
        }
        row.select_nth_unstable(self.k - 1);
        self.lens[r] = self.k;
        self.compact(r);
    }

    /// Appends each row's surviving columns, in increasing order, to `out`.
    pub fn finish_into(mut self, out: &mut Shortlists) {
        for r in 0..self.lens.len() {
            self.compact(r);
            let start = out.cols.len();
            out.cols.extend(self.buf[r * self.cap..r * self.cap + self.lens[r]].iter().map(|&key| key as u32));
            out.cols[start..].sort_unstable();
            out.starts.push(out.cols.len());
        }
    }
}

/// The largest f32 not above `t`.
fn f32_at_most(t: f64) -> f32 {
    let f = t as f32;
    if f64::from(f) > t {
        f.next_down()
    } else {
        f
    }
}

/// Sorts `(vals, idx)` pairs best first, in place.
pub(crate) fn sort_best_first(vals: &mut [f32], idx: &mut [u32]) {
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

    /// The order the keys encode, stated directly: `(v, i)` ranks before `(w, j)`.
    fn ranks_before(v: f32, i: u32, w: f32, j: u32) -> bool {
        v > w || (v == w && i < j)
    }

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

    #[test]
    fn at_most_rounds_down() {
        for t in [0.1f64, -0.1, 1.0 / 3.0, 1e30, -7.0, f64::NEG_INFINITY, f64::INFINITY] {
            let f = f32_at_most(t);
            assert!(f64::from(f) <= t && (t.is_infinite() || f64::from(f.next_up()) > t), "{t} -> {f}");
        }
    }

    #[test]
    fn shortlists_keep_every_column_that_can_matter_and_stay_bounded() {
        // Row 0: estimates 0, 1, …; margin 2.5 keeps everything within 5 of the k-th best.
        let mut short = RowsShortlist::new(3, vec![2.5, 0.25]);
        for i in 0..100u32 {
            assert!(!short.push(0, i as f32, i), "few survivors: nothing to settle");
        }
        // Row 1: all estimates equal: every column survives until the row is settled.
        let mut settled = 0;
        for i in 0..1000u32 {
            if 0.5 > short.floor(1) && short.push(1, 0.5, i) {
                settled += 1;
                short.settle(1, |c| c as f32 * 1e-3);
            }
        }
        assert!(settled >= 1000 / (2 * 3 + 64), "equal estimates crowd the row: settled {settled} times");
        let mut out = Shortlists { starts: vec![0], cols: Vec::new() };
        short.finish_into(&mut out);
        assert_eq!(
            out.cols[out.starts[0]..out.starts[1]],
            (93..100).collect::<Vec<u32>>(),
            "above the 3rd best (97) less 2 margins"
        );
        let row1 = out.starts[2] - out.starts[1];
        assert!((3..=2 * 3 + 64).contains(&row1), "bounded: {row1}");
    }
}
