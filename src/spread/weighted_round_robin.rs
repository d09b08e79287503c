//! Smooth weighted round robin, lock-free.
//!
//! nginx's smooth weighted round robin keeps a "current weight" per backend and mutates all of
//! them on every pick, under a lock. lbkit precomputes one period of an equally smooth
//! schedule when the set changes, and a pick just reads `schedule[cursor % period]`.
//!
//! The schedule is earliest-deadline-first: the backend at position p (of n, in id order) with
//! weight w has its k-th pick of each period due at (k + (2p + 1) / 2n) / w, and the period
//! lists all picks by due time (ties by id order). So, like nginx's, over each period of
//! sum(weights) picks every backend gets exactly its weight, and heavy backends are
//! interleaved with light ones rather than picked in a burst: weights 5, 1, 1 give
//! `a a a b a a c`. The phase (2p + 1) / 2n staggers the backends: with one phase for all,
//! every light backend would fall due at the same moment, and 5, 1, 1 would give
//! `a a a b c a a`, which repeated is `a a a a a b c`, the burst to avoid.
//!
//! Weights are first divided by their greatest common divisor. If the period would still
//! exceed [`SCHEDULE_LIMIT`] entries, weights are scaled down in proportion (each at least 1)
//! to bound memory; shares are then exact to within one part in about `SCHEDULE_LIMIT / n`.
//!
//! Cost: O(1) per pick (one atomic add on the thread's stripe, one division, two loads);
//! O(P log n) per update or health change, P the period. The cursor is per thread and survives
//! updates, as in [`RoundRobin`](crate::RoundRobin).

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use crate::backend::Backend;
use crate::builder::Builder;
use crate::engine::core::{impl_balancer, Core};
use crate::engine::policy::Policy;
use crate::engine::sequence::Sequence;
use crate::engine::snapshot::{Eligible, Snapshot, View};
use crate::error::Error;
use crate::request::Request;

/// Schedule entries a pick walks past before it looks for an accepted backend in id order.
const WALK: usize = 64;

/// The longest schedule period kept, in entries (4 bytes each).
pub const SCHEDULE_LIMIT: usize = 1 << 16;

/// Smooth weighted round robin: exact shares per period, heavy backends interleaved.
///
/// ```
/// use lbkit::{Backend, Balancer, Request, WeightedRoundRobin};
/// let lb = WeightedRoundRobin::new([
///     Backend::new("a", ()).with_weight(5),
///     Backend::new("b", ()),
///     Backend::new("c", ()),
/// ])?;
/// let mut order = String::new();
/// for _ in 0..7 {
///     order += lb.pick(&Request::new()).unwrap().id();
/// }
/// assert_eq!(order.matches('a').count(), 5);
/// assert!(!order.contains("aaaaa"));
/// # Ok::<(), lbkit::Error>(())
/// ```
pub struct WeightedRoundRobin<T> {
    core: Core<T, Schedule>,
}

impl<T: Send + Sync + 'static> WeightedRoundRobin<T> {
    /// A WeightedRoundRobin balancer over `backends` (the same as `WeightedRoundRobin::builder().build(backends)`).
    ///
    /// # Errors
    /// [`Error::EmptyId`], [`Error::DuplicateId`], [`Error::TooManyBackends`], and
    /// [`Error::InvalidConfig`] for a backend's `max_in_flight` of 0.
    pub fn new(backends: impl IntoIterator<Item = Backend<T>>) -> Result<Self, Error> {
        Builder::new(WeightedRoundRobinConfig).build(backends)
    }
}

impl WeightedRoundRobin<()> {
    /// A builder, for passive health ([`Builder::health`]); its `build` makes a `WeightedRoundRobin<T>` of
    /// any `T` (this is a function of `WeightedRoundRobin<()>` only so that `WeightedRoundRobin::builder()` needs no type
    /// annotation).
    pub fn builder() -> Builder<WeightedRoundRobinConfig> {
        Builder::new(WeightedRoundRobinConfig)
    }
}

impl Builder<WeightedRoundRobinConfig> {
    /// Builds the balancer over `backends`.
    ///
    /// # Errors
    /// As [`WeightedRoundRobin::new`], and [`Error::InvalidConfig`] for a health rule out of range.
    pub fn build<T: Send + Sync + 'static>(
        self,
        backends: impl IntoIterator<Item = Backend<T>>,
    ) -> Result<WeightedRoundRobin<T>, Error> {
        let policy = Schedule {
            cursor: Sequence::counter(0),
        };
        Ok(WeightedRoundRobin {
            core: Core::new(
                policy,
                backends,
                self.health,
                self.topology,
                self.subset,
                self.observer,
            )?,
        })
    }
}

impl_balancer!(WeightedRoundRobin);

/// The configuration of [`WeightedRoundRobin`], the type parameter of [`WeightedRoundRobin::builder`]'s [`Builder`]:
/// none of its own.
#[derive(Debug, Clone, Copy, Default)]
#[non_exhaustive]
pub struct WeightedRoundRobinConfig;

pub(crate) struct Schedule {
    cursor: Sequence,
}

impl<T> Policy<T> for Schedule {
    /// One period: positions in `Snapshot::eligible`.
    type Table = Box<[u32]>;
    const TABLE_USES_HEALTH: bool = true;

    fn build(&self, view: &View<'_, T>) -> Result<Box<[u32]>, Error> {
        Ok(smooth_schedule(&reduced_weights(view.eligible)))
    }

