//! What the two weighted round robins share: one period of a smooth earliest-deadline-first
//! schedule in the snapshot, walked by a per-thread cursor (see
//! [`WeightedRoundRobin`](crate::WeightedRoundRobin) for the algorithm), with the weights
//! either the backends' own or those their load reports give
//! ([`ClientSideWeightedRoundRobin`](crate::ClientSideWeightedRoundRobin)).

use crate::engine::orca::{schedule_weights, WeightConfig, MAX_SCHEDULE_WEIGHT};
use crate::engine::policy::Policy;
use crate::engine::sequence::Sequence;
use crate::engine::snapshot::{Snapshot, View};
use crate::error::Error;
use crate::request::Request;

/// Schedule entries a pick walks past before it looks for an accepted backend in id order.
const WALK: usize = 64;

/// The longest schedule period kept, in entries (4 bytes each).
pub const SCHEDULE_LIMIT: usize = 1 << 16;

/// A smooth weighted round robin over the backends' weights, or over those their load
/// reports give.
pub(crate) struct Schedule {
    cursor: Sequence,
    /// How load reports weigh backends; `None`: by their own weights.
    reported: Option<WeightConfig>,
}

impl Schedule {
    /// A schedule of the backends' own weights.
    pub(crate) fn by_weight() -> Self {
        Schedule {
            cursor: Sequence::counter(0),
            reported: None,
        }
    }

    /// A schedule of the weights load reports give, under `config`.
    pub(crate) fn by_reports(config: WeightConfig) -> Self {
        Schedule {
            cursor: Sequence::counter(0),
            reported: Some(config),
        }
    }
}

impl<T> Policy<T> for Schedule {
    /// One period: positions in `Snapshot::eligible`.
    type Table = Box<[u32]>;
    const TABLE_USES_HEALTH: bool = true;

    fn build(&self, view: &View<'_, T>) -> Result<Box<[u32]>, Error> {
        let weights = match &self.reported {
            None => view.eligible.iter().map(|e| e.weight).collect(),
            Some(config) => reported_weights(view, config),
        };
        Ok(smooth_schedule(&reduced_weights(&weights)))
    }

