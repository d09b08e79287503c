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
/// Set by [`Balancer::set_health`](crate::Balancer::set_health). Only `Up` backends get new
/// picks; `Down` and `Draining` ones get none, and picks already held on them finish normally.
/// The two differ in meaning only (a failed backend versus one being taken out on purpose),
/// which [`Balancer::status`](crate::Balancer::status) reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Health {
    /// Serving: eligible for new picks (if its weight is above 0).
    #[default]
    Up,
    /// Failed: no new picks.
    Down,
    /// Being taken out of service: no new picks, held picks finish.
    Draining,
}

impl Health {
    pub(crate) fn to_u8(self) -> u8 {
        match self {
            Health::Up => 0,
            Health::Down => 1,
            Health::Draining => 2,
        }
    }

    pub(crate) fn from_u8(v: u8) -> Health {
        match v {
            0 => Health::Up,
            1 => Health::Down,
            _ => Health::Draining,
        }
    }
}
