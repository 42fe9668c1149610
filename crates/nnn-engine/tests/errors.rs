//! Bad input becomes a typed error; cancellation and worker panics are reported, not fatal.

use nnn_engine::run::run_polled;
use nnn_engine::*;

fn m(data: &[f32], dim: usize) -> Matrix<'_> {
    Matrix::from_slice(data, dim, "m").unwrap()
}

#[test]
fn shapes_and_dimensions() {
    assert!(matches!(Matrix::from_slice(&[1.0; 5], 2, "x"), Err(EngineError::Shape { .. })));
    assert!(matches!(Matrix::from_slice(&[1.0; 4], 0, "x"), Err(EngineError::Shape { .. })));
    let b = CpuBackend::new(1).unwrap();
    let c = m(&[1.0; 6], 3);
    let r = m(&[1.0; 8], 4);
    assert!(matches!(reference_topk(&b, &c, &r, 1, &mut Unwatched), Err(EngineError::DimensionMismatch { .. })));
    let cands = Candidates::new(c.clone(), None).unwrap();
    assert!(matches!(search(&b, &cands, 0.5, &r, 1, &mut Unwatched), Err(EngineError::DimensionMismatch { .. })));
    assert!(matches!(Candidates::new(c, Some(vec![0.0])), Err(EngineError::DimensionMismatch { .. })));
}

#[test]
fn empty_sets_and_k_range() {
    let b = CpuBackend::new(1).unwrap();
    let c = m(&[1.0; 6], 3);
    assert_eq!(
        reference_topk(&b, &c, &m(&[], 3), 1, &mut Unwatched).unwrap_err(),
        EngineError::Empty { what: "reference set" }
    );
    let r = m(&[1.0; 9], 3);
    assert!(matches!(reference_topk(&b, &c, &r, 0, &mut Unwatched), Err(EngineError::KOutOfRange { k: 0, .. })));
    assert!(matches!(
        reference_topk(&b, &c, &r, 4, &mut Unwatched),
        Err(EngineError::KOutOfRange { k: 4, max: 3, .. })
    ));
    let cands = Candidates::new(c.clone(), None).unwrap();
    assert!(matches!(search(&b, &cands, 0.5, &r, 0, &mut Unwatched), Err(EngineError::KOutOfRange { .. })));
    // k above the candidate count returns every candidate; no candidates returns nothing.
    assert_eq!(search(&b, &cands, 0.5, &r, 10, &mut Unwatched).unwrap().k, 2);
    let none = Candidates::new(m(&[], 3), None).unwrap();
    let t = search(&b, &none, 0.5, &r, 10, &mut Unwatched).unwrap();
    assert_eq!((t.rows, t.k), (3, 0));
    // no reference rows but no candidates either is still an error: the set must exist.
    assert!(reference_topk(&b, &m(&[], 3), &m(&[], 3), 1, &mut Unwatched).is_err());
}

#[test]
fn non_finite_values() {
    let b = CpuBackend::new(1).unwrap();
    let good = m(&[1.0; 6], 3);
    let nan = [1.0, 2.0, 3.0, 0.0, f32::NAN, 0.0];
    assert_eq!(
        reference_topk(&b, &m(&nan, 3), &good, 1, &mut Unwatched).unwrap_err(),
        EngineError::NonFinite { what: "candidates", row: 1 }
    );
    let inf = [f32::INFINITY, 0.0, 0.0];
    assert!(matches!(reference_topk(&b, &good, &m(&inf, 3), 1, &mut Unwatched), Err(EngineError::NonFinite { .. })));
    let cands = Candidates::new(good.clone(), None).unwrap();
    assert!(matches!(search(&b, &cands, 0.5, &m(&inf, 3), 1, &mut Unwatched), Err(EngineError::NonFinite { .. })));
    assert!(matches!(
        search(&b, &cands, f32::NAN, &good, 1, &mut Unwatched),
        Err(EngineError::InvalidParameter { .. })
    ));
    assert!(matches!(
        Candidates::new(good, Some(vec![0.0, f32::NAN])),
        Err(EngineError::NonFinite { what: "bias", row: 1 })
    ));
    assert!(CpuBackend::new(0).is_err());
}

/// Cancels at the first poll that sees the work under way (some progress, not all of it),
/// and remembers the progress it saw.
#[derive(Default)]
struct CancelWhenUnderWay(Option<u64>);
impl Control for CancelWhenUnderWay {
    fn keep_going(&mut self, done: u64, total: u64) -> bool {
        if done > 0 && done < total {
            self.0 = Some(done);
        }
        self.0.is_none()
    }
}

#[test]
fn cancellation_stops_a_long_build() {
    // The cancel comes from the build's own progress, not from a clock: a build too small to
    // be seen under way on this machine is doubled until one is, so the test holds on any host.
    let dim = 256;
    let b = CpuBackend::new(2).unwrap();
    for rows in (0..6).map(|i| 2000usize << i) {
        let data: Vec<f32> = (0..rows * dim).map(|i| ((i * 7919) % 1000) as f32 / 1000.0).collect();
        let big = m(&data, dim);
        let mut control = CancelWhenUnderWay::default();
        match reference_topk(&b, &big, &big, 10, &mut control) {
            Err(e) => {
                assert_eq!(e, EngineError::Cancelled);
                let seen = control.0.expect("cancelled without a poll asking for it");
                assert!(seen < (rows * rows) as u64);
                return;
            }
            Ok(t) => assert!(control.0.is_none() && t.sims.rows == rows, "a cancelled build returned a result"),
        }
    }
    panic!("no build up to 64,000 x 64,000 was ever seen under way by a poll");
}

/// Records every progress report.
struct Record(Vec<(u64, u64)>);
impl Control for Record {
    fn keep_going(&mut self, done: u64, total: u64) -> bool {
        self.0.push((done, total));
        true
    }
}

#[test]
fn progress_is_reported_on_the_calling_thread() {
    let dim = 128;
    let data: Vec<f32> = (0..3000 * dim).map(|i| ((i * 31) % 97) as f32 / 97.0).collect();
    let big = m(&data, dim);
    let mut rec = Record(Vec::new());
    reference_topk(&CpuBackend::new(2).unwrap(), &big, &big, 5, &mut rec).unwrap();
    assert!(!rec.0.is_empty());
    assert!(rec.0.iter().all(|&(d, t)| d <= t && t == 3000 * 3000));
    assert!(rec.0.windows(2).all(|w| w[0].0 <= w[1].0));
}

#[test]
fn a_worker_panic_becomes_an_error() {
    let r: Result<()> = run_polled(2, 1, &mut Unwatched, |_| panic!("boom"));
    assert_eq!(r.unwrap_err(), EngineError::WorkerPanic("boom".into()));
    // the pool keeps working afterwards
    assert_eq!(run_polled(2, 1, &mut Unwatched, |_| Ok(7)).unwrap(), 7);
}
