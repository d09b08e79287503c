//! What every hashing policy shares: turning a key's preference order into picks.
//!
//! A placement algorithm ([`Placement`]) builds a table over *all* members of a set (healthy
//! or not) and answers one question ([`Preference::first`]): "which is the first member, in
//! this key's order of preference, that passes this test?". The [`Hashed`] policy does the
//! rest, once for every hashing balancer (the behaviour is documented for users in
//! [`crate::hash`]): skipping ineligible members, distinct `pick_n` results whose first is
//! `pick`'s, the random spread of requests without a key, and bounded loads ([`LoadFactor`],
//! `Capacity`), including the validation of the load factor.

use std::cell::Cell;
use std::cmp::Ordering;
use std::sync::Arc;

use crate::builder::Builder;
use crate::engine::policy::Policy;
use crate::engine::sequence::Sequence;
use crate::engine::snapshot::{Snapshot, View};
use crate::error::Error;
use crate::placement::{id_hash, splitmix64};
use crate::request::Request;

/// One backend of a set as a placement algorithm sees it. Its index in the slice given to
/// [`Placement::build`] is its index in the snapshot's members (id order).
pub(crate) struct Node {
    /// The backend's id (the presets hash it their own way).
    pub(crate) id: Arc<str>,
    /// [`id_hash`] of the backend's id.
    pub(crate) id_hash: u64,
    /// The backend's weight.
    pub(crate) weight: u32,
    /// The backend's position in the list given to the latest update.
    pub(crate) position: usize,
}

#[cfg(test)]
impl Node {
    /// For unit tests of the placements: backends `backend-0`, `backend-1`, ... with these
    /// weights, in id order for up to 10 of them.
    pub(crate) fn numbered(weights: &[u32]) -> Vec<Node> {
        weights
            .iter()
            .enumerate()
            .map(|(i, &weight)| Node {
                id: format!("backend-{i}").into(),
                id_hash: id_hash(&format!("backend-{i}")),
                weight,
                position: i,
            })
            .collect()
    }
}

/// How one algorithm orders the members for a key: its table builder.
pub(crate) trait Placement: Send + Sync + 'static {
    /// The precomputed table.
    type Table: Preference;

    /// Builds the table over every member (eligible or not). An error rejects the update.
    fn build(&self, nodes: &[Node]) -> Result<Self::Table, Error>;

    /// The 64-bit key the table is walked with, `None` for a request without a key. The
    /// crate's pinned hash by default; the presets hash keys as the programs they reproduce.
    #[inline]
    fn key_hash(&self, request: &Request<'_>) -> Option<u64> {
        request.key_hash()
    }
}

/// A table that can walk a key's preference order.
pub(crate) trait Preference: Send + Sync + 'static {
    /// The first member index, in `key`'s order of preference, for which `accept` is true.
    ///
    /// Contract: `accept` is a pure test during one call (it may be asked about a member more
    /// than once); `None` only after every member of weight above 0 was offered.
    fn first(&self, key: u64, accept: impl FnMut(usize) -> bool) -> Option<usize>;

    /// For each member index `0..members` (an index into the snapshot's members, id order),
    /// the number of table entries it owns: ring points, Maglev slots, a preset's continuum
    /// points or slots. `None` (the default) for placements without a table of entries
    /// (jump hash's buckets, rendezvous's scores).
    ///
    /// What the table holds, not what picks see: a member that is not eligible keeps its
    /// entries (keys walk past them), and a member of weight 0 or one the table gave no
    /// entry owns 0. Entries are counted as stored: two members' equal ring points (a
    /// 2^-64 event for lbkit's own ring) each count, though keys reach only the lower id's.
    ///
    /// Cost: O(entries + members), one pass over the table and a vector of `members`
    /// counts. For [`Balancer::status`](crate::Balancer::status) only, never on the pick
    /// path.
    fn shares(&self, members: usize) -> Option<Vec<u64>> {
        let _ = members;
        None
    }
}

