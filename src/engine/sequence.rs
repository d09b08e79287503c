//! Per-thread sequences: the round-robin cursor and the seeded random source, without a
//! shared cache line.
//!
//! One atomic counter shared by every thread costs about 11x a plain `fetch_add` as soon as
//! two threads pick at once, because its cache line bounces between cores (see the crate's
//! benchmarks). A [`Sequence`] therefore keeps [`STRIPES`] counters, each on its own 128-byte
//! line, and each thread always uses the same one. A thread's own calls see one exact
//! sequence while it has its stripe to itself.
//!
//! A thread takes, when it first picks from any balancer, the stripe the fewest live threads
//! hold, and gives it back when it exits. So as long as at most [`STRIPES`] threads that have
//! picked are alive at once, every live thread has a stripe of its own, also in thread pools
//! that churn; beyond that, threads share stripes, which stays correct (every step is one
//! atomic add: the picks of the threads sharing a stripe together follow one exact sequence)
//! but is no longer exact per thread. A
//! [`Sequence`] numbers its stripes from the first thread that uses it, so that thread always
//! gets stripe 0, whatever its number: a seeded random source replays in any thread, and a
//! counter starts at the same value. The other stripes are staggered: a counter's stripe i
//! starts i further on, so that threads that pick alike (a pool of workers, or threads that
//! pick once each) spread over the backends like one shared cursor would, instead of all
//! starting on the first backend and moving in lockstep.

#[cfg(lbkit_loom)]
use crate::engine::sync::stripe;
use crate::engine::sync::{AtomicU64, AtomicUsize, Ordering};
use crate::placement::{splitmix64, GAMMA};

/// [`Sequence::first`] before any thread has drawn.
const NO_THREAD_YET: usize = usize::MAX;

/// How many independent counters a [`Sequence`] keeps.
pub(crate) const STRIPES: usize = 16;

/// A value on a cache line of its own (128 bytes: two 64-byte lines, because adjacent-line
/// prefetchers pull pairs).
#[derive(Debug, Default)]
#[repr(align(128))]
pub(crate) struct Padded<V>(pub(crate) V);

/// Live threads holding each stripe. (Under `--cfg lbkit_loom` the model sets each thread's
/// stripe instead: `engine::sync`.)
#[cfg(not(lbkit_loom))]
static HOLDERS: [AtomicUsize; STRIPES] = [const { AtomicUsize::new(0) }; STRIPES];

/// A thread's stripe, given back when the thread exits.
#[cfg(not(lbkit_loom))]
struct Held(usize);

#[cfg(not(lbkit_loom))]
impl Held {
    /// Takes the stripe the fewest live threads hold (the lowest such).
    fn take() -> Held {
        // Relaxed: two threads racing may take the same stripe, which costs exactness per
        // thread, never correctness; nothing else is published through these counts.
        let least = (0..STRIPES)
            .min_by_key(|&i| HOLDERS[i].load(Ordering::Relaxed))
            .unwrap_or(0);
        HOLDERS[least].fetch_add(1, Ordering::Relaxed);
        Held(least)
    }
}

#[cfg(not(lbkit_loom))]
impl Drop for Held {
    fn drop(&mut self) {
        // Relaxed: see `take`.
        HOLDERS[self.0].fetch_sub(1, Ordering::Relaxed);
    }
}

/// The stripe of the calling thread (see the module docs).
#[cfg(not(lbkit_loom))]
fn stripe() -> usize {
    thread_local! {
        static STRIPE: Held = Held::take();
    }
    // A pick from another thread-local's destructor, after this one was destroyed, shares
    // stripe 0.
    STRIPE.try_with(|s| s.0).unwrap_or(0)
}

/// [`STRIPES`] counters on separate cache lines; the calling thread advances its own.
#[derive(Debug)]
pub(crate) struct Sequence {
    stripes: Box<[Padded<AtomicU64>]>,
    /// The stripe of the first thread that used the sequence: stripes are counted from it,
    /// so that thread gets stripe 0 whatever its number. Written once, then only read: it
    /// does not bounce between cores.
    first: AtomicUsize,
}

