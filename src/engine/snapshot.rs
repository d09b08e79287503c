//! Everything a pick reads, immutable once built and swapped whole.

use std::sync::Arc;

use crate::engine::entry::Entry;
use crate::engine::pick::Pick;
use crate::engine::state::State;
use crate::engine::tiers::Tiers;
use crate::placement::id_hash;

/// An eligible backend, laid out for scanning: its index in [`Snapshot::members`], its
/// effective weight (the weight, scaled and ramped while slow start is configured) and its
/// state.
pub(crate) struct Eligible {
    pub(crate) index: usize,
    pub(crate) weight: u64,
    pub(crate) state: Arc<State>,
}

/// The eligible members of `members` (those `is_eligible` marks) with their effective weights
/// (`weight(index)`), and every member's weight as picks see it (0 if not eligible).
pub(crate) fn eligible_of<T>(
    members: &[Arc<Entry<T>>],
    is_eligible: &[bool],
    weight: impl Fn(usize) -> u64,
) -> (Box<[Eligible]>, Box<[u64]>) {
    let eligible: Box<[Eligible]> = members
        .iter()
        .enumerate()
        .filter(|(i, _)| is_eligible[*i])
        .map(|(index, e)| Eligible {
            index,
            weight: weight(index),
            state: Arc::clone(&e.state),
        })
        .collect();
    let mut weights = vec![0u64; members.len()].into_boxed_slice();
    for e in eligible.iter() {
        weights[e.index] = e.weight;
    }
    (eligible, weights)
}

/// Everything a pick reads, immutable once built.
pub(crate) struct Snapshot<T, X> {
    /// Every backend of the set, sorted by id (so nothing depends on input order).
    pub(crate) members: Box<[Arc<Entry<T>>]>,
    /// `states[i]` is `members[i].state`, laid out apart so that a pick reaches the state
    /// without waiting for the entry.
    pub(crate) states: Box<[Arc<State>]>,
    /// The members that may get new picks, in id order.
    pub(crate) eligible: Box<[Eligible]>,
    /// `is_eligible[i]` says whether `members[i]` is in `eligible`.
    pub(crate) is_eligible: Box<[bool]>,
    /// `weights[i]` is the effective weight of `members[i]` if eligible (as in `eligible`),
    /// else 0: bounded loads compare capacities in these units.
    pub(crate) weights: Box<[u64]>,
    /// The policy's precomputed table.
    pub(crate) table: Arc<X>,
    /// Clock nanoseconds at which a time-based rule changes eligibility or weights.
    pub(crate) refresh_at: u64,
    /// Whether any member has a cap on picks held (then every pick checks for room).
    pub(crate) capped: bool,
    /// `preferable[i]`: whether `members[i]` may serve a request that prefers it (see
    /// [`Request::prefer`](crate::Request::prefer)): not `Down`, and not ejected unless it is
    /// being drained.
    pub(crate) preferable: Box<[bool]>,
    /// The members' ids by hash, for the lookups of a steered pick. Depends on the members
    /// only, so rebuilds that keep them (health, time) share it.
    pub(crate) ids: Arc<IdIndex>,
    /// Whether picks note when they start, so that one dropped or failed without a latency
    /// report still feeds the latency estimate ([`PeakEwma`](crate::PeakEwma)).
    pub(crate) tracks_latency: bool,
    /// Effective weights (in `weights`) per unit of configured weight: 1, or
    /// [`WEIGHT_SCALE`](crate::engine::rules) while a rule scales them.
    pub(crate) weight_scale: u64,
    /// `Some((healthy, could))` while the panic threshold made every member that could serve
    /// eligible (see [`crate::health`]).
    pub(crate) panic: Option<(usize, usize)>,
    /// Members up and not ejected, and members that could serve (weight above 0, not
    /// draining).
    pub(crate) healthy: (usize, usize),
    /// `ramping[i]`: `members[i]`'s slow-start ramp is not over (eligible or not).
    pub(crate) ramping: Box<[bool]>,
    /// Under a subset, how much of each member this client covers, in parts of 2^16 (see
    /// [`crate::subset`]); `None`: every member fully.
    pub(crate) coverage: Option<Box<[u32]>>,
    /// With priority levels, degraded members or a locality split: the groups a pick
    /// chooses among first (see [`crate::engine::tiers`]); `None` for one flat set.
    pub(crate) tiers: Option<Tiers<T, X>>,
}

impl<T, X> Snapshot<T, X> {
    /// A pick of `members[index]` holding `cost`, or `None` if that does not fit under its
    /// cap.
    #[inline]
    pub(crate) fn pick(&self, index: usize, cost: u32) -> Option<Pick<T>> {
        Pick::new(
            &self.members[index],
            &self.states[index],
            self.tracks_latency,
            cost,
        )
    }

    /// Whether `cost` fits under `members[index]`'s cap (always, without one).
    #[inline]
    pub(crate) fn has_room(&self, index: usize, cost: u32) -> bool {
        self.states[index].has_room(cost)
    }

    /// The index of the member with this id, by its hash (for picks): one hash of `id`,
    /// then usually one slot and one comparison of ids.
    #[inline]
    pub(crate) fn find_by_hash(&self, id: &str) -> Option<usize> {
        let hash = id_hash(id);
        let index = &self.ids;
        let mut slot = hash as usize & index.mask;
        loop {
            let i = index.slots[slot];
            if i == EMPTY {
                return None;
            }
            let i = i as usize;
            if index.hashes[i] == hash && *self.members[i].id == *id {
                return Some(i);
            }
            slot = (slot + 1) & index.mask;
        }
    }
}

/// A free slot of [`IdIndex::slots`].
const EMPTY: u32 = u32::MAX;

/// The members' ids by hash: `hashes[i]` is the [`id_hash`] of `members[i].id`, and
/// `slots`, an open-addressing table (linear probing, at most half full), maps a hash to
/// the member index. 12 to 16 bytes per member.
pub(crate) struct IdIndex {
    pub(crate) hashes: Box<[u64]>,
    slots: Box<[u32]>,
    mask: usize,
}

impl IdIndex {
    /// The index of `ids` (distinct, fewer than `u32::MAX`: see `MAX_BACKENDS`).
    pub(crate) fn new<'a>(ids: impl ExactSizeIterator<Item = &'a str>) -> Self {
        let len = (ids.len() * 2).next_power_of_two().max(2);
        let mask = len - 1;
        let mut slots = vec![EMPTY; len].into_boxed_slice();
        let hashes: Box<[u64]> = ids.map(id_hash).collect();
        for (i, &hash) in hashes.iter().enumerate() {
            let mut slot = hash as usize & mask;
            while slots[slot] != EMPTY {
                slot = (slot + 1) & mask;
            }
            slots[slot] = i as u32;
        }
        IdIndex {
            hashes,
            slots,
            mask,
        }
    }
}

/// The members and eligibility a policy builds its table from.
pub(crate) struct View<'a, T> {
    pub(crate) members: &'a [Arc<Entry<T>>],
    pub(crate) eligible: &'a [Eligible],
    /// Clock nanoseconds of the build.
    pub(crate) now: u64,
    /// Effective weights (in `eligible`) per unit of configured weight (the entries'
    /// `weight`): 1, or [`WEIGHT_SCALE`](crate::engine::rules) while a rule scales them.
    pub(crate) weight_scale: u64,
}
