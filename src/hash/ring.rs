//! Consistent hashing on a ring of weighted virtual nodes (Karger et al., STOC 1997; the
//! "ketama" ring of memcached clients, nginx's `hash $key consistent`, Envoy's `RING_HASH`).
//!
//! # Algorithm
//!
//! Each backend of weight `w` places `w x p` points on a ring of 64-bit values (`p` = points
//! per weight unit, default [`DEFAULT_POINTS_PER_WEIGHT`] = 160, nginx's value). A key goes to
//! the owner of the first point at or after its hash, wrapping at the end. A backend that
//! joins takes only the keys that now fall before its points; one that leaves gives only its
//! own keys to the next points. Backends of weight 0 have no points.
//!
//! A key whose owner is not eligible (down, draining) walks on along the ring to the next
//! point of an eligible owner; `pick_n` returns the distinct owners met along the ring, in
//! ring order. With bounded loads, owners at capacity are passed by the same way.
//!
//! # Exact derivation (to reproduce a mapping in another language)
//!
//! * Backends are taken in any order; the ring is a function of the set of (id, weight).
//! * Point `j` (for `j = 0, 1, ..., w x p - 1`) of the backend with id `id` is
//!   [`mix`]`(id_hash(id), j)`, with [`id_hash`](crate::hash::id_hash) the
//!   pinned XXH3-64 of the id's UTF-8 bytes (seed `"lbkit_id"`).
//! * The points are sorted as unsigned 64-bit integers; equal points (a 2^-64 event) are
//!   ordered by the owners' ids, byte-wise.
//! * A key's hash `h` is [`key_hash`](crate::hash::key_hash) of its bytes (or the caller's
//!   64-bit hash). Its owner is the owner of the first point `>= h`; if there is none, of the
//!   first point of the ring.
//!
//! # Cost
//!
//! * **Pick**: O(1) expected. A radix index over the top `b` bits of the point space (`2^b`
//!   buckets, a quarter of the number of points rounded up to a power of two, so 2 to 4
//!   points per bucket on average) gives the first point of the key's bucket; a scan of the
//!   bucket (one or two cache lines) finds the successor. No binary search: at 1000
//!   backends (160,000 points) and 4096 keys, the lookup of a key hash takes 3.4 ns where a
//!   binary search over the same points takes 43 ns (release, measured); a whole pick and
//!   drop, key hashing and accounting included, costs 35 to 40 ns, of which the shared
//!   machinery (snapshot load, in-flight accounting) takes about 19. Walking on past
//!   ineligible owners costs one step per point passed.
//! * **Update**: O(points), by a counting sort on the same top bits: two [`mix`] per point
//!   (one to count, one to place), then each bucket's few points put in order.
//! * **Memory**: 16 bytes per point (8 for the point, 4 for its owner's index, 4 of
//!   alignment: the pair shares a cache line) plus the index, 4 bytes per bucket: 17 to 18
//!   bytes per point.
//!
//! Balance, memory and build time against points per weight unit, measured in release on the
//! project's shared 2-core machine (build times are the best of 5 and vary by about 2x with
//! the machine's load): 100 backends of weight 1 named `10.0.<i/256>.<i%256>:8080`, max/mean
//! of the keys per backend over 1,000,000 random keys (the keys alone put the maximum about
//! 2.5% over the mean), memory of the points and index.
//!
//! | points per weight | points | max/mean | memory | build |
//! |---:|---:|---:|---:|---:|
//! | 16 | 1,600 | 2.095 | 0.03 MB | 0.06 ms |
//! | 40 | 4,000 | 1.425 | 0.07 MB | 0.09 ms |
//! | 100 | 10,000 | 1.265 | 0.18 MB | 0.15 ms |
//! | **160** (default) | 16,000 | 1.234 | 0.27 MB | 0.11 to 0.22 ms |
//! | 500 | 50,000 | 1.121 | 0.87 MB | 0.62 ms |
//! | 1000 | 100,000 | 1.104 | 1.73 MB | 1.2 ms |
//! | 2000 | 200,000 | 1.058 | 3.46 MB | 3.8 ms |
//! | 5000 | 500,000 | 1.038 | 8.5 MB | 10 ms |
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

use crate::hash::mix;
use crate::hash::walk::{hashing_options, Hashed, Member, Options, Placement, Preference};
use crate::membership::{impl_balancer, Core};
use crate::{Backend, Error};

/// Points per weight unit unless configured: nginx's and ketama's 160.
pub const DEFAULT_POINTS_PER_WEIGHT: u32 = 160;

