//! An approximate NNN index: a Faiss index over `[r, bias]`, searched with `[q, −α]`, so α
//! changes per query without a rebuild. Maximum inner product becomes nearest neighbour by
//! one more coordinate, `sqrt(M² − |[r, bias]|²)` (0 for queries, `M` the largest norm at
//! build time), so graph and clustering structures (HNSW, IVF), which assume a metric, keep
//! their recall; rows added later that are longer than `M` are kept on a side list that
//! every search proposes. Faiss labels are slots (insertion order); each slot maps to a candidate id.
//! Replacing or deleting an id marks its old slot dead, so rows can be added and removed
//! without retraining, whatever the Faiss structure.

use super::index::{add_blocks, search_blocks, trained, tune};
use super::{augmented, faiss_error, native};
pub use super::{AnnParams, AnnSearch};
use crate::control::Control;
use crate::error::{EngineError, Result};
use crate::run::run_polled;
use crate::search::Candidates;
use faiss::index::IndexImpl;
use faiss::{Index, MetricType};
use std::collections::{HashMap, HashSet};

/// Searches of at most this many queries run on the calling thread with one OpenMP thread
/// (no thread is started, so no signal mask matters): the pool's hand-off costs more than
/// such a search.
const INLINE_QUERIES: usize = 4;
/// First bytes of [`AnnIndex::to_bytes`]'s format.
const MAGIC: &[u8; 8] = b"NNNANN01";

/// A Faiss index over augmented candidate vectors with its slot → id map.
pub struct AnnIndex {
    index: IndexImpl,
    factory: String,
    dim: usize,
    /// `M`: the largest norm of `[r, bias]` at build time.
    radius: f32,
    ids: Vec<i64>,
    dead: Vec<bool>,
    /// Slots of rows longer than `radius`, which the lift cannot place: always proposed.
    outside: Vec<usize>,
    live: HashMap<i64, usize>,
}

impl AnnIndex {
    /// Trains a Faiss `factory` structure (e.g. `IVF1024,Flat`, `HNSW32`) on `cands` and adds
    /// them; `ids[i]` names row `i`. Inner-product metric over `[r, bias]`.
    pub fn build(
        factory: &str,
        cands: &Candidates,
        ids: &[i64],
        threads: usize,
        control: &mut dyn Control,
    ) -> Result<Self> {
        let v = cands.vectors();
        v.check_not_empty("candidates")?;
        check_ids(ids, v.rows())?;
        let dim = v.dim();
        let data = augmented(v.as_slice(), dim, bias_values(cands));
        let radius =
            data.chunks_exact(dim + 1).map(|r| r.iter().map(|x| x * x).sum::<f32>()).fold(0.0, f32::max).sqrt();
        let (data, _) = lifted(&data, dim + 1, radius);
        let index = run_polled(threads, v.rows() as u64, control, |progress| {
            native::set_threads(threads);
            trained(factory, dim + 2, MetricType::L2, &data, progress)
        })?;
        let (factory, dead, live) = (factory.to_string(), Vec::new(), HashMap::new());
        let mut out = Self { index, factory, dim, radius, ids: Vec::new(), dead, outside: Vec::new(), live };
        out.record(ids, &[]);
        Ok(out)
    }

    /// Gives `ids` the next slots; `longer[i]` says row `i` lies outside the radius.
    fn record(&mut self, ids: &[i64], longer: &[bool]) {
        for (i, &id) in ids.iter().enumerate() {
            if let Some(old) = self.live.insert(id, self.ids.len()) {
                self.dead[old] = true;
            }
            if longer.get(i) == Some(&true) {
                self.outside.push(self.ids.len());
            }
            self.ids.push(id);
            self.dead.push(false);
        }
    }

    /// Adds `cands` under `ids` without retraining; an id already present is replaced.
    pub fn add(&mut self, cands: &Candidates, ids: &[i64], threads: usize, control: &mut dyn Control) -> Result<()> {
        let v = cands.vectors();
        if v.rows() == 0 {
            return Ok(());
        }
        v.check_dim(self.dim, "added rows vs index")?;
        check_ids(ids, v.rows())?;
        let (data, longer) = lifted(&augmented(v.as_slice(), self.dim, bias_values(cands)), self.dim + 1, self.radius);
        let (index, row) = (&mut self.index, self.dim + 2);
        run_polled(threads, v.rows() as u64, control, |progress| {
            native::set_threads(threads);
            add_blocks(index, &data, row, progress)
        })?;
        self.record(ids, &longer);
        Ok(())
    }

