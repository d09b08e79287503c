//! What a balancer reports about each backend.

use std::sync::Arc;
use std::time::Duration;

use crate::backend::Health;
use crate::engine::state::Counters;

/// One backend's line in [`Balancer::status`](crate::Balancer::status): a point-in-time
/// reading.
///
/// The counters ([`picks`](Status::picks), [`successes`](Status::successes),
/// [`failures`](Status::failures), [`dropped`](Status::dropped), [`spills`](Status::spills))
/// run from when the balancer first learned the backend, across updates, health changes and
/// ejections; a backend removed and added back keeps them if picks on it were still held
/// meanwhile, and starts again from 0 otherwise (as a new backend). The in-flight count and
/// the picks are one reading, the reports come after it: a pick that ends during the reading
/// may show as held and reported at once (so `dropped` is never too high, at worst one too
/// low for the reading), and `picks = in_flight + successes + failures + dropped` holds
/// exactly once no pick is ending. (With the `tower` feature, a pick the `Balance` service
/// takes only to look, and gives back unused, counts as taken and held while it is held, and
/// then as neither: a reading in that instant shows one pick more than the next.)
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    pub(crate) id: Arc<str>,
    pub(crate) weight: u32,
    pub(crate) priority: u32,
    pub(crate) locality: Option<Arc<str>>,
    pub(crate) in_flight: usize,
    pub(crate) health: Health,
    pub(crate) ejected: bool,
    pub(crate) soft_weight: u32,
    pub(crate) coverage: u32,
    /// The weight picks see, in units of `weight_scale` per unit of weight (0 if not
    /// eligible).
    pub(crate) effective_weight: u64,
    pub(crate) weight_scale: u64,
    /// Clock nanoseconds at which the ejection ends, 0 if not ejected.
    pub(crate) ejected_until: u64,
    pub(crate) ejections: u32,
    pub(crate) consecutive_failures: u32,
    pub(crate) counters: Counters,
    pub(crate) latency: Option<Duration>,
    pub(crate) removed: bool,
    /// Entries owned in the hashing policy's table; `None` without one.
    pub(crate) table_share: Option<u64>,
}

/// A backend's failures by kind ([`Failure`](crate::Failure)), as
/// [`Status::failures_by_kind`] counts them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct FailureCounts {
    /// [`Failure::LocalOrigin`](crate::Failure::LocalOrigin): no answer came.
    pub local_origin: u64,
    /// [`Failure::Error`](crate::Failure::Error) (and [`Pick::failure`](crate::Pick::failure)).
    pub error: u64,
    /// [`Failure::Overloaded`](crate::Failure::Overloaded).
    pub overloaded: u64,
}

impl Status {
    /// The backend's id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The backend's weight.
    pub fn weight(&self) -> u32 {
        self.weight
    }

    /// The backend's priority level ([`Backend::with_priority`](crate::Backend::with_priority);
    /// 0 is the highest).
    pub fn priority(&self) -> u32 {
        self.priority
    }

    /// The backend's locality ([`Backend::with_locality`](crate::Backend::with_locality)), if
    /// it named one.
    pub fn locality(&self) -> Option<&str> {
        self.locality.as_deref()
    }

    /// Work held on the backend now: the sum of the costs of the picks held
    /// ([`Request::cost`](crate::Request::cost)), which is their number when every request
    /// costs 1 (the default).
    pub fn in_flight(&self) -> usize {
        self.in_flight
    }

    /// The backend's health.
    pub fn health(&self) -> Health {
        self.health
    }

    /// Whether outlier detection has ejected the backend for now.
    pub fn is_ejected(&self) -> bool {
        self.ejected
    }

    /// The soft-health multiplier on the backend's weight, in `[floor, 1]`; 1 without soft
    /// health ([`SoftHealth`](crate::SoftHealth)).
    pub fn soft_health(&self) -> f64 {
        f64::from(self.soft_weight) / f64::from(crate::engine::state::FULL_SOFT_WEIGHT)
    }

    /// How much of the backend this client covers under a [subset](crate::subset), in
    /// `(0, 1]` (its effective weight is scaled by it); 1 without a subset. 0 for a backend
    /// outside this client's subset, listed only because picks taken while it was inside are
    /// still held (such lines come after the members', before the removed backends').
    pub fn coverage(&self) -> f64 {
        f64::from(self.coverage) / f64::from(crate::engine::subset::COVERAGE_SCALE)
    }

    /// The weight picks see now, in units of the configured weight: the weight itself, or less
    /// while slow start ramps it, soft health lowers it or a subset covers the backend in
    /// part; 0 if the backend is not eligible.
    pub fn effective_weight(&self) -> f64 {
        self.effective_weight as f64 / self.weight_scale as f64
    }

    /// When the current ejection ends, on the balancer's clock
    /// ([`Clock::now`](crate::Clock::now)); `None` if the backend is not ejected.
    pub fn ejected_until(&self) -> Option<std::time::Duration> {
        (self.ejected_until != 0).then(|| std::time::Duration::from_nanos(self.ejected_until))
    }

