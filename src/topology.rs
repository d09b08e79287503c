//! Where backends are and how localities share a priority level's traffic.
//!
//! A backend may name its locality ([`Backend::with_locality`](crate::Backend::with_locality):
//! a zone, a rack, a data centre). Without a [`Topology`], localities are only reported, and
//! a priority level is balanced as a whole. With one, the level's traffic is first split
//! between its localities, then the policy chooses inside the locality:
//!
//! * [`Topology::locality_weights`]: Envoy's locality-weighted load balancing
//!   (`locality_weight.rst`). Each locality gets a share in proportion to
//!   `weight x min(100, factor x available / total)`, where `available` counts its healthy
//!   backends (its degraded ones, for the level's degraded share) and `factor` is the
//!   [overprovisioning factor](crate::HealthConfig::overprovisioning_factor). So a locality
//!   that loses backends keeps its share until fewer than 1 in 1.4 of them are left, then
//!   sheds traffic to the others in proportion.
//!
//! Why a value of its own, set on the balancer, rather than a field of every backend: a
//! locality's weight belongs to the locality, not to one of its backends (Envoy carries it
//! on `LocalityLbEndpoints`, not on each endpoint), so giving it per backend would let two
//! backends of one locality disagree. Keeping it apart also lets an operator reweigh zones
//! (drain one for maintenance, say) with one call,
//! [`Balancer::set_topology`](crate::Balancer::set_topology), without resending the set.
//!
//! * [`Topology::zone_aware`]: Envoy's zone-aware routing (`zone_aware.rst`), given the
//!   caller's own zone and how the calling fleet is spread over the zones (the caller passes
//!   it; lbkit does not discover it). In the highest priority level, as much traffic stays
//!   in the caller's zone as keeps every backend's load even across the whole calling fleet:
//!   all of it when the zone's share of healthy backends is at least its share of callers,
//!   otherwise that ratio, and the rest goes to the zones with more backends than callers, in
//!   proportion to their surplus. Below [`min_cluster_size`](Topology::min_cluster_size)
//!   healthy backends (default 6), or with callers in fewer than two zones, it does not
//!   route by zone.
//!
//! * [`Topology::load_aware`]: the load-aware locality rule Envoy documents but has not
//!   implemented (`load_aware_locality.rst`), fed by what lbkit already measures instead of
//!   server reports. Every update period (1 s), each locality's utilisation is sampled from
//!   its healthy backends' picks in flight (against a capacity per unit of weight that the
//!   caller gives) and smoothed; localities then share a level's traffic in proportion to
//!   `backends x (1 - utilisation)`, except that all of it stays in the caller's locality
//!   while that locality is at most 0.1 busier than the others' average, less a 3% probe of
//!   the others. So traffic stays local while the zones are evenly loaded and spills out
//!   *before* the local zone saturates, towards the zones with the most headroom. The load
//!   it sees is its own picks: the whole load for the backends' only caller (a gateway), not
//!   for one caller of a fleet (see [`Topology::load_aware`]).
//!
//! The full rules, with the tables they reproduce, are in [`crate::docs::tiers`].

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use crate::engine::zone::{
    DEFAULT_MIN_CLUSTER_SIZE, DEFAULT_REMOTE_PROBE, DEFAULT_VARIANCE_THRESHOLD, UTILISATION_SCALE,
};
use crate::error::Error;

/// Zone-aware routing's inputs ([`Topology::zone_aware`]).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ZoneAware {
    /// The caller's zone.
    pub(crate) local: Arc<str>,
    /// The calling fleet's share in each zone.
    pub(crate) shares: BTreeMap<Arc<str>, f64>,
    pub(crate) min_cluster_size: u64,
}

/// Load-aware locality routing's inputs ([`Topology::load_aware`]).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct LoadAware {
    /// The caller's locality.
    pub(crate) local: Arc<str>,
    /// Where a backend's utilisation comes from.
    pub(crate) signal: Signal,
    pub(crate) variance_threshold: f64,
    pub(crate) remote_probe: f64,
    pub(crate) update_period: Duration,
    pub(crate) smoothing: Duration,
}

/// Where load-aware routing reads a backend's utilisation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Signal {
    /// The balancer's own picks held: `n / (capacity x weight)`.
    InFlight {
        /// Picks in flight per unit of weight at which a backend counts as fully utilised.
        capacity: f64,
    },
    /// The backend's latest [`LoadReport`](crate::LoadReport), if it came within
    /// `expiration` (zero: any age).
    Reported { expiration: Duration },
}

