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

    /// Whether the backend can receive new picks: `Up`, not ejected, and a weight above 0
    /// (the panic threshold aside, which can make every non-draining backend eligible).
    pub fn is_eligible(&self) -> bool {
        self.health == Health::Up && self.weight > 0 && !self.ejected
    }
}
