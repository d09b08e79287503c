//! Jump consistent hash (Lamping and Veach, *A Fast, Minimal Memory, Consistent Hash
//! Algorithm*, Google, 2014).
//!
//! # Algorithm
//!
//! [`jump_hash`] maps a 64-bit key to one of `n` numbered buckets with no table at all: it
//! follows the key's pseudo-random sequence of "jumps" up the bucket numbers and stops at the
//! last one below `n`. When `n` grows to `n + 1`, exactly the keys that now map to bucket `n`
//! move (a `1/(n + 1)` share); when it shrinks, only the last bucket's keys move. Balance is
//! as good as the key hash (max/mean about 1.025 at 100 buckets and 1M keys, the noise of
//! the keys alone).
//!
//! # The one order-dependent policy
//!
//! [`JumpHash`] numbers its buckets **in the order the backends are given** to `new` or
//! `update`: the first backend is bucket 0. Unlike every other policy of the crate, its
//! mapping therefore depends on the order of the list, and it keeps keys in place only if
//! backends are added or removed **at the end** of the list. Use it for numbered shards
//! (`shard-0`, `shard-1`, ...) whose count changes at the end, not for a set learned from
//! discovery in arbitrary order (use [`Rendezvous`](crate::Rendezvous) or
//! [`HashRing`](crate::HashRing) for that).
//!
//! Weights: every backend of weight above 0 is one bucket with an equal share; **weights
//! above 0 are ignored**. A backend of weight 0, like a `Down` or `Draining` one, keeps its
//! bucket number but is not eligible: its keys walk on (below) and come back when it is
//! eligible again.
//!
//! # Exact derivation
//!
//! With `h` the key's 64-bit hash ([`key_hash`](crate::hash::key_hash) of its bytes, or the
//! caller's) and `n` the number of backends:
//!
//! 1. Probes `a = 0, 1, ..., 7`: bucket `jump_hash(k_a, n)` with `k_0 = h` and
//!    `k_a = mix(h, a)` ([`mix`]). The first eligible one wins.
//! 2. Otherwise, from bucket `s = jump_hash(mix(h, 8), n)`, the buckets `s, s + 1, ...`
//!    wrapping, until an eligible one: every bucket is reached, so the walk ends.
//!
//! `pick_n` takes the first eligible bucket not already chosen by the same rule, so its
//! results are distinct and its first is the one `pick` returns.
//!
//! Minimal disruption holds for keys whose own bucket is eligible: growing or shrinking the
//! list at the end moves only the keys of the bucket added or removed. A key that walked on
//! past an ineligible bucket follows probes that depend on `n`, so it may move to another
//! bucket when `n` changes.
//!
//! # Cost
//!
//! Pick: O(ln n) (about `ln n + 1` jumps, each a multiply and a floating-point division),
//! no memory access but the bucket's entry. Update: O(n) (one array of bucket -> backend).
//! Memory: 4 bytes per backend.
//!
//! # When to choose it
//!
//! Numbered shards of a storage system, where the shard count grows or shrinks at the end and
//! every shard is equal: the best balance and the least memory of all consistent hashes.
//! Bounded loads are not offered: shards own their data, and a key cannot go elsewhere.

use crate::backend::Backend;
use crate::builder::{Builder, Seedable};
use crate::engine::core::{impl_balancer, Core};
use crate::error::Error;
use crate::hash::walk::{Hashed, Node, Placement, Preference};
use crate::placement::mix;

/// Jump consistent hash: the bucket in `0..buckets` of `key`, exactly as in Lamping and
/// Veach's paper (the same values as Guava's `Hashing.consistentHash`).
///
/// `buckets = 0` returns 0, like `buckets = 1`.
///
/// ```
/// assert_eq!(lbkit::jump_hash(2, 100_001), 80_343);
/// assert_eq!(lbkit::jump_hash(10_863_919_174_838_991, 11), 6);
/// ```
pub fn jump_hash(mut key: u64, buckets: u32) -> u32 {
    // The paper's C++, with `b` and `j` as i64:
    //   while (j < num_buckets) { b = j; key = key * 2862933555777941757ULL + 1;
    //     j = (b + 1) * (double(1LL << 31) / double((key >> 33) + 1)); }
    let buckets = i64::from(buckets);
    let (mut b, mut j) = (0i64, 0i64);
    while j < buckets {
        b = j;
        key = key.wrapping_mul(2_862_933_555_777_941_757).wrapping_add(1);
        // Every operation is a correctly rounded IEEE-754 double operation, the same on every
        // platform; the float-to-int cast truncates (and saturates where C would overflow).
        j = ((b + 1) as f64 * ((1u64 << 31) as f64 / ((key >> 33) + 1) as f64)) as i64;
    }
    // 0 <= b < buckets <= u32::MAX.
    b as u32
}

/// Jump consistent hash over numbered buckets: the backends, in the order given.
///
/// The only order-dependent policy of the crate; see the [module docs](crate::hash::jump).
///
/// ```
/// use lbkit::{Backend, Balancer, JumpHash, Request};
/// let shards = (0..4).map(|i| Backend::new(format!("shard-{i}"), i));
/// let lb = JumpHash::new(shards)?;
/// let shard = lb.pick(&Request::with_hash(2)).unwrap();
/// assert_eq!(*shard, lbkit::jump_hash(2, 4) as i32);
/// # Ok::<(), lbkit::Error>(())
/// ```
pub struct JumpHash<T> {
    core: Core<T, Hashed<Jump>>,
}

