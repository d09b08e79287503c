//! Priority levels, degraded backends and localities, built into the snapshot (issue #13).
//!
//! [`priority`](crate::engine::priority) computes how much traffic each level's healthy and
//! degraded backends take, and which levels are in panic; this module turns that into what a
//! pick reads: [`Tiers`], a list of groups, each a [`Snapshot`] of its own over the members of
//! one level (or one locality of a level) with the members that may serve that group's
//! share eligible, and a table from a draw to a group.
//!
//! * A level not in panic has a *healthy* class (its healthy members eligible) and a
//!   *degraded* class (its degraded ones), each taking its load's points of the 100; a level
//!   in panic has one class, every member that could serve, taking both loads.
//! * Under a [`Topology`] that weights localities, a class of a level not in panic is split
//!   into one group per locality with an effective weight above 0
//!   ([`locality_weight`](crate::engine::priority::locality_weight)); otherwise the class is
//!   one group.
//! * A group's members are all the backends of its level (or locality), eligible or not, so a
//!   hashing policy's table (which ignores health) is the same for the healthy and the
//!   degraded class and survives health changes: a key walks past the members of the other
//!   class as it walks past a backend that is down, and only the keys of a backend that
//!   changes class move.
//! * Only groups with a share of the traffic exist. A pick that finds its group unable to
//!   serve (every member at its cap, or avoided) falls back to the other groups in order:
//!   P0's healthy class, P1's, ..., then the degraded classes. So a backend whose level or
//!   class has no load is never picked.
//!
//! Choosing a group costs one multiply (the point `floor(draw x 100 / 2^64)` of the draw's
//! high bits, so a Weyl sequence of draws spreads evenly), a lookup in a 100-entry table, and
//! for a split class a walk over its localities' weights with the rest of the draw.

use std::sync::Arc;

use crate::engine::entry::Entry;
use crate::engine::load::LoadSweep;
use crate::engine::policy::Policy;
use crate::engine::priority::{
    locality_weight, priority_load_ppm, Availability, Level, PriorityLoad,
};
use crate::engine::snapshot::{eligible_of, IdIndex, Snapshot, View};
use crate::engine::zone::{load_aware_weights, zone_routing, Zone, ZoneConfig};
use crate::error::Error;
use crate::topology::Topology;

/// How a member stands for the priority arithmetic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Standing {
    /// Up, not ejected, weight above 0.
    Healthy,
    /// Degraded, not ejected, weight above 0.
    Degraded,
    /// Weight above 0 and not draining, but down or ejected: serves only in panic.
    Unavailable,
    /// Draining or of weight 0: never serves.
    Out,
}

impl Standing {
    /// Whether the member may serve at all (in panic, if not healthy).
    pub(crate) fn could_serve(self) -> bool {
        self != Standing::Out
    }
}

/// Which members of a group's level or locality may serve its share.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    Healthy,
    Degraded,
    /// A level in panic: every member that could serve.
    Panic,
}

impl Class {
    fn admits(self, standing: Standing) -> bool {
        match self {
            Class::Healthy => standing == Standing::Healthy,
            Class::Degraded => standing == Standing::Degraded,
            Class::Panic => standing.could_serve(),
        }
    }
}

/// One group: a snapshot over the members of one level or one locality of a level.
pub(crate) struct Group<T, X> {
    pub(crate) snap: Snapshot<T, X>,
    /// The level's priority and the locality (`None`: the whole level), which the table
    /// was built over.
    priority: u32,
    locality: Option<Arc<str>>,
}

/// A class with a share of the traffic: `groups[first..first + cumulative.len().max(1)]`.
struct Share {
    first: usize,
    /// The localities' cumulative effective weights (each below 2^39 and at most 2^22
    /// localities, so the sums fit), or empty for one group.
    cumulative: Box<[u64]>,
}

/// What a pick reads to choose a group: see the module docs.
pub(crate) struct Tiers<T, X> {
    /// In fallback order.
    pub(crate) groups: Box<[Group<T, X>]>,
    shares: Box<[Share]>,
    /// `points[p]`: the share that the point `p` of 100 lands on.
    points: [u16; 100],
}