impl LoadAware {
    /// The variance threshold in parts of [`UTILISATION_SCALE`] (validated in [0, 1]).
    pub(crate) fn threshold_parts(&self) -> u32 {
        to_parts(self.variance_threshold)
    }

    /// The remote probe fraction in parts of [`UTILISATION_SCALE`] (validated in [0, 1)).
    pub(crate) fn probe_parts(&self) -> u32 {
        to_parts(self.remote_probe)
    }

    /// The EWMA weight of a new sample, `1 - exp(-update_period / smoothing)` (Envoy's, so
    /// that the settling time does not depend on the period).
    pub(crate) fn alpha(&self) -> f64 {
        let ratio = self.update_period.as_secs_f64() / self.smoothing.as_secs_f64();
        (1.0 - (-ratio).exp()).clamp(0.0, 1.0)
    }
}

/// A fraction in [0, 1] in parts of [`UTILISATION_SCALE`], rounded.
pub(crate) fn to_parts(fraction: f64) -> u32 {
    (fraction.clamp(0.0, 1.0) * f64::from(UTILISATION_SCALE)).round() as u32
}

/// How the localities of a priority level share its traffic (see the [module
/// docs](crate::topology)). The default, [`Topology::new`], does not split by locality.
///
/// ```
/// use lbkit::{Backend, Balancer, RoundRobin, Topology};
/// let lb = RoundRobin::builder()
///     .topology(Topology::locality_weights([("us-east-1a", 1), ("us-east-1b", 2)]))
///     .build([
///         Backend::new("a", ()).with_locality("us-east-1a"),
///         Backend::new("b", ()).with_locality("us-east-1b"),
///     ])?;
/// // b's locality has twice a's weight: two picks in three go to b.
/// # let _ = lb;
/// # Ok::<(), lbkit::Error>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Topology {
    pub(crate) weights: Option<BTreeMap<Arc<str>, u32>>,
    pub(crate) zone: Option<ZoneAware>,
    pub(crate) load: Option<LoadAware>,
    /// A locality listed twice, reported when the topology is given to a balancer.
    twice: Option<Arc<str>>,
}

impl Topology {
    /// No split by locality: each priority level is balanced as a whole (the default).
    pub fn new() -> Self {
        Topology::default()
    }

    /// Envoy's locality-weighted load balancing: inside a priority level, each locality takes
    /// a share of the level's traffic in proportion to its weight times its availability
    /// (see the [module docs](crate::topology)), then the policy chooses inside it.
    ///
    /// A locality not listed, and the backends that name no locality, have weight 0: they get
    /// no traffic while a listed locality of their level can take it (as in Envoy, where a
    /// locality without a weight gets none). If no locality of a level has an effective
    /// weight above 0, the level is balanced as a whole.
    ///
    /// Errors, when the topology is given to a balancer:
    /// [`Error::InvalidConfig`] with parameter `"locality"` for
    /// an empty name or one listed twice; then nothing changes.
    pub fn locality_weights<N: Into<Arc<str>>>(
        weights: impl IntoIterator<Item = (N, u32)>,
    ) -> Self {
        let mut map = BTreeMap::new();
        let mut twice = None;
        for (name, weight) in weights {
            let name: Arc<str> = name.into();
            if map.insert(Arc::clone(&name), weight).is_some() {
                twice = Some(name);
            }
        }
        Topology {
            weights: Some(map),
            twice,
            ..Topology::default()
        }
    }