impl<T: Send + Sync + 'static> JumpHash<T> {
    /// Jump hashing over `backends`, bucket `i` being the `i`-th backend given. Requests
    /// without a key are spread at random, seeded from the clock and the process (the same
    /// as `JumpHash::builder().build(backends)`).
    ///
    /// # Errors
    /// [`Error::EmptyId`], [`Error::DuplicateId`], [`Error::TooManyBackends`], and
    /// [`Error::InvalidConfig`] for a backend's `max_in_flight` of 0.
    pub fn new(backends: impl IntoIterator<Item = Backend<T>>) -> Result<Self, Error> {
        Builder::new(JumpHashConfig).build(backends)
    }

    /// As [`JumpHash::new`], with the random spread of requests without a key seeded, so it
    /// replays exactly: the shortcut for `JumpHash::builder().seed(seed).build(backends)`.
    ///
    /// # Errors
    /// As [`JumpHash::new`].
    pub fn with_seed(
        backends: impl IntoIterator<Item = Backend<T>>,
        seed: u64,
    ) -> Result<Self, Error> {
        Builder::new(JumpHashConfig).seed(seed).build(backends)
    }
}

impl JumpHash<()> {
    /// A builder to set a seed or passive health; its `build` makes a `JumpHash<T>` of any
    /// `T` (an associated function of `JumpHash<()>` only so that `JumpHash::builder()` needs
    /// no type annotation). Jump hashing has no bounded loads (see the module docs).
    pub fn builder() -> Builder<JumpHashConfig> {
        Builder::new(JumpHashConfig)
    }
}

impl_balancer!(JumpHash);

/// The configuration of [`JumpHash`], the type parameter of [`JumpHash::builder`]'s
/// [`Builder`]: none beyond the shared `seed` and `health`.
#[derive(Debug, Clone, Copy, Default)]
#[non_exhaustive]
pub struct JumpHashConfig;

impl Seedable for JumpHashConfig {}

impl Builder<JumpHashConfig> {
    /// Builds the balancer over `backends`.
    ///
    /// # Errors
    /// As [`JumpHash::new`], and [`Error::InvalidConfig`] for a health rule out of range.
    pub fn build<T: Send + Sync + 'static>(
        self,
        backends: impl IntoIterator<Item = Backend<T>>,
    ) -> Result<JumpHash<T>, Error> {
        let policy = self.hashed(Jump)?;
        Ok(JumpHash {
            core: self.core(policy, backends)?,
        })
    }
}

pub(crate) struct Jump;

impl Placement for Jump {
    type Table = Buckets;

    fn build(&self, members: &[Node]) -> Result<Buckets, Error> {
        // Buckets in list order: by position, which is a permutation of 0..n, or (under a
        // subset) increasing with gaps; n <= MAX_BACKENDS < u32::MAX.
        let mut buckets: Vec<u32> = (0..members.len() as u32).collect();
        buckets.sort_unstable_by_key(|&index| members[index as usize].position);
        Ok(Buckets {
            members: buckets.into(),
        })
    }
}

/// Bucket number -> member index.
pub(crate) struct Buckets {
    members: Box<[u32]>,
}

/// Jumps tried before the walk along the bucket numbers.
const PROBES: u64 = 8;

impl Preference for Buckets {
    #[inline]
    fn first(&self, key: u64, mut accept: impl FnMut(usize) -> bool) -> Option<usize> {
        let n = self.members.len();
        if n == 0 {
            return None;
        }
        // n <= MAX_BACKENDS = u32::MAX.
        let count = n as u32;
        for attempt in 0..PROBES {
            let k = if attempt == 0 { key } else { mix(key, attempt) };
            let member = self.members[jump_hash(k, count) as usize] as usize;
            if accept(member) {
                return Some(member);
            }
        }
        let start = jump_hash(mix(key, PROBES), count) as usize;
        let (before, after) = self.members.split_at(start);
        after
            .iter()
            .chain(before)
            .map(|&m| m as usize)
            .find(|&m| accept(m))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The public values of Guava's `consistentHash` (which is the paper's algorithm).
    #[test]
    fn matches_guava() {
        assert_eq!(jump_hash(10_863_919_174_838_991, 11), 6);
        assert_eq!(jump_hash(2_016_238_256_797_177_309, 11), 3);
        assert_eq!(jump_hash(1_673_758_223_894_951_030, 11), 5);
        assert_eq!(jump_hash(2, 100_001), 80_343);
        assert_eq!(jump_hash(2201, 100_001), 22_152);
        assert_eq!(jump_hash(2202, 100_001), 15_018);
    }

    #[test]
    fn degenerate_bucket_counts() {
        for key in [0, 1, 42, u64::MAX] {
            assert_eq!(jump_hash(key, 0), 0);
            assert_eq!(jump_hash(key, 1), 0);
            assert!(jump_hash(key, u32::MAX) < u32::MAX);
        }
    }

    /// Growing from n to n + 1 buckets moves keys only to the new bucket.
    #[test]
    fn growing_moves_keys_only_to_the_new_bucket() {
        let mut key = 99u64;
        for _ in 0..2000 {
            key = crate::placement::splitmix64(key);
            for n in 1..40 {
                let (before, after) = (jump_hash(key, n), jump_hash(key, n + 1));
                assert!(after == before || after == n, "{key} {n}");
            }
        }
    }

    #[test]
    fn walk_reaches_every_bucket() {
        let buckets = Buckets {
            members: (0..50).collect(),
        };
        for key in 0..20 {
            let mut seen = [false; 50];
            assert_eq!(
                buckets.first(key, |m| {
                    seen[m] = true;
                    false
                }),
                None
            );
            assert!(seen.iter().all(|&s| s));
            assert_eq!(buckets.first(key, |m| m == 49), Some(49));
        }
    }
}