    /// The next in the schedule; one not accepted is passed over for the next accepted one
    /// in the schedule (after [`WALK`] entries, the next accepted in id order, so that a pick
    /// stays cheap when most of a long schedule is not accepted).
    #[inline]
    fn choose(
        &self,
        snap: &Snapshot<T, Box<[u32]>>,
        _: &Request<'_>,
        accept: impl Fn(usize) -> bool,
    ) -> Option<usize> {
        let period = snap.table.len();
        if period == 0 {
            return None;
        }
        let at = (self.cursor.next() % period as u64) as usize;
        let slot = snap.table[at] as usize;
        let index = snap.eligible[slot].index;
        if accept(index) {
            return Some(index);
        }
        let walked = (1..period.min(WALK))
            .map(|k| snap.eligible[snap.table[(at + k) % period] as usize].index)
            .find(|&i| accept(i));
        if walked.is_some() || period <= WALK {
            // A period lists every eligible backend: a full walk missed none.
            return walked;
        }
        let n = snap.eligible.len();
        (1..n)
            .map(|k| snap.eligible[(slot + k) % n].index)
            .find(|&i| accept(i))
    }

    fn choose_n(
        &self,
        snap: &Snapshot<T, Box<[u32]>>,
        _: &Request<'_>,
        n: usize,
        accept: impl Fn(usize) -> bool,
        out: &mut Vec<usize>,
    ) {
        let period = snap.table.len();
        if period == 0 {
            return;
        }
        // Walk the schedule from the cursor: every eligible backend appears in one period.
        let start = (self.cursor.next() % period as u64) as usize;
        let want = n.min(snap.eligible.len());
        if want == 0 {
            return;
        }
        let start_len = out.len();
        let mut seen = vec![false; snap.eligible.len()];
        for k in 0..period {
            let slot = snap.table[(start + k) % period] as usize;
            if !std::mem::replace(&mut seen[slot], true) {
                let index = snap.eligible[slot].index;
                if accept(index) {
                    out.push(index);
                    if out.len() - start_len == want {
                        return;
                    }
                }
            }
        }
    }
}

/// The eligible weights divided by their gcd, then scaled down if their sum exceeds
/// [`SCHEDULE_LIMIT`] (each stays at least 1).
fn reduced_weights(eligible: &[Eligible]) -> Vec<u64> {
    let divisor = eligible.iter().fold(0u64, |g, e| gcd(g, e.weight)).max(1);
    let mut weights: Vec<u64> = eligible.iter().map(|e| e.weight / divisor).collect();
    let sum: u64 = weights.iter().sum();
    if sum > SCHEDULE_LIMIT as u64 {
        for w in &mut weights {
            // u128: w * LIMIT can exceed 2^64 for huge weights.
            *w = ((u128::from(*w) * SCHEDULE_LIMIT as u128 / u128::from(sum)) as u64).max(1);
        }
    }
    weights
}

fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// One period of the earliest-deadline-first schedule: the k-th pick (k from 0) of position
/// p (of n) is due at (k + (2p + 1) / 2n) / w_p = (2nk + 2p + 1) / (2n w_p); entries are
/// listed by due time, ties by position.
fn smooth_schedule(weights: &[u64]) -> Box<[u32]> {
    #[derive(PartialEq, Eq)]
    struct Due {
        /// Numerator and denominator of the due time: (2nk + 2p + 1) / (2nw). Weights are
        /// at most `SCHEDULE_LIMIT` and positions fit in u32, so both fit in u64.
        num: u64,
        den: u64,
        position: u32,
    }
    impl Ord for Due {
        fn cmp(&self, other: &Self) -> Ordering {
            // BinaryHeap is a max-heap: the earliest due time must compare greatest.
            let lhs = u128::from(self.num) * u128::from(other.den);
            let rhs = u128::from(other.num) * u128::from(self.den);
            rhs.cmp(&lhs).then(other.position.cmp(&self.position))
        }
    }
    impl PartialOrd for Due {
        fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
            Some(self.cmp(other))
        }
    }

    let period: u64 = weights.iter().sum();
    let n = weights.len() as u64;
    let mut heap: BinaryHeap<Due> = weights
        .iter()
        .enumerate()
        .filter(|(_, &w)| w > 0)
        .map(|(p, &w)| Due {
            num: 2 * p as u64 + 1,
            den: 2 * n * w,
            position: p as u32,
        })
        .collect();
    let mut schedule = Vec::with_capacity(period as usize);
    while schedule.len() < period as usize {
        let mut due = heap
            .peek_mut()
            .expect("one period lists exactly sum(weights) picks");
        schedule.push(due.position);
        due.num += 2 * n;
    }
    schedule.into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn five_one_one_is_interleaved() {
        assert_eq!(&*smooth_schedule(&[5, 1, 1]), &[0, 0, 0, 1, 0, 0, 2]);
        assert_eq!(&*smooth_schedule(&[3, 1, 1, 1]), &[0, 0, 1, 2, 0, 3]);
    }

    #[test]
    fn each_period_gives_each_its_weight() {
        let weights = [3, 7, 1, 12, 5];
        let s = smooth_schedule(&weights);
        assert_eq!(s.len(), 28);
        for (p, &w) in weights.iter().enumerate() {
            assert_eq!(s.iter().filter(|&&x| x as usize == p).count() as u64, w);
        }
    }

    #[test]
    fn heavy_weights_are_reduced_and_bounded() {
        let e = |w: &[u32]| {
            w.iter()
                .enumerate()
                .map(|(index, &weight)| Eligible {
                    index,
                    weight: weight.into(),
                    state: Default::default(),
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(reduced_weights(&e(&[100, 200, 300])), [1, 2, 3]);
        let huge = reduced_weights(&e(&[u32::MAX, u32::MAX - 1, 1]));
        assert!(huge.iter().sum::<u64>() <= SCHEDULE_LIMIT as u64 + 3);
        assert!(huge.iter().all(|&w| w >= 1));
    }
}
