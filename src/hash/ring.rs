//! Consistent hashing on a ring of weighted virtual nodes (Karger et al., STOC 1997; the
//! "ketama" ring of memcached clients, nginx's `hash $key consistent`, Envoy's `RING_HASH`).
//!
//! # Algorithm
//!
//! Each backend places points on a ring of 64-bit values in proportion to its weight: `p`
//! points for the lightest backend (default [`DEFAULT_POINTS_PER_WEIGHT`] = 160, nginx's
//! value per weight unit), `k x p` for one `k` times as heavy (see [Ring size](#ring-size)
//! for the exact counts and the cap on memory). A key goes to
//! the owner of the first point at or after its hash, wrapping at the end. A backend that
//! joins takes only the keys that now fall before its points; one that leaves gives only its
//! own keys to the next points (while the ring's scale holds: see [Ring size](#ring-size)).
//! Backends of weight 0 have no points.
//!
//! A key whose owner is not eligible (down, draining) walks on along the ring to the next
//! point of an eligible owner; `pick_n` returns the distinct owners met along the ring, in
//! ring order. With bounded loads, owners at capacity are passed by the same way.
//!
//! # Exact derivation (to reproduce a mapping in another language)
//!
//! * Backends are taken in any order; the ring is a function of the set of (id, weight).
//! * Backend `i` of weight `w_i` has `c_i` points, counted as in [Ring size](#ring-size).
//! * Point `j` (for `j = 0, 1, ..., c_i - 1`) of the backend with id `id` is
//!   [`mix`](crate::hash::mix)`(id_hash(id), j)`, with [`id_hash`](crate::hash::id_hash) the
//!   pinned XXH3-64 of the id's UTF-8 bytes (seed `"lbkit_id"`).
//! * The points are sorted as unsigned 64-bit integers; equal points (a 2^-64 event) are
//!   ordered by the owners' ids, byte-wise.
//! * A key's hash `h` is [`key_hash`](crate::hash::key_hash) of its bytes (or the caller's
//!   64-bit hash). Its owner is the owner of the first point `>= h`; if there is none, of the
//!   first point of the ring.
//!
//! # Ring size
//!
//! Only the ratios of the weights matter, so weights of any size are accepted (`1, 1, 2` and
//! `1000, 1000, 2000` build the same ring). With `p` = `points_per_weight`, `w_min` the
//! smallest weight above 0 and `M` = [`max_points`](crate::Builder::max_points) (default and
//! largest [`RING_POINT_LIMIT`], 8,388,608 points):
//!
//! * A backend of weight `w > 0` has `c = max(1, round(p x w / u))` points, rounding halves
//!   up (`floor((2 p w + u) / (2 u))` in integers), where the weight unit `u` is
//!   [`weight_unit`](crate::Builder::weight_unit) if set, else `w_min`: `p` points for the
//!   lightest backend. Weight 0, none. When `u` is 1, this is `w x p`.
//! * If those counts add up to more than `M`: with `k` backends of weight above 0 and `W`
//!   their total weight, each has `c = 1 + floor(w x (M - k) / W)` points instead, at most
//!   `M` in all. Every backend of weight above 0 keeps at least one point, so it is always
//!   reachable.
//!
//! **Minimal disruption holds while the scale holds.** A backend joining or leaving moves
//! only its own keys as long as `u` and the cap's share-out stay the same: always with a
//! fixed `weight_unit` (and the ring within `max_points`), and by default whenever the
//! lightest weight is unchanged (equal weights, or the lightest weight held by a backend
//! that stays). When the lightest weight changes (the only lightest backend leaves, or a
//! lighter one joins), every backend's count is rescaled and keys also move between
//! backends that stayed: because a backend's points are the first `c` of one fixed sequence,
//! only the keys of the points added or dropped move, but that can be a large share (halving
//! every count moves about half the keys). Envoy's ring behaves the same way. Set
//! `weight_unit` when weights come and go freely and keys must not move (`1` for small
//! integer weights; for capacity-style weights such as 1,000, a unit such as 1,000 keeps
//! the ring small).
//!
//! This is Envoy's `RING_HASH` sizing (the lightest host sets the scale,
//! `maximum_ring_size` caps it), with `p` in the place of Envoy's `minimum_ring_size`: a
//! fixed count for the lightest backend rather than for the whole ring, so balance does not
//! fall as the fleet grows.
//!
//! # Cost
//!
//! * **Pick**: O(1) expected. A radix index over the top `b` bits of the point space (`2^b`
//!   buckets, a quarter of the number of points rounded up to a power of two, so 2 to 4
//!   points per bucket on average) gives the first point of the key's bucket; a scan of the
//!   bucket (one or two cache lines) finds the successor. No binary search: at 1000 backends
//!   (160,000 points) a whole pick and drop, key hashing and in-flight accounting included,
//!   costs no more than a bare binary search over the same points (`cargo bench --bench
//!   hashing`, group `lookup/1000`: `lbkit/ring` against `floor/binary-search`; figures in
//!   `benches/README.md`). Walking on past ineligible owners costs one step per point passed.
//! * **Update**: O(points), by a counting sort on the same top bits: two [`mix`](crate::hash::mix) per point
//!   (one to count, one to place), then each bucket's few points put in order.
//! * **Memory**: 16 bytes per point (8 for the point, 4 for its owner's index, 4 of
//!   alignment: the pair shares a cache line) plus the index, 4 bytes per bucket: 17 to 18
//!   bytes per point.
//!
//! Balance, memory and build time against points per weight unit, for 100 backends of weight
//! 1 named `10.0.<i/256>.<i%256>:8080`: max/mean of the keys per backend over 1,000,000 keys
//! of fixed pseudo-random hashes (the keys alone put the maximum about 2.5% over the mean),
//! the memory of the points and index, and the best of 5 builds in release on the project's
//! shared 2-core machine (build times vary about 2x with its load). Reproduce with
//! `cargo run --release --example ring_points` (`examples/ring_points.rs`).
//!
//! | points per weight | points | max/mean | memory | build |
//! |---:|---:|---:|---:|---:|
//! | 16 | 1,600 | 2.086 | 0.03 MB | 0.04 ms |
//! | 40 | 4,000 | 1.415 | 0.07 MB | 0.05 ms |
//! | 100 | 10,000 | 1.247 | 0.18 MB | 0.09 ms |
//! | **160** (default) | 16,000 | 1.212 | 0.27 MB | 0.21 ms |
//! | 500 | 50,000 | 1.139 | 0.87 MB | 0.51 ms |
//! | 1000 | 100,000 | 1.088 | 1.73 MB | 1.05 ms |
//! | 2000 | 200,000 | 1.050 | 3.46 MB | 2.15 ms |
//! | 5000 | 500,000 | 1.039 | 8.52 MB | 5.82 ms |
//!
//! # When to choose it
//!
//! When backends come and go often and each key must move only when its own backend changes
//! (caches, sharded state), with weights, and `pick_n` replicas in ring order. Its balance is
//! the weakest of the hashing policies (about `1 + 3/sqrt(p)` max/mean at 100 backends):
//! raise `points_per_weight` (memory grows with it), or prefer [`Maglev`](crate::Maglev)
//! (better balance, O(1), but not minimal disruption) or [`Rendezvous`](crate::Rendezvous)
//! (exact disruption, shares exact in expectation, O(n) per pick). Add a load factor when
//! hot keys must not overload a backend.