    fn report_weights(&self) -> Option<WeightConfig> {
        self.reported
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

/// The weights load reports give the eligible backends at the build's time (gRFC A58's
/// `GetWeight`, made integers by [`schedule_weights`]: unknown weights get the mean, fewer
/// than two known give round robin), each times what the engine's rules leave of the
/// backend's own weight: effective / (configured x scale), the slow-start ramp, soft health
/// and a subset's coverage. The configured weight itself does not count (A58 ignores it);
/// 0 still takes a backend out, as for every policy.
fn reported_weights<T>(view: &View<'_, T>, config: &WeightConfig) -> Vec<u64> {
    let reported: Vec<f64> = view
        .eligible
        .iter()
        .map(|e| e.state.reported_weight(view.now, config))
        .collect();
    let scheduled = schedule_weights(&reported);
    // Round robin (fewer than two known weights) as equal weights of the full scale, so that
    // what the rules leave of each (a ramp just begun, say) still shows in the shares: 1 x a
    // fraction would round back to 1.
    let weights = if scheduled.round_robin {
        vec![MAX_SCHEDULE_WEIGHT; view.eligible.len()]
    } else {
        scheduled.weights
    };
    view.eligible
        .iter()
        .zip(weights)
        .map(|(e, w)| {
            let full = u128::from(view.members[e.index].weight) * u128::from(view.weight_scale);
            // u128: at most 2^16 x 2^52. The share left is at most 1 (rules only lower a
            // weight), so the result fits in u64; it stays at least 1, as eligible weights do.
            let left = u128::from(w) * u128::from(e.weight) / full.max(1);
            u64::try_from(left).unwrap_or(u64::MAX).max(1)
        })
        .collect()
}

/// The weights divided by their gcd, then scaled down if their sum exceeds
/// [`SCHEDULE_LIMIT`] (each stays at least 1).
fn reduced_weights(weights: &[u64]) -> Vec<u64> {
    let divisor = weights.iter().fold(0u64, |g, &w| gcd(g, w)).max(1);
    let mut weights: Vec<u64> = weights.iter().map(|w| w / divisor).collect();
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
///
/// Every due time is in (0, 1), and the period's P entries spread over that interval, so
/// they are placed by a counting sort on floor(due x P) (computed in floating point, O(P +
/// n)), then put in exact order by one insertion pass with the exact comparison: entries
/// out of order after the counting sort are only those in one bucket, or a rounding apart,
/// so the pass costs O(P) plus those few swaps. The result is the same as a heap merging
/// the backends' due times (the tests compare the two), at a fraction of the cost: a period
/// of 65,536 entries over 1000 backends is rebuilt every update period of
/// [`ClientSideWeightedRoundRobin`](crate::ClientSideWeightedRoundRobin).
fn smooth_schedule(weights: &[u64]) -> Box<[u32]> {
    let period: usize = weights.iter().map(|&w| w as usize).sum();
    let n = weights.len() as u64;
    // Each entry: (position, k), its due time (2nk + 2p + 1) / (2n w_p). Weights are at
    // most `SCHEDULE_LIMIT` and positions fit in u32, so numerators and denominators fit in
    // u64 and their cross products in u128.
    let due = |&(p, k): &(u32, u32)| {
        let num = 2 * n * u64::from(k) + 2 * u64::from(p) + 1;
        (num, 2 * n * weights[p as usize])
    };
    let bucket = |entry: &(u32, u32)| {
        let (num, den) = due(entry);
        // In [0, period): the due time is below 1. Rounding may move an entry to a
        // neighbouring bucket; the exact pass below puts it back in place.
        ((num as f64 / den as f64 * period as f64) as usize).min(period.saturating_sub(1))
    };
    let entries = || {
        weights
            .iter()
            .enumerate()
            .flat_map(|(p, &w)| (0..w as u32).map(move |k| (p as u32, k)))
    };
    let mut starts = vec![0usize; period + 1];
    for entry in entries() {
        starts[bucket(&entry) + 1] += 1;
    }
    for b in 1..starts.len() {
        starts[b] += starts[b - 1];
    }
    let mut sorted = vec![(0u32, 0u32); period];
    for entry in entries() {
        let b = bucket(&entry);
        sorted[starts[b]] = entry;
        starts[b] += 1;
    }
    let earlier = |a: &(u32, u32), b: &(u32, u32)| {
        let ((an, ad), (bn, bd)) = (due(a), due(b));
        let (lhs, rhs) = (
            u128::from(an) * u128::from(bd),
            u128::from(bn) * u128::from(ad),
        );
        lhs < rhs || (lhs == rhs && a.0 < b.0)
    };
    for i in 1..sorted.len() {
        let mut j = i;
        while j > 0 && earlier(&sorted[j], &sorted[j - 1]) {
            sorted.swap(j, j - 1);
            j -= 1;
        }
    }
    sorted.into_iter().map(|(p, _)| p).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::cmp::Ordering;
    use std::collections::BinaryHeap;

    /// The schedule as a heap merging the backends' due times builds it (the implementation
    /// before the counting sort), for comparison: the k-th pick (k from 0) of position
    /// p (of n) is due at (k + (2p + 1) / 2n) / w_p = (2nk + 2p + 1) / (2n w_p); entries are
    /// listed by due time, ties by position.
    fn reference_schedule(weights: &[u64]) -> Box<[u32]> {
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

    proptest! {
        #[test]
        fn the_counting_sort_gives_the_heaps_schedule(
            weights in proptest::collection::vec(1u64..200, 1..40),
        ) {
            prop_assert_eq!(smooth_schedule(&weights), reference_schedule(&weights));
        }
    }

    #[test]
    fn large_and_skewed_periods_match_the_heap() {
        for weights in [
            vec![65_535, 1, 1, 32_768],
            (1..=1000)
                .map(|i| 1 + (i * 7919) % 60)
                .collect::<Vec<u64>>(),
            vec![7; 1000],
            vec![1; 5000],
        ] {
            assert_eq!(smooth_schedule(&weights), reference_schedule(&weights));
        }
    }

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
        assert_eq!(reduced_weights(&[100, 200, 300]), [1, 2, 3]);
        let max = u64::from(u32::MAX);
        let huge = reduced_weights(&[max, max - 1, 1]);
        assert!(huge.iter().sum::<u64>() <= SCHEDULE_LIMIT as u64 + 3);
        assert!(huge.iter().all(|&w| w >= 1));
    }
}