impl Sequence {
    /// Counters staggered from `start`: the first thread's starts at `start`, stripe i at
    /// `start + i`.
    pub(crate) fn counter(start: u64) -> Self {
        Sequence {
            stripes: (0..STRIPES as u64)
                .map(|i| Padded(AtomicU64::new(start.wrapping_add(i))))
                .collect(),
            first: AtomicUsize::new(NO_THREAD_YET),
        }
    }

    /// A random source: each stripe is a SplitMix64 state derived from `seed` and the stripe
    /// number (counted from the first thread to draw), so threads draw independent streams
    /// and the calls of one thread replay exactly, in any thread.
    pub(crate) fn random(seed: u64) -> Self {
        Sequence {
            stripes: (0..STRIPES as u64)
                .map(|s| Padded(AtomicU64::new(splitmix64(seed ^ s.wrapping_mul(GAMMA)))))
                .collect(),
            first: AtomicUsize::new(NO_THREAD_YET),
        }
    }

    /// The calling thread's stripe, counted from the first thread that used this sequence.
    #[inline]
    fn mine(&self) -> &AtomicU64 {
        let mine = stripe();
        // Relaxed: `first` guards no other memory; each thread only needs one agreed value,
        // which the compare-exchange gives (its value is final once set).
        let mut first = self.first.load(Ordering::Relaxed);
        if first == NO_THREAD_YET {
            first = match self.first.compare_exchange(
                NO_THREAD_YET,
                mine,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => mine,
                Err(winner) => winner,
            };
        }
        &self.stripes[(mine + STRIPES - first) % STRIPES].0
    }

    /// The calling thread's next counter value.
    #[inline]
    pub(crate) fn next(&self) -> u64 {
        // Relaxed: the counter orders no other memory; atomicity alone makes every value
        // handed out exactly once.
        self.mine().fetch_add(1, Ordering::Relaxed)
    }

    /// The calling thread's next counter value, where a value handed out twice or skipped
    /// does no harm (a draw spread over shares): a plain load and store, no locked
    /// read-modify-write. Threads sharing a stripe may lose each other's steps, which repeats
    /// a value; one thread alone on its stripe sees its exact sequence, as with
    /// [`next`](Sequence::next).
    #[inline]
    pub(crate) fn next_unsynchronized(&self) -> u64 {
        let mine = self.mine();
        // Relaxed: nothing is published through the counter, and a lost step is allowed.
        let value = mine.load(Ordering::Relaxed);
        mine.store(value.wrapping_add(1), Ordering::Relaxed);
        value
    }

    /// The calling thread's next random 64-bit value (SplitMix64 over its stripe).
    #[inline]
    pub(crate) fn next_random(&self) -> u64 {
        // Relaxed: as in `next`, only atomicity matters.
        let state = self.mine().fetch_add(GAMMA, Ordering::Relaxed);
        splitmix64(state.wrapping_add(GAMMA))
    }
}

/// A seed for policies built without one: std's per-process random hasher keys (not used
/// for placement) mixed with the clock.
pub(crate) fn entropy_seed() -> u64 {
    use std::hash::{BuildHasher, RandomState};
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    RandomState::new().hash_one(nanos)
}