use crate::backend::Backend;
use crate::builder::{Builder, LoadBounded, Seedable};
use crate::engine::core::{impl_balancer, Core};
use crate::error::Error;
use crate::hash::points::Ring;
use crate::hash::walk::{Hashed, Node, Placement};

/// Points per weight unit unless configured: nginx's and ketama's 160.
pub const DEFAULT_POINTS_PER_WEIGHT: u32 = 160;

pub use crate::hash::points::RING_POINT_LIMIT;

/// A consistent-hash ring of weighted virtual nodes, with an O(1) radix index.
///
/// See the [module docs](crate::hash::ring) for the exact placement. Built with
/// [`HashRing::new`] (160 points per weight unit) or [`HashRing::builder`].
///
/// ```
/// use lbkit::{Backend, Balancer, HashRing, Request};
/// let lb = HashRing::new(["a", "b", "c"].map(|id| Backend::new(id, ())))?;
/// let first = lb.pick(&Request::with_key("user-42")).unwrap().id().to_owned();
/// // The same key goes to the same backend, and pick_n starts there.
/// assert_eq!(lb.pick(&Request::with_key("user-42")).unwrap().id(), first);
/// let three = lb.pick_n(&Request::with_key("user-42"), 3);
/// assert_eq!(three[0].id(), first);
/// # Ok::<(), lbkit::Error>(())
/// ```
pub struct HashRing<T> {
    core: Core<T, Hashed<RingPlacement>>,
}