impl<T, X> Tiers<T, X> {
    /// The group that `draw` lands on.
    #[inline]
    pub(crate) fn choose(&self, draw: u64) -> usize {
        let wide = u128::from(draw) * 100;
        let share = &self.shares[usize::from(self.points[(wide >> 64) as usize])];
        let Some(&total) = share.cumulative.last() else {
            return share.first;
        };
        // The low bits: uniform and independent of the point for a uniform draw, mapped onto
        // the cumulative weights by a multiply-shift (each locality's share exact to within
        // one draw in 2^64, as `priority::choose_locality`).
        let point = ((u128::from(wide as u64) * u128::from(total)) >> 64) as u64;
        share.first + share.cumulative.partition_point(|&c| c <= point)
    }

    /// Each level's (and locality's) share of the picks in parts per million, summed over
    /// its classes, in priority then locality order; the points and the locality weights
    /// are the ones picks use, so this is what they do. A group with no eligible member (a
    /// level of draining backends, which total panic still counts) hands its share on as
    /// picks do: to the first group in fallback order that has one; with none, no share.
    pub(crate) fn traffic_shares(&self) -> Vec<(u32, Option<Arc<str>>, u64)> {
        let mut parts = vec![0u64; self.groups.len()];
        for (c, share) in self.shares.iter().enumerate() {
            let points = self.points.iter().filter(|&&p| usize::from(p) == c).count() as u64;
            let class = points * 10_000;
            let total = share.cumulative.last().copied().unwrap_or(0);
            let count = share.cumulative.len().max(1);
            let mut previous = 0u64;
            for (k, part) in parts[share.first..share.first + count]
                .iter_mut()
                .enumerate()
            {
                *part += if total == 0 {
                    class
                } else {
                    let weight = share.cumulative[k] - previous;
                    previous = share.cumulative[k];
                    (u128::from(class) * u128::from(weight) / u128::from(total)) as u64
                };
            }
        }
        // A pick whose group has no eligible member tries the others in order (`order`):
        // the first that has one takes it.
        let fallback = self.groups.iter().position(|g| !g.snap.eligible.is_empty());
        let mut out: std::collections::BTreeMap<(u32, Option<Arc<str>>), u64> =
            std::collections::BTreeMap::new();
        for (g, part) in parts.into_iter().enumerate() {
            let to = if self.groups[g].snap.eligible.is_empty() {
                match fallback {
                    Some(to) => to,
                    None => continue,
                }
            } else {
                g
            };
            let group = &self.groups[to];
            *out.entry((group.priority, group.locality.clone()))
                .or_default() += part;
        }
        out.into_iter()
            .filter(|&(_, ppm)| ppm > 0)
            .map(|((priority, locality), ppm)| (priority, locality, ppm))
            .collect()
    }

    /// The groups in the order a pick tries them: `first`, then the others in order.
    pub(crate) fn order(&self, first: usize) -> impl Iterator<Item = usize> + Clone {
        std::iter::once(first).chain((0..self.groups.len()).filter(move |&g| g != first))
    }
}

/// What [`arrange`] decides for a snapshot.
pub(crate) struct Arrangement<T, X> {
    /// `Some` when picks must choose a group first; `None` for one flat set.
    pub(crate) tiers: Option<Tiers<T, X>>,
    /// Whether each member may get picks (in some group, or in the flat set).
    pub(crate) is_eligible: Vec<bool>,
    /// Whether some level is in panic.
    pub(crate) panic: bool,
}

/// The inputs of one rebuild that the groups need.
pub(crate) struct Inputs<'a, T> {
    pub(crate) members: &'a [Arc<Entry<T>>],
    pub(crate) standing: &'a [Standing],
    pub(crate) overprovisioning: u32,
    pub(crate) panic_threshold_ppm: u32,
    pub(crate) topology: &'a Topology,
    /// The localities' measured utilisation, for load-aware routing.
    pub(crate) load: &'a LoadSweep,
}

/// The levels present (their distinct priorities, highest first) and each member's level.
fn levels<T>(members: &[Arc<Entry<T>>]) -> (Vec<u32>, Vec<usize>) {
    let mut priorities: Vec<u32> = members.iter().map(|e| e.priority).collect();
    priorities.sort_unstable();
    priorities.dedup();
    let level_of = members
        .iter()
        .map(|e| priorities.binary_search(&e.priority).unwrap_or(0))
        .collect();
    (priorities, level_of)
}

