//! The pure arithmetic of priority tiers and localities (issue #13): how much of the traffic
//! each priority level takes, how much of that goes to its degraded backends, which levels
//! are in panic, and how a locality inside a level is weighted. Nothing here knows about
//! balancers or snapshots; the wiring that computes it on every rebuild and draws from it on
//! every pick comes next.
//!
//! Everything follows Envoy (`source/extensions/load_balancing_policies/common/
//! load_balancer_impl.cc`, `LoadBalancerBase`; before 2023 `source/common/upstream/
//! load_balancer_impl.cc`; docs under `docs/root/intro/arch_overview/upstream/
//! load_balancing/`), in the same integer arithmetic, so the published tables and Envoy's own
//! unit-test vectors hold exactly. Where Envoy's documentation and its code disagree, this
//! module follows the code and the test names the row.
//!
//! # Health of a level
//!
//! A level counts hosts, not weights ([`Level`]): `total`, of which `excluded` (Envoy's
//! excluded hosts: counted nowhere but in total panic, below), `healthy` and `degraded`. What
//! counts as healthy is the caller's decision (issue #13: up, not ejected, weight above 0).
//! With `eligible = total - excluded` and the overprovisioning factor `f` as an integer
//! percentage (Envoy's `overprovisioning_factor`, default 140, i.e. 1.4):
//!
//! ```text
//! health(P)          = min(100, f x healthy(P)  / eligible(P))    (integer division;
//! degraded_health(P) = min(100, f x degraded(P) / eligible(P))     0 if eligible is 0)
//! normalized         = min(100, sum of health + degraded_health over all levels)
//! ```
//!
//! A level at 72% healthy is fully healthy (`140 x 72 / 100 = 100.8`, capped), at 71% it has
//! health 99 (`99.4`, floored). Envoy's docs call the capped sum the *normalized total health*;
//! its code, which counts degraded hosts in it, *normalized total availability*.
//!
//! # Priority load
//!
//! The 100 percentage points of traffic are handed out from the highest level (P0) down,
//! first to healthy hosts, then what is left to degraded hosts (Envoy's `distributeLoad`, run
//! twice):
//!
//! ```text
//! remaining = 100
//! for each level P:  healthy_load(P)  = min(remaining, health(P) x 100 / normalized)
//!                    remaining -= healthy_load(P)
//! for each level P:  degraded_load(P) = min(remaining, degraded_health(P) x 100 / normalized)
//!                    remaining -= degraded_load(P)
//! what remains (rounding, at most one point per level and kind) goes to the healthy load of
//! the first level with health above 0, or else to the degraded load of the first level with
//! degraded health above 0.
//! ```
//!
//! So a degraded host serves only once healthy capacity everywhere, lower levels included,
//! falls short of 100 (Envoy `degraded.rst`), and the loads always sum to exactly 100.
//!
//! # Panic, per level
//!
//! When the normalized total is 100, no level is in panic, however few healthy hosts it has:
//! lower levels absorb its traffic. Below 100, a level is in panic when its available share,
//! `(healthy + degraded) / eligible`, is below the panic threshold (Envoy default 50%;
//! a threshold above 100 counts as 100, as in Envoy); an empty level is then in panic unless
//! the threshold is 0. A level in panic keeps its load but serves it from all its hosts,
//! regardless of health: the wiring's job.
//!
//! When every level is in panic (*total panic*), the load is shared in proportion to each
//! level's `total` host count, excluded hosts included (Envoy's `recalculateLoadInTotalPanic`,
//! which counts `hosts()`), floored, with the rounding remainder to the first level that has
//! a host; with no host at all, P0 takes 100. This is what usually happens when nothing is
//! available at all (normalized total 0) and the threshold is above 0: every level is then
//! below it. When nothing is available and some level is not in panic (a threshold of 0, which
//! disables panic, or an overprovisioning factor so small that no level's health reaches 1),
//! P0 takes 100 of the healthy load as a placeholder, so the loads still sum to 100 and the
//! wiring finds no healthy host there (Envoy: "503 - no healthy upstream").
//!
//! # Choosing a level
//!
//! [`PriorityLoad::choose`] maps a 64-bit draw to a point `draw % 100` and walks the
//! cumulative healthy loads, then the cumulative degraded loads (Envoy's `choosePriority`,
//! `hash % 100 + 1` against `<=`, the same thing). A hashing policy passes the key's hash, so
//! a key keeps its level while the split is stable, and only keys whose point the new split
//! moved into another level change level. Each point's probability under a uniform draw is
//! within 2^-64 of 1/100. A hashing policy that also places the key inside the level with
//! the same hash may prefer to pass a remix of it, so that a key's level and its place in
//! the level are not correlated (Envoy's thread-aware balancers pass the same hash to both).
//!
//! # Locality weights
//!
//! Inside the chosen level, a locality is chosen by its effective weight ([`locality_weight`],
//! Envoy `locality_weight.rst`): `weight x min(100, f x available / eligible)`, where
//! `available` is the locality's healthy hosts when the level was chosen for healthy hosts,
//! its degraded hosts when chosen for degraded ones (Envoy keeps one scheduler for each). A
//! level in panic skips locality weighting (Envoy serves it from all hosts). When every
//! locality's effective weight is 0, there is no locality to choose
//! ([`choose_locality`] gives `None`) and Envoy falls back to the level's hosts as a whole.
//!
//! # Where we differ from Envoy, on purpose
//!
//! * **Locality availability is an integer percentage.** Envoy's code computes the effective
//!   weight in `double`, `weight x min(1.0, f / 100.0 x available / eligible)`; ours floors
//!   `f x available / eligible` to a whole percent first, exactly the docs' pseudo-code
//!   (`availability(L_X) = 140 * available_X_upstreams / total_X_upstreams`). The published
//!   table needs it: at 69% available, Envoy's doubles give X 0.966 / 2.966 = 32.57% (which
//!   the table would round to 33), the integer percent gives 96 / 296 = 32.43%, the table's
//!   32. The weight differs from Envoy's by less than one percent of availability (under 1/96
//!   relative for a locality at 100%) and every weight is an exact integer, so the wiring can
//!   build its tables without floats.
//! * **A locality is chosen from a draw**, mapped onto the cumulative weights by a
//!   multiply-shift (`floor(draw x sum / 2^64)`), not by Envoy's EDF scheduler, whose
//!   sequence is deterministic but not a function of a key. The shares are the same exactly
//!   (to within 2^-64); a hashing policy keeps a key in its locality while the weights stand.
//! * **Counts are `u64`** and every product is computed in `u128`, so no input overflows
//!   (Envoy multiplies the factor by a `uint64_t` weight sum in 64 bits). A caller that wants
//!   Envoy's `weighted_priority_health` can pass weight sums instead of host counts; Envoy then
//!   still decides panic from host counts, which this module cannot see.
//! * **Inconsistent counts are clamped**, never rejected here (typed errors belong to the
//!   configuration layer): `excluded` to `total`, `healthy` to `eligible`, `degraded` to what
//!   is left of `eligible` after `healthy`.
//! * **Panic is decided in exact integers** (`10^6 x (healthy + degraded) < threshold x
//!   eligible`, the threshold in parts per million); Envoy adds two `double` percentages. The two agree on every boundary up to at
//!   least 2,999 hosts per level (checked exhaustively when this module was written).
//! * **No level at all** gives empty loads and no choice; Envoy always has a P0.
//!
//! # Cost
//!
//! [`priority_load`] is O(levels) with a handful of `u128` operations per level, run on
//! rebuild only. [`PriorityLoad::choose`] is O(levels) (Envoy's linear walk; a fleet has a
//! handful of levels); [`choose_locality`] O(localities).