impl<T: Send + Sync + 'static> HashRing<T> {
    /// A ring with [`DEFAULT_POINTS_PER_WEIGHT`] points per weight unit, no load bound (the
    /// same as `HashRing::builder().build(backends)`).
    ///
    /// # Errors
    /// [`Error::EmptyId`], [`Error::DuplicateId`], [`Error::TooManyBackends`], and
    /// [`Error::InvalidConfig`] for a backend's `max_in_flight` of 0. Any
    /// weights are accepted: the ring is sized from their ratios (see
    /// [Ring size](crate::hash::ring#ring-size)). Updates fail the same way.
    pub fn new(backends: impl IntoIterator<Item = Backend<T>>) -> Result<Self, Error> {
        Builder::new(HashRingConfig::default()).build(backends)
    }

    /// As [`HashRing::new`], with the random spread of requests without a key seeded: the
    /// shortcut for `HashRing::builder().seed(seed).build(backends)`.
    ///
    /// # Errors
    /// As [`HashRing::new`].
    pub fn with_seed(
        backends: impl IntoIterator<Item = Backend<T>>,
        seed: u64,
    ) -> Result<Self, Error> {
        Builder::new(HashRingConfig::default())
            .seed(seed)
            .build(backends)
    }
}

impl HashRing<()> {
    /// A builder to set points per weight unit, a load factor, a seed or passive health; its
    /// `build` makes a `HashRing<T>` of any `T` (this is an associated function of
    /// `HashRing<()>` only so that `HashRing::builder()` needs no type annotation).
    ///
    /// ```
    /// use lbkit::{Backend, HashRing};
    /// let ring = HashRing::builder()
    ///     .points_per_weight(1000)
    ///     .load_factor(1.25)
    ///     .build([Backend::new("a", ()), Backend::new("b", ())])?;
    /// # let _ = ring;
    /// assert!(HashRing::builder().points_per_weight(0).build(Vec::<Backend<()>>::new()).is_err());
    /// # Ok::<(), lbkit::Error>(())
    /// ```
    pub fn builder() -> Builder<HashRingConfig> {
        Builder::new(HashRingConfig::default())
    }
}

impl_balancer!(HashRing);

/// The configuration of [`HashRing`], the type parameter of [`HashRing::builder`]'s
/// [`Builder`]: points per weight unit ([`Builder::points_per_weight`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct HashRingConfig {
    points_per_weight: u32,
    max_points: u64,
    weight_unit: Option<u32>,
}

impl Default for HashRingConfig {
    fn default() -> Self {
        HashRingConfig {
            points_per_weight: DEFAULT_POINTS_PER_WEIGHT,
            max_points: RING_POINT_LIMIT,
            weight_unit: None,
        }
    }
}

impl Seedable for HashRingConfig {}
impl LoadBounded for HashRingConfig {}

impl Builder<HashRingConfig> {
    /// Points of the lightest backend (default 160); a backend `k` times as heavy gets `k`
    /// times as many (see [Ring size](crate::hash::ring#ring-size)). More points, better
    /// balance (max/mean about `1 + 3/sqrt(p)` at 100 backends), more memory and build time.
    pub fn points_per_weight(mut self, points: u32) -> Self {
        self.config.points_per_weight = points;
        self
    }