/// The priority load of the inputs: its levels, each member's level, and the load.
fn load<T>(inputs: &Inputs<'_, T>) -> (Vec<u32>, Vec<usize>, PriorityLoad) {
    let (priorities, level_of) = levels(inputs.members);
    let mut counts = vec![Level::default(); priorities.len()];
    for (&level, &standing) in level_of.iter().zip(inputs.standing) {
        let c = &mut counts[level];
        c.total += 1;
        match standing {
            Standing::Healthy => c.healthy += 1,
            Standing::Degraded => c.degraded += 1,
            Standing::Unavailable => {}
            // Envoy's excluded hosts (modern Envoy excludes EDS `DRAINING` hosts): out of
            // the health arithmetic, counted in total panic only.
            Standing::Out => c.excluded += 1,
        }
    }
    let load = priority_load_ppm(&counts, inputs.overprovisioning, inputs.panic_threshold_ppm);
    (priorities, level_of, load)
}

/// Decides how picks choose: one flat set (one level, no degraded member that could take
/// traffic, no locality split), or groups. For groups, `group` builds each group's snapshot
/// from its members, which of them are eligible, and the table to keep (if any).
pub(crate) fn arrange<T, X>(
    inputs: &Inputs<'_, T>,
    previous: Option<&Tiers<T, X>>,
    keeps_table: bool,
    mut group: impl FnMut(
        Box<[Arc<Entry<T>>]>,
        &[usize],
        Box<[bool]>,
        Option<Arc<X>>,
    ) -> Result<Snapshot<T, X>, Error>,
) -> Result<Arrangement<T, X>, Error> {
    let (priorities, level_of, load) = load(inputs);
    let panic = load.panic().iter().any(|&p| p);
    let degraded = load.degraded().iter().any(|&d| d > 0);
    // No member (no level at all): nothing to choose among, flat.
    if priorities.is_empty() || (priorities.len() == 1 && !degraded && !inputs.topology.splits()) {
        let class = if panic { Class::Panic } else { Class::Healthy };
        return Ok(Arrangement {
            tiers: None,
            is_eligible: inputs.standing.iter().map(|&s| class.admits(s)).collect(),
            panic,
        });
    }

    // The classes with points, in the order of the points (`PriorityLoad::at_point`):
    // healthy loads P0, P1, ..., then degraded loads; a level in panic has one class for both
    // of its loads.
    let mut points = [0u16; 100];
    let mut classes: Vec<(usize, Class)> = Vec::new();
    for (point, slot) in (0u64..).zip(points.iter_mut()) {
        // There is a level, so every point lands on one.
        let (level, availability) = load.at_point(point).unwrap_or((0, Availability::Healthy));
        let class = match (load.panic()[level], availability) {
            (true, _) => Class::Panic,
            (false, Availability::Healthy) => Class::Healthy,
            (false, Availability::Degraded) => Class::Degraded,
        };
        let index = match classes.iter().position(|&c| c == (level, class)) {
            Some(index) => index,
            None => {
                classes.push((level, class));
                classes.len() - 1
            }
        };
        *slot = index as u16;
    }

    // Each class's groups.
    let mut groups: Vec<Group<T, X>> = Vec::new();
    let mut shares: Vec<Share> = Vec::new();
    let mut is_eligible = vec![false; inputs.members.len()];
    for &(level, class) in &classes {
        let in_level: Vec<usize> = (0..inputs.members.len())
            .filter(|&i| level_of[i] == level)
            .collect();
        let parts = split(inputs, level, class, &in_level);
        let parts = if parts.is_empty() {
            vec![(None, in_level, 0)]
        } else {
            parts
        };
        let first = groups.len();
        let cumulative: Box<[u64]> = if parts.len() > 1 {
            parts
                .iter()
                .scan(0u64, |sum, p| {
                    *sum = sum.saturating_add(p.2);
                    Some(*sum)
                })
                .collect()
        } else {
            Box::new([])
        };
        for (locality, of, _) in parts {
            let members: Box<[Arc<Entry<T>>]> =
                of.iter().map(|&i| Arc::clone(&inputs.members[i])).collect();
            let eligible: Box<[bool]> = of
                .iter()
                .map(|&i| class.admits(inputs.standing[i]))
                .collect();
            for (&i, &e) in of.iter().zip(eligible.iter()) {
                is_eligible[i] |= e;
            }
            let priority = priorities[level];
            // A table that ignores health is the same for every class of the same members:
            // built once per rebuild, and kept across rebuilds while the members stand.
            let table = if keeps_table {
                let same = |g: &Group<T, X>| {
                    g.priority == priority
                        && g.locality == locality
                        && g.snap.members.len() == members.len()
                        && g.snap
                            .members
                            .iter()
                            .zip(members.iter())
                            .all(|(a, b)| Arc::ptr_eq(a, b))
                };
                groups
                    .iter()
                    .find(|g| same(g))
                    .or_else(|| previous.and_then(|p| p.groups.iter().find(|g| same(g))))
                    .map(|g| Arc::clone(&g.snap.table))
            } else {
                None
            };
            groups.push(Group {
                snap: group(members, &of, eligible, table)?,
                priority,
                locality,
            });
        }
        shares.push(Share { first, cumulative });
    }
    Ok(Arrangement {
        tiers: Some(Tiers {
            groups: groups.into(),
            shares: shares.into(),
            points,
        }),
        is_eligible,
        panic,
    })
}

