//! The pure arithmetic of zone-aware routing (issue #13): how much of a caller's traffic can
//! stay in its own zone while every upstream host still gets about the same load, where the
//! rest goes, and a load-aware variant that weights zones by their measured headroom. Nothing
//! here knows about balancers or snapshots; like [`priority`](super::priority), the wiring
//! that computes it on every rebuild and draws from it on every pick comes next.
//!
//! The first part follows Envoy's zone-aware routing (`source/extensions/
//! load_balancing_policies/common/load_balancer_impl.cc`, `ZoneAwareLoadBalancerBase`:
//! `earlyExitNonLocalityRouting`, `calculateLocalityPercentages`,
//! `regenerateLocalityRoutingStructures`, `tryChooseLocalLocalityHosts`, `hostSourceToUse`;
//! before 2023 `source/common/upstream/load_balancer_impl.cc`; docs `docs/root/intro/
//! arch_overview/upstream/load_balancing/zone_aware.rst`) in the same integer arithmetic, at
//! Envoy's scale of 10,000, so the vectors of Envoy's unit tests (`test/extensions/
//! load_balancing_policies/round_robin/round_robin_lb_test.cc`, the `ZoneAware*` and
//! `NoZoneAware*` cases) hold exactly. The second part implements the rule Envoy documents for
//! its `load_aware_locality` policy (`docs/root/intro/arch_overview/upstream/load_balancing/
//! load_aware_locality.rst`, marked work in progress).
//!
//! # Inputs: one row per zone
//!
//! A caller lists the zones ([`Zone`]) that either fleet occupies (the union: a zone where
//! only the calling fleet runs is a row with no upstream host), and for each:
//!
//! * `upstream`: the upstream's healthy hosts there (Envoy's `healthyHostsPerLocality`);
//! * `local`: the calling fleet's hosts there (Envoy counts the local cluster's healthy hosts
//!   per locality). Any unit works as long as all rows use the same one: a host count, a sum
//!   of weights (Envoy's `HEALTHY_HOSTS_WEIGHT` basis), or a share of the fleet in parts per
//!   10,000 from a control plane. Only ratios matter.
//!
//! and the index of its own zone, `local` (Envoy's index 0 convention, made explicit: a
//! caller that does not know its zone passes an index past the end).
//!
//! # Zone-aware routing
//!
//! ```text
//! not routing (the caller balances over all healthy hosts) when:
//!     fewer than 2 zones are listed
//!  or fewer than 2 zones have a local host, unless force_local_zone is set
//!  or the local index is past the end, or the local zone has no local host
//!  or the upstream's healthy total is below min_cluster_size (Envoy default 6)
//!
//! local_pct(Z)    = 10000 x local(Z)    / sum of local     (integer division; 0 if the sum is 0)
//! upstream_pct(Z) = 10000 x upstream(Z) / sum of upstream
//! L = the local zone
//!
//! all local when  upstream_pct(L) > 0 and upstream_pct(L) >= local_pct(L)
//!            or   force_local_zone = Some(m) and upstream(L) >= max(m, 1)
//! otherwise residual:
//!     local_share  = upstream_pct(L) x 10000 / local_pct(L)   (< 10000; 0 if local_pct(L) = 0)
//!     residual(Z)  = cumulative sum over zones up to Z of
//!                    0 for L, else max(0, upstream_pct(Z) - local_pct(Z))
//!     if every residual is 0 (rounding): residual(Z) from max(1, upstream_pct(Z)) of the
//!     other zones with a healthy host; none: all local if L has a healthy host, else not
//!     routing
//! ```
//!
//! The local fleet's share in zone `L` is `local_pct(L)`; sending `local_share / 10000` of it
//! home puts `upstream_pct(L)` of all traffic on `L`'s upstream hosts, their fair part. What
//! every zone with less upstream than local sends away lands on the zones with more upstream
//! than local, in proportion to the surplus, which is exactly what fills them to their fair
//! part (the tests check this for whole fleets). Zone aware routing is for priority 0 only in
//! Envoy, and so it is meant here.
//!
//! # Choosing a zone
//!
//! [`choose_zone`] maps a 64-bit draw onto `10000 x R` points, `R` the total residual, by a
//! multiply-shift (`point = floor(draw x 10000 x R / 2^64)`), then reads the point as Envoy's
//! two random numbers: `point / R` is Envoy's `random() % 10000`, the local zone when below
//! `local_share`; otherwise `point % R` is Envoy's `random() % R`, walked against the
//! cumulative residuals. Each zone gets its exact share to within one draw in 2^64, and one
//! draw does what Envoy needs two for. A hashing policy may pass the key's hash: a key keeps
//! its zone while the routing stands.
//!
//! # Load-aware zone weights (beyond Envoy)
//!
//! [`load_aware_weights`] follows the pseudo-code of Envoy's `load_aware_locality` docs, stages
//! 3 to 5 (utilisation smoothing, stages 1 and 2, is the caller's), with utilisation and the
//! two knobs in parts per 10,000 and the result in parts per million ([`LOAD_AWARE_SCALE`]),
//! summing to exactly a million:
//!
//! ```text
//! u(Z)        = min(utilisation(Z), 10000)
//! base(Z)     = hosts(Z) x (10000 - u(Z))                       (headroom weight)
//! no host anywhere            -> every share 0 (nothing to choose)
//! every base 0 (all at 100%)  -> shares by host count; no local preference, no probe
//! otherwise, with a local zone L that has a host and remote hosts:
//!     if u(L) x remote_hosts <= sum over remotes R of u(R) x hosts(R)
//!                              + variance_threshold x remote_hosts   (exact, no division)
//!         then L takes everything before the probe (Envoy's "snap to all-local")
//!     shares = base (or the snap) in parts per million, floored, the remainder by largest
//!              fractional part (ties to the lower index)
//!     if the remote shares sum below probe x 100:
//!         take = min(probe x 100 - remote sum, share(L)) from L, and spread it over the
//!         remote zones in proportion to host count (floored, largest remainder again)
//! with no local zone (or no remote host): shares = base, no preference, no probe.
//! ```
//!
//! Envoy's worked example, three zones of 10 hosts at 70% (local), 30% and 40%: the local
//! zone is 0.35 above the remote average 0.35 + 0.1, so no snap; headroom 3, 7 and 6 give
//! 187,500 / 437,500 / 375,000 parts per million (18.75 / 43.75 / 37.5%, Envoy's "about 19 /
//! 44 / 37%"); the remote share is far above the 3% probe. All at 45%: snap, then the probe
//! leaves 97% local and 1.5% to each remote zone. Pass the shares to
//! [`choose_locality`](super::priority::choose_locality) to draw a zone.
//!
//! Where Envoy's documentation and its code disagree, this module follows the code, and the
//! test of the case says so (`zone_aware.rst` asks for "the same number of zones" in both
//! clusters; the code only asks for two of each).
//!
//! # Where we differ from Envoy, on purpose
//!
//! * **One row per zone, by index**, not two lists of hosts matched by locality name. A zone
//!   only the calling fleet occupies is a row with `upstream` 0; Envoy's "the upstream has no
//!   local locality" is a local row with `upstream` 0 (the outcome is the same: nothing stays
//!   local). Envoy gives such upstream-less localities a local percentage of 0, we keep the
//!   true one; it is never read, since a zone without upstream hosts has no residual and a
//!   local share of 0 either way.
//! * **Zone counts for the early exits.** Envoy counts the upstream's localities (with or
//!   without healthy hosts) and the local cluster's listed localities; we count the listed
//!   rows and the rows with a local host. Where they differ, one zone holds every upstream
//!   host, so every routing sends all traffic there.
//! * **The same unit for the guards.** `min_cluster_size` and `force_local_zone` are compared
//!   with the `upstream` column, so a caller passing weights compares weights (Envoy compares
//!   host counts).
//! * **`force_local_zone` of 0 counts as 1**: never send everything to a zone with no healthy
//!   host.
//! * **No residual left** (Envoy's `lb_zone_no_capacity_left`, a rounding accident such as
//!   `LowPrecisionForDistribution`): Envoy sends the cross-zone part to a uniformly random
//!   locality, possibly an empty one; we spread it over the other zones with healthy hosts in
//!   proportion to their `upstream_pct` (at least 1 each), and if there is none, route all
//!   local (or not at all, when no zone has a healthy host).
//! * **One draw, multiply-shift**, instead of two `random() % n` (slightly biased for `n` not
//!   a power of two). The mapping is the same point for point, so Envoy's mocked random
//!   values translate into draws (see the tests).
//! * **Per-pick conditions stay with the caller**: Envoy's `routing_enabled` percentage, its
//!   check that the local cluster is not in panic (`hostSourceToUse`), and the upstream
//!   level's panic are decided before [`choose_zone`] is asked.
//! * **Load-aware shares are integers**: utilisation in parts per 10,000, exact comparisons,
//!   shares in parts per million (Envoy's docs use doubles), the probe taken from rounded
//!   shares. A stale zone (Envoy: weight by host count, utilisation carried in the remote
//!   average) is for the caller to express; passing utilisation 0 weights it by host count but
//!   also counts it as idle in the remote average.
//!
//! # Cost
//!
//! [`zone_routing`] and [`load_aware_weights`] are O(zones) with a few `u128` operations per
//! zone (plus a sort of the zones for the largest remainders), run on rebuild only.
//! [`choose_zone`] is O(zones): two `u128` multiplications and a linear walk, as Envoy's
//! (a fleet has a handful of zones). Nothing panics or overflows for any input.