/// Envoy's default overprovisioning factor, 1.4, as an integer percentage.
#[cfg_attr(not(test), allow(dead_code))] // the tests' view
pub(crate) const DEFAULT_OVERPROVISIONING_FACTOR: u32 = 140;

/// Envoy's default panic threshold, 50%.
#[cfg_attr(not(test), allow(dead_code))] // the tests' view
pub(crate) const DEFAULT_PANIC_THRESHOLD: u32 = 50;

/// One priority level, by host counts: `total` hosts, of which `excluded` are left out of the
/// health arithmetic (but counted in total panic), `healthy` can serve, `degraded` can serve
/// once healthy capacity falls short. The rest are unhealthy. Inconsistent counts are clamped
/// (see [`Level::eligible`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Level {
    /// Every host of the level.
    pub(crate) total: u64,
    /// Hosts that serve at full standing.
    pub(crate) healthy: u64,
    /// Hosts that serve only when healthy capacity falls short.
    pub(crate) degraded: u64,
    /// Hosts left out of health and panic (Envoy's excluded hosts), but not of total panic.
    pub(crate) excluded: u64,
}

/// The counts of a level after clamping: `eligible = total - excluded`, and `healthy +
/// degraded <= eligible`.
#[derive(Debug, Clone, Copy)]
struct Counts {
    eligible: u64,
    healthy: u64,
    degraded: u64,
}

impl Level {
    /// A level of `total` hosts, `healthy` and `degraded` of them, none excluded.
    #[cfg_attr(not(test), allow(dead_code))] // the tests' view
    pub(crate) fn new(total: u64, healthy: u64, degraded: u64) -> Self {
        Level {
            total,
            healthy,
            degraded,
            excluded: 0,
        }
    }

    /// The same level with `excluded` of its hosts left out of health and panic.
    #[cfg_attr(not(test), allow(dead_code))] // the tests' view
    pub(crate) fn with_excluded(self, excluded: u64) -> Self {
        Level { excluded, ..self }
    }

    /// `total - excluded`, with `excluded` clamped to `total`: the hosts the health arithmetic
    /// divides by. Within them, `healthy` is clamped to `eligible` and `degraded` to
    /// `eligible - healthy`.
    #[cfg_attr(not(test), allow(dead_code))] // the tests' view
    pub(crate) fn eligible(&self) -> u64 {
        self.counts().eligible
    }

    fn counts(&self) -> Counts {
        let eligible = self.total - self.excluded.min(self.total);
        let healthy = self.healthy.min(eligible);
        let degraded = self.degraded.min(eligible - healthy);
        Counts {
            eligible,
            healthy,
            degraded,
        }
    }

    /// `min(100, factor x healthy / eligible)`, 0 for no eligible host: the level's health,
    /// with `factor` the overprovisioning factor in percent.
    pub(crate) fn health(&self, overprovisioning_factor: u32) -> u32 {
        let c = self.counts();
        scaled_share(overprovisioning_factor, c.healthy, c.eligible)
    }

    /// `min(100, factor x degraded / eligible)`, 0 for no eligible host.
    pub(crate) fn degraded_health(&self, overprovisioning_factor: u32) -> u32 {
        let c = self.counts();
        scaled_share(overprovisioning_factor, c.degraded, c.eligible)
    }

    /// Whether the level's available share, `(healthy + degraded) / eligible`, is below
    /// `threshold` parts per million (exactly; an empty level has share 0). Only meaningful
    /// when the normalized total is below 100 ([`priority_load`] applies that rule).
    fn below_threshold(&self, threshold: u32) -> bool {
        let c = self.counts();
        if c.eligible == 0 {
            // Envoy takes an empty level's share as 0%: below any threshold but 0.
            return threshold > 0;
        }
        // 10^6 (h + d) < t x eligible; h + d <= eligible < 2^64 and t < 2^32: below 2^96.
        u128::from(c.healthy + c.degraded) * 1_000_000
            < u128::from(threshold) * u128::from(c.eligible)
    }
}

/// `min(100, factor x part / whole)` in integers, 0 for a `whole` of 0. At most 2^32 x 2^64.
fn scaled_share(factor: u32, part: u64, whole: u64) -> u32 {
    if whole == 0 {
        return 0;
    }
    let share = u128::from(factor) * u128::from(part) / u128::from(whole);
    share.min(100) as u32
}

/// Which hosts of the chosen level serve: its healthy ones, or its degraded ones (Envoy's
/// `HostAvailability`). A level in panic serves from all its hosts either way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Availability {
    /// The level's healthy hosts.
    Healthy,
    /// The level's degraded hosts.
    Degraded,
}

/// The split of traffic over priority levels ([`priority_load`]): for each level, the
/// percentage to its healthy hosts and to its degraded hosts (together exactly 100 over all
/// levels, unless there is no level), and whether it is in panic.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct PriorityLoad {
    healthy: Vec<u32>,
    degraded: Vec<u32>,
    panic: Vec<bool>,
    health: Vec<u32>,
    degraded_health: Vec<u32>,
    normalized_total_health: u32,
}

impl PriorityLoad {
    /// Percent of traffic to each level's healthy hosts.
    #[cfg_attr(not(test), allow(dead_code))] // the tests' view
    pub(crate) fn healthy(&self) -> &[u32] {
        &self.healthy
    }

    /// Percent of traffic to each level's degraded hosts.
    pub(crate) fn degraded(&self) -> &[u32] {
        &self.degraded
    }

    /// Whether each level is in panic (serves from all its hosts).
    pub(crate) fn panic(&self) -> &[bool] {
        &self.panic
    }

    /// Each level's health, `min(100, factor x healthy / eligible)`.
    #[cfg_attr(not(test), allow(dead_code))] // the tests' view
    pub(crate) fn health(&self) -> &[u32] {
        &self.health
    }

    /// Each level's degraded health, `min(100, factor x degraded / eligible)`.
    #[cfg_attr(not(test), allow(dead_code))] // the tests' view
    pub(crate) fn degraded_health(&self) -> &[u32] {
        &self.degraded_health
    }