/// The localities a class is split into, each with its members (indices into the inputs)
/// and its weight, or none (balanced as a whole). A member without a locality is in the
/// unnamed one.
#[allow(clippy::type_complexity)] // (name, members, weight), built and read in one place
fn split<T>(
    inputs: &Inputs<'_, T>,
    level: usize,
    class: Class,
    in_level: &[usize],
) -> Vec<(Option<Arc<str>>, Vec<usize>, u64)> {
    if class == Class::Panic || !inputs.topology.splits() {
        return Vec::new();
    }
    let mut names: Vec<Option<Arc<str>>> = in_level
        .iter()
        .map(|&i| inputs.members[i].locality.clone())
        .collect();
    names.sort_unstable();
    names.dedup();
    let members_of = |name: &Option<Arc<str>>| -> Vec<usize> {
        in_level
            .iter()
            .copied()
            .filter(|&i| inputs.members[i].locality == *name)
            .collect()
    };
    let available = |of: &[usize]| {
        of.iter()
            .filter(|&&i| class.admits(inputs.standing[i]))
            .count() as u64
    };
    let mut parts = Vec::new();
    if let Some(load) = &inputs.topology.load {
        // Every level's healthy share; degraded and panic shares are balanced as a whole.
        if class != Class::Healthy {
            return parts;
        }
        let Some(&any) = in_level.first() else {
            return parts;
        };
        let priority = inputs.members[any].priority;
        let rows: Vec<(Option<Arc<str>>, Vec<usize>)> = names
            .into_iter()
            .map(|n| {
                let of = members_of(&n);
                (n, of)
            })
            .collect();
        let zones: Vec<(u64, u32)> = rows
            .iter()
            .map(|(name, of)| {
                (
                    available(of),
                    inputs.load.utilisation(priority, name.as_ref()),
                )
            })
            .collect();
        let local = rows
            .iter()
            .position(|(n, _)| n.as_deref() == Some(&*load.local));
        let shares = load_aware_weights(&zones, local, load.threshold_parts(), load.probe_parts());
        for ((name, of), share) in rows.into_iter().zip(shares) {
            if share > 0 {
                parts.push((name, of, share));
            }
        }
        return parts;
    }
    if let Some(zone) = &inputs.topology.zone {
        // Envoy routes by zone in P0's healthy share only.
        if level != 0 || class != Class::Healthy {
            return parts;
        }
        // One row per zone: the backends' localities, then the fleet's other zones.
        let mut rows: Vec<(Option<Arc<str>>, Vec<usize>)> = names
            .into_iter()
            .map(|n| (n.clone(), members_of(&n)))
            .collect();
        for name in zone.shares.keys() {
            if !rows.iter().any(|(n, _)| n.as_deref() == Some(&**name)) {
                rows.push((Some(Arc::clone(name)), Vec::new()));
            }
        }
        let zones: Vec<Zone> = rows
            .iter()
            .map(|(name, of)| {
                let share = name.as_ref().and_then(|n| zone.shares.get(n)).copied();
                // Parts per million of the calling fleet; validated finite and at least 0.
                let local = (share.unwrap_or(0.0) * 1_000_000.0).round() as u64;
                Zone::new(available(of), local)
            })
            .collect();
        let local = rows
            .iter()
            .position(|(n, _)| n.as_deref() == Some(&*zone.local))
            .unwrap_or(usize::MAX);
        let config = ZoneConfig {
            min_cluster_size: zone.min_cluster_size,
            force_local_zone: None,
        };
        let routing = zone_routing(&zones, local, config);
        let (points, _) = routing.points(rows.len());
        for ((name, of), points) in rows.into_iter().zip(points) {
            if points > 0 && !of.is_empty() {
                parts.push((name, of, u64::try_from(points).unwrap_or(u64::MAX)));
            }
        }
        return parts;
    }
    for name in names {
        let of = members_of(&name);
        // Draining and weight-0 members are excluded: out of the locality's host count too
        // (Envoy's `effectiveLocalityWeight`: all hosts less excluded ones).
        let not_excluded = of
            .iter()
            .filter(|&&i| inputs.standing[i].could_serve())
            .count() as u64;
        let weight = locality_weight(
            inputs.topology.weight(name.as_deref()),
            available(&of),
            not_excluded,
            inputs.overprovisioning,
        );
        if weight > 0 {
            parts.push((name, of, weight));
        }
    }
    parts
}