/// Envoy's scale for zone percentages and the local share: parts of 10,000.
pub(crate) const ZONE_SCALE: u64 = 10_000;

/// Envoy's default `min_cluster_size`: with fewer healthy upstream hosts, no zone routing.
pub(crate) const DEFAULT_MIN_CLUSTER_SIZE: u64 = 6;

/// The scale of [`load_aware_weights`]: parts per million.
pub(crate) const LOAD_AWARE_SCALE: u64 = 1_000_000;

/// The scale of utilisation, variance threshold and probe fraction: parts per 10,000.
pub(crate) const UTILISATION_SCALE: u32 = 10_000;

/// Envoy's default `utilization_variance_threshold`, 0.1, in parts per 10,000.
pub(crate) const DEFAULT_VARIANCE_THRESHOLD: u32 = 1_000;

/// Envoy's default `remote_probe_fraction`, 0.03, in parts per 10,000.
pub(crate) const DEFAULT_REMOTE_PROBE: u32 = 300;

/// One zone: the upstream's healthy hosts there and the calling fleet's hosts there, in any
/// one unit shared by every row (host counts, weight sums, parts per 10,000).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Zone {
    /// Healthy upstream hosts (or their weight) in the zone.
    pub(crate) upstream: u64,
    /// Hosts of the calling fleet (or its share) in the zone.
    pub(crate) local: u64,
}

impl Zone {
    /// A zone with `upstream` healthy upstream hosts and `local` hosts of the calling fleet.
    pub(crate) fn new(upstream: u64, local: u64) -> Self {
        Zone { upstream, local }
    }
}

/// The knobs of zone-aware routing (Envoy's `ZoneAwareLbConfig`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ZoneConfig {
    /// Below this many healthy upstream hosts (the sum of the `upstream` column), no zone
    /// routing. Envoy default 6.
    pub(crate) min_cluster_size: u64,
    /// Envoy's `force_local_zone.min_size`: when set, all traffic stays local as soon as the
    /// local zone has this many healthy upstream hosts (0 counts as 1), and a calling fleet in
    /// a single zone may route.
    pub(crate) force_local_zone: Option<u64>,
}

impl Default for ZoneConfig {
    /// Envoy's defaults: `min_cluster_size` 6, no forced local zone.
    fn default() -> Self {
        ZoneConfig {
            min_cluster_size: DEFAULT_MIN_CLUSTER_SIZE,
            force_local_zone: None,
        }
    }
}

/// A zone's two percentages in parts of 10,000 (Envoy's `LocalityPercentages`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct ZoneShare {
    /// `10000 x local / sum of local`, floored.
    pub(crate) local: u64,
    /// `10000 x upstream / sum of upstream`, floored.
    pub(crate) upstream: u64,
}

/// What zone-aware routing does with a pick ([`zone_routing`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ZoneRouting {
    /// No zone routing: the caller balances over all healthy upstream hosts.
    NotRouting,
    /// Every pick goes to the local zone (Envoy's `LocalityDirect`).
    AllLocal {
        /// The local zone's index.
        zone: usize,
    },
    /// `local_share` of 10,000 picks go to the local zone, the rest to the other zones in
    /// proportion to their residual capacity (Envoy's `LocalityResidual`).
    Residual {
        /// The local zone's index.
        local: usize,
        /// Parts of 10,000 that stay local (Envoy's `local_percent_to_route_`), below 10,000.
        local_share: u64,
        /// Cumulative residual capacity, one entry per zone (the local zone adds nothing),
        /// non-decreasing, the last above 0 (Envoy's `residual_capacity_`).
        residual: Vec<u64>,
    },
}