    /// Envoy's zone-aware routing for a caller in zone `local`, with the calling fleet spread
    /// over the zones as `fleet` says (each zone's share of the callers, summing to 1; a zone
    /// not listed has none). See the [module docs](crate::topology). Applies to the highest
    /// priority level's healthy backends, unless it is in panic; lower levels and degraded
    /// shares are balanced as a whole, as in Envoy.
    ///
    /// ```
    /// use lbkit::{Backend, Balancer, Request, RoundRobin, Topology};
    /// let backends = ["a", "b"].into_iter().flat_map(|zone| {
    ///     (0..6).map(move |i| Backend::new(format!("{zone}{i}"), ()).with_locality(zone))
    /// });
    /// // Callers split 50/50 like the backends: everything stays in the caller's zone.
    /// let lb = RoundRobin::builder()
    ///     .topology(Topology::zone_aware("a", [("a", 0.5), ("b", 0.5)]))
    ///     .build(backends)?;
    /// assert!((0..100).all(|_| lb.pick(&Request::new()).unwrap().id().starts_with('a')));
    /// # Ok::<(), lbkit::Error>(())
    /// ```
    ///
    /// Errors, when the topology is given to a balancer:
    /// [`Error::InvalidConfig`] with parameter `"locality"` for
    /// an empty zone name or one listed twice, and `"zone_shares"` for a share that is
    /// negative or not finite, or shares that do not sum to 1 (within 10^-6); then nothing
    /// changes.
    pub fn zone_aware<N: Into<Arc<str>>>(
        local: impl Into<Arc<str>>,
        fleet: impl IntoIterator<Item = (N, f64)>,
    ) -> Self {
        let mut shares = BTreeMap::new();
        let mut twice = None;
        for (name, share) in fleet {
            let name: Arc<str> = name.into();
            if shares.insert(Arc::clone(&name), share).is_some() {
                twice = Some(name);
            }
        }
        Topology {
            zone: Some(ZoneAware {
                local: local.into(),
                shares,
                min_cluster_size: DEFAULT_MIN_CLUSTER_SIZE,
            }),
            twice,
            ..Topology::default()
        }
    }

    /// With [`zone_aware`](Topology::zone_aware): below this many healthy backends in the
    /// highest level, no routing by zone (Envoy's `min_cluster_size`, default 6). Without zone
    /// awareness it does nothing.
    #[must_use]
    pub fn min_cluster_size(mut self, backends: u64) -> Self {
        if let Some(zone) = &mut self.zone {
            zone.min_cluster_size = backends;
        }
        self
    }

    /// Load-aware locality routing for a caller in locality `local` (the rule Envoy documents
    /// for its `load_aware_locality` policy, marked there as not implemented; see the [module
    /// docs](crate::topology)), with utilisation measured rather than reported: a backend of
    /// weight `w` with `n` picks in flight is `n / (capacity x w)` utilised (at most 1), a
    /// locality's utilisation is its healthy backends' average, smoothed over time.
    ///
    /// Every [`update_period`](Topology::update_period) (1 s), on the first pick after it is
    /// over (no thread), the utilisation of each locality of each level is sampled and
    /// smoothed (the first sample as it is, then an exponentially weighted average with time
    /// constant [`smoothing`](Topology::smoothing), 5 s), and in each level's healthy share:
    ///
    /// 1. each locality's weight is its healthy backends times `1 - utilisation`;
    /// 2. if the caller's locality is at most
    ///    [`variance_threshold`](Topology::variance_threshold) (0.1) busier than the other
    ///    localities' average (weighted by their healthy backends), all of the traffic stays
    ///    in it;
    /// 3. at least [`remote_probe`](Topology::remote_probe) (0.03) of the traffic goes to the
    ///    other localities, in proportion to their healthy backends, so that their
    ///    utilisation keeps being measured.
    ///
    /// If every locality is fully utilised, they share by healthy backends. Degraded and
    /// panic shares are balanced as a whole (Envoy's design keeps load-aware weights for
    /// them too, over the degraded and over all backends).
    ///
    /// `capacity` is picks in flight per unit of weight at which a backend is fully busy: for
    /// backends of weight 1 that each serve 32 requests at once, 32.
    ///
    /// The balancer measures its own picks, so it sees the backends' whole load only when it
    /// is their only caller (a gateway in front of the fleet). In a fleet of callers with a
    /// balancer each, a caller sees nothing of what the others put on a remote zone, which
    /// then looks idle; use [`zone_aware`](Topology::zone_aware) there (see
    /// [`crate::docs::tiers`]).
    ///
    /// ```
    /// use std::time::Duration;
    /// use lbkit::{Backend, Balancer, Request, RoundRobin, Topology};
    /// let backends = ["a", "b"].into_iter().flat_map(|zone| {
    ///     (0..4).map(move |i| Backend::new(format!("{zone}{i}"), ()).with_locality(zone))
    /// });
    /// let lb = RoundRobin::builder()
    ///     .topology(Topology::load_aware("a", 32.0).remote_probe(0.0))
    ///     .build(backends)?;
    /// // Nothing in flight anywhere: the zones are even, everything stays in "a".
    /// assert!((0..100).all(|_| lb.pick(&Request::new()).unwrap().id().starts_with('a')));
    /// # Ok::<(), lbkit::Error>(())
    /// ```
    ///
    /// Errors, when the topology is given to a balancer: [`Error::InvalidConfig`] with
    /// parameter `"locality"` for an empty name, `"capacity"` for a capacity that is not
    /// finite and above 0, `"variance_threshold"` outside [0, 1], `"remote_probe"` outside
    /// [0, 1), `"update_period"` below 100 ms, `"smoothing"` of zero; then nothing changes.
    pub fn load_aware(local: impl Into<Arc<str>>, capacity: f64) -> Self {
        Topology::load_aware_from(local.into(), Signal::InFlight { capacity })
    }