/// The number of entries of each member `0..members` in a table whose entries are owned
/// by `owners` (member indices): the counting pass behind [`Preference::shares`]. An owner
/// out of range (none is, by construction) is left out rather than trusted.
pub(crate) fn count_owners(owners: impl Iterator<Item = u32>, members: usize) -> Vec<u64> {
    let mut counts = vec![0u64; members];
    for owner in owners {
        if let Some(count) = counts.get_mut(owner as usize) {
            *count += 1;
        }
    }
    counts
}

/// The policy behind every hashing balancer: a placement, an optional load bound, and the
/// random source for requests without a key.
pub(crate) struct Hashed<A> {
    pub(crate) placement: A,
    bound: Option<LoadFactor>,
    spread: Sequence,
}

impl<A: Placement> Hashed<A> {
    /// The 64-bit key hash of `request`, or a random one if it has no key.
    #[inline]
    fn key(&self, request: &Request<'_>) -> u64 {
        request
            .placement_hash()
            .or_else(|| self.placement.key_hash(request))
            .unwrap_or_else(|| self.spread.next_random())
    }
}

/// Xored into a key's hash before the remix that chooses its level: the first 64 bits of
/// the fractional part of pi, a constant with no relation to any placement hash. Pinned: a
/// fleet must agree on which level a key goes to.
const TIER_SALT: u64 = 0x243f_6a88_85a3_08d3;

impl<T, A: Placement> Policy<T> for Hashed<A> {
    type Table = A::Table;
    const TABLE_USES_HEALTH: bool = false;

    /// The key's hash, remixed (SplitMix64 of the hash xor a constant), so that the level
    /// and locality a key lands in do not correlate with its place inside them. A request
    /// without a key draws from the core's sequence.
    #[inline]
    fn tier_draw<'r>(&self, request: &Request<'r>) -> (Option<u64>, Request<'r>) {
        match self.placement.key_hash(request) {
            Some(h) => (Some(splitmix64(h ^ TIER_SALT)), request.placed(h)),
            None => (None, *request),
        }
    }

    /// The table's entries per member ([`Preference::shares`]).
    fn table_shares(&self, table: &A::Table, members: usize) -> Option<Vec<u64>> {
        table.shares(members)
    }

    fn build(&self, view: &View<'_, T>) -> Result<A::Table, Error> {
        let nodes: Vec<Node> = view
            .members
            .iter()
            .map(|e| Node {
                id: Arc::clone(&e.id),
                id_hash: id_hash(&e.id),
                weight: e.weight,
                position: e.position,
            })
            .collect();
        self.placement.build(&nodes)
    }

    /// The first eligible member in the key's order that `accept` allows (with room, under
    /// bounded loads; the first allowed regardless of load if none has room).
    #[inline]
    fn choose(
        &self,
        snap: &Snapshot<T, A::Table>,
        request: &Request<'_>,
        accept: impl Fn(usize) -> bool,
    ) -> Option<usize> {
        if snap.eligible.is_empty() {
            return None;
        }
        let key = self.key(request);
        let eligible = |i: usize| snap.is_eligible[i] && accept(i);
        match self.bound {
            None => snap.table.first(key, eligible),
            Some(factor) => {
                let load = Capacity::new(factor, request.work());
                let home = Cell::new(None);
                let chosen = snap
                    .table
                    .first(key, |i| within(snap, &load, &home, eligible(i), i))
                    .or_else(|| snap.table.first(key, eligible));
                count_spill(snap, request, home.get(), chosen);
                chosen
            }
        }
    }

    fn choose_n(
        &self,
        snap: &Snapshot<T, A::Table>,
        request: &Request<'_>,
        n: usize,
        accept: impl Fn(usize) -> bool,
        out: &mut Vec<usize>,
    ) {
        if snap.eligible.is_empty() {
            return;
        }
        let key = self.key(request);
        let mut load = self
            .bound
            .map(|factor| Capacity::new(factor, request.work()));
        let want = n.min(snap.eligible.len());
        let start = out.len();
        // Beyond a few picks, a mask keeps "already chosen?" O(1) (a scan of `chosen` inside
        // every walk made large requests quadratic in their size).
        let mut taken = if want > 8 {
            vec![false; snap.members.len()]
        } else {
            Vec::new()
        };
        while out.len() - start < want {
            let chosen = &out[start..];
            let is_taken = |i: usize| {
                if taken.is_empty() {
                    chosen.contains(&i)
                } else {
                    taken[i]
                }
            };
            let free = |i: usize| snap.is_eligible[i] && !is_taken(i) && accept(i);
            let next = match &load {
                None => snap.table.first(key, free),
                Some(load) => {
                    let home = Cell::new(None);
                    let next = snap
                        .table
                        .first(key, |i| within(snap, load, &home, free(i), i))
                        .or_else(|| snap.table.first(key, free));
                    if out.len() == start {
                        // The first choice: a spill as `choose` counts it.
                        count_spill(snap, request, home.get(), next);
                    }
                    next
                }
            };
            // Every eligible member is offered; none left that is free and accepted.
            let Some(index) = next else { break };
            out.push(index);
            if let Some(t) = taken.get_mut(index) {
                *t = true;
            }
            if let Some(load) = &mut load {
                // The pick just chosen will be held: it counts in the total of the next one.
                load.held += u64::from(load.cost);
            }
        }
    }
}