/// Each zone's local and upstream percentage in parts of 10,000, floored (Envoy's
/// `calculateLocalityPercentages`). A column that sums to 0 gives 0 everywhere.
pub(crate) fn zone_shares(zones: &[Zone]) -> Vec<ZoneShare> {
    // Below 2^64 x len: a u128 for any slice that fits in memory.
    let total_local: u128 = zones.iter().map(|z| u128::from(z.local)).sum();
    let total_upstream: u128 = zones.iter().map(|z| u128::from(z.upstream)).sum();
    zones
        .iter()
        .map(|z| ZoneShare {
            local: parts_of(z.local, total_local),
            upstream: parts_of(z.upstream, total_upstream),
        })
        .collect()
}

/// `10000 x part / total`, floored, 0 for a total of 0. At most 10,000 when `part <= total`.
fn parts_of(part: u64, total: u128) -> u64 {
    if total == 0 {
        return 0;
    }
    // 10^4 x 2^64 < 2^78; the quotient is at most 10,000 since part <= total.
    (u128::from(ZONE_SCALE) * u128::from(part) / total) as u64
}

/// The zone routing of a caller in zone `local` (see the module docs for the algorithm:
/// Envoy's `earlyExitNonLocalityRouting` and `regenerateLocalityRoutingStructures`). Never
/// panics; an index past the end, or any inconsistent input, gives
/// [`ZoneRouting::NotRouting`].
pub(crate) fn zone_routing(zones: &[Zone], local: usize, config: ZoneConfig) -> ZoneRouting {
    if zones.len() < 2 {
        return ZoneRouting::NotRouting;
    }
    let local_zones = zones.iter().filter(|z| z.local > 0).count();
    if local_zones < 2 && config.force_local_zone.is_none() {
        return ZoneRouting::NotRouting;
    }
    let Some(home) = zones.get(local) else {
        return ZoneRouting::NotRouting;
    };
    if home.local == 0 {
        // Envoy's `lb_local_cluster_not_ok`: the caller's own zone is not in its fleet's view.
        return ZoneRouting::NotRouting;
    }
    let healthy: u128 = zones.iter().map(|z| u128::from(z.upstream)).sum();
    if healthy < u128::from(config.min_cluster_size) {
        return ZoneRouting::NotRouting;
    }

    let shares = zone_shares(zones);
    let own = shares[local];
    let forced = config
        .force_local_zone
        .is_some_and(|min| home.upstream >= min.max(1));
    if (own.upstream > 0 && own.upstream >= own.local) || forced {
        return ZoneRouting::AllLocal { zone: local };
    }

    // Not all local: either no upstream share at home, or less than the local share.
    // A local percentage of 0 (a fleet so large that one zone floors to 0) keeps nothing.
    let local_share = (own.upstream * ZONE_SCALE)
        .checked_div(own.local)
        .map_or(0, |share| share.min(ZONE_SCALE - 1));
    let surplus = |i: usize, s: &ZoneShare| {
        if i == local {
            0
        } else {
            s.upstream.saturating_sub(s.local)
        }
    };
    let mut residual = cumulative(shares.iter().enumerate().map(|(i, s)| surplus(i, s)));
    if residual.last() == Some(&0) {
        // Rounding left no residual anywhere (Envoy: `lb_zone_no_capacity_left`): spread the
        // cross-zone part over the other zones with a healthy host, by upstream share.
        let fallback = |i: usize, (z, s): (&Zone, &ZoneShare)| {
            if i == local || z.upstream == 0 {
                0
            } else {
                s.upstream.max(1)
            }
        };
        residual = cumulative(
            zones
                .iter()
                .zip(&shares)
                .enumerate()
                .map(|(i, zs)| fallback(i, zs)),
        );
        if residual.last() == Some(&0) {
            return if home.upstream > 0 {
                ZoneRouting::AllLocal { zone: local }
            } else {
                ZoneRouting::NotRouting
            };
        }
    }
    ZoneRouting::Residual {
        local,
        local_share,
        residual,
    }
}

/// The running sums of `parts`. Each part is at most 10,000 + 1 here, so no sum overflows.
fn cumulative(parts: impl Iterator<Item = u64>) -> Vec<u64> {
    let mut sum = 0u64;
    parts
        .map(|p| {
            sum = sum.saturating_add(p);
            sum
        })
        .collect()
}

/// `floor(draw x scale / 2^64)`, exact for any `scale` below 2^128, and below `scale`.
fn scale_draw(draw: u64, scale: u128) -> u128 {
    // scale = high x 2^64 + low: draw x high + (draw x low) >> 64, each term exact and the sum
    // below scale.
    let (high, low) = ((scale >> 64) as u64, scale as u64);
    u128::from(draw) * u128::from(high) + ((u128::from(draw) * u128::from(low)) >> 64)
}

/// The zone a draw lands on (see the module docs: Envoy's `tryChooseLocalLocalityHosts` with
/// its two random numbers read off one draw). `None` for [`ZoneRouting::NotRouting`]: the
/// caller balances over all healthy hosts. A hand-built [`ZoneRouting::Residual`] whose
/// residuals are all 0 sends everything local (or nowhere, with a local share of 0).
pub(crate) fn choose_zone(routing: &ZoneRouting, draw: u64) -> Option<usize> {
    match routing {
        ZoneRouting::NotRouting => None,
        ZoneRouting::AllLocal { zone } => Some(*zone),
        ZoneRouting::Residual {
            local,
            local_share,
            residual,
        } => {
            let total = u128::from(residual.last().copied().unwrap_or(0));
            let local_share = u128::from((*local_share).min(ZONE_SCALE));
            if total == 0 {
                return (local_share > 0).then_some(*local);
            }
            let point = scale_draw(draw, u128::from(ZONE_SCALE) * total);
            if point / total < local_share {
                return Some(*local);
            }
            let threshold = point % total;
            residual
                .iter()
                .position(|&c| threshold < u128::from(c))
                .or(Some(*local))
        }
    }
}

impl ZoneRouting {
    /// How many of the `scale` points [`choose_zone`] maps draws onto land on each of `zones`
    /// zones, and `scale` (`10000 x R` for a residual routing, 1 for all local, 0 when not
    /// routing). Each zone's probability under a uniform draw is its points over `scale`,
    /// within 2^-64. Zones at or past `zones` are left out.
    pub(crate) fn points(&self, zones: usize) -> (Vec<u128>, u128) {
        let mut points = vec![0u128; zones];
        match self {
            ZoneRouting::NotRouting => (points, 0),
            ZoneRouting::AllLocal { zone } => {
                if let Some(p) = points.get_mut(*zone) {
                    *p = 1;
                }
                (points, 1)
            }
            ZoneRouting::Residual {
                local,
                local_share,
                residual,
            } => {
                let total = u128::from(residual.last().copied().unwrap_or(0));
                let local_share = u128::from((*local_share).min(ZONE_SCALE));
                let away = u128::from(ZONE_SCALE) - local_share;
                let mut previous = 0u128;
                for (p, &c) in points.iter_mut().zip(residual) {
                    let c = u128::from(c).max(previous);
                    *p = away * (c - previous);
                    previous = c;
                }
                if let Some(p) = points.get_mut(*local) {
                    *p += local_share * total;
                }
                (points, u128::from(ZONE_SCALE) * total)
            }
        }
    }
}