    /// Marks the slots of `ids` dead (deleted or about to be replaced).
    pub fn remove(&mut self, ids: &HashSet<i64>) {
        for id in ids {
            if let Some(slot) = self.live.remove(id) {
                self.dead[slot] = true;
            }
        }
    }

    /// The ids of the (about) `k` best live rows by `q·r − α·bias(r)` for each query row, best
    /// first by the index's own (possibly approximate) scores, then the rows outside the
    /// radius, leaving out the ids in `skip` (rows the caller scores from fresher data);
    /// callers re-score exactly.
    pub fn search(&self, search: &AnnSearch, threads: usize, control: &mut dyn Control) -> Result<Vec<Vec<i64>>> {
        let AnnSearch { queries, alpha, k, skip, params } = *search;
        if !alpha.is_finite() {
            return Err(EngineError::InvalidParameter { name: "alpha", value: alpha.to_string() });
        }
        let total = self.ids.len();
        if k == 0 || total == 0 {
            return Err(EngineError::KOutOfRange { k, max: total, what: "results per query" });
        }
        queries.check_dim(self.dim, "query vs index")?;
        queries.check_finite("query")?;
        tune(&self.index, &self.factory, params)?;
        let (q, _) =
            lifted(&augmented(queries.as_slice(), self.dim, std::iter::repeat(-alpha)), self.dim + 1, f32::NAN);
        // Ask for enough that k remain after dropping dead and skipped slots at their share;
        // ask again for twice as many while some query falls short and Faiss had more.
        let kept = self.live.len().saturating_sub(skip.len()).max(1) as f64 / total as f64;
        let mut fetch = ((k as f64 / kept).ceil() as usize + 8).min(total);
        loop {
            let labels = self.labels(&q, queries.rows(), fetch, threads, control)?;
            let mut short = false;
            let out: Vec<Vec<i64>> = labels
                .chunks(fetch)
                .map(|found| {
                    let ids: Vec<i64> = found
                        .iter()
                        .filter(|&&slot| slot >= 0 && !self.dead[slot as usize])
                        .map(|&slot| self.ids[slot as usize])
                        .filter(|id| !skip.contains(id))
                        .take(k)
                        .collect();
                    short |= ids.len() < k && found.iter().all(|&slot| slot >= 0);
                    ids
                })
                .collect();
            if !short || fetch == total {
                let outside = self.outside.iter().filter(|&&s| !self.dead[s]).map(|&s| self.ids[s]);
                let outside: Vec<i64> = outside.filter(|id| !skip.contains(id)).collect();
                return Ok(out
                    .into_iter()
                    .map(|mut ids| {
                        ids.extend(&outside);
                        ids
                    })
                    .collect());
            }
            fetch = (fetch * 2).min(total);
        }
    }

    /// Faiss's `fetch` best slots (−1 where it found fewer) for each of `rows` lifted queries.
    fn labels(
        &self,
        q: &[f32],
        rows: usize,
        fetch: usize,
        threads: usize,
        control: &mut dyn Control,
    ) -> Result<Vec<i64>> {
        if rows <= INLINE_QUERIES {
            if !control.keep_going(0, 1) {
                return Err(EngineError::Cancelled);
            }
            native::set_threads(1);
            return Ok(native::search(&self.index, q, fetch)?.1);
        }
        run_polled(threads, rows as u64, control, |progress| {
            native::set_threads(threads);
            Ok(search_blocks(&self.index, q, self.dim + 2, fetch, progress)?.1)
        })
    }

    /// The Faiss factory string this index was built with.
    pub fn factory(&self) -> &str {
        &self.factory
    }

    /// Candidate dimension (the index holds two more: the bias and the lift).
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Rows that searches can return.
    pub fn live_rows(&self) -> usize {
        self.live.len()
    }

