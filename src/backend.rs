//! What a balancer balances over: backends, their weights and their health.

use std::sync::Arc;

/// One member of a backend set: a stable id, a weight and a value of the caller's.
///
/// * The **id** is the backend's identity across updates (in-flight counts and health are
///   carried over by id) and the input of every placement hash. It must be non-empty and
///   unique within a set; both are checked when the set is handed to a balancer.
/// * The **weight** (default 1) scales the backend's share. Weight 0 keeps the backend in the
///   set, with its held picks, but gives it no new picks, like [`Health::Draining`].
/// * The **value** is anything the caller needs back from a pick: an address, a client, a
///   connection pool. A [`Pick`](crate::Pick) dereferences to it.
///
/// ```
/// use lbkit::Backend;
/// let b = Backend::new("eu-1", "10.0.0.1:80").with_weight(3);
/// assert_eq!((b.id(), b.weight(), *b.value()), ("eu-1", 3, "10.0.0.1:80"));
/// ```
#[derive(Debug, Clone)]
pub struct Backend<T> {
    pub(crate) id: Arc<str>,
    pub(crate) weight: u32,
    pub(crate) value: T,
    pub(crate) health: Option<Health>,
    pub(crate) max_in_flight: Option<u32>,
    pub(crate) priority: u32,
    pub(crate) locality: Option<Arc<str>>,
}

impl<T> Backend<T> {
    /// A backend of weight 1.
    pub fn new(id: impl Into<Arc<str>>, value: T) -> Self {
        Backend {
            id: id.into(),
            weight: 1,
            value,
            health: None,
            max_in_flight: None,
            priority: 0,
            locality: None,
        }
    }

    /// The same backend, known to be in this health when the set is handed over: a new
    /// backend joins in it (instead of [`Health::Up`]), and a backend that stays takes it (as
    /// [`Balancer::set_health`](crate::Balancer::set_health) would, in the same atomic
    /// update). Without it, new backends join `Up` and kept ones keep their health.
    ///
    /// ```
    /// use lbkit::{Backend, Balancer, Health, RoundRobin};
    /// let lb = RoundRobin::new([Backend::new("a", ())])?;
    /// lb.update(vec![Backend::new("a", ()), Backend::new("b", ()).with_health(Health::Draining)])?;
    /// assert_eq!(lb.status()[1].health(), Health::Draining);
    /// # Ok::<(), lbkit::Error>(())
    /// ```
    #[must_use]
    pub fn with_health(mut self, health: Health) -> Self {
        self.health = Some(health);
        self
    }

    /// The same backend with another weight. Weight 0 means "no new picks".
    #[must_use]
    pub fn with_weight(mut self, weight: u32) -> Self {
        self.weight = weight;
        self
    }

    /// The same backend with a hard cap: never more than `max` picks held on it at once,
    /// exactly, however many threads pick (HAProxy's `maxconn`, nginx's `max_conns`, Envoy's
    /// circuit breakers).
    ///
    /// A backend at its cap is passed over as an ineligible one is, for as long as it is
    /// full: request-spreading policies choose among the others, hashing policies walk on to
    /// the key's next preference (HAProxy's `hash-preserve-affinity maxconn`: the key keeps
    /// its backend while it has room), and bounded loads apply on top. Weights and health
    /// rules are unchanged by caps. When every eligible backend is full,
    /// [`try_pick`](crate::Balancer::try_pick) returns
    /// [`NoPick::AllAtCapacity`](crate::NoPick::AllAtCapacity).
    ///
    /// The count carries across updates as always, and an update may change the cap: picks
    /// that start after the update returns are held to the new cap (picks already held above
    /// a lowered cap are not revoked; they finish).
    ///
    /// With request costs ([`Request::cost`](crate::Request::cost)) the cap is on the work
    /// held: a pick fits when the work held plus its cost is at most the cap, so a request
    /// that costs more than the cap never gets this backend.
    ///
    /// Cost: an acquire on a capped backend is a compare-exchange loop instead of one
    /// `fetch_add`; a pick from a set with a cap checks each candidate's count.
    ///
    /// A cap of 0 is rejected: the constructor or update given such a backend returns
    /// [`Error::InvalidConfig`](crate::Error::InvalidConfig) with parameter
    /// `"max_in_flight"`, and nothing changes.
    ///
    /// ```
    /// use lbkit::{Backend, Balancer, Request, RoundRobin};
    /// let lb = RoundRobin::new([Backend::new("a", ()).with_max_in_flight(1), Backend::new("b", ())])?;
    /// let held: Vec<_> = (0..4).map(|_| lb.pick(&Request::new()).unwrap()).collect();
    /// assert_eq!(held.iter().filter(|p| p.id() == "a").count(), 1);
    /// # Ok::<(), lbkit::Error>(())
    /// ```
    #[must_use]
    pub fn with_max_in_flight(mut self, max: u32) -> Self {
        self.max_in_flight = Some(max);
        self
    }