/// The bounded-loads test of a walk: whether member `i` (`candidate`: eligible and accepted)
/// is within its capacity. The first candidate that is not is the key's home, noted in `home`:
/// the walk spills past it.
#[inline]
fn within<T, X>(
    snap: &Snapshot<T, X>,
    load: &Capacity,
    home: &Cell<Option<usize>>,
    candidate: bool,
    i: usize,
) -> bool {
    if !candidate {
        return false;
    }
    if load.has_room(snap, i) {
        return true;
    }
    if home.get().is_none() {
        home.set(Some(i));
    }
    false
}

/// Counts a spill on the key's home if the walk passed it for lack of room and chose another
/// (the fallback walk, when every candidate is full, may come back to the home itself),
/// unless the request counts none ([`Request::counts_spills`]).
#[inline]
fn count_spill<T, X>(
    snap: &Snapshot<T, X>,
    request: &Request<'_>,
    home: Option<usize>,
    chosen: Option<usize>,
) {
    if let Some(home) = home {
        if chosen != Some(home) && request.counts_spills() {
            snap.states[home].count_spill();
        }
    }
}

impl<C> Builder<C> {
    /// The policy behind a hashing balancer: `placement` with the builder's load factor
    /// (checked here) and seed.
    ///
    /// Errors: [`Error::InvalidConfig`] for `load_factor` (below 1, NaN or infinite).
    pub(crate) fn hashed<A>(&self, placement: A) -> Result<Hashed<A>, Error> {
        let bound = self.load_factor.map(LoadFactor::new).transpose()?;
        Ok(Hashed {
            placement,
            bound,
            spread: Sequence::random(self.seed_or_entropy()),
        })
    }
}

/// A bounded-loads factor `c >= 1`, as `ceil(c x 2^32)` saturating at `u64::MAX`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct LoadFactor {
    fixed: u64,
}

impl LoadFactor {
    /// Errors: [`Error::InvalidConfig`] if `c` is NaN, infinite or below 1.
    pub(crate) fn new(c: f64) -> Result<Self, Error> {
        if c.is_nan() || c.is_infinite() || c < 1.0 {
            return Err(Error::config(
                "load_factor",
                format!("{c} is not a finite number of at least 1.0"),
            ));
        }
        // Scaling by a power of two is exact below the overflow; `ceil` is exact; the cast
        // saturates. So the stored value is the same on every platform.
        Ok(LoadFactor {
            fixed: (c * 4_294_967_296.0).ceil() as u64,
        })
    }
}