    /// [`load_aware`](Topology::load_aware) with each backend's utilisation taken from its
    /// latest [`LoadReport`](crate::LoadReport) ([`Balancer::report_load`]): Envoy's
    /// `load_aware_locality` design, which sees the whole load of every backend, so it is
    /// right for one caller of a fleet. A locality's sample is the average over its healthy
    /// backends whose report came within [`expiration`](Topology::expiration) (3 minutes);
    /// a locality with none keeps its last smoothed value, and one never reported counts as
    /// idle (shares by healthy backends, until reports come).
    ///
    /// ```
    /// use lbkit::{Backend, Balancer, LoadReport, ManualClock, HealthConfig, Request, RoundRobin, Topology};
    /// use std::time::Duration;
    /// let clock = ManualClock::new();
    /// let backends = ["a", "b"].into_iter().flat_map(|zone| {
    ///     (0..4).map(move |i| Backend::new(format!("{zone}{i}"), ()).with_locality(zone))
    /// });
    /// let lb = RoundRobin::builder()
    ///     .health(HealthConfig::new().clock(clock.clone()))
    ///     .topology(Topology::load_aware_reported("a").remote_probe(0.0))
    ///     .build(backends)?;
    /// // Zone a's backends say they are 90% busy, zone b's 20%: a spills to b.
    /// for i in 0..4 {
    ///     lb.report_load(&format!("a{i}"), LoadReport::new().utilization(0.9))?;
    ///     lb.report_load(&format!("b{i}"), LoadReport::new().utilization(0.2))?;
    /// }
    /// clock.advance(Duration::from_secs(1));
    /// let to_b = (0..900).filter(|_| lb.pick(&Request::new()).unwrap().id().starts_with('b')).count();
    /// assert!((790..=810).contains(&to_b)); // headroom 0.1 x 4 : 0.8 x 4, 8 in 9 to b
    /// # Ok::<(), lbkit::Error>(())
    /// ```
    ///
    /// [`Balancer::report_load`]: crate::Balancer::report_load
    pub fn load_aware_reported(local: impl Into<Arc<str>>) -> Self {
        Topology::load_aware_from(
            local.into(),
            Signal::Reported {
                expiration: Duration::from_secs(180),
            },
        )
    }

    /// With [`load_aware_reported`](Topology::load_aware_reported): how old a backend's
    /// latest report may be and still count (default 3 minutes, Envoy's
    /// `weight_expiration_period`; zero: any age). Otherwise it does nothing.
    #[must_use]
    pub fn expiration(mut self, expiration: Duration) -> Self {
        if let Some(LoadAware {
            signal: Signal::Reported { expiration: e },
            ..
        }) = &mut self.load
        {
            *e = expiration;
        }
        self
    }

    fn load_aware_from(local: Arc<str>, signal: Signal) -> Self {
        Topology {
            load: Some(LoadAware {
                local,
                signal,
                variance_threshold: f64::from(DEFAULT_VARIANCE_THRESHOLD)
                    / f64::from(UTILISATION_SCALE),
                remote_probe: f64::from(DEFAULT_REMOTE_PROBE) / f64::from(UTILISATION_SCALE),
                update_period: Duration::from_secs(1),
                smoothing: Duration::from_secs(5),
            }),
            ..Topology::default()
        }
    }

    /// With [`load_aware`](Topology::load_aware): how much busier than the other localities'
    /// average the caller's locality may be and still keep all of the traffic (default 0.1,
    /// Envoy's `utilization_variance_threshold`). Otherwise it does nothing.
    #[must_use]
    pub fn variance_threshold(mut self, threshold: f64) -> Self {
        if let Some(load) = &mut self.load {
            load.variance_threshold = threshold;
        }
        self
    }

