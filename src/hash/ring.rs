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
//!   [`mix`](crate::hash::mix)`(id_hash(id), j)`, with [`id_hash`](crate::hash::id_hash) the
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
//! * **Update**: O(points), by a counting sort on the same top bits: two [`mix`](crate::hash::mix) per point
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
    /// [`Error::InvalidConfig`] (`"points_per_weight"`) if the weights add up to more than
    /// [`RING_POINT_LIMIT`] points. Updates fail the same way.
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
}

impl Default for HashRingConfig {
    fn default() -> Self {
        HashRingConfig {
            points_per_weight: DEFAULT_POINTS_PER_WEIGHT,
        }
    }
}

impl Seedable for HashRingConfig {}
impl LoadBounded for HashRingConfig {}

impl Builder<HashRingConfig> {
    /// Points per unit of weight (default 160). More points, better balance (max/mean about
    /// `1 + 3/sqrt(p)` at 100 backends), more memory and build time.
    pub fn points_per_weight(mut self, points: u32) -> Self {
        self.config.points_per_weight = points;
        self
    }

    /// Builds the ring over `backends`.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] for `points_per_weight` (0, or more than
    /// [`RING_POINT_LIMIT`] points in all), `load_factor` (below 1, NaN, infinite) or a
    /// health rule, and those of [`HashRing::new`].
    pub fn build<T: Send + Sync + 'static>(
        self,
        backends: impl IntoIterator<Item = Backend<T>>,
    ) -> Result<HashRing<T>, Error> {
        let points_per_weight = self.config.points_per_weight;
        if points_per_weight == 0 {
            return Err(Error::config("points_per_weight", "must be at least 1"));
        }
        let policy = self.hashed(RingPlacement { points_per_weight })?;
        Ok(HashRing {
            core: Core::new(policy, backends, self.health)?,
        })
    }
}

pub(crate) struct RingPlacement {
    points_per_weight: u32,
}

impl Placement for RingPlacement {
    type Table = Ring;

    fn build(&self, nodes: &[Node]) -> Result<Ring, Error> {
        let per_weight = u64::from(self.points_per_weight);
        let total: u128 = nodes
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
        Ok(Ring::new(nodes, per_weight, total as usize))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn too_many_points_is_an_error() {
        let placement = RingPlacement {
            points_per_weight: 160,
        };
        let err = placement.build(&Node::numbered(&[u32::MAX])).err().unwrap();
        assert!(matches!(
            err,
            Error::InvalidConfig {
                parameter: "points_per_weight",
                ..
            }
        ));
        assert_eq!(placement.build(&Node::numbered(&[])).unwrap().len(), 0);
    }
}