    /// The weight that gets exactly `points_per_weight` points, for every set (default: the
    /// lightest weight above 0 of each set). Fixing it keeps the ring's scale when the
    /// lightest backend changes, so a backend joining or leaving moves only its own keys
    /// whatever the weights (see [Ring size](crate::hash::ring#ring-size)); `1` gives
    /// `w x points_per_weight` points exactly.
    pub fn weight_unit(mut self, weight: u32) -> Self {
        self.config.weight_unit = Some(weight);
        self
    }

    /// The most points the ring may hold (default and largest [`RING_POINT_LIMIT`]): past it,
    /// points are shared out in proportion to weight within this budget (see
    /// [Ring size](crate::hash::ring#ring-size)). Bounds memory (17 to 18 bytes a point) and
    /// rebuild time; Envoy's `maximum_ring_size`.
    pub fn max_points(mut self, points: u64) -> Self {
        self.config.max_points = points;
        self
    }

    /// Builds the ring over `backends`.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] for `points_per_weight` (0), `weight_unit` (0), `max_points`
    /// (0, above [`RING_POINT_LIMIT`], or fewer than the backends of weight above 0), `load_factor`
    /// (below 1, NaN, infinite) or a health rule, and those of [`HashRing::new`].
    pub fn build<T: Send + Sync + 'static>(
        self,
        backends: impl IntoIterator<Item = Backend<T>>,
    ) -> Result<HashRing<T>, Error> {
        let HashRingConfig {
            points_per_weight,
            max_points,
            weight_unit,
        } = self.config;
        if points_per_weight == 0 {
            return Err(Error::config("points_per_weight", "must be at least 1"));
        }
        if weight_unit == Some(0) {
            return Err(Error::config("weight_unit", "must be at least 1"));
        }
        if max_points == 0 || max_points > RING_POINT_LIMIT {
            return Err(Error::config(
                "max_points",
                format!("must be between 1 and {RING_POINT_LIMIT}"),
            ));
        }
        let policy = self.hashed(RingPlacement {
            points_per_weight,
            max_points,
            weight_unit,
        })?;
        Ok(HashRing {
            core: self.core(policy, backends)?,
        })
    }
}

pub(crate) struct RingPlacement {
    points_per_weight: u32,
    max_points: u64,
    weight_unit: Option<u32>,
}

impl Placement for RingPlacement {
    type Table = Ring;

    fn build(&self, nodes: &[Node]) -> Result<Ring, Error> {
        let weights: Vec<u32> = nodes.iter().map(|n| n.weight).collect();
        let counts = point_counts(
            &weights,
            self.points_per_weight,
            self.weight_unit,
            self.max_points,
        )?;
        Ok(Ring::new(nodes, &counts))
    }
}