/// Maps a uniform 64-bit value to `0..n` without division (Lemire's multiply-shift), and
/// returns the low half of the product too: a second uniform value, independent enough of the
/// index for a coin flip.
#[inline]
pub(crate) fn uniform(x: u64, n: usize) -> (usize, u64) {
    let wide = u128::from(x) * n as u128;
    ((wide >> 64) as usize, wide as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Held by the tests whose threads take stripes, so that they do not take each other's.
    static STRIPE_TESTS: std::sync::Mutex<()> = std::sync::Mutex::new(());

    fn serial() -> std::sync::MutexGuard<'static, ()> {
        STRIPE_TESTS.lock().unwrap_or_else(|e| e.into_inner())
    }

    #[test]
    fn one_thread_sees_one_exact_counter() {
        let s = Sequence::counter(5);
        let got: Vec<u64> = (0..4).map(|_| s.next()).collect();
        assert_eq!(got, [5, 6, 7, 8]);
    }

    #[test]
    fn same_seed_same_stream_other_seed_other_stream() {
        let a = Sequence::random(7);
        let b = Sequence::random(7);
        let c = Sequence::random(8);
        let xa: Vec<u64> = (0..8).map(|_| a.next_random()).collect();
        let xb: Vec<u64> = (0..8).map(|_| b.next_random()).collect();
        let xc: Vec<u64> = (0..8).map(|_| c.next_random()).collect();
        assert_eq!(xa, xb);
        assert_ne!(xa, xc);
    }

    #[test]
    fn uniform_stays_in_range() {
        for x in [0, 1, u64::MAX / 2, u64::MAX] {
            for n in [1, 2, 3, 1000] {
                assert!(uniform(x, n).0 < n);
            }
        }
        assert_eq!(uniform(u64::MAX, 10).0, 9);
    }

    /// Four threads alive at once each get a stripe of their own: distinct stripes, and each
    /// thread's values are one exact run (its stripe's start, +1 per call) although the
    /// threads draw in lockstep, turn about. Stripes are taken one thread at a time, so two
    /// takers cannot race for the same one (other tests of this binary may hold some
    /// meanwhile; with fewer than 16 threads alive, each taker still finds one nobody holds).
    #[test]
    fn threads_use_separate_stripes() {
        use std::sync::{mpsc, Arc, Barrier};
        let _serial = serial();
        const THREADS: usize = 4;
        let s = Arc::new(Sequence::counter(1000));
        let start = Arc::new(Barrier::new(THREADS));
        let (took, taken) = mpsc::channel();
        let mut handles = Vec::new();
        for _ in 0..THREADS {
            let (s, start, took) = (Arc::clone(&s), Arc::clone(&start), took.clone());
            handles.push(std::thread::spawn(move || {
                let first = s.next();
                took.send(()).unwrap();
                let mut values = vec![first];
                for _ in 0..100 {
                    // Everyone draws once per round: a shared stripe would interleave.
                    start.wait();
                    values.push(s.next());
                }
                (stripe(), values)
            }));
            // The next thread takes its stripe only once this one holds its own.
            taken.recv().unwrap();
        }
        let results: Vec<(usize, Vec<u64>)> =
            handles.into_iter().map(|h| h.join().unwrap()).collect();
        let mut stripes: Vec<usize> = results.iter().map(|r| r.0).collect();
        stripes.sort_unstable();
        stripes.dedup();
        assert_eq!(
            stripes.len(),
            THREADS,
            "threads shared stripes: {results:?}"
        );
        for (stripe, values) in &results {
            let exact: Vec<u64> = (values[0]..values[0] + values.len() as u64).collect();
            assert_eq!(values, &exact, "stripe {stripe}: not one exact run");
        }
        // The first thread's run starts at the counter's start, the others' elsewhere.
        assert_eq!(results[0].1[0], 1000);
        let mut firsts: Vec<u64> = results.iter().map(|r| r.1[0]).collect();
        firsts.sort_unstable();
        firsts.dedup();
        assert_eq!(firsts.len(), THREADS, "{results:?}");
    }

    /// Threads that pick once each must not all get the same first value (all picking the
    /// first backend), and the first thread to use a counter starts at `start`. Regression:
    /// every stripe used to start at `start`, so eight threads picking once each from a
    /// round robin of four backends all got the first one.
    #[test]
    fn threads_start_staggered_and_the_first_at_start() {
        let _serial = serial();
        let s = std::sync::Arc::new(Sequence::counter(100));
        assert_eq!(s.next(), 100);
        let firsts: Vec<(usize, u64)> = (0..8)
            .map(|_| {
                let s = s.clone();
                std::thread::spawn(move || (stripe(), s.next()))
                    .join()
                    .unwrap()
            })
            .collect();
        for (i, a) in firsts.iter().enumerate() {
            for b in &firsts[..i] {
                assert!(a.0 == b.0 || a.1 != b.1, "{firsts:?}");
            }
        }
    }
}
