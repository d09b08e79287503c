//! Priority levels, degraded backends and localities: the shape of a real fleet.
//!
//! A fleet is rarely one flat pool. It has backup tiers (a disaster-recovery region, an
//! on-premises fallback, a canary held in reserve), backends that serve but worse than
//! the rest, and zones. lbkit reproduces Envoy's published algorithms for all three, exactly
//! and in integer arithmetic, for every policy, request-spreading and hashing alike.
//!
//! ```
//! use lbkit::{Backend, Balancer, Health, HealthConfig, RoundRobin, Topology};
//! let lb = RoundRobin::builder()
//!     .health(HealthConfig::new().overprovisioning_factor(1.4)) // Envoy's default
//!     .topology(Topology::locality_weights([("us-east-1a", 1), ("us-east-1b", 1)]))
//!     .build([
//!         Backend::new("a", 1u32).with_priority(0).with_locality("us-east-1a"),
//!         Backend::new("b", 2u32).with_priority(0).with_locality("us-east-1b"),
//!         Backend::new("dr", 3u32).with_priority(1), // a backup level
//!     ])?;
//! lb.set_health("b", Health::Degraded)?; // serves only when healthy capacity falls short
//! # Ok::<(), lbkit::Error>(())
//! ```
//!
//! # Priority levels
//!
//! [`Backend::with_priority`](crate::Backend::with_priority) puts a backend in a level: 0
//! (the default) is the highest. The levels are the distinct priorities present. Each level
//! counts its backends (not their weights, as Envoy counts hosts):
//!
//! * *healthy*: [`Up`](crate::Health::Up), not ejected, weight above 0;
//! * *degraded*: [`Degraded`](crate::Health::Degraded), not ejected, weight above 0;
//! * down or ejected backends count in the level's total only;
//! * [draining](crate::Health::Draining) backends and those of weight 0 are *excluded*: out
//!   of the arithmetic below, as Envoy excludes hosts on their way out (its EDS `DRAINING`
//!   status, `exclude_host_in_eds_status_draining`). They count only when every level is in
//!   panic, where the load follows each level's number of backends.
//!
//! With the [overprovisioning factor](crate::HealthConfig::overprovisioning_factor) `f` in
//! whole percent (140 by default), every level gets a health, and the 100 points of traffic
//! are handed out from P0 down, first to healthy backends, then what is left to degraded
//! ones (Envoy `priority.rst`, `degraded.rst`):
//!
//! ```text
//! health(P)          = min(100, f x healthy(P)  / total(P))   (integer division; total
//! degraded_health(P) = min(100, f x degraded(P) / total(P))    without the excluded)
//! normalized         = min(100, sum over P of health + degraded_health)
//! healthy_load(P)    = min(remaining, health(P) x 100 / normalized)           P0, P1, ...
//! degraded_load(P)   = min(remaining, degraded_health(P) x 100 / normalized)  then these
//! ```
//!
//! The rounding remainder goes to the first level with health. So with P1 fully healthy, P0
//! at 100 / 72 / 71 / 50 / 25 / 0% healthy keeps 100 / 100 / 99 / 70 / 35 / 0% of the
//! traffic; and one level 25% healthy, 65% degraded sends 35% to its healthy and 65% to its
//! degraded backends. A degraded backend serves only once the healthy capacity of every
//! level, backups included, falls short.
//!
//! # Panic, per level
//!
//! The [panic threshold](crate::HealthConfig::panic_threshold) (off by default; Envoy's is
//! 50%) is considered only when `normalized` is below 100 (Envoy `panic_threshold.rst`). Then
//! a level whose available share, `(healthy + degraded) / total` (without the excluded), is
//! below it is *in panic*:
//! it keeps its load but serves it from all its backends that could serve (weight above 0,
//! not draining), regardless of health. When every level is in panic, the load follows the
//! levels' backend counts. With one level this is the flat rule: panic once fewer than the
//! threshold's share are available, but only while fewer than `1 / f` (5 in 7) are healthy.
//!
//! # Localities
//!
//! [`Backend::with_locality`](crate::Backend::with_locality) names a backend's zone. Under
//! [`Topology::locality_weights`](crate::Topology::locality_weights) (Envoy
//! `locality_weight.rst`), inside the chosen level (not in panic) a locality is chosen with
//! weight `weight x min(100, f x available / total)`, `available` being its healthy backends
//! (its degraded ones, for the level's degraded share); then the policy chooses inside it.
//! With X of weight 1 and Y of weight 2, Y fully available, X at 100 / 70 / 69 / 50 / 25 / 0%
//! available gets 33 / 33 / 32 / 26 / 15 / 0% of the traffic.
//!
//! ## Zone-aware routing
//!
//! Under [`Topology::zone_aware`](crate::Topology::zone_aware) (Envoy `zone_aware.rst`), the
//! caller names its zone and the calling fleet's share in each zone. In the highest level's
//! healthy share (not in panic), with `u(z)` the zone's share of the level's healthy backends
//! and `c(z)` its share of the callers:
//!
//! * if `u(local) >= c(local)`, everything stays local;
//! * otherwise `u(local) / c(local)` of the traffic stays local and the rest goes to the
//!   zones with `u(z) > c(z)`, in proportion to `u(z) - c(z)`;
//! * no routing by zone (the level is balanced as a whole) with fewer than
//!   [`min_cluster_size`](crate::Topology::min_cluster_size) healthy backends (6), or callers in
//!   fewer than two zones, or no caller in the local zone.
//!
//! Envoy's arithmetic at its scale of 10,000, so the vectors of its unit tests hold exactly
//! (for example backends 20 / 40 / 40% and callers 40 / 30 / 30%: 50% local, 25% to each other
//! zone). Lower levels and degraded shares are balanced as a whole, as in Envoy.
//!
//! ## Load-aware routing
//!
//! Zone-aware routing assumes each caller sends the same traffic and each backend has the
//! same capacity. [`Topology::load_aware`](crate::Topology::load_aware) measures instead: it
//! is the rule Envoy documents for its `load_aware_locality` policy (`load_aware_locality.rst`,
//! marked not implemented; it needs backend utilisation reports), with utilisation taken from
//! what lbkit already counts. Every update period (1 s), on the first pick after it (no
//! thread), for each locality of each level:
//!
//! 1. *sample*: a backend of weight `w` with `n` picks held is `min(1, n / (capacity x w))`
//!    utilised; the locality's sample is the average over its healthy backends;
//! 2. *smooth*: the first sample as it is, then `a x sample + (1 - a) x previous` with
//!    `a = 1 - exp(-period / 5 s)`;
//! 3. *headroom*: in each level's healthy share, a locality's weight is its healthy backends x
//!    `(1 - utilisation)`; all localities full: by healthy backends (degraded and panic
//!    shares are balanced as a whole, where Envoy's design keeps load-aware weights for them
//!    too);
//! 4. *local preference*: if the caller's locality is at most 0.1 busier than the others'
//!    average (weighted by their healthy backends), it takes everything (one-sided: a less
//!    busy local locality always does);
//! 5. *probe*: at least 3% goes to the other localities, by their healthy backends, so their
//!    load keeps being measured.
//!
//! Envoy's worked example is a test: A (local) 0.7, B 0.3, C 0.4, ten backends each: the
//! remote average 0.35 + 0.1 < 0.7, so 3 : 7 : 6, 18.75 / 43.75 / 37.5%; all at 0.45: 97%
//! local, 1.5% to each other. With smoothing, a local zone that jumps from 0.45 to full keeps
//! its traffic for one more period and spills at 0.63, long before it saturates.
//!
//! The split is recomputed every period, so for hashing policies the keys at the edges of
//! the localities' shares move with it: the localities lie end to end in a fixed order, and
//! the keys between each boundary's old and new place change locality (so the keys moved are
//! at most the sum of how far each boundary moved, exactly that when the boundaries' moves do
//! not overlap; Envoy's worked example snapping to local moves 80% of the keys, not the 114%
//! its two boundaries moved; the smoothing keeps it small while load changes slowly). Every
//! change of the
//! split is told to observers as [`Event::SharesChanged`](crate::Event::SharesChanged).
//!
//! Where the utilisation comes from:
//!
//! * [`Topology::load_aware`](crate::Topology::load_aware) measures the balancer's own
//!   picks held, against a `capacity` per unit of weight. It sees a backend's whole load
//!   only when it is the backends' only caller (a gateway or proxy in front of the fleet). In
//!   a fleet of callers, each with its own balancer, a caller sees a fraction of its own
//!   zone's load and none of what the others put on a remote zone, whose load it measures
//!   through its own probe only: remote zones look idle, and the rule reacts late and
//!   unevenly (the simulator's `--tiers` table shows it).
//! * [`Topology::load_aware_reported`](crate::Topology::load_aware_reported) takes each
//!   backend's utilisation from its latest [`LoadReport`](crate::LoadReport), given to
//!   [`Balancer::report_load`](crate::Balancer::report_load) from a response trailer or an
//!   out-of-band stream (Envoy's design, on ORCA reports). Reports see every caller's load,
//!   so this is the one for fleets. A backend whose report is older than the expiration (3
//!   minutes) is left out of its locality's average; a locality left with none keeps its
//!   smoothed value (Envoy weighs it by its backend count instead).
//!
//! # How a pick chooses
//!
//! All of it is computed once per rebuild (a health change, an ejection, an update) into the
//! snapshot: each level's classes (healthy, degraded, or everything in panic), split by
//! locality where weighted, become groups, each with the policy's own table over its
//! backends, and a 100-entry table maps a draw to a group. A pick draws once, indexes that
//! table (and walks a split class's locality weights), then the policy chooses in the group.
//!
//! * **Request-spreading policies** draw from a Weyl sequence (a counter times the golden
//!   ratio, the point taken from the high bits), so the shares are met within a few picks
//!   over any run, deterministically.
//! * **Hashing policies** draw from the key: the key's placement hash, remixed (SplitMix64 of
//!   the hash xor a pinned constant), so a key keeps its level and locality while the split
//!   stands, and when it changes only the keys whose point moved change level. A group's
//!   table covers all backends of its level (or locality), so the healthy and degraded
//!   classes share it and a health change inside a level moves only the keys of the backend
//!   that changed, as without levels.
//! * **Steering and caps**: a [preferred](crate::Request::prefer) backend is honoured
//!   whatever its level. A group whose backends are all [avoided](crate::Request::avoid) or
//!   at their cap hands the pick to the other groups that have a share, in order (P0's
//!   healthy class, P1's, ..., then the degraded classes): never to a level or class with no
//!   load. [`pick_n`](crate::Balancer::pick_n) continues the same way, so its backends are
//!   distinct and in preference order across levels.
//! * Every other guarantee holds across levels: exact in-flight accounting, order
//!   independence, passive health, slow start, bounded loads (applied inside the group).
//!
//! Cost: a flat set (one level, no degraded backend taking traffic, no locality split) picks
//! exactly as before, one branch more. With levels, a pick pays one draw, one multiply and
//! an index (`cargo bench --bench pick -- tiers`). A rebuild builds one table per group.
//!
//! # Where lbkit differs from Envoy, on purpose
//!
//! * The level is chosen from the draw's high bits (`floor(draw x 100 / 2^64)`), not
//!   `draw % 100`: the same shares, and a Weyl sequence spreads evenly over them.
//! * A locality is chosen from the rest of the same draw, not by Envoy's EDF scheduler,
//!   whose order is not a function of a key; locality availability is a whole percent (the
//!   docs' pseudo-code; Envoy's code uses a `double`).
//! * Envoy's hashing balancers choose the priority from the hash but then ignore whether it
//!   was chosen for healthy or degraded hosts; lbkit serves a degraded share from the
//!   degraded backends, as the request-spreading balancers do.
//! * A group that cannot serve (all capped, all avoided) falls back to the other groups with
//!   a share instead of failing the pick.
