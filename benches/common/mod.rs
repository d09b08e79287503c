//! What more than one bench needs: two threads started together, and a padded counter.

use std::sync::atomic::AtomicU64;
use std::sync::Barrier;
use std::time::{Duration, Instant};

/// Runs `work(thread, iters)` on two threads released together; returns the slower thread's
/// time.
pub fn two_threads(iters: u64, work: impl Fn(usize, u64) + Sync) -> Duration {
    let barrier = Barrier::new(2);
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..2)
            .map(|t| {
                let (barrier, work) = (&barrier, &work);
                s.spawn(move || {
                    barrier.wait();
                    let start = Instant::now();
                    work(t, iters);
                    start.elapsed()
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap())
            .max()
            .unwrap()
    })
}

/// A counter on a line of its own (128 bytes: adjacent-line prefetchers pull pairs).
#[repr(align(128))]
pub struct Padded(pub AtomicU64);