/// The load of the eligible backends, read at most once per pick, and only if needed.
struct Capacity {
    factor: LoadFactor,
    /// The work of the request being placed ([`Request::cost`]).
    cost: u32,
    /// Picks held on eligible backends and the sum of the eligible weights, once read.
    sums: Cell<Option<(u64, u64)>>,
    /// Members chosen so far by this `pick_n` call: they are acquired once the call has
    /// chosen them all, so no count read during the call includes them.
    held: u64,
}

impl Capacity {
    fn new(factor: LoadFactor, cost: u32) -> Capacity {
        Capacity {
            factor,
            cost,
            sums: Cell::new(None),
            held: 0,
        }
    }

    /// (total held on eligible backends, this call's choices included; sum of their
    /// weights), the counts read on first use.
    fn sums<T, X>(&self, snap: &Snapshot<T, X>) -> (u64, u64) {
        let (total, weight_sum) = match self.sums.get() {
            Some(sums) => sums,
            None => {
                let (mut total, mut weight_sum) = (0u64, 0u64);
                for e in snap.eligible.iter() {
                    total = total.saturating_add(e.state.in_flight() as u64);
                    // Effective weights: fits in 64 bits (see `MAX_BACKENDS`).
                    weight_sum += e.weight;
                }
                self.sums.set(Some((total, weight_sum)));
                (total, weight_sum)
            }
        };
        (total.saturating_add(self.held), weight_sum)
    }

    /// Whether eligible member `index` has room for the request's work: its work held plus
    /// the request's at most its capacity, the load factor times the average work per unit
    /// of weight with the request counted (`held + cost <= ceil(c x (total + cost) x w /
    /// W)`; for a cost of 1, `held < c x (total + 1) x w / W`).
    #[inline]
    fn has_room<T, X>(&self, snap: &Snapshot<T, X>, index: usize) -> bool {
        let member = &snap.members[index];
        let in_flight = member.state.in_flight() as u64;
        if in_flight == 0 && self.cost == 1 {
            // c >= 1, total + 1 >= 1 and 0 < w <= W: the capacity is at least 1. No need
            // to read the whole set's load.
            return true;
        }
        let cost = u64::from(self.cost);
        let (total, weight_sum) = self.sums(snap);
        // Room when held + cost - 1 < c x (total + cost) x w / W, in integers:
        // (held + cost - 1) x W x 2^32 < c_fixed x (total + cost) x w.
        let used = product(in_flight + cost - 1, weight_sum, 1 << 32);
        let capacity = product(
            self.factor.fixed,
            total.saturating_add(cost),
            // The effective weight, in the same units as `weight_sum` (slow start ramps it).
            snap.weights[index],
        );
        used.cmp(&capacity) == Ordering::Less
    }
}

