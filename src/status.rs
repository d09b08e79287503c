//! What a balancer reports about each backend.

use std::sync::Arc;

use crate::backend::Health;

/// One backend's line in [`Balancer::status`](crate::Balancer::status): a point-in-time
/// reading.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    pub(crate) id: Arc<str>,
    pub(crate) weight: u32,
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
    /// Entries owned in the hashing policy's table; `None` without one.
    pub(crate) table_share: Option<u64>,
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

    /// Picks held on the backend now.
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
    /// `(0, 1]` (its effective weight is scaled by it); 1 without a subset.
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
    /// [`JumpHash`](crate::JumpHash) and [`Rendezvous`](crate::Rendezvous).
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

    /// Whether the backend can receive new picks: `Up`, not ejected, and a weight above 0
    /// (the panic threshold aside, which can make every non-draining backend eligible).
    pub fn is_eligible(&self) -> bool {
        self.health == Health::Up && self.weight > 0 && !self.ejected
    }
}