/// The number of ring points of each backend (see "Ring size" in the module docs):
/// `max(1, round(p x w / u))` for weight `w > 0`, with `u` the weight unit (by default the
/// lightest weight above 0), shared out within `max_points` if that is more.
///
/// # Errors
/// `max_points` below the number of backends of weight above 0 (each must have a point).
fn point_counts(
    weights: &[u32],
    per_weight: u32,
    unit: Option<u32>,
    max_points: u64,
) -> Result<Vec<u64>, Error> {
    let Some(lightest) = weights.iter().copied().filter(|&w| w > 0).min() else {
        return Ok(vec![0; weights.len()]);
    };
    let (unit, per_weight) = (u128::from(unit.unwrap_or(lightest)), u128::from(per_weight));
    // round(p x w / u), half up, and at least 1; at most 2^32 x 2^32, so u128 holds every
    // step.
    let natural = |w: u32| match w {
        0 => 0,
        w => ((2 * per_weight * u128::from(w) + unit) / (2 * unit)).max(1),
    };
    let total: u128 = weights.iter().map(|&w| natural(w)).sum();
    if total <= u128::from(max_points) {
        // Each fits in u64: it is at most the total, at most max_points.
        return Ok(weights.iter().map(|&w| natural(w) as u64).collect());
    }
    let live = weights.iter().filter(|&&w| w > 0).count() as u64;
    if live > max_points {
        return Err(Error::config(
            "max_points",
            format!("{max_points} points cannot give each of {live} backends one"),
        ));
    }
    // One point each, and the rest of the budget in proportion to weight, rounded down: at
    // most `max_points` in all.
    let budget = u128::from(max_points - live);
    let weight: u128 = weights.iter().map(|&w| u128::from(w)).sum();
    Ok(weights
        .iter()
        .map(|&w| match w {
            0 => 0,
            // At most 1 + budget <= max_points, so it fits in u64.
            w => 1 + (u128::from(w) * budget / weight) as u64,
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lightest_backend_gets_points_per_weight_and_the_others_their_ratio() {
        // Lightest weight 1: w x p exactly (the golden values' sets).
        assert_eq!(
            point_counts(&[1, 2, 0, 5], 160, None, RING_POINT_LIMIT).unwrap(),
            [160, 320, 0, 800]
        );
        // Only the ratios matter.
        assert_eq!(
            point_counts(&[1000, 1000, 2000], 160, None, RING_POINT_LIMIT).unwrap(),
            [160, 160, 320]
        );
        // Rounded half up: 3 x 5 / 2 = 7.5 -> 8; 5 x 5 / 2 = 12.5 -> 13; 4 x 5 / 2 = 10.
        assert_eq!(
            point_counts(&[2, 3, 5, 4], 5, None, RING_POINT_LIMIT).unwrap(),
            [5, 8, 13, 10]
        );
        // 999 and 1000 round to the same count.
        assert_eq!(
            point_counts(&[999, 1000], 160, None, RING_POINT_LIMIT).unwrap(),
            [160, 160]
        );
        assert_eq!(point_counts(&[0, 0], 160, None, 10).unwrap(), [0, 0]);
        // A fixed unit: the counts do not depend on which weights are present, and a weight
        // far below the unit keeps one point.
        assert_eq!(
            point_counts(&[2, 3, 1000, 1], 4, Some(2), RING_POINT_LIMIT).unwrap(),
            [4, 6, 2000, 2]
        );
        assert_eq!(
            point_counts(&[3, 1000], 4, Some(2), RING_POINT_LIMIT).unwrap(),
            [6, 2000]
        );
        assert_eq!(
            point_counts(&[1, 1000], 160, Some(1000), RING_POINT_LIMIT).unwrap(),
            [1, 160]
        );
        assert!(point_counts(&[], 160, None, 10).unwrap().is_empty());
    }

    #[test]
    fn past_the_cap_points_are_shared_by_weight_and_every_backend_keeps_one() {
        // Natural counts 160 x (1 + 3 + 6) = 1600 > 100: 1 + floor(w x 97 / 10).
        let counts = point_counts(&[1, 3, 0, 6], 160, None, 100).unwrap();
        assert_eq!(counts, [1 + 9, 1 + 29, 0, 1 + 58]);
        assert!(counts.iter().sum::<u64>() <= 100);
        // A weight far below the others still gets its one point.
        let counts = point_counts(&[1, u32::MAX, u32::MAX], u32::MAX, None, 1000).unwrap();
        assert_eq!(counts[0], 1);
        assert!(counts.iter().sum::<u64>() <= 1000);
        // Exactly at the cap: the natural counts stand.
        assert_eq!(point_counts(&[1, 1], 50, None, 100).unwrap(), [50, 50]);
        assert_eq!(point_counts(&[1, 1], 51, None, 100).unwrap(), [50, 50]);
        assert_eq!(point_counts(&[1, 1, 1], 1, None, 3).unwrap(), [1, 1, 1]);
        // Fewer points than backends: a typed error, not an unreachable backend.
        let err = point_counts(&[1, 1, 1], 1, None, 2).unwrap_err();
        assert!(matches!(
            err,
            Error::InvalidConfig {
                parameter: "max_points",
                ..
            }
        ));
    }

    #[test]
    fn the_largest_sets_stay_within_the_limit() {
        let weights = vec![u32::MAX; 1 << 16];
        let counts = point_counts(&weights, u32::MAX, None, RING_POINT_LIMIT).unwrap();
        assert_eq!(counts.iter().sum::<u64>(), RING_POINT_LIMIT);
        assert!(counts.iter().all(|&c| c == RING_POINT_LIMIT >> 16));
    }
}