/// The exact product of three 64-bit values, as (high 128 bits, low 64 bits).
#[inline]
fn product(a: u64, b: u64, c: u64) -> (u128, u64) {
    let ab = u128::from(a) * u128::from(b);
    let low = u128::from(ab as u64) * u128::from(c);
    let high = (ab >> 64) * u128::from(c);
    // a x b x c < 2^192, so the high part fits in 128 bits.
    (high + (low >> 64), low as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Mutant of `product` (`high + (low >> 64)` as `-`): the carry from the low part must be
    /// added. Values checked with Python's integers.
    #[test]
    fn product_is_exact_in_192_bits() {
        assert_eq!(
            product(u64::MAX, u64::MAX, u64::MAX),
            (0xffff_ffff_ffff_fffd_0000_0000_0000_0002, u64::MAX)
        );
        assert_eq!(
            product(
                0x1234_5678_9abc_def0,
                0xfedc_ba98_7654_3210,
                0x0f0f_0f0f_f0f0_f0f0
            ),
            (
                0x0110_eb4b_fe8c_b229_a01b_2331_f019_35de,
                0x66db_f97a_0952_1000
            )
        );
        assert_eq!(product(3, 5, 7), (0, 105));
        assert_eq!(product(1 << 32, 1 << 32, 1 << 32), (1 << 32, 0));
    }

    #[test]
    fn load_factor_rejects_what_it_must() {
        for bad in [0.0, 0.999, -1.0, f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
            let err = LoadFactor::new(bad).unwrap_err();
            assert!(matches!(
                err,
                Error::InvalidConfig {
                    parameter: "load_factor",
                    ..
                }
            ));
        }
        assert_eq!(LoadFactor::new(1.0).unwrap().fixed, 1 << 32);
        assert_eq!(LoadFactor::new(1.25).unwrap().fixed, 5 << 30);
        assert_eq!(LoadFactor::new(1e300).unwrap().fixed, u64::MAX);
    }

    #[test]
    fn product_is_exact() {
        assert_eq!(product(2, 3, 7), (0, 42));
        assert_eq!(product(u64::MAX, 1, 1), (0, u64::MAX));
        // (2^64 - 1)^3 = 2^192 - 3 x 2^128 + 3 x 2^64 - 1
        let m = u128::MAX;
        let high = m - (3u128 << 64) + 3;
        assert_eq!(product(u64::MAX, u64::MAX, u64::MAX), (high, u64::MAX));
        assert_eq!(product(1 << 40, 1 << 40, 1 << 40), (1 << 56, 0));
    }

    /// A placement whose every key prefers the members in index order.
    struct InOrder;
    struct InOrderTable(usize);

    impl Preference for InOrderTable {
        fn first(&self, _: u64, mut accept: impl FnMut(usize) -> bool) -> Option<usize> {
            (0..self.0).find(|&i| accept(i))
        }
    }

    impl Placement for InOrder {
        type Table = InOrderTable;
        fn build(&self, nodes: &[Node]) -> Result<InOrderTable, Error> {
            Ok(InOrderTable(nodes.len()))
        }
    }

    /// The documented capacity `ceil(c x (total + 1) x w / W)`, computed independently of
    /// the crate's fixed point: `c` is taken exactly (a finite f64 is `m x 2^e`, `m` below
    /// 2^53), the rest in u128. `None` when the capacity does not fit in a u128 (no bound
    /// that a test can reach).
    fn documented_capacity(c: f64, total_plus_one: u64, w: u64, weight_sum: u64) -> Option<u128> {
        assert!(c.is_finite() && c >= 1.0);
        let bits = c.to_bits();
        let mantissa = u128::from((bits & ((1 << 52) - 1)) | (1 << 52));
        let exponent = ((bits >> 52) & 0x7ff) as i32 - 1075; // c = mantissa x 2^exponent
        let base = mantissa * u128::from(total_plus_one) * u128::from(w);
        if exponent >= 0 {
            let shift = u32::try_from(exponent).unwrap();
            if shift >= base.leading_zeros() {
                return None;
            }
            Some((base << shift).div_ceil(u128::from(weight_sum)))
        } else {
            Some(base.div_ceil(u128::from(weight_sum) << (-exponent)))
        }
    }

    /// Sets a state's in-flight count to `n`.
    fn hold(state: &crate::engine::state::State, n: usize) {
        while state.in_flight() < n {
            state.acquire();
        }
        while state.in_flight() > n {
            state.release(1);
        }
    }

    /// `Capacity::has_room` itself, on real snapshots, against the documented formula
    /// computed independently ([`documented_capacity`]): a member has room exactly when its
    /// in-flight count is below `ceil(c x (total + 1) x w / W)`, so both sides of the
    /// boundary are checked (in_flight = capacity - 1 has room, in_flight = capacity has
    /// none). `total` and `W` count only eligible members: a weight-0 member and a `Down`
    /// member hold picks that must not count. The factors include ones exact in binary,
    /// ones that are not (1.1, 1.3), barely above 1 (where an integer quotient gains a slot)
    /// and huge.
    #[test]
    fn room_matches_the_documented_capacity() {
        use crate::backend::{Backend, Health};
        use crate::engine::core::Core;
        use crate::health::HealthConfig;

        let factors = [
            1.0,
            1.0 + f64::EPSILON,
            1.0 + 1.0 / (1u64 << 40) as f64,
            1.1,
            1.25,
            1.3,
            1.5,
            2.0,
            3.7,
            1e6,
            1e300,
        ];
        let (mut with_room, mut without) = (0u64, 0u64);
        for w_a in 1..=4u32 {
            for w_b in 0..=5u32 {
                let backends = vec![
                    Backend::new("a", ()).with_weight(w_a),
                    Backend::new("b", ()).with_weight(w_b),
                    Backend::new("z", ())
                        .with_weight(3)
                        .with_health(Health::Down),
                ];
                let policy = Builder::new(()).hashed(InOrder).unwrap();
                let core = Core::new(
                    policy,
                    backends,
                    HealthConfig::new(),
                    crate::Topology::new(),
                    crate::subset::Subset::All,
                    None,
                )
                .unwrap();
                let snap = core.load();
                let (a, b, z) = (0, 1, 2);
                assert_eq!(snap.is_eligible[..], [true, w_b > 0, false]);
                let weight_sum = u64::from(w_a + w_b);
                for held_z in [0, 7] {
                    hold(&snap.states[z], held_z);
                    for held_a in 0..=16usize {
                        hold(&snap.states[a], held_a);
                        for held_b in 0..=16usize {
                            hold(&snap.states[b], held_b);
                            // Picks on a weight-0 backend are not on an eligible one.
                            let total = (held_a + if w_b > 0 { held_b } else { 0 }) as u64;
                            for (c, cost) in factors.iter().flat_map(|&c| [(c, 1u32), (c, 3)]) {
                                let room = Capacity::new(LoadFactor::new(c).unwrap(), cost);
                                let mut members = vec![(a, held_a, w_a)];
                                if w_b > 0 {
                                    members.push((b, held_b, w_b));
                                }
                                for (index, held, w) in members {
                                    let cost = u64::from(cost);
                                    let capacity = documented_capacity(
                                        c,
                                        total + cost,
                                        u64::from(w),
                                        weight_sum,
                                    );
                                    let want = capacity.map_or(true, |cap| {
                                        (held as u128) + u128::from(cost) <= cap
                                    });
                                    assert_eq!(
                                        room.has_room(&snap, index),
                                        want,
                                        "c {c}, weights {w_a}/{w_b}, held {held_a}/{held_b}/{held_z}, \
                                         member {index}: capacity {capacity:?}"
                                    );
                                    if want {
                                        with_room += 1;
                                    } else {
                                        without += 1;
                                    }
                                }
                            }
                        }
                    }
                }
                hold(&snap.states[a], 0);
                hold(&snap.states[b], 0);
                hold(&snap.states[z], 0);
            }
        }
        // Both sides of the boundary were reached, many times.
        assert!(
            with_room > 10_000 && without > 10_000,
            "{with_room} / {without}"
        );
    }

    /// The independent computation itself, on values worked out by hand.
    #[test]
    fn documented_capacity_by_hand() {
        // ceil(1.25 x 4 x 1 / 5) = 1; ceil(1.25 x 8 x 1 / 5) = 2; ceil(1.25 x 9 x 2 / 5) = 5.
        assert_eq!(documented_capacity(1.25, 4, 1, 5), Some(1));
        assert_eq!(documented_capacity(1.25, 8, 1, 5), Some(2));
        assert_eq!(documented_capacity(1.25, 9, 2, 5), Some(5));
        // c = 1: exactly the share, rounded up; a hair above 1 adds a slot at integers.
        assert_eq!(documented_capacity(1.0, 10, 1, 2), Some(5));
        assert_eq!(documented_capacity(1.0 + f64::EPSILON, 10, 1, 2), Some(6));
        // 1.1 as an f64 is a little above 1.1: ceil(1.1 x 10) = 12, not 11.
        assert_eq!(documented_capacity(1.1, 10, 1, 1), Some(12));
        assert_eq!(documented_capacity(3.0, 1, 1, 1), Some(3));
        assert_eq!(documented_capacity(1e300, 1, 1, 1), None);
    }
}