    /// The ejection multiplier: how many times the backend was ejected, lowered as it serves
    /// without failing (the next ejection lasts `base_ejection_time` times one more).
    pub fn ejections(&self) -> u32 {
        self.ejections
    }

    /// The backend's current run of failures in a row (of the kinds outlier detection
    /// counts).
    pub fn consecutive_failures(&self) -> u32 {
        self.consecutive_failures
    }

    /// Picks taken on the backend (see the counters above).
    pub fn picks(&self) -> u64 {
        self.counters.picks
    }

    /// Picks on the backend that reported [`success`](crate::Pick::success).
    pub fn successes(&self) -> u64 {
        self.counters.successes
    }

    /// Picks on the backend that reported a failure, of any kind
    /// ([`failure`](crate::Pick::failure), [`failure_of`](crate::Pick::failure_of)).
    pub fn failures(&self) -> u64 {
        self.counters.failures.iter().sum()
    }

    /// The failures by kind.
    pub fn failures_by_kind(&self) -> FailureCounts {
        let [local_origin, error, overloaded] = self.counters.failures;
        FailureCounts {
            local_origin,
            error,
            overloaded,
        }
    }

    /// Picks on the backend released without a report (dropped: a timeout, a cancellation,
    /// or a caller that never reports): the picks taken less those held and those reported.
    pub fn dropped(&self) -> u64 {
        self.counters
            .picks
            .saturating_sub(self.in_flight as u64)
            .saturating_sub(self.successes())
            .saturating_sub(self.failures())
    }

    /// Under bounded loads ([`load_factor`](crate::Builder::load_factor)), picks whose key's
    /// first choice this backend was and that went on to the next in the key's order because
    /// it was above its capacity (counted by `pick`, `try_pick` and the first choice of
    /// `pick_n`); 0 for the other policies.
    pub fn spills(&self) -> u64 {
        self.counters.spills
    }

    /// The policy's latency estimate for the backend now, where one is kept: the peak-EWMA
    /// cost of [`PeakEwma`](crate::PeakEwma) and [`Prequal`](crate::Prequal), decayed to now;
    /// `None` for every other policy.
    pub fn latency(&self) -> Option<Duration> {
        self.latency
    }

    /// Whether the backend was removed from the set and is listed only because picks taken
    /// before are still held: it leaves the list when the last of them is dropped, so a
    /// caller can see a removed backend drain. Such a line comes after every member's, with
    /// an effective weight of 0.
    pub fn is_removed(&self) -> bool {
        self.removed
    }

    /// The entries the backend owns in the current table of a hashing policy: its ring points
    /// ([`HashRing`](crate::HashRing); a [`PresetRing`](crate::PresetRing)'s nginx, ketama or
    /// `ring_hash` continuum points), or its Maglev slots ([`Maglev`](crate::Maglev),
    /// [`Preset::EnvoyMaglev`](crate::Preset::EnvoyMaglev)). Over the whole set they add up to
    /// the table's size. A Maglev backend's share of keys is exactly its share of slots; a
    /// ring backend's is its share of points only in expectation (the arcs between points
    /// vary in length). Envoy's `min_hashes_per_host` / `max_hashes_per_host` gauges are the
    /// minimum and maximum of these counts over the set.
    ///
    /// The table is built over every backend of the set, healthy or not, so health changes
    /// and ejections leave it as it is (keys of an ineligible backend walk on past its
    /// entries); weight 0, or a backend the preset's program gave no point, owns 0. `None`
    /// for policies without such a table: every request-spreading policy,
    /// [`JumpHash`](crate::JumpHash) and [`Rendezvous`](crate::Rendezvous); and for the lines
    /// of backends that are not in the table (removed, or outside the subset, listed while
    /// picks on them are held).
    ///
    /// ```
    /// use lbkit::{Backend, Balancer, Maglev, RoundRobin};
    /// let lb = Maglev::builder()
    ///     .table_size(101)
    ///     .build([Backend::new("a", ()), Backend::new("b", ()).with_weight(0)])?;
    /// let shares: Vec<_> = lb.status().iter().map(|s| s.table_share()).collect();
    /// assert_eq!(shares, [Some(101), Some(0)]);
    /// let rr = RoundRobin::new([Backend::new("a", ())])?;
    /// assert_eq!(rr.status()[0].table_share(), None);
    /// # Ok::<(), lbkit::Error>(())
    /// ```
    pub fn table_share(&self) -> Option<u64> {
        self.table_share
    }

    /// Whether the backend stands to receive new picks by itself: `Up`, not ejected, and a
    /// weight above 0. Whether it gets them now also depends on the rest of the set: the panic
    /// threshold can make every non-draining backend eligible, a [`Degraded`](Health::Degraded)
    /// backend serves only the share healthy capacity lacks, and a backend in a priority level
    /// without a share of the traffic gets none (see [`crate::docs::tiers`]).
    /// [`effective_weight`](Status::effective_weight) above 0 says it gets picks now.
    pub fn is_eligible(&self) -> bool {
        self.health == Health::Up
            && self.weight > 0
            && !self.ejected
            && !self.removed
            && self.coverage > 0
    }
}