    /// `min(100, sum of health and degraded health)`: Envoy's normalized total availability
    /// (the docs' normalized total health). Below 100, panic is considered.
    #[cfg_attr(not(test), allow(dead_code))] // the tests' view
    pub(crate) fn normalized_total_health(&self) -> u32 {
        self.normalized_total_health
    }

    /// Whether every level is in panic (and there is one): the load then follows host counts.
    pub(crate) fn total_panic(&self) -> bool {
        !self.panic.is_empty() && self.panic.iter().all(|&p| p)
    }

    /// The level (and which of its hosts) a draw lands on: the point `draw % 100` against the
    /// cumulative healthy loads of P0, P1, ..., then the cumulative degraded loads (Envoy's
    /// `choosePriority`). Every level and kind is chosen by exactly its load's number of the
    /// 100 points. `None` when there is no level.
    #[cfg_attr(not(test), allow(dead_code))] // the tests' view
    pub(crate) fn choose(&self, draw: u64) -> Option<(usize, Availability)> {
        self.at_point(draw % 100)
    }

    /// The level (and which of its hosts) the point `point` (in `0..100`) lands on, as in
    /// [`PriorityLoad::choose`]. `None` when there is no level.
    pub(crate) fn at_point(&self, point: u64) -> Option<(usize, Availability)> {
        if self.healthy.is_empty() {
            return None;
        }
        let mut cumulative = 0u64;
        let healthy = self.healthy.iter().map(|&l| (l, Availability::Healthy));
        let degraded = self.degraded.iter().map(|&l| (l, Availability::Degraded));
        let levels = self.healthy.len();
        for (index, (load, availability)) in healthy.chain(degraded).enumerate() {
            cumulative += u64::from(load);
            if point < cumulative {
                return Some((index % levels, availability));
            }
        }
        // The loads sum to 100, so the walk always ends above; Envoy's fallback all the same.
        Some((0, Availability::Healthy))
    }
}

/// Hands out up to `remaining` points in level order, `availability x 100 / normalized` each
/// (Envoy's `distributeLoad`). Returns the first level with availability above 0, if any, and
/// what is left. `normalized` is in `1..=100` and every availability at most 100.
fn distribute(
    load: &mut [u32],
    availability: &[u32],
    mut remaining: u32,
    normalized: u32,
) -> (Option<usize>, u32) {
    let mut first = None;
    for (i, (load, &available)) in load.iter_mut().zip(availability).enumerate() {
        if first.is_none() && available > 0 {
            first = Some(i);
        }
        *load = remaining.min(available * 100 / normalized);
        remaining -= *load;
    }
    (first, remaining)
}

/// The priority load of `levels` (P0 first): see the module docs for the algorithm, which is
/// Envoy's `recalculatePerPriorityState`, `recalculatePerPriorityPanic` and
/// `recalculateLoadInTotalPanic` recomputed from scratch.
///
/// `overprovisioning_factor` is an integer percentage (140 for Envoy's 1.4; 0 makes every
/// level's health 0). `panic_threshold` is a percentage; above 100 counts as 100, and 0
/// disables panic. Never panics, for any counts.
#[cfg_attr(not(test), allow(dead_code))] // the tests' view
pub(crate) fn priority_load(
    levels: &[Level],
    overprovisioning_factor: u32,
    panic_threshold: u32,
) -> PriorityLoad {
    priority_load_ppm(
        levels,
        overprovisioning_factor,
        panic_threshold.min(100) * 10_000,
    )
}

/// [`priority_load`] with the panic threshold in parts per million (a balancer's threshold
/// is a share, not always a whole percent); above 10^6 counts as 10^6.
pub(crate) fn priority_load_ppm(
    levels: &[Level],
    overprovisioning_factor: u32,
    panic_threshold: u32,
) -> PriorityLoad {
    let n = levels.len();
    if n == 0 {
        return PriorityLoad::default();
    }
    let health: Vec<u32> = levels
        .iter()
        .map(|l| l.health(overprovisioning_factor))
        .collect();
    let degraded_health: Vec<u32> = levels
        .iter()
        .map(|l| l.degraded_health(overprovisioning_factor))
        .collect();
    let sum: u64 = health
        .iter()
        .chain(&degraded_health)
        .map(|&h| u64::from(h))
        .sum();
    let normalized = sum.min(100) as u32;
    let threshold = panic_threshold.min(1_000_000);

    let mut load = PriorityLoad {
        healthy: vec![0; n],
        degraded: vec![0; n],
        panic: vec![false; n],
        health,
        degraded_health,
        normalized_total_health: normalized,
    };

    if normalized > 0 {
        let (first_healthy, remaining) =
            distribute(&mut load.healthy, &load.health, 100, normalized);
        let (first_degraded, remaining) = distribute(
            &mut load.degraded,
            &load.degraded_health,
            remaining,
            normalized,
        );
        if remaining > 0 {
            // Rounding only: each level and kind loses less than one point.
            match (first_healthy, first_degraded) {
                (Some(i), _) => load.healthy[i] += remaining,
                (None, Some(i)) => load.degraded[i] += remaining,
                // normalized > 0, so some level has availability; kept total all the same.
                (None, None) => load.healthy[0] += remaining,
            }
        }
    }
    if normalized < 100 {
        for (panic, level) in load.panic.iter_mut().zip(levels) {
            *panic = level.below_threshold(threshold);
        }
    }
    if load.total_panic() {
        total_panic_load(&mut load, levels);
    } else if normalized == 0 {
        // Nothing available and not every level in panic (a threshold of 0, or a factor too
        // small to lift any level's health above 0): a placeholder so that the loads sum to
        // 100. Envoy assigns it explicitly for a threshold of 0 ("no healthy upstream") and
        // reaches it through `choosePriority`'s fallback otherwise.
        load.healthy[0] = 100;
    }
    load
}

/// Every level in panic: the load in proportion to each level's `total` (excluded hosts
/// included), floored, the remainder to the first level with a host; no host at all, P0 takes
/// all (Envoy's `recalculateLoadInTotalPanic`). No degraded load.
fn total_panic_load(load: &mut PriorityLoad, levels: &[Level]) {
    load.degraded.iter_mut().for_each(|d| *d = 0);
    // Below 2^64 x 2^64 for any slice that fits in memory.
    let hosts: u128 = levels.iter().map(|l| u128::from(l.total)).sum();
    if hosts == 0 {
        load.healthy.iter_mut().for_each(|h| *h = 0);
        load.healthy[0] = 100;
        return;
    }
    let mut remaining = 100;
    for (share, level) in load.healthy.iter_mut().zip(levels) {
        *share = (100 * u128::from(level.total) / hosts) as u32;
        remaining -= *share;
    }
    // hosts > 0, so some level has a host.
    let first = levels.iter().position(|l| l.total > 0).unwrap_or(0);
    load.healthy[first] += remaining;
}