    /// Slots of removed or replaced rows, still held until a rebuild.
    pub fn dead_rows(&self) -> usize {
        self.ids.len() - self.live.len()
    }

    /// Self-contained bytes: a header, the slot ids and dead flags, then Faiss's own format.
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        let body = native::to_bytes(&self.index)?;
        let mut out = Vec::with_capacity(body.len() + self.ids.len() * 9 + 64);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&(self.dim as u64).to_le_bytes());
        out.extend_from_slice(&self.radius.to_le_bytes());
        out.extend_from_slice(&(self.factory.len() as u64).to_le_bytes());
        out.extend_from_slice(self.factory.as_bytes());
        out.extend_from_slice(&(self.ids.len() as u64).to_le_bytes());
        self.ids.iter().for_each(|id| out.extend_from_slice(&id.to_le_bytes()));
        let mut flags: Vec<u8> = self.dead.iter().map(|&d| d as u8).collect();
        self.outside.iter().for_each(|&s| flags[s] |= 2);
        out.extend(flags);
        out.extend_from_slice(&body);
        Ok(out)
    }

    /// Reads [`to_bytes`](Self::to_bytes)'s output back.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        let bad = |why: &str| faiss_error("deserialize", why);
        let mut r = Reader(bytes);
        if r.take(8)? != MAGIC {
            return Err(bad("not an nnn Faiss index"));
        }
        let dim = r.u64()? as usize;
        let radius = f32::from_le_bytes(r.take(4)?.try_into().unwrap());
        let flen = r.u64()? as usize;
        let factory = String::from_utf8(r.take(flen)?.to_vec()).map_err(|_| bad("factory is not UTF-8"))?;
        let n = r.u64()? as usize;
        let id_bytes = r.take(n.checked_mul(8).ok_or_else(|| bad("bad row count"))?)?;
        let ids: Vec<i64> = id_bytes.chunks_exact(8).map(|c| i64::from_le_bytes(c.try_into().unwrap())).collect();
        let flags = r.take(n)?;
        let dead: Vec<bool> = flags.iter().map(|&b| b & 1 != 0).collect();
        let outside = (0..n).filter(|&s| flags[s] & 2 != 0).collect();
        let index = native::from_bytes(r.0)?;
        if index.d() as usize != dim + 2 || index.ntotal() as usize != n {
            return Err(bad("header does not match the Faiss index"));
        }
        let live =
            ids.iter().zip(&dead).enumerate().filter(|(_, (_, &d))| !d).map(|(slot, (&id, _))| (id, slot)).collect();
        Ok(Self { index, factory, dim, radius, ids, dead, outside, live })
    }
}

/// Rows of `row` values with one more, `sqrt(radius² − |x|²)`, or 0 for every row when
/// `radius` is NaN (queries); and which rows are longer than `radius` (they get 0).
fn lifted(data: &[f32], row: usize, radius: f32) -> (Vec<f32>, Vec<bool>) {
    let mut out = Vec::with_capacity(data.len() / row * (row + 1));
    let mut longer = Vec::with_capacity(data.len() / row);
    for x in data.chunks_exact(row) {
        out.extend_from_slice(x);
        let room = radius * radius - x.iter().map(|v| v * v).sum::<f32>();
        longer.push(room < 0.0);
        out.push(if radius.is_nan() { 0.0 } else { room.max(0.0).sqrt() });
    }
    (out, longer)
}

/// Reads a byte string front to back; running out is a "truncated" error.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        if self.0.len() < n {
            return Err(faiss_error("deserialize", "truncated"));
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Ok(head)
    }

    fn u64(&mut self) -> Result<u64> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().unwrap()))
    }
}

fn check_ids(ids: &[i64], rows: usize) -> Result<()> {
    if ids.len() != rows {
        return Err(EngineError::DimensionMismatch { what: "ids vs candidate rows", expected: rows, found: ids.len() });
    }
    Ok(())
}

/// Each candidate's bias, 0 where the candidates have none.
fn bias_values<'c>(cands: &'c Candidates) -> impl Iterator<Item = f32> + 'c {
    let bias = cands.bias();
    (0..cands.vectors().rows()).map(move |i| bias.map_or(0.0, |b| b[i]))
}