/// The most points one ring may hold (Envoy's largest ring, 8M entries): about 170 MB.
/// A set and configuration that would need more is rejected with
/// [`Error::InvalidConfig`].
pub const RING_POINT_LIMIT: u64 = 1 << 23;

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
    /// A ring with [`DEFAULT_POINTS_PER_WEIGHT`] points per weight unit, no load bound.
    ///
    /// # Errors
    /// [`Error::EmptyId`], [`Error::DuplicateId`], [`Error::TooManyBackends`], and
    /// [`Error::InvalidConfig`] (`"points_per_weight"`) if the weights add up to more than
    /// [`RING_POINT_LIMIT`] points. Updates fail the same way.
    pub fn new(backends: impl IntoIterator<Item = Backend<T>>) -> Result<Self, Error> {
        HashRingBuilder::default().build(backends)
    }
}

impl HashRing<()> {
    /// A builder to set points per weight unit, a load factor or a seed; its `build` makes a
    /// `HashRing<T>` of any `T` (this is an associated function of `HashRing<()>` only so
    /// that `HashRing::builder()` needs no type annotation).
    pub fn builder() -> HashRingBuilder {
        HashRingBuilder::default()
    }
}

impl_balancer!(HashRing);

/// Configures a [`HashRing`].
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
#[derive(Debug, Clone)]
#[must_use]
pub struct HashRingBuilder {
    points_per_weight: u32,
    options: Options,
}

impl Default for HashRingBuilder {
    fn default() -> Self {
        HashRingBuilder {
            points_per_weight: DEFAULT_POINTS_PER_WEIGHT,
            options: Options::default(),
        }
    }
}

hashing_options!(HashRingBuilder);

impl HashRingBuilder {
    /// Points per unit of weight (default 160). More points, better balance (max/mean about
    /// `1 + 3/sqrt(p)` at 100 backends), more memory and build time.
    pub fn points_per_weight(mut self, points: u32) -> Self {
        self.points_per_weight = points;
        self
    }

    /// Builds the ring over `backends`.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] for `points_per_weight` (0, or more than
    /// [`RING_POINT_LIMIT`] points in all) or `load_factor` (below 1, NaN, infinite), and
    /// those of [`HashRing::new`].
    pub fn build<T: Send + Sync + 'static>(
        self,
        backends: impl IntoIterator<Item = Backend<T>>,
    ) -> Result<HashRing<T>, Error> {
        if self.points_per_weight == 0 {
            return Err(Error::config("points_per_weight", "must be at least 1"));
        }
        let policy = self.options.policy(RingPlacement {
            points_per_weight: self.points_per_weight,
        })?;
        Ok(HashRing {
            core: Core::new(policy, backends)?,
        })
    }
}

pub(crate) struct RingPlacement {
    points_per_weight: u32,
}

impl Placement for RingPlacement {
    type Table = Ring;

    fn build(&self, members: &[Member]) -> Result<Ring, Error> {
        let per_weight = u64::from(self.points_per_weight);
        let total: u128 = members
            .iter()
            .map(|m| u128::from(m.weight) * u128::from(per_weight))
            .sum();
        if total > u128::from(RING_POINT_LIMIT) {
            return Err(Error::config(
                "points_per_weight",
                format!(
                    "{per_weight} points per weight unit make {total} points, more than the \
                     limit of {RING_POINT_LIMIT}"
                ),
            ));
        }
        Ok(Ring::new(members, per_weight, total as usize))
    }
}

/// The sorted points, their owners, and the radix index over them.
pub(crate) struct Ring {
    /// `(point, owner)`, sorted: a point and its owner's member index share a cache line.
    points: Box<[(u64, u32)]>,
    /// `starts[b]` is the first position whose point's top bits are `>= b`; one extra entry
    /// at the end holds the number of points.
    starts: Box<[u32]>,
    /// `64 - b`, where `2^b` buckets index the ring.
    shift: u32,
}

impl Ring {
    fn new(members: &[Member], per_weight: u64, total: usize) -> Ring {
        // 2 to 4 points per bucket on average: an index a quarter to half the size of the
        // points keeps more of it in cache, and a bucket's points span one or two cache
        // lines. At least 2 buckets, so that `shift` < 64.
        let bits = total
            .next_power_of_two()
            .trailing_zeros()
            .saturating_sub(2)
            .max(1);
        let shift = 64 - bits;
        let points_of = |m: &Member| {
            let id_hash = m.id_hash;
            (0..u64::from(m.weight) * per_weight).map(move |j| mix(id_hash, j))
        };
        // Counting sort on the top bits: count, prefix-sum, place, then order each bucket.
        let mut starts = vec![0u32; (1usize << bits) + 1];
        for m in members {
            for p in points_of(m) {
                starts[(p >> shift) as usize + 1] += 1;
            }
        }
        for b in 1..starts.len() {
            starts[b] += starts[b - 1];
        }
        let mut cursor: Vec<u32> = starts[..starts.len() - 1].to_vec();
        let mut placed = vec![(0u64, 0u32); total];
        for (index, m) in members.iter().enumerate() {
            for p in points_of(m) {
                let slot = &mut cursor[(p >> shift) as usize];
                // Member indices fit in u32: a set holds at most MAX_BACKENDS = u32::MAX.
                placed[*slot as usize] = (p, index as u32);
                *slot += 1;
            }
        }
        // Members are in id order, so (point, index) orders equal points by id.
        for b in 0..starts.len() - 1 {
            let bucket = &mut placed[starts[b] as usize..starts[b + 1] as usize];
            if bucket.len() > 1 {
                bucket.sort_unstable();
            }
        }
        Ring {
            points: placed.into(),
            starts: starts.into(),
            shift,
        }
    }