    /// The same backend in priority level `priority`: 0 (the default) is the highest. Lower
    /// levels (1, 2, ...) are backup tiers: they take traffic gradually, as the levels above
    /// them lose healthy capacity, following Envoy's priority levels exactly (see
    /// [`crate::docs::tiers`]: the overprovisioning factor, degraded backends, panic per
    /// level). The levels are the distinct priorities present in the set; gaps do not matter.
    ///
    /// ```
    /// use lbkit::{Backend, Balancer, Health, Request, RoundRobin};
    /// let lb = RoundRobin::new([
    ///     Backend::new("primary", ()),
    ///     Backend::new("dr", ()).with_priority(1),
    /// ])?;
    /// // While the primary level is healthy, the backup level gets nothing.
    /// assert!((0..100).all(|_| lb.pick(&Request::new()).unwrap().id() == "primary"));
    /// lb.set_health("primary", Health::Down)?;
    /// assert_eq!(lb.pick(&Request::new()).unwrap().id(), "dr");
    /// # Ok::<(), lbkit::Error>(())
    /// ```
    #[must_use]
    pub fn with_priority(mut self, priority: u32) -> Self {
        self.priority = priority;
        self
    }

    /// The same backend in the locality (zone, rack, data centre) `name`, which must not be
    /// empty: the constructor or update given an empty name returns
    /// [`Error::InvalidConfig`](crate::Error::InvalidConfig) with parameter `"locality"`.
    /// Localities matter once a [`Topology`](crate::Topology) weights them or names the
    /// caller's own zone; without one, a backend's locality is only reported.
    #[must_use]
    pub fn with_locality(mut self, name: impl Into<Arc<str>>) -> Self {
        self.locality = Some(name.into());
        self
    }

    /// The priority level given with [`Backend::with_priority`] (0 by default).
    pub fn priority(&self) -> u32 {
        self.priority
    }

    /// The locality given with [`Backend::with_locality`], if any.
    pub fn locality(&self) -> Option<&str> {
        self.locality.as_deref()
    }

    /// The cap given with [`Backend::with_max_in_flight`], if any.
    pub fn max_in_flight(&self) -> Option<u32> {
        self.max_in_flight
    }

    /// The backend's id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The backend's weight.
    pub fn weight(&self) -> u32 {
        self.weight
    }

    /// The caller's value.
    pub fn value(&self) -> &T {
        &self.value
    }

    /// The health given with [`Backend::with_health`], if any.
    pub fn health(&self) -> Option<Health> {
        self.health
    }
}

/// Whether a backend may receive new picks.
///
/// Set by [`Balancer::set_health`](crate::Balancer::set_health). `Up` backends get new picks;
/// `Degraded` ones only when the healthy capacity falls short (Envoy's degraded hosts: see
/// [`crate::docs::tiers`]); `Down` and `Draining` ones get none, and picks already held on
/// them finish normally. The last two differ in meaning only (a failed backend versus one
/// being taken out on purpose), which [`Balancer::status`](crate::Balancer::status) reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Health {
    /// Serving: eligible for new picks (if its weight is above 0).
    #[default]
    Up,
    /// Failed: no new picks.
    Down,
    /// Being taken out of service: no new picks, held picks finish.
    Draining,
    /// Serving, but worse than `Up` (a backend that is overloaded, warming a cache, far
    /// away): new picks only for the share of traffic that the healthy backends of every
    /// priority level together cannot take (with one level and the default overprovisioning
    /// factor of 1.4: once fewer than 5 in 7 of the level's backends are `Up`).
    Degraded,
}

impl Health {
    pub(crate) fn to_u8(self) -> u8 {
        match self {
            Health::Up => 0,
            Health::Down => 1,
            Health::Draining => 2,
            Health::Degraded => 3,
        }
    }

    pub(crate) fn from_u8(v: u8) -> Health {
        match v {
            0 => Health::Up,
            1 => Health::Down,
            2 => Health::Draining,
            _ => Health::Degraded,
        }
    }
}
