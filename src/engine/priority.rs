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
//! moved into another level change level. The map `draw % 100` has a bias of at most
//! `100 / 2^64`.
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
//! * **Panic is decided in exact integers** (`100 x (healthy + degraded) < threshold x
//!   eligible`); Envoy adds two `double` percentages. The two agree on every boundary up to at
//!   least 2,999 hosts per level (checked exhaustively when this module was written).
//! * **No level at all** gives empty loads and no choice; Envoy always has a P0.
//!
//! # Cost
//!
//! [`priority_load`] is O(levels) with a handful of `u128` operations per level, run on
//! rebuild only. [`PriorityLoad::choose`] is O(levels) (Envoy's linear walk; a fleet has a
//! handful of levels); [`choose_locality`] O(localities).

/// Envoy's default overprovisioning factor, 1.4, as an integer percentage.
pub(crate) const DEFAULT_OVERPROVISIONING_FACTOR: u32 = 140;

/// Envoy's default panic threshold, 50%.
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
    pub(crate) fn new(total: u64, healthy: u64, degraded: u64) -> Self {
        Level {
            total,
            healthy,
            degraded,
            excluded: 0,
        }
    }

    /// The same level with `excluded` of its hosts left out of health and panic.
    pub(crate) fn with_excluded(self, excluded: u64) -> Self {
        Level { excluded, ..self }
    }

    /// `total - excluded`, with `excluded` clamped to `total`: the hosts the health arithmetic
    /// divides by. Within them, `healthy` is clamped to `eligible` and `degraded` to
    /// `eligible - healthy`.
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
    /// `threshold` percent (exactly; an empty level has share 0). Only meaningful when the
    /// normalized total is below 100 ([`priority_load`] applies that rule).
    fn below_threshold(&self, threshold: u32) -> bool {
        let c = self.counts();
        if c.eligible == 0 {
            // Envoy takes an empty level's share as 0%: below any threshold but 0.
            return threshold > 0;
        }
        // 100 (h + d) < t x eligible; h + d <= eligible < 2^64 and t <= 100 (capped by the
        // caller, but any u32 fits): below 2^71.
        u128::from(c.healthy + c.degraded) * 100 < u128::from(threshold) * u128::from(c.eligible)
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
    pub(crate) fn health(&self) -> &[u32] {
        &self.health
    }

    /// Each level's degraded health, `min(100, factor x degraded / eligible)`.
    pub(crate) fn degraded_health(&self) -> &[u32] {
        &self.degraded_health
    }

    /// `min(100, sum of health and degraded health)`: Envoy's normalized total availability
    /// (the docs' normalized total health). Below 100, panic is considered.
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
    pub(crate) fn choose(&self, draw: u64) -> Option<(usize, Availability)> {
        if self.healthy.is_empty() {
            return None;
        }
        let point = draw % 100;
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
pub(crate) fn priority_load(
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
    let threshold = panic_threshold.min(100);

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