    /// A ring over points computed elsewhere (the presets' 32-bit points, shifted to the top
    /// half): sorted by (point, member), so equal points resolve to the lower member index.
    pub(crate) fn from_points(mut points: Vec<(u64, u32)>) -> Ring {
        points.sort_unstable();
        let bits = points
            .len()
            .next_power_of_two()
            .trailing_zeros()
            .saturating_sub(2)
            .max(1);
        let shift = 64 - bits;
        let mut starts = vec![0u32; (1usize << bits) + 1];
        for &(p, _) in &points {
            starts[(p >> shift) as usize + 1] += 1;
        }
        for b in 1..starts.len() {
            starts[b] += starts[b - 1];
        }
        Ring {
            points: points.into(),
            starts: starts.into(),
            shift,
        }
    }

    /// Position of the first point `>= key`, wrapping to 0. The ring must not be empty.
    #[inline]
    fn successor(&self, key: u64) -> usize {
        let bucket = (key >> self.shift) as usize;
        let mut at = self.starts[bucket] as usize;
        let end = self.starts[bucket + 1] as usize;
        while at < end && self.points[at].0 < key {
            at += 1;
        }
        if at == self.points.len() {
            0
        } else {
            at
        }
    }

    /// Number of points on the ring.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.points.len()
    }
}

impl Preference for Ring {
    #[inline]
    fn first(&self, key: u64, mut accept: impl FnMut(usize) -> bool) -> Option<usize> {
        if self.points.is_empty() {
            return None;
        }
        let start = self.successor(key);
        let owner = self.points[start].1 as usize;
        if accept(owner) {
            return Some(owner);
        }
        // Walk on, once around the ring.
        let (after, before) = self.points.split_at(start);
        before[1..]
            .iter()
            .chain(after)
            .map(|&(_, o)| o as usize)
            .find(|&o| accept(o))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn members(weights: &[u32]) -> Vec<Member> {
        weights
            .iter()
            .enumerate()
            .map(|(i, &weight)| Member {
                id: format!("backend-{i}").into(),
                id_hash: crate::hash::id_hash(&format!("backend-{i}")),
                weight,
                position: i,
            })
            .collect()
    }

    #[test]
    fn index_finds_the_same_successor_as_a_binary_search() {
        let ring = Ring::new(&members(&[1, 2, 0, 3]), 40, 240);
        assert_eq!(ring.len(), 240);
        assert!(ring.points.windows(2).all(|w| w[0] <= w[1]));
        let mut x = 12345u64;
        for _ in 0..10_000 {
            x = crate::sequence::splitmix64(x);
            let expect = ring.points.partition_point(|&(p, _)| p < x) % ring.len();
            assert_eq!(ring.successor(x), expect);
        }
        let p = |k: usize| ring.points[k].0;
        for edge in [0, 1, u64::MAX, p(0), p(239), p(17) + 1] {
            let expect = ring.points.partition_point(|&(p, _)| p < edge) % ring.len();
            assert_eq!(ring.successor(edge), expect);
        }
    }

    #[test]
    fn points_are_proportional_to_weight_and_weight_zero_has_none() {
        let ring = Ring::new(&members(&[1, 2, 0, 3]), 10, 60);
        let count = |m: u32| ring.points.iter().filter(|&&(_, o)| o == m).count();
        assert_eq!([count(0), count(1), count(2), count(3)], [10, 20, 0, 30]);
    }

    #[test]
    fn walk_goes_once_around() {
        let ring = Ring::new(&members(&[1, 1, 1]), 3, 9);
        let mut offered = Vec::new();
        assert_eq!(
            ring.first(7, |m| {
                offered.push(m);
                false
            }),
            None
        );
        assert_eq!(offered.len(), 9);
        assert_eq!(ring.first(7, |m| m == 2), Some(2));
    }

    #[test]
    fn too_many_points_is_an_error() {
        let placement = RingPlacement {
            points_per_weight: 160,
        };
        let err = placement.build(&members(&[u32::MAX])).err().unwrap();
        assert!(matches!(
            err,
            Error::InvalidConfig {
                parameter: "points_per_weight",
                ..
            }
        ));
        assert!(placement.build(&members(&[])).unwrap().points.is_empty());
    }
}