/// A locality's effective weight inside its level: `weight x min(100, factor x available /
/// eligible)`, 0 for no eligible host (Envoy `locality_weight.rst`; see the module docs for the
/// integer availability). `available` is the locality's healthy hosts (or its degraded ones,
/// for a level chosen for degraded hosts), `eligible` its hosts not excluded; `available` above
/// `eligible` counts as `eligible`. At most `u32::MAX x 100`.
pub(crate) fn locality_weight(
    weight: u32,
    available: u64,
    eligible: u64,
    overprovisioning_factor: u32,
) -> u64 {
    let availability = scaled_share(overprovisioning_factor, available.min(eligible), eligible);
    u64::from(weight) * u64::from(availability)
}

/// The locality a draw lands on, given the localities' effective weights
/// ([`locality_weight`]): the point `floor(draw x sum / 2^64)` against the cumulative weights.
/// Each locality gets a share of the 2^64 draws exact to within one draw in proportion to its
/// weight; a locality of weight 0 is never chosen; a larger draw never gives a smaller index.
/// `None` when every weight is 0 (or there is no locality).
#[cfg_attr(not(test), allow(dead_code))] // the reference `tiers` is tested against
pub(crate) fn choose_locality(weights: &[u64], draw: u64) -> Option<usize> {
    // Below 2^64 x len: a u128 for any slice that fits in memory.
    let sum: u128 = weights.iter().map(|&w| u128::from(w)).sum();
    if sum == 0 {
        return None;
    }
    // floor(draw x sum / 2^64) with sum = high x 2^64 + low: draw x high + (draw x low) >> 64,
    // exact, and below sum, so no overflow.
    let (high, low) = ((sum >> 64) as u64, sum as u64);
    let point = u128::from(draw) * u128::from(high) + ((u128::from(draw) * u128::from(low)) >> 64);
    let mut cumulative = 0u128;
    for (index, &w) in weights.iter().enumerate() {
        cumulative += u128::from(w);
        if point < cumulative {
            return Some(index);
        }
    }
    // point < sum, so the walk ends above.
    weights.iter().rposition(|&w| w > 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// `healthy` of 100 hosts healthy (so the percentage is the count), none degraded.
    fn percent(healthy: u64) -> Level {
        Level::new(100, healthy, 0)
    }

    /// The priority load at Envoy's default factor.
    fn at(levels: &[Level], panic_threshold: u32) -> PriorityLoad {
        priority_load(levels, DEFAULT_OVERPROVISIONING_FACTOR, panic_threshold)
    }

    /// Asserts the healthy loads, no degraded load, and the panic flags.
    #[track_caller]
    fn assert_load(load: &PriorityLoad, healthy: &[u32], panic: &[bool]) {
        assert_eq!(load.healthy(), healthy, "healthy load");
        assert!(
            load.degraded().iter().all(|&d| d == 0),
            "degraded load {:?}",
            load.degraded()
        );
        assert_eq!(load.panic(), panic, "panic");
    }

    // ---- Envoy `priority.rst` (docs/root/intro/arch_overview/upstream/load_balancing/).

    /// First table: P1 100% healthy, P0 failing. The normalized total is 100 throughout, so
    /// the panic threshold never matters.
    #[test]
    fn priority_table_p1_healthy() {
        for (p0, to_p0) in [(100, 100), (72, 100), (71, 99), (50, 70), (25, 35), (0, 0)] {
            for threshold in [0, DEFAULT_PANIC_THRESHOLD] {
                let load = at(&[percent(p0), percent(100)], threshold);
                assert_load(&load, &[to_p0, 100 - to_p0], &[false, false]);
                assert_eq!(load.normalized_total_health(), 100);
            }
        }
    }

    /// Second table: both levels failing.
    #[test]
    fn priority_table_two_levels() {
        let rows = [
            ((100, 100), [100, 0]),
            ((72, 72), [100, 0]),
            ((71, 71), [99, 1]),
            ((50, 50), [70, 30]),
            ((25, 100), [35, 65]),
            // Health 35 + 35 = 70, each scaled by 100 / 70. With the default threshold both
            // levels are also in panic (25% < 50%), so the load follows host counts: 100 and
            // 100, the same 50/50.
            ((25, 25), [50, 50]),
        ];
        for ((p0, p1), expected) in rows {
            for threshold in [0, DEFAULT_PANIC_THRESHOLD] {
                let load = at(&[percent(p0), percent(p1)], threshold);
                let panic = threshold > 0 && p0 == 25 && p1 == 25;
                assert_load(&load, &expected, &[panic, panic]);
            }
        }
    }

    /// Third table: three levels.
    #[test]
    fn priority_table_three_levels() {
        let rows = [
            ((100, 100, 100), [100, 0, 0]),
            ((72, 72, 100), [100, 0, 0]),
            ((71, 71, 100), [99, 1, 0]),
            ((50, 50, 100), [70, 30, 0]),
            ((25, 100, 100), [35, 65, 0]),
            ((25, 25, 100), [35, 35, 30]),
        ];
        for ((p0, p1, p2), expected) in rows {
            let load = at(
                &[percent(p0), percent(p1), percent(p2)],
                DEFAULT_PANIC_THRESHOLD,
            );
            assert_load(&load, &expected, &[false; 3]);
        }
        // Doc row 25% / 25% / 20% -> 36% / 36% / 28% contradicts the code. Health 35, 35, 28
        // (normalized total 98): 3500 / 98 = 35, 35, 2800 / 98 = 28, and the 2 points of
        // rounding go to the first level with health, P0. The doc rounds each share to
        // nearest instead. With panic disabled:
        let levels = [percent(25), percent(25), percent(20)];
        let load = at(&levels, 0);
        assert_load(&load, &[37, 35, 28], &[false; 3]);
        assert_eq!(load.normalized_total_health(), 98);
        // At the default threshold all three are in panic (25%, 25%, 20% < 50%) and the load
        // follows the host counts, 100 each: 33 each, the rounding point to P0.
        let load = at(&levels, DEFAULT_PANIC_THRESHOLD);
        assert_load(&load, &[34, 33, 33], &[true; 3]);
    }

    // ---- Envoy `degraded.rst`: one level, healthy / degraded / unhealthy percentages.

    #[test]
    fn degraded_table() {
        let rows = [
            ((100, 0), (100, 0)),
            // Health 99, nothing degraded: 99 scaled by 100 / 99 is 100.
            ((71, 0), (100, 0)),
            // Health 99 and degraded health 40: the 1 point healthy capacity lacks goes to
            // degraded hosts.
            ((71, 29), (99, 1)),
            // Health 35, degraded health 91 (capped by what is left: 65).
            ((25, 65), (35, 65)),
            // Health 7, scaled by 100 / 7. At the default threshold the level is in panic (5%
            // available) and, being the only one, in total panic: 100 by host count.
            ((5, 0), (100, 0)),
        ];
        for ((healthy, degraded), (to_healthy, to_degraded)) in rows {
            for threshold in [0, DEFAULT_PANIC_THRESHOLD] {
                let load = at(&[Level::new(100, healthy, degraded)], threshold);
                assert_eq!(load.healthy(), [to_healthy]);
                assert_eq!(load.degraded(), [to_degraded]);
                assert_eq!(load.panic(), [threshold > 0 && healthy == 5]);
            }
        }
    }

    // ---- Envoy `panic_threshold.rst`, at the default threshold of 50%.

    /// First table: P1 100% healthy, so the normalized total is 100 and nothing panics.
    #[test]
    fn panic_table_p1_healthy() {
        for (p0, to_p0) in [(72, 100), (71, 99), (50, 70), (25, 35), (0, 0)] {
            let load = at(&[percent(p0), percent(100)], DEFAULT_PANIC_THRESHOLD);
            assert_load(&load, &[to_p0, 100 - to_p0], &[false, false]);
            assert_eq!(load.normalized_total_health(), 100);
        }
    }

    /// Second table: both levels failing. `(P0 %, P1 %) -> (to P0, to P1), panics, total`.
    #[test]
    fn panic_table_two_levels() {
        let rows = [
            ((72, 72), [100, 0], [false, false], 100),
            ((71, 71), [99, 1], [false, false], 100),
            // Doc row 50% / 60% -> 50% / 50% contradicts the code: health 70 and 84 make a
            // normalized total of 100, so P0 takes its health, 70.
            ((50, 60), [70, 30], [false, false], 100),
            // Doc row 25% / 100% -> 25% / 75% contradicts the code (and the first table's
            // 25% row): P0 takes its health, 35.
            ((25, 100), [35, 65], [false, false], 100),
            ((25, 25), [50, 50], [true, true], 70),
            // Doc row 5% / 65% -> 7% / 93% contradicts the code: health 7 and 91, total 98;
            // 700 / 98 = 7 and 9100 / 98 = 92, and the rounding point goes to P0.
            ((5, 65), [8, 92], [true, false], 98),
        ];
        for ((p0, p1), loads, panic, total) in rows {
            let load = at(&[percent(p0), percent(p1)], DEFAULT_PANIC_THRESHOLD);
            assert_load(&load, &loads, &panic);
            assert_eq!(load.normalized_total_health(), total);
        }
    }

    /// "If all hosts become unhealthy normalized total health is 0%, and if the panic
    /// threshold is above 0% all traffic will be redirected to P=0": the code spreads it by
    /// host count instead (total panic); P0 takes all only with a threshold of 0, and then as
    /// a placeholder, with no level in panic.
    #[test]
    fn nothing_available() {
        let levels = [Level::new(3, 0, 0), Level::new(1, 0, 0)];
        let load = at(&levels, DEFAULT_PANIC_THRESHOLD);
        assert_load(&load, &[75, 25], &[true, true]);
        assert_eq!(load.normalized_total_health(), 0);
        let load = at(&levels, 0);
        assert_load(&load, &[100, 0], &[false, false]);
        // A factor of 0 leaves every level at health 0 however healthy it is; P0 takes the
        // placeholder (Envoy reaches it through `choosePriority`'s fallback).
        let load = priority_load(&[Level::new(2, 2, 0), Level::new(2, 2, 0)], 0, 50);
        assert_load(&load, &[100, 0], &[false, false]);
    }

    // ---- Envoy's unit tests: test/extensions/load_balancing_policies/common/
    // load_balancer_impl_base_test.cc (before 2023 test/common/upstream/
    // load_balancer_impl_test.cc). Envoy recomputes from the whole host set on every update,
    // so each step is one call here. `updateHostSet(set, hosts, healthy, degraded, excluded)`
    // becomes `Level { total, healthy, degraded, excluded }`.

    fn level(total: u64, healthy: u64, degraded: u64, excluded: u64) -> Level {
        Level::new(total, healthy, degraded).with_excluded(excluded)
    }

    /// `LoadBalancerBaseTest.PrioritySelection`.
    #[test]
    fn envoy_priority_selection() {
        let load = at(&[level(1, 0, 0, 0), level(1, 0, 0, 0)], 50);
        assert_eq!(load.healthy(), [50, 50]);
        let load = at(&[level(1, 0, 0, 0), level(2, 0, 0, 0)], 50);
        assert_eq!(load.healthy(), [34, 66]);
        let load = at(
            &[level(1, 0, 0, 0), level(2, 0, 0, 0), level(1, 1, 0, 0)],
            50,
        );
        assert_eq!(load.healthy(), [0, 0, 100]);
        let load = at(
            &[level(1, 1, 0, 0), level(2, 0, 0, 0), level(1, 1, 0, 0)],
            50,
        );
        assert_eq!(load.healthy(), [100, 0, 0]);
        assert_eq!(load.choose(0), Some((0, Availability::Healthy)));
        let load = at(
            &[level(1, 0, 0, 0), level(2, 0, 0, 0), level(1, 1, 0, 0)],
            50,
        );
        assert_eq!(load.choose(0), Some((2, Availability::Healthy)));
    }

    /// `LoadBalancerBaseTest.PrioritySelectionWithFilter`: a load handed in by the caller
    /// (Envoy's `determinePriorityLoad`) that excludes P0.
    #[test]
    fn envoy_priority_selection_with_filter() {
        let load = PriorityLoad {
            healthy: vec![0, 100],
            degraded: vec![0, 0],
            ..PriorityLoad::default()
        };
        assert_eq!(load.choose(0), Some((1, Availability::Healthy)));
        let load = PriorityLoad {
            healthy: vec![0, 0],
            degraded: vec![0, 100],
            ..PriorityLoad::default()
        };
        assert_eq!(load.choose(0), Some((1, Availability::Degraded)));
    }

    /// `LoadBalancerBaseTest.OverProvisioningFactor`.
    #[test]
    fn envoy_overprovisioning_factor() {
        let levels = [level(4, 2, 0, 0), level(4, 2, 0, 0)];
        assert_eq!(priority_load(&levels, 140, 50).healthy(), [70, 30]);
        assert_eq!(priority_load(&levels, 100, 50).healthy(), [50, 50]);
    }

    /// `LoadBalancerBaseTest.WeightedPriorityHealth*`: Envoy's `weighted_priority_health`
    /// sums host weights instead of counting hosts; passing the sums gives the same loads.
    #[test]
    fn envoy_weighted_priority_health() {
        // Weights 3, 3 healthy, 2, 2 unhealthy; P1 one healthy host.
        let load = priority_load(&[level(10, 6, 0, 0), level(1, 1, 0, 0)], 100, 50);
        assert_eq!(load.healthy(), [60, 40]);
        // Weights 4 healthy, 10 excluded, 6 unhealthy.
        let load = priority_load(&[level(20, 4, 0, 10), level(1, 1, 0, 0)], 100, 50);
        assert_eq!(load.healthy(), [40, 60]);
        // Weights 4 healthy, 3 degraded, 2 and 1 unhealthy; P1 1 healthy, 9 degraded.
        let load = priority_load(&[level(10, 4, 3, 0), level(10, 1, 9, 0)], 100, 50);
        assert_eq!(load.healthy(), [40, 10]);
        assert_eq!(load.degraded(), [30, 20]);
    }

    /// `LoadBalancerBaseTest.GentleFailover`.
    #[test]
    fn envoy_gentle_failover() {
        let steps: [([Level; 2], [u32; 2], [bool; 2]); 7] = [
            (
                [level(1, 1, 0, 0), level(1, 1, 0, 0)],
                [100, 0],
                [false, false],
            ),
            (
                [level(2, 1, 0, 0), level(2, 1, 0, 0)],
                [70, 30],
                [false, false],
            ),
            (
                [level(4, 1, 0, 0), level(2, 2, 0, 0)],
                [35, 65],
                [false, false],
            ),
            (
                [level(4, 1, 0, 0), level(4, 1, 0, 0)],
                [50, 50],
                [true, true],
            ),
            // 3 of P0's 4 hosts excluded: its one eligible host is healthy.
            (
                [level(4, 1, 0, 3), level(5, 1, 0, 0)],
                [100, 0],
                [false, false],
            ),
            // Total panic counts excluded hosts: 4 and 4.
            (
                [level(4, 0, 0, 4), level(4, 1, 0, 0)],
                [50, 50],
                [true, true],
            ),
            (
                [level(4, 0, 0, 1), level(6, 1, 0, 2)],
                [40, 60],
                [true, true],
            ),
        ];
        for (levels, loads, panic) in steps {
            assert_load(&at(&levels, 50), &loads, &panic);
        }
    }

    /// `LoadBalancerBaseTest.GentleFailoverWithExtraLevels`, step by step. Each row: the panic
    /// threshold; `hosts/healthy/degraded` per level; the healthy loads; the degraded loads;
    /// the panic flags (`Y`/`N`, `-` where Envoy's test does not check them).
    #[test]
    fn envoy_gentle_failover_with_extra_levels() {
        let steps = [
            "50; 1/1/0 1/1/0 1/1/0; 100 0 0; 0 0 0;  NNN",
            "50; 2/1/0 2/1/0 2/1/0; 70 30 0; 0 0 0;  ---",
            "50; 4/1/0 2/2/0 2/1/0; 35 65 0; 0 0 0;  ---",
            "50; 4/1/0 4/1/0 4/1/0; 35 35 30; 0 0 0; ---",
            "50; 5/1/0 5/1/0 5/1/0; 34 33 33; 0 0 0; YYY",
            "50; 5/0/0 5/0/0 5/5/0; 0 0 100; 0 0 0;  NNN",
            "50; 5/0/0 5/0/0 5/4/0; 0 0 100; 0 0 0;  NNN",
            "50; 5/0/0 5/0/0 5/2/0; 34 33 33; 0 0 0; YYY",
            "50; 5/0/5 5/2/2 5/2/0; 0 56 44; 0 0 0;  NNN",
            "50; 5/0/0 3/0/0 2/0/0; 50 30 20; 0 0 0; YYY",
            "50; 5/0/0 6/2/0 3/1/0; 37 42 21; 0 0 0; YYY",
            // Load spills over into degraded hosts.
            "50; 5/0/1 5/0/5 5/1/0; 0 0 28; 28 44 0; ---",
            // No healthy level: the rounding point goes to the first degraded one (panic off).
            "0;  5/0/0 5/0/2 5/0/1; 0 0 0; 0 67 33;  ---",
            "50; 5/0/0 5/0/2 5/0/1; 34 33 33; 0 0 0; ---",
            "50; 3/0/0 3/0/0 3/0/0; 34 33 33; 0 0 0; YYY",
            // P0 empty: the rounding point goes to the first level with a host.
            "50; 0/0/0 6/0/0 3/0/0; 0 67 33; 0 0 0;  YYY",
        ];
        let numbers = |s: &str, by: char| -> Vec<u64> {
            s.split(by)
                .filter(|x| !x.is_empty())
                .map(|x| x.parse().unwrap())
                .collect()
        };
        for row in steps {
            let cols: Vec<&str> = row.split(';').map(str::trim).collect();
            let levels: Vec<Level> = cols[1]
                .split(' ')
                .map(|l| numbers(l, '/'))
                .map(|c| Level::new(c[0], c[1], c[2]))
                .collect();
            let load = at(&levels, cols[0].parse().unwrap());
            let loads = |s| {
                numbers(s, ' ')
                    .into_iter()
                    .map(|x| x as u32)
                    .collect::<Vec<_>>()
            };
            assert_eq!(load.healthy(), loads(cols[2]), "{row}: healthy");
            assert_eq!(load.degraded(), loads(cols[3]), "{row}: degraded");
            if cols[4] != "---" {
                let panic: Vec<bool> = cols[4].chars().map(|c| c == 'Y').collect();
                assert_eq!(load.panic(), panic, "{row}: panic");
            }
        }
    }

    /// The example in the comment of Envoy's `recalculatePerPriorityState`: health 10 / 20 /
    /// 10 and degraded health 20 / 10 / 0 give 16 / 28 / 14 healthy and 28 / 14 / 0 degraded,
    /// "the first healthy priority receiving 2% additional load due to rounding". (Factor 1.0
    /// and 100 hosts per level, so the counts are the health; panic off, as all three levels
    /// would otherwise be in it.)
    #[test]
    fn envoy_rounding_example() {
        let levels = [
            Level::new(100, 10, 20),
            Level::new(100, 20, 10),
            Level::new(100, 10, 0),
        ];
        let load = priority_load(&levels, 100, 0);
        assert_eq!(load.healthy(), [16, 28, 14]);
        assert_eq!(load.degraded(), [28, 14, 0]);
        assert_eq!(load.normalized_total_health(), 70);
    }

    /// Envoy's algorithm is not monotone across the switch into and out of total panic: one
    /// more healthy host in P0 lifts it out of panic, the load stops following host counts, and
    /// P0's share falls from 96% to 72%. Kept, as Envoy does it; the property below excludes
    /// total panic.
    #[test]
    fn leaving_total_panic_can_lower_p0() {
        let before = at(&[Level::new(100, 49, 0), Level::new(5, 1, 0)], 50);
        assert_load(&before, &[96, 4], &[true, true]);
        let after = at(&[Level::new(100, 50, 0), Level::new(5, 1, 0)], 50);
        assert_load(&after, &[72, 28], &[false, true]);
    }

    // ---- Choosing a level.

    #[test]
    fn choose_walks_healthy_then_degraded() {
        let load = at(&[Level::new(100, 71, 29)], 50);
        assert_eq!((load.healthy(), load.degraded()), (&[99][..], &[1][..]));
        assert_eq!(load.choose(0), Some((0, Availability::Healthy)));
        assert_eq!(load.choose(98), Some((0, Availability::Healthy)));
        assert_eq!(load.choose(99), Some((0, Availability::Degraded)));
        // Only the draw modulo 100 matters.
        assert_eq!(load.choose(199), Some((0, Availability::Degraded)));
        assert_eq!(load.choose(u64::MAX), Some((0, Availability::Healthy))); // 15 mod 100
        let load = at(&[percent(50), percent(100)], 50);
        assert_eq!(load.choose(69), Some((0, Availability::Healthy)));
        assert_eq!(load.choose(70), Some((1, Availability::Healthy)));
        assert_eq!(PriorityLoad::default().choose(7), None);
    }

    // ---- Edges: no level, inconsistent and huge counts.

    #[test]
    fn no_level() {
        let load = at(&[], 50);
        assert!(load.healthy().is_empty() && load.panic().is_empty());
        assert!(!load.total_panic());
        assert_eq!(load.choose(0), None);
    }

    #[test]
    fn inconsistent_counts_are_clamped() {
        // 5 healthy of 3: all 3 healthy; 9 degraded of the rest (0): none.
        let l = Level::new(3, 5, 9);
        assert_eq!(
            (l.eligible(), l.health(140), l.degraded_health(140)),
            (3, 100, 0)
        );
        // Degraded clamped to what healthy leaves: 2 of 4.
        assert_eq!(Level::new(4, 2, 9).degraded_health(100), 50);
        // More excluded than hosts: nothing eligible.
        let l = Level::new(3, 3, 0).with_excluded(7);
        assert_eq!((l.eligible(), l.health(140)), (0, 0));
        let load = at(&[Level::new(3, 5, 9), percent(100)], 50);
        assert_load(&load, &[100, 0], &[false, false]);
    }

    #[test]
    fn huge_counts_do_not_overflow() {
        let max = u64::MAX;
        let levels = [
            Level::new(max, max - 1, 1),
            Level::new(max, max / 2, max / 2).with_excluded(max / 4),
            Level::new(max, 0, 0),
        ];
        for factor in [0, 1, 140, u32::MAX] {
            for threshold in [0, 50, 100, u32::MAX] {
                let load = priority_load(&levels, factor, threshold);
                let sum: u32 = load.healthy().iter().chain(load.degraded()).sum();
                assert_eq!(sum, 100);
            }
        }
        // Three levels of u64::MAX hosts each in total panic: a third each.
        let none = [Level::new(max, 0, 0); 3];
        assert_eq!(at(&none, 50).healthy(), [34, 33, 33]);
        assert_eq!(
            locality_weight(u32::MAX, max, max, u32::MAX),
            u64::from(u32::MAX) * 100
        );
        assert_eq!(choose_locality(&[max, max, max], u64::MAX), Some(2));
        assert_eq!(choose_locality(&[max, max, max], 0), Some(0));
    }

    // ---- Locality weights.

    /// The share of the first locality, in percent rounded to nearest (the docs' rounding).
    fn rounded_share(x: u64, y: u64) -> u64 {
        (200 * x + (x + y)) / (2 * (x + y))
    }

    /// Envoy `locality_weight.rst`: X weight 1, Y weight 2 (fully available), X at 100 / 70 /
    /// 69 / 50 / 25 / 0% available gets 33 / 33 / 32 / 26 / 15 / 0% of the traffic. The
    /// effective weights are exact; the table's percentages are their ratios rounded to
    /// nearest. The 69% row needs the integer availability (96): Envoy's doubles give 0.966
    /// and 32.57%, which would round to 33.
    #[test]
    fn locality_table() {
        let y = locality_weight(2, 100, 100, DEFAULT_OVERPROVISIONING_FACTOR);
        assert_eq!(y, 200);
        let rows = [
            (100, 100, 33),
            (70, 98, 33),
            (69, 96, 32),
            (50, 70, 26),
            (25, 35, 15),
            (0, 0, 0),
        ];
        for (available, weight, share) in rows {
            let x = locality_weight(1, available, 100, DEFAULT_OVERPROVISIONING_FACTOR);
            assert_eq!(x, weight, "{available}% available");
            assert_eq!(rounded_share(x, y), share, "{available}% available");
        }
    }

    /// The first locality's picks among 100 evenly spaced draws.
    fn picks_of_first(weights: &[u64]) -> usize {
        (0..100u64)
            .map(|i| choose_locality(weights, (u64::MAX / 100) * i))
            .filter(|&c| c == Some(0))
            .count()
    }

    /// Envoy `test/common/upstream/upstream_impl_test.cc`, `HostSetImplLocalityTest.
    /// UnhealthyFailover`: weights 1 and 2, X with 5 hosts (5 down to 0 healthy), Y with one
    /// healthy host; Envoy counts 33, 33, 29, 22, 12, 0 of 100 EDF picks for X. Our weights
    /// are exact (here the integer and the double availability agree: 140 x k / 5 is whole),
    /// and 100 evenly spaced draws land within one pick of Envoy's schedule.
    #[test]
    fn envoy_unhealthy_failover() {
        let y = locality_weight(2, 1, 1, 140);
        let rows = [
            (5, 100, 33),
            (4, 100, 33),
            (3, 84, 29),
            (2, 56, 22),
            (1, 28, 12),
            (0, 0, 0),
        ];
        for (healthy, weight, envoy_picks) in rows {
            let x = locality_weight(1, healthy, 5, 140);
            assert_eq!(x, weight);
            let ours = picks_of_first(&[x, y]) as i64;
            assert!(
                (ours - envoy_picks).abs() <= 1,
                "{healthy} healthy: {ours} picks"
            );
        }
    }

    /// Envoy `upstream_impl_test.cc`, `OverProvisioningFactorTest.LocalityPickChanges`
    /// (weights 1 and 1, X half healthy, Y fully) and `HostSetImplLocalityTest.MissingWeight`
    /// (a locality of weight 0 is never picked).
    #[test]
    fn envoy_locality_factor_and_missing_weight() {
        let weights = |factor| {
            [
                locality_weight(1, 1, 2, factor),
                locality_weight(1, 1, 1, factor),
            ]
        };
        assert_eq!(weights(100), [50, 100]);
        // Envoy counts 33 and 50 of 100 EDF picks; evenly spaced draws land within one.
        assert!((33..=34).contains(&picks_of_first(&weights(100))));
        assert_eq!(weights(200), [100, 100]);
        assert!((49..=51).contains(&picks_of_first(&weights(200))));
        // "It's possible locality scheduler is nullptr (when factor is 0)."
        assert_eq!(choose_locality(&weights(0), 5), None);

        let missing = [1, 0, 1];
        assert!((0..1000u64)
            .all(|i| choose_locality(&missing, i.wrapping_mul(0x9e37_79b9_7f4a_7c15)) != Some(1)));
    }

    #[test]
    fn choose_locality_boundaries() {
        // Weights 1 and 2: draws below a third of 2^64 choose the first.
        let third = u64::MAX / 3; // floor((2^64 - 1) / 3) = (2^64 - 1) / 3 exactly
        assert_eq!(choose_locality(&[1, 2], 0), Some(0));
        assert_eq!(choose_locality(&[1, 2], third), Some(0));
        assert_eq!(choose_locality(&[1, 2], third + 1), Some(1));
        assert_eq!(choose_locality(&[1, 2], u64::MAX), Some(1));
        assert_eq!(choose_locality(&[0, 0], 1), None);
        assert_eq!(choose_locality(&[], 1), None);
        assert_eq!(locality_weight(3, 1, 0, 140), 0);
        // More available than eligible counts as all.
        assert_eq!(locality_weight(3, 9, 4, 100), 300);
    }

    // ---- Properties.

    /// A consistent level of up to `max` hosts: healthy, degraded and excluded disjoint.
    fn consistent_level(max: u64) -> impl Strategy<Value = Level> {
        (0..=max)
            .prop_flat_map(|total| (Just(total), 0..=total))
            .prop_flat_map(|(total, healthy)| (Just(total), Just(healthy), 0..=total - healthy))
            .prop_flat_map(|(total, healthy, degraded)| {
                (
                    Just(Level::new(total, healthy, degraded)),
                    0..=total - healthy - degraded,
                )
            })
            .prop_map(|(level, excluded)| level.with_excluded(excluded))
    }

    fn any_level() -> impl Strategy<Value = Level> {
        (any::<u64>(), any::<u64>(), any::<u64>(), any::<u64>())
            .prop_map(|(t, h, d, e)| Level::new(t, h, d).with_excluded(e))
    }

    fn total_load(load: &PriorityLoad) -> u32 {
        load.healthy().iter().chain(load.degraded()).sum()
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

        /// Whatever the counts, factor and threshold: no overflow, no panic, exactly 100
        /// points, panic only below a normalized total of 100, and every point of the 100
        /// draws lands on a level and kind with load, as many as its load.
        #[test]
        fn loads_sum_to_100(
            levels in prop::collection::vec(
                prop_oneof![consistent_level(40), any_level()], 1..=6),
            factor in prop_oneof![Just(140u32), 0..=400u32, any::<u32>()],
            threshold in prop_oneof![Just(50u32), 0..=120u32, any::<u32>()],
        ) {
            let load = priority_load(&levels, factor, threshold);
            let n = levels.len();
            prop_assert_eq!(total_load(&load), 100);
            prop_assert_eq!((load.healthy().len(), load.degraded().len()), (n, n));
            prop_assert_eq!(load.panic().len(), n);
            prop_assert!(load.normalized_total_health() <= 100);
            if load.normalized_total_health() == 100 || threshold == 0 {
                prop_assert!(load.panic().iter().all(|&p| !p));
            }
            let mut counts = vec![[0u32; 2]; n];
            for point in 0..100 {
                let (level, kind) = load.choose(point).unwrap();
                counts[level][(kind == Availability::Degraded) as usize] += 1;
            }
            for (i, c) in counts.iter().enumerate() {
                prop_assert_eq!(c[0], load.healthy()[i]);
                prop_assert_eq!(c[1], load.degraded()[i]);
            }
        }

        /// A level with nothing available gets no load, unless every level is in panic (the
        /// load then follows host counts) or nothing is available anywhere (P0's
        /// placeholder). More precisely: healthy load only where health is above 0, degraded
        /// load only where degraded health is.
        #[test]
        fn unavailable_levels_get_nothing(
            levels in prop::collection::vec(consistent_level(30), 1..=5),
            factor in prop_oneof![Just(140u32), 50..=300u32],
            threshold in prop_oneof![Just(50u32), 0..=100u32],
        ) {
            let load = priority_load(&levels, factor, threshold);
            if load.total_panic() || load.normalized_total_health() == 0 {
                return Ok(());
            }
            for (i, level) in levels.iter().enumerate() {
                if level.healthy == 0 && level.degraded == 0 {
                    prop_assert_eq!((load.healthy()[i], load.degraded()[i]), (0, 0));
                }
                prop_assert!(load.healthy()[i] == 0 || load.health()[i] > 0);
                prop_assert!(load.degraded()[i] == 0 || load.degraded_health()[i] > 0);
            }
        }

        /// One more healthy host in P0 (an unhealthy one recovering) never lowers P0's load,
        /// healthy or in all, as long as neither state is in total panic (see
        /// `leaving_total_panic_can_lower_p0` for why that switch is excluded).
        #[test]
        fn more_healthy_in_p0_never_lowers_its_load(
            levels in prop::collection::vec(consistent_level(30), 1..=4),
            factor in prop_oneof![Just(140u32), 50..=300u32],
            threshold in prop_oneof![Just(50u32), 0..=100u32],
        ) {
            let p0 = levels[0];
            prop_assume!(p0.healthy + p0.degraded + p0.excluded < p0.total);
            let mut better = levels.clone();
            better[0].healthy += 1;
            let before = priority_load(&levels, factor, threshold);
            let after = priority_load(&better, factor, threshold);
            prop_assume!(!before.total_panic() && !after.total_panic());
            let p0_load = |l: &PriorityLoad| l.healthy()[0] + l.degraded()[0];
            prop_assert!(after.healthy()[0] >= before.healthy()[0]);
            prop_assert!(p0_load(&after) >= p0_load(&before));
        }

        /// A locality of weight 0 is never chosen; `None` exactly when all weights are 0; a
        /// larger draw never chooses an earlier locality.
        #[test]
        fn locality_choice(
            weights in prop::collection::vec(
                prop_oneof![Just(0u64), 0..=500u64, any::<u64>()], 0..=8),
            a in any::<u64>(),
            b in any::<u64>(),
        ) {
            let (low, high) = (a.min(b), a.max(b));
            match (choose_locality(&weights, low), choose_locality(&weights, high)) {
                (Some(i), Some(j)) => {
                    prop_assert!(weights[i] > 0 && weights[j] > 0);
                    prop_assert!(i <= j);
                }
                (None, None) => prop_assert!(weights.iter().all(|&w| w == 0)),
                _ => prop_assert!(false, "one draw chose, the other did not"),
            }
        }
    }
}
