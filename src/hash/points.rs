//! The sorted ring of 64-bit points with its O(1) radix index, shared by
//! [`HashRing`](crate::HashRing) (lbkit's own points) and [`PresetRing`](crate::PresetRing)
//! (nginx's or ketama's points). Not a policy: how a key walks a ring.

use crate::hash::walk::{count_owners, Node, Preference};
use crate::placement::mix;

/// The most points one ring may hold (Envoy's largest ring, 8M entries): about 170 MB.
/// A set and configuration that would need more is rejected with
/// [`Error::InvalidConfig`](crate::Error::InvalidConfig).
pub const RING_POINT_LIMIT: u64 = 1 << 23;

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
    /// The ring of `counts[i]` points for `nodes[i]`: point `j` of a node is
    /// `mix(id_hash, j)` for `j` in `0..counts[i]`.
    pub(crate) fn new(nodes: &[Node], counts: &[u64]) -> Ring {
        debug_assert_eq!(nodes.len(), counts.len());
        let total: usize = counts.iter().map(|&c| c as usize).sum();
        // 2 to 4 points per bucket on average: an index a quarter to half the size of the
        // points keeps more of it in cache, and a bucket's points span one or two cache
        // lines. At least 2 buckets, so that `shift` < 64.
        let bits = total
            .next_power_of_two()
            .trailing_zeros()
            .saturating_sub(2)
            .max(1);
        let shift = 64 - bits;
        let points_of = |m: &Node, count: u64| {
            let id_hash = m.id_hash;
            (0..count).map(move |j| mix(id_hash, j))
        };
        // Counting sort on the top bits: count, prefix-sum, place, then order each bucket.
        let mut starts = vec![0u32; (1usize << bits) + 1];
        for (m, &count) in nodes.iter().zip(counts) {
            for p in points_of(m, count) {
                starts[(p >> shift) as usize + 1] += 1;
            }
        }
        for b in 1..starts.len() {
            starts[b] += starts[b - 1];
        }
        let mut cursor: Vec<u32> = starts[..starts.len() - 1].to_vec();
        let mut placed = vec![(0u64, 0u32); total];
        for (index, (m, &count)) in nodes.iter().zip(counts).enumerate() {
            for p in points_of(m, count) {
                let slot = &mut cursor[(p >> shift) as usize];
                // Node indices fit in u32: a set holds at most MAX_BACKENDS = u32::MAX.
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

    /// The owner of every point, in ring order.
    pub(crate) fn owners(&self) -> impl Iterator<Item = u32> + '_ {
        self.points.iter().map(|&(_, owner)| owner)
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

    /// The points each member owns, in one pass over the ring: `Ring::new`'s counts as
    /// built (see `point_counts` in [`crate::hash::ring`]), or a preset's points as given to
    /// `Ring::from_points` (nginx's and ketama's with each position kept once).
    fn shares(&self, members: usize) -> Option<Vec<u64>> {
        Some(count_owners(self.owners(), members))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_finds_the_same_successor_as_a_binary_search() {
        let ring = Ring::new(&Node::numbered(&[1, 2, 0, 3]), &[40, 80, 0, 120]);
        assert_eq!(ring.len(), 240);
        assert!(ring.points.windows(2).all(|w| w[0] <= w[1]));
        let mut x = 12345u64;
        for _ in 0..10_000 {
            x = crate::placement::splitmix64(x);
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
    fn each_node_gets_its_count_of_points() {
        let ring = Ring::new(&Node::numbered(&[1, 2, 0, 3]), &[10, 20, 0, 30]);
        let count = |m: u32| ring.points.iter().filter(|&&(_, o)| o == m).count();
        assert_eq!([count(0), count(1), count(2), count(3)], [10, 20, 0, 30]);
        // The shares are the same counts, per member index; a member past the last owner
        // (asked for more members than the ring has) owns 0.
        assert_eq!(ring.shares(4), Some(vec![10, 20, 0, 30]));
        assert_eq!(ring.shares(5), Some(vec![10, 20, 0, 30, 0]));
    }

    #[test]
    fn walk_goes_once_around() {
        let ring = Ring::new(&Node::numbered(&[1, 1, 1]), &[3, 3, 3]);
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
}