    /// With [`load_aware`](Topology::load_aware): the least share of the traffic sent to the
    /// other localities while the local one keeps it, so that their load is still measured
    /// (default 0.03, Envoy's `remote_probe_fraction`; 0 keeps everything local). Otherwise it
    /// does nothing.
    #[must_use]
    pub fn remote_probe(mut self, fraction: f64) -> Self {
        if let Some(load) = &mut self.load {
            load.remote_probe = fraction;
        }
        self
    }

    /// With [`load_aware`](Topology::load_aware): how often utilisation is sampled and the
    /// shares recomputed (default 1 s, at least 100 ms, Envoy's `weight_update_period`).
    /// Otherwise it does nothing.
    #[must_use]
    pub fn update_period(mut self, period: Duration) -> Self {
        if let Some(load) = &mut self.load {
            load.update_period = period;
        }
        self
    }

    /// With [`load_aware`](Topology::load_aware): the time constant of the utilisation's
    /// smoothing (default 5 s, Envoy's `smoothing_time_constant`): each sample weighs
    /// `1 - exp(-update_period / smoothing)`. Otherwise it does nothing.
    #[must_use]
    pub fn smoothing(mut self, time_constant: Duration) -> Self {
        if let Some(load) = &mut self.load {
            load.smoothing = time_constant;
        }
        self
    }

    /// Whether the levels are split by locality.
    pub(crate) fn splits(&self) -> bool {
        self.weights.is_some() || self.zone.is_some() || self.load.is_some()
    }

    /// The weight of locality `name` (0 for one not listed or no locality).
    pub(crate) fn weight(&self, name: Option<&str>) -> u32 {
        match (&self.weights, name) {
            (Some(weights), Some(name)) => weights.get(name).copied().unwrap_or(0),
            _ => 0,
        }
    }

    /// Checks the names.
    pub(crate) fn validate(&self) -> Result<(), Error> {
        if let Some(name) = &self.twice {
            return Err(Error::config(
                "locality",
                format!("locality {name:?} is listed twice"),
            ));
        }
        let weights = self.weights.iter().flat_map(|w| w.keys());
        let zones = self.zone.iter().flat_map(|z| z.shares.keys());
        let local = self.zone.iter().map(|z| &z.local);
        let load_local = self.load.iter().map(|l| &l.local);
        if weights
            .chain(zones)
            .chain(local)
            .chain(load_local)
            .any(|name| name.is_empty())
        {
            return Err(Error::config("locality", "a locality name is empty"));
        }
        if let Some(load) = &self.load {
            load.validate()?;
        }
        if let Some(zone) = &self.zone {
            if let Some((name, share)) = zone
                .shares
                .iter()
                .find(|(_, s)| !s.is_finite() || **s < 0.0)
            {
                return Err(Error::config(
                    "zone_shares",
                    format!("zone {name:?} has share {share}, not a finite share of at least 0"),
                ));
            }
            let sum: f64 = zone.shares.values().sum();
            if (sum - 1.0).abs() > 1e-6 {
                return Err(Error::config(
                    "zone_shares",
                    format!("the calling fleet's shares sum to {sum}, not 1"),
                ));
            }
        }
        Ok(())
    }
}

impl LoadAware {
    fn validate(&self) -> Result<(), Error> {
        if let Signal::InFlight { capacity } = self.signal {
            if !(capacity.is_finite() && capacity > 0.0) {
                return Err(Error::config(
                    "capacity",
                    format!("capacity {capacity} is not finite and above 0"),
                ));
            }
        }
        if !(0.0..=1.0).contains(&self.variance_threshold) {
            return Err(Error::config(
                "variance_threshold",
                format!("{} is not in [0, 1]", self.variance_threshold),
            ));
        }
        if !(0.0..1.0).contains(&self.remote_probe) {
            return Err(Error::config(
                "remote_probe",
                format!("{} is not in [0, 1)", self.remote_probe),
            ));
        }
        if self.update_period < Duration::from_millis(100) {
            return Err(Error::config(
                "update_period",
                format!("{:?} is below 100 ms", self.update_period),
            ));
        }
        if self.smoothing.is_zero() {
            return Err(Error::config("smoothing", "the time constant is zero"));
        }
        Ok(())
    }
}