/// A group's snapshot: `members` (sorted by id, as every snapshot's), of which `is_eligible`
/// may serve, `weights[k]` the effective weight of `members[k]`, and `table` if one is kept
/// (else built). Steering, ramps, coverage and time are the outer snapshot's business.
#[allow(clippy::too_many_arguments)] // each is one input of the snapshot
pub(crate) fn group_snapshot<T, P: Policy<T>>(
    policy: &P,
    members: Box<[Arc<Entry<T>>]>,
    is_eligible: Box<[bool]>,
    weights: &[u64],
    table: Option<Arc<P::Table>>,
    tracks_latency: bool,
    weight_scale: u64,
    now: u64,
) -> Result<Snapshot<T, P::Table>, Error> {
    let (eligible, weights) = eligible_of(&members, &is_eligible, |i| weights[i]);
    let table = match table {
        Some(table) => table,
        None => Arc::new(policy.build(&View {
            members: &members,
            eligible: &eligible,
            now,
            weight_scale,
        })?),
    };
    let ids = Arc::new(IdIndex::new(members.iter().map(|e| &*e.id)));
    Ok(Snapshot {
        states: members.iter().map(|e| Arc::clone(&e.state)).collect(),
        capped: members.iter().any(|e| e.max_in_flight != 0),
        preferable: vec![false; members.len()].into(),
        ramping: vec![false; members.len()].into(),
        members,
        eligible,
        is_eligible,
        weights,
        table,
        refresh_at: u64::MAX,
        ids,
        tracks_latency,
        weight_scale,
        panic: None,
        healthy: (0, 0),
        coverage: None,
        tiers: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::priority::choose_locality;

    /// The precomputed cumulative walk draws exactly as `priority::choose_locality`.
    #[test]
    fn choose_matches_choose_locality() {
        let weights = [3u64, 1, 296, 7, 1 << 38];
        let mut cumulative = Vec::new();
        let mut sum = 0;
        for w in weights {
            sum += w;
            cumulative.push(sum);
        }
        let tiers: Tiers<(), ()> = Tiers {
            groups: Box::new([]),
            shares: Box::new([Share {
                first: 10,
                cumulative: cumulative.into(),
            }]),
            points: [0; 100],
        };
        let mut x = 1u64;
        for _ in 0..100_000 {
            x = crate::placement::splitmix64(x);
            // The locality draw is the low 64 bits of draw x 100.
            let rest = (u128::from(x) * 100) as u64;
            assert_eq!(
                tiers.choose(x),
                10 + choose_locality(&weights, rest).unwrap()
            );
        }
    }
}