/// Shares of `total` in proportion to `weights`: each floored, the remainder one by one to
/// the largest fractional parts (ties to the lower index). Sums to `total` exactly unless
/// every weight is 0 (then all 0); a weight of 0 gets 0. `total` is at most 2^20 and each
/// weight below 2^80 here, so no product overflows.
fn largest_remainder(weights: &[u128], total: u64) -> Vec<u64> {
    let sum: u128 = weights.iter().sum();
    if sum == 0 {
        return vec![0; weights.len()];
    }
    let total = u128::from(total);
    let mut shares: Vec<u64> = weights.iter().map(|&w| (w * total / sum) as u64).collect();
    let given: u128 = shares.iter().map(|&s| u128::from(s)).sum();
    let mut order: Vec<(u128, usize)> = weights
        .iter()
        .enumerate()
        .map(|(i, &w)| (w * total % sum, i))
        .collect();
    // Largest remainder first, lower index first among equals.
    order.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    // The remainders sum to (total - given) x sum and each is below sum, so at least
    // total - given of them are above 0: a weight of 0 (remainder 0) never gets a point.
    let left = (total - given) as usize;
    for &(_, i) in order.iter().take(left) {
        shares[i] += 1;
    }
    shares
}

/// Zone shares in parts per million ([`LOAD_AWARE_SCALE`]) from each zone's `(hosts,
/// utilisation)`, utilisation in parts per 10,000 (above 10,000 counts as 10,000): Envoy's
/// documented `load_aware_locality` rule, stages 3 to 5 (see the module docs). `local` is the
/// caller's zone (`None`, or an index past the end, for none: no local preference and no
/// probe); `variance_threshold` and `probe` are in parts per 10,000 (Envoy defaults
/// [`DEFAULT_VARIANCE_THRESHOLD`] and [`DEFAULT_REMOTE_PROBE`]; above 10,000 counts as 10,000).
///
/// The shares sum to exactly a million, unless no zone has a host (then all 0). Never
/// panics.
pub(crate) fn load_aware_weights(
    zones: &[(u64, u32)],
    local: Option<usize>,
    variance_threshold: u32,
    probe: u32,
) -> Vec<u64> {
    let scale = u128::from(UTILISATION_SCALE);
    let util = |u: u32| u128::from(u.min(UTILISATION_SCALE));
    let hosts: Vec<u128> = zones.iter().map(|&(h, _)| u128::from(h)).collect();
    // Below 2^64 x len: a u128 for any slice that fits in memory.
    let total_hosts: u128 = hosts.iter().sum();
    if total_hosts == 0 {
        return vec![0; zones.len()];
    }
    // Headroom weight: at most 2^64 x 10^4 < 2^78 each.
    let base: Vec<u128> = zones
        .iter()
        .map(|&(h, u)| u128::from(h) * (scale - util(u)))
        .collect();
    let total_base: u128 = base.iter().sum();
    if total_base == 0 {
        // Every zone at full utilisation: by host count, no preference, no probe.
        return largest_remainder(&hosts, LOAD_AWARE_SCALE);
    }
    let local = local.filter(|&l| l < zones.len());
    let Some(l) = local else {
        return largest_remainder(&base, LOAD_AWARE_SCALE);
    };
    let remote_hosts = total_hosts - hosts[l];
    if remote_hosts == 0 {
        return largest_remainder(&base, LOAD_AWARE_SCALE);
    }

    let mut weights = base;
    if hosts[l] > 0 {
        // u(L) <= remote average + threshold, multiplied out by remote_hosts: exact.
        let remote_load: u128 = zones
            .iter()
            .enumerate()
            .filter(|&(i, _)| i != l)
            .map(|(_, &(h, u))| u128::from(h) * util(u))
            .sum();
        let threshold = util(variance_threshold);
        if util(zones[l].1) * remote_hosts <= remote_load + threshold * remote_hosts {
            weights.iter_mut().for_each(|w| *w = 0);
            weights[l] = total_base;
        }
    }
    let mut shares = largest_remainder(&weights, LOAD_AWARE_SCALE);

    // Probe floor, in parts per million.
    let floor = u64::from(probe.min(UTILISATION_SCALE)) * (LOAD_AWARE_SCALE / 10_000);
    let remote_share = LOAD_AWARE_SCALE - shares[l];
    if remote_share < floor {
        let take = (floor - remote_share).min(shares[l]);
        shares[l] -= take;
        let mut remote_weights = hosts;
        remote_weights[l] = 0;
        for (s, extra) in shares
            .iter_mut()
            .zip(largest_remainder(&remote_weights, take))
        {
            *s += extra;
        }
    }
    shares
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::priority::choose_locality;

    /// Zones from `(upstream, local)` pairs.
    fn zones(rows: &[(u64, u64)]) -> Vec<Zone> {
        rows.iter().map(|&(u, l)| Zone::new(u, l)).collect()
    }

    /// Zone routing with the given `min_cluster_size` and no forced local zone.
    fn route(rows: &[(u64, u64)], local: usize, min_cluster_size: u64) -> ZoneRouting {
        let config = ZoneConfig {
            min_cluster_size,
            force_local_zone: None,
        };
        zone_routing(&zones(rows), local, config)
    }

    /// The draw that reproduces Envoy's mocked random values: `second` for the
    /// `random() % 10000 < local_percent_to_route` test, `third` for the `random() %
    /// residual` walk. The smallest draw whose point is `(second % 10000) x R + third % R`.
    fn draw_for(routing: &ZoneRouting, second: u64, third: u64) -> u64 {
        let ZoneRouting::Residual { residual, .. } = routing else {
            panic!("not a residual routing: {routing:?}");
        };
        let total = u128::from(*residual.last().unwrap());
        let point = u128::from(second % ZONE_SCALE) * total + u128::from(third) % total;
        let scale = u128::from(ZONE_SCALE) * total;
        let draw = (point << 64).div_ceil(scale);
        // The translation is exact: the draw lands on that point and the one before does not.
        assert_eq!(scale_draw(draw as u64, scale), point);
        if draw > 0 {
            assert!(scale_draw(draw as u64 - 1, scale) < point);
        }
        draw as u64
    }

    /// Asserts a residual routing's local share and cumulative residuals.
    #[track_caller]
    fn assert_residual(routing: &ZoneRouting, local: usize, share: u64, cumulative: &[u64]) {
        assert_eq!(
            routing,
            &ZoneRouting::Residual {
                local,
                local_share: share,
                residual: cumulative.to_vec(),
            }
        );
    }

    // ---- Envoy `round_robin_lb_test.cc`, the zone-aware cases. Upstream and local rows are
    // per zone; the test's locality order is kept where Envoy's indices are checked.

    /// `ZoneAwareSmallCluster`: three zones of one host each, one local host in each zone:
    /// below `min_cluster_size` 7 no routing; at 1, all local.
    #[test]
    fn envoy_zone_aware_small_cluster() {
        let rows = [(1, 1), (1, 1), (1, 1)];
        assert_eq!(route(&rows, 0, 7), ZoneRouting::NotRouting);
        assert_eq!(route(&rows, 0, 1), ZoneRouting::AllLocal { zone: 0 });
    }

    /// `ZoneAwareZonesMismatched`: A 1L 1U, B 1L 0U, C 0L 1U (minimum 2). From A: all local.
    /// From B (no upstream host at home): nothing local, everything to C, A having no
    /// residual; Envoy's third random values 0 and 4999 both pick C. `zone_aware.rst` lists
    /// "the originating cluster has the same number of zones as the upstream cluster" as a
    /// precondition; the code does not check it, and this test (like the next two) routes
    /// with different zone sets. We follow the code.
    #[test]
    fn envoy_zone_aware_zones_mismatched() {
        let rows = [(1, 1), (0, 1), (1, 0)];
        assert_eq!(route(&rows, 0, 2), ZoneRouting::AllLocal { zone: 0 });
        let from_b = route(&rows, 1, 2);
        assert_residual(&from_b, 1, 0, &[0, 0, 5000]);
        for third in [0, 4999] {
            let draw = draw_for(&from_b, 0, third);
            assert_eq!(choose_zone(&from_b, draw), Some(2));
        }
    }

    /// `ZoneAwareResidualsMismatched`: A 2L 1U (local), B 2L 0U, C 1L 3U, D 1L 3U, E 0L 1U.
    /// 37.5% stays in A (3750 of 10,000: random values 0 and 3749 stay, 3750 leaves);
    /// residuals C 2084, D 2084, E 1250 (cumulative 2084, 4168, 5418), Envoy's "expected"
    /// column (the zones matched by name, not by position).
    #[test]
    fn envoy_zone_aware_residuals_mismatched() {
        let rows = [(1, 2), (0, 2), (3, 1), (3, 1), (1, 0)];
        let routing = route(&rows, 0, 6);
        assert_residual(&routing, 0, 3750, &[0, 0, 2084, 4168, 5418]);
        let shares = zone_shares(&zones(&rows));
        assert_eq!(
            shares[0],
            ZoneShare {
                local: 3333,
                upstream: 1250
            }
        );
        let expect = [
            ((0, 0), 0),
            ((3749, 0), 0),
            ((3750, 0), 2),
            ((3750, 2083), 2),
            ((9999, 2084), 3),
            ((9999, 4167), 3),
            ((9999, 4168), 4),
            ((9999, 5417), 4),
            // "At sampled value 5418, we loop back to the beginning ... zone C again".
            ((9999, 5418), 2),
        ];
        for ((second, third), zone) in expect {
            let draw = draw_for(&routing, second, third);
            assert_eq!(choose_zone(&routing, draw), Some(zone), "{second} {third}");
        }
    }

    /// `ZoneAwareDifferentZoneSize`: upstream B, A, C one host each; local B, A one each;
    /// the caller in B. 6666 of 10,000 stay (random 0 and 6665), and the only residual is
    /// C's 3333 (random 0 and 3333, wrapped, both pick C).
    #[test]
    fn envoy_zone_aware_different_zone_size() {
        let rows = [(1, 1), (1, 1), (1, 0)];
        let routing = route(&rows, 0, 3);
        assert_residual(&routing, 0, 6666, &[0, 0, 3333]);
        for (second, third, zone) in [(0, 0, 0), (6665, 0, 0), (6666, 0, 2), (9999, 3333, 2)] {
            assert_eq!(
                choose_zone(&routing, draw_for(&routing, second, third)),
                Some(zone)
            );
        }
    }

    /// `ZoneAwareUseHostWeight`: weights instead of counts. A: local hosts of weight 100 and
    /// 100, one upstream of 100; B: one local of 200, one upstream of 100. Equal weights per
    /// zone: all local, though A has twice B's local hosts.
    #[test]
    fn envoy_zone_aware_use_host_weight() {
        let rows = [(100, 200), (100, 200)];
        assert_eq!(route(&rows, 0, 2), ZoneRouting::AllLocal { zone: 0 });
        // By host count it would not be: 2 of 3 local hosts in A for half the upstream.
        assert_residual(&route(&[(1, 2), (1, 1)], 0, 2), 0, 7500, &[0, 1667]);
    }

    /// `ZoneAwareRoutingLargeZoneSwitchOnOff`: one host per zone on both sides (minimum 3):
    /// all local. (Switching `routing_enabled` off is the caller's per-pick decision.)
    #[test]
    fn envoy_zone_aware_routing_large_zone() {
        let routing = route(&[(1, 1), (1, 1), (1, 1)], 0, 3);
        assert_eq!(routing, ZoneRouting::AllLocal { zone: 0 });
        assert_eq!(choose_zone(&routing, u64::MAX), Some(0));
    }

    /// `ZoneAwareRoutingSmallZone`: upstream A 1, B 2, C 2; one local host per zone; the
    /// caller in A (minimum 5). 6000 stay (random 100 stays); B and C have 667 each, random
    /// 9999 then 2 goes to B.
    #[test]
    fn envoy_zone_aware_routing_small_zone() {
        let routing = route(&[(1, 1), (2, 1), (2, 1)], 0, 5);
        assert_residual(&routing, 0, 6000, &[0, 667, 1334]);
        assert_eq!(choose_zone(&routing, draw_for(&routing, 100, 0)), Some(0));
        assert_eq!(choose_zone(&routing, draw_for(&routing, 9999, 2)), Some(1));
    }

    /// `ZoneAwareNoMatchingZones`: upstream in D, E, F, the calling fleet in A, B, C (minimum
    /// 3). Nothing local; 3333 residual each, so random 3332 picks D, 3333 and 6665 E, 6666
    /// and 9998 F ("rounding error: 3333 x 3 = 9999 != 10000").
    #[test]
    fn envoy_zone_aware_no_matching_zones() {
        let rows = [(0, 1), (0, 1), (0, 1), (1, 0), (1, 0), (1, 0)];
        let routing = route(&rows, 0, 3);
        assert_residual(&routing, 0, 0, &[0, 0, 0, 3333, 6666, 9999]);
        for (third, zone) in [(3332, 3), (3333, 4), (6665, 4), (6666, 5), (9998, 5)] {
            assert_eq!(
                choose_zone(&routing, draw_for(&routing, 0, third)),
                Some(zone)
            );
        }
    }

    /// `NoZoneAwareNotEnoughLocalZones`: upstream in A and B, the calling fleet only in A.
    #[test]
    fn envoy_no_zone_aware_not_enough_local_zones() {
        assert_eq!(route(&[(1, 1), (1, 0)], 0, 2), ZoneRouting::NotRouting);
    }

    /// `NoZoneAwareNotEnoughUpstreamZones`: upstream only in A, the calling fleet in A and B.
    /// Envoy stops at "fewer than two upstream localities"; with B listed (the union of
    /// zones) we route, and everything goes to A all the same.
    #[test]
    fn envoy_no_zone_aware_not_enough_upstream_zones() {
        assert_eq!(route(&[(1, 1)], 0, 1), ZoneRouting::NotRouting);
        let routing = route(&[(1, 1), (0, 1)], 0, 1);
        assert_eq!(routing, ZoneRouting::AllLocal { zone: 0 });
        let from_b = route(&[(1, 1), (0, 1)], 1, 1);
        for draw in [0, 1 << 63, u64::MAX] {
            assert_eq!(choose_zone(&from_b, draw), Some(0));
        }
    }

    /// `ZoneAwareForceLocalityDirect`: A 1L 1U, B 1L 1U, C 0L 1U (minimum 3), the caller in A.
    /// Residual by default (6666 local); `force_local_zone` 2 is not met by A's one host;
    /// at 1 it is, and nothing reaches C.
    #[test]
    fn envoy_zone_aware_force_locality_direct() {
        let rows = zones(&[(1, 1), (1, 1), (1, 0)]);
        let config = |force| ZoneConfig {
            min_cluster_size: 3,
            force_local_zone: force,
        };
        let routing = zone_routing(&rows, 0, config(None));
        assert_residual(&routing, 0, 6666, &[0, 0, 3333]);
        assert_eq!(zone_routing(&rows, 0, config(Some(2))), routing);
        let forced = zone_routing(&rows, 0, config(Some(1)));
        assert_eq!(forced, ZoneRouting::AllLocal { zone: 0 });
        // A minimum of 0 counts as 1, and forcing lets a single-zone fleet route.
        assert_eq!(zone_routing(&rows, 0, config(Some(0))), forced);
        let one_zone = zones(&[(1, 1), (2, 0)]);
        assert_eq!(
            zone_routing(&one_zone, 0, config(Some(1)).with_min(1)),
            ZoneRouting::AllLocal { zone: 0 }
        );
        // ... but never to a zone without healthy upstream hosts.
        let empty_home = zones(&[(0, 1), (3, 1)]);
        assert_residual(
            &zone_routing(&empty_home, 0, config(Some(0))),
            0,
            0,
            &[0, 5000],
        );
    }

    impl ZoneConfig {
        /// The same configuration with another `min_cluster_size`.
        fn with_min(self, min_cluster_size: u64) -> Self {
            ZoneConfig {
                min_cluster_size,
                ..self
            }
        }
    }

    /// `ZoneAwareEmptyLocalities`: A 1L 0U (local), B 0L 0U, C 1L 2U, D 1L (no upstream
    /// locality), E 0L 1U, F 1L 2U, G 0U, H 1U, I 0U (minimum 3). Residuals C 833, E 1666,
    /// F 833, H 1666 (cumulative 833, 2499, 3332, 4998); Envoy's random values walk them,
    /// 4998 wrapping to C.
    #[test]
    fn envoy_zone_aware_empty_localities() {
        // A, B, C, D, E, F, G, H, I.
        let rows = [
            (0, 1),
            (0, 0),
            (2, 1),
            (0, 1),
            (1, 0),
            (2, 1),
            (0, 0),
            (1, 0),
            (0, 0),
        ];
        let routing = route(&rows, 0, 3);
        assert_residual(
            &routing,
            0,
            0,
            &[0, 0, 833, 833, 2499, 3332, 3332, 4998, 4998],
        );
        let expect = [
            (0, 2),
            (832, 2),
            (833, 4),
            (2498, 4),
            (2499, 5),
            (3331, 5),
            (3332, 7),
            (4997, 7),
            (4998, 2),
        ];
        for (third, zone) in expect {
            let draw = draw_for(&routing, 0, third);
            assert_eq!(choose_zone(&routing, draw), Some(zone), "{third}");
        }
    }

    /// `LowPrecisionForDistribution`: local 45,000 / 55,000, upstream 44,999 / 55,001
    /// (minimum 1). 9997 stay local; B's surplus rounds to 0 (Envoy's "no capacity left",
    /// then a uniformly random locality); we send the cross-zone part to B, the only other
    /// zone with hosts.
    #[test]
    fn envoy_low_precision_for_distribution() {
        let routing = route(&[(44_999, 45_000), (55_001, 55_000)], 0, 1);
        assert_residual(&routing, 0, 9997, &[0, 5500]);
        assert_eq!(choose_zone(&routing, draw_for(&routing, 9999, 2)), Some(1));
        assert_eq!(choose_zone(&routing, draw_for(&routing, 9996, 2)), Some(0));
    }

    /// `NoZoneAwareRoutingOneZone` and `NoZoneAwareRoutingNotHealthy`: a single upstream
    /// locality (in the second, not the caller's).
    #[test]
    fn envoy_no_zone_aware_routing_one_zone() {
        assert_eq!(route(&[(1, 1)], 0, 0), ZoneRouting::NotRouting);
        assert_eq!(route(&[(2, 0)], 1, 0), ZoneRouting::NotRouting);
    }

    /// `NoZoneAwareRoutingLocalEmpty` (and `...FailTrafficOnPanic`): the local cluster has no
    /// healthy host, so no zone has a local host. `NoZoneAwareRoutingNoLocalLocality`: the
    /// calling fleet does not know its zone (an index past the end) or has no host there.
    #[test]
    fn envoy_no_zone_aware_routing_local_empty_or_unknown() {
        assert_eq!(route(&[(1, 0), (1, 0)], 0, 1), ZoneRouting::NotRouting);
        assert_eq!(route(&[(1, 1), (1, 1)], 2, 1), ZoneRouting::NotRouting);
        assert_eq!(
            route(&[(1, 0), (1, 1), (1, 1)], 0, 1),
            ZoneRouting::NotRouting
        );
    }

    /// The example of Envoy's `regenerateLocalityRoutingStructures` comment: local 40/40/20%,
    /// upstream 25/50/25%, residual "0 10000 5000", cumulative "0 10000 15000". The comment
    /// writes the percentages at scale 100,000 ("40000 40000 20000"); the code's scale is
    /// 10,000, where the cumulative residuals are 0, 1000, 1500.
    #[test]
    fn envoy_comment_example() {
        let routing = route(&[(25, 40), (50, 40), (25, 20)], 0, 6);
        assert_residual(&routing, 0, 6250, &[0, 1000, 1500]);
    }

    // ---- Our own.

    /// Every point of the draw space lands on one zone, the points sum to the scale, the
    /// local zone never takes more than keeps its upstream hosts at their fair part, and the
    /// multiply-shift gives each zone its points' share of draws.
    #[track_caller]
    fn check_routing(rows: &[Zone], local: usize) {
        let routing = zone_routing(rows, local, ZoneConfig::default().with_min(0));
        let (points, scale) = routing.points(rows.len());
        assert_eq!(points.iter().sum::<u128>(), scale, "{routing:?}");
        let shares = zone_shares(rows);
        match &routing {
            ZoneRouting::NotRouting => assert_eq!(choose_zone(&routing, 0), None),
            ZoneRouting::AllLocal { zone } => {
                assert_eq!(*zone, local);
                assert!(rows[local].upstream > 0);
            }
            ZoneRouting::Residual {
                local_share,
                residual,
                ..
            } => {
                assert!(*local_share < ZONE_SCALE);
                // Per-host evenness: local_share/10^4 of local_pct is at most upstream_pct.
                let own = shares[local];
                assert!(local_share * own.local <= own.upstream * ZONE_SCALE);
                assert!(residual.windows(2).all(|w| w[0] <= w[1]));
                assert!(*residual.last().unwrap() > 0);
                // A zone with no upstream host gets nothing.
                for (zone, (&p, z)) in points.iter().zip(rows).enumerate() {
                    if z.upstream == 0 {
                        assert_eq!(p, 0, "zone {zone} of {routing:?}");
                    }
                }
                // Boundaries of the draw space.
                for draw in [0, 1, u64::MAX / 2, u64::MAX - 1, u64::MAX] {
                    let zone = choose_zone(&routing, draw).unwrap();
                    assert!(points[zone] > 0, "draw {draw} on {zone} of {routing:?}");
                }
            }
        }
    }

    #[test]
    fn routing_invariants_on_a_grid() {
        let counts = [0u64, 1, 2, 3, 5, 7, 10];
        for &a in &counts {
            for &b in &counts {
                for &c in &counts {
                    for &la in &counts[..5] {
                        for &lb in &counts[..5] {
                            let rows = zones(&[(a, la), (b, lb), (c, 1)]);
                            for local in 0..4 {
                                check_routing(&rows, local);
                            }
                        }
                    }
                }
            }
        }
    }

    /// Aggregated over a whole calling fleet (each of its zones routing with its own local
    /// index, each local host sending the same traffic), every upstream zone receives its
    /// upstream share, to within rounding: per-host load stays even.
    #[test]
    fn whole_fleet_keeps_per_host_load_even() {
        let fleets: [&[(u64, u64)]; 5] = [
            &[(25, 40), (50, 40), (25, 20)],
            &[(1, 2), (0, 2), (3, 1), (3, 1), (1, 0)],
            &[(10, 1), (10, 5), (10, 30)],
            &[(7, 7), (3, 11), (20, 2), (0, 5)],
            &[(100, 33), (1, 33), (1, 34)],
        ];
        for fleet in fleets {
            let rows = zones(fleet);
            let total_local: u64 = fleet.iter().map(|r| r.1).sum();
            let total_upstream: u64 = fleet.iter().map(|r| r.0).sum();
            let mut load = vec![0f64; rows.len()];
            for (home, z) in rows.iter().enumerate() {
                if z.local == 0 {
                    continue;
                }
                let routing = zone_routing(&rows, home, ZoneConfig::default().with_min(0));
                let (points, scale) = routing.points(rows.len());
                assert!(scale > 0, "{fleet:?} from {home}");
                for (l, &p) in load.iter_mut().zip(&points) {
                    *l += z.local as f64 / total_local as f64 * p as f64 / scale as f64;
                }
            }
            for (zone, (&l, z)) in load.iter().zip(&rows).enumerate() {
                let fair = z.upstream as f64 / total_upstream as f64;
                assert!(
                    (l - fair).abs() < 0.002,
                    "{fleet:?} zone {zone}: {l} vs {fair}"
                );
            }
        }
    }

    #[test]
    fn draws_split_in_exact_shares() {
        let routing = route(&[(25, 40), (50, 40), (25, 20)], 0, 6);
        let (points, scale) = routing.points(3);
        assert_eq!(points, vec![6250 * 1500, 3750 * 1000, 3750 * 500]);
        assert_eq!(scale, 10_000 * 1500);
        // 65,536 draws in equal strides through 2^64: the local zone owns exactly the lowest
        // 62.5% of the draw space; the rest splits 2:1 by `point % R`, within a few strides.
        let steps = 1u64 << 16;
        let mut hits = [0u64; 3];
        for i in 0..steps {
            hits[choose_zone(&routing, i << 48).unwrap()] += 1;
        }
        assert_eq!(hits[0], 40_960, "{hits:?}");
        assert!(hits[1].abs_diff(16_384) <= 16, "{hits:?}");
        assert!(hits[2].abs_diff(8_192) <= 16, "{hits:?}");
        assert_eq!(choose_zone(&routing, 0), Some(0));
        assert_eq!(choose_zone(&routing, u64::MAX), Some(2));
    }

    #[test]
    fn huge_and_zero_counts_do_not_panic() {
        let max = u64::MAX;
        let cases: [&[(u64, u64)]; 6] = [
            &[(max, max), (max, max)],
            &[(max, 1), (1, max), (max, max)],
            &[(0, max), (max, 0)],
            &[(0, 0), (0, 0)],
            &[(1, max), (max, 1)],
            &[],
        ];
        for rows in cases {
            let rows = zones(rows);
            for local in 0..3 {
                for min in [0, 6, max] {
                    let routing = zone_routing(&rows, local, ZoneConfig::default().with_min(min));
                    for draw in [0, 1, max] {
                        let _ = choose_zone(&routing, draw);
                    }
                    let (points, scale) = routing.points(rows.len());
                    assert_eq!(points.iter().sum::<u128>(), scale);
                }
                if !rows.is_empty() {
                    check_routing(&rows, local);
                }
            }
        }
        // One host among 2^64 - 1 floors to 0 percent: nothing stays local, like Envoy.
        let routing = route(&[(1, 1), (max, 1)], 0, 0);
        assert_residual(&routing, 0, 0, &[0, 4999]);
    }

    #[test]
    fn hand_built_routings_do_not_panic() {
        let odd = [
            ZoneRouting::Residual {
                local: 7,
                local_share: 20_000,
                residual: vec![],
            },
            ZoneRouting::Residual {
                local: 0,
                local_share: 0,
                residual: vec![0, 0],
            },
            ZoneRouting::Residual {
                local: 1,
                local_share: 10,
                residual: vec![5, 3, u64::MAX],
            },
            ZoneRouting::AllLocal { zone: 9 },
        ];
        for routing in &odd {
            for draw in [0, 1, u64::MAX] {
                let _ = choose_zone(routing, draw);
            }
            let _ = routing.points(2);
        }
        assert_eq!(choose_zone(&odd[1], 5), None);
        assert_eq!(choose_zone(&odd[0], 5), Some(7));
    }

    // ---- Load-aware shares: Envoy `load_aware_locality.rst`.

    /// The worked example: 10 hosts each at 70% (local), 30%, 40%, threshold 0.1: headroom
    /// 3 / 7 / 6 of 16, "A ~19%, B ~44%, C ~37%".
    #[test]
    fn envoy_load_aware_worked_example() {
        let zones = [(10, 7000), (10, 3000), (10, 4000)];
        let shares = load_aware_weights(
            &zones,
            Some(0),
            DEFAULT_VARIANCE_THRESHOLD,
            DEFAULT_REMOTE_PROBE,
        );
        assert_eq!(shares, vec![187_500, 437_500, 375_000]);
    }

    /// "If load rebalances and all localities converge to ~0.45, local is within threshold
    /// and the policy snaps to 100% local (minus the 3% remote probe)", spread by host count.
    #[test]
    fn envoy_load_aware_snaps_local_with_probe() {
        let zones = [(10, 4500), (10, 4500), (10, 4500)];
        let shares = load_aware_weights(
            &zones,
            Some(0),
            DEFAULT_VARIANCE_THRESHOLD,
            DEFAULT_REMOTE_PROBE,
        );
        assert_eq!(shares, vec![970_000, 15_000, 15_000]);
        // The boundary is inclusive: local 0.45 against remote average 0.35 + 0.1.
        let edge = [(10, 4500), (10, 3000), (10, 4000)];
        let shares = load_aware_weights(&edge, Some(0), 1000, 300);
        assert_eq!(shares, vec![970_000, 15_000, 15_000]);
        let above = [(10, 4501), (10, 3000), (10, 4000)];
        assert!(load_aware_weights(&above, Some(0), 1000, 300)[0] < 500_000);
        // One-sided: a cooler local zone always snaps, however large the gap.
        let cool = [(10, 0), (10, 9000), (10, 9000)];
        assert_eq!(
            load_aware_weights(&cool, Some(0), 0, 0),
            vec![1_000_000, 0, 0]
        );
        // The probe is spread by host count, not headroom.
        let uneven = [(10, 4500), (30, 4000), (10, 4500)];
        let shares = load_aware_weights(&uneven, Some(0), 1000, 400);
        assert_eq!(shares, vec![960_000, 30_000, 10_000]);
    }

    /// "A larger remote locality pulls the average toward its own utilization."
    #[test]
    fn envoy_load_aware_asymmetric_hosts() {
        // Remote average (0.2 x 30 + 0.8 x 10) / 40 = 0.35: local 0.5 spills.
        let spill = [(10, 5000), (30, 2000), (10, 8000)];
        let shares = load_aware_weights(&spill, Some(0), 1000, 300);
        // Headroom 5, 24, 2 of 31.
        assert_eq!(shares, vec![161_290, 774_194, 64_516]);
        // Remote average (0.2 x 10 + 0.8 x 30) / 40 = 0.65: local 0.5 snaps.
        let snap = [(10, 5000), (10, 2000), (30, 8000)];
        let shares = load_aware_weights(&snap, Some(0), 1000, 300);
        assert_eq!(shares, vec![970_000, 7_500, 22_500]);
    }

    /// Every zone at utilisation 1 (or above): by host count, no local preference, no probe.
    #[test]
    fn load_aware_all_overloaded() {
        let zones = [(10, 10_000), (30, 12_000)];
        let shares = load_aware_weights(&zones, Some(0), 1000, 300);
        assert_eq!(shares, vec![250_000, 750_000]);
    }

    #[test]
    fn load_aware_edges() {
        // No host: nothing to choose.
        assert_eq!(
            load_aware_weights(&[(0, 0), (0, 5000)], Some(0), 1000, 300),
            vec![0, 0]
        );
        assert!(choose_locality(&[0, 0], 7).is_none());
        assert!(load_aware_weights(&[], None, 1000, 300).is_empty());
        // No local zone (or one past the end): plain headroom, no probe.
        let zones = [(10, 7000), (10, 3000), (10, 4000)];
        for local in [None, Some(3)] {
            assert_eq!(
                load_aware_weights(&zones, local, 1000, 300),
                vec![187_500, 437_500, 375_000]
            );
        }
        // A local zone with no host: no snap, and the probe has nothing to take.
        let shares = load_aware_weights(&[(0, 0), (1, 0), (3, 0)], Some(0), 1000, 300);
        assert_eq!(shares, vec![0, 250_000, 750_000]);
        // Only the local zone has hosts: all local, nothing to probe.
        let shares = load_aware_weights(&[(5, 9000), (0, 0)], Some(0), 1000, 300);
        assert_eq!(shares, vec![1_000_000, 0]);
        // A probe of 100% (and above) takes everything remote.
        let shares = load_aware_weights(&[(1, 0), (1, 0)], Some(0), 1000, 50_000);
        assert_eq!(shares, vec![0, 1_000_000]);
        // Thirds: largest remainder, ties to the lower index.
        assert_eq!(
            load_aware_weights(&[(1, 0), (1, 0), (1, 0)], None, 0, 0),
            vec![333_334, 333_333, 333_333]
        );
    }

    #[test]
    fn load_aware_weights_sum_to_a_million() {
        let max = u64::MAX;
        let hosts = [0u64, 1, 3, 10, 1000, max];
        let utils = [0u32, 1, 3000, 4500, 9999, 10_000, u32::MAX];
        for &h0 in &hosts {
            for &h1 in &hosts {
                for &u0 in &utils {
                    for &u1 in &utils {
                        let zones = [(h0, u0), (h1, u1), (7, 5000)];
                        for local in [None, Some(0), Some(1), Some(2)] {
                            for (threshold, probe) in [(0, 0), (1000, 300), (u32::MAX, u32::MAX)] {
                                let shares = load_aware_weights(&zones, local, threshold, probe);
                                assert_eq!(shares.iter().sum::<u64>(), LOAD_AWARE_SCALE);
                                for (s, z) in shares.iter().zip(&zones) {
                                    if z.0 == 0 {
                                        assert_eq!(*s, 0, "{zones:?} {local:?}");
                                    }
                                }
                                let _ = choose_locality(&shares, u64::MAX);
                            }
                        }
                    }
                }
            }
        }
    }
}
