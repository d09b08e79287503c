//! # lbkit: load-balancing algorithms for Rust services
//!
//! A service that calls other services chooses a backend for every request. lbkit makes that
//! choice: one [`Balancer`] per backend set, shared by every thread (`Arc<dyn Balancer<T>>`),
//! fed membership changes from service discovery while requests flow, never locked on the
//! pick path.
//!
//! ```
//! use std::sync::Arc;
//! use lbkit::{Backend, Balancer, Health, LeastConnections, Request};
//!
//! let lb: Arc<dyn Balancer<&str>> = Arc::new(LeastConnections::new([
//!     Backend::new("a", "10.0.0.1:80"),
//!     Backend::new("b", "10.0.0.2:80").with_weight(3),
//! ])?);
//! let pick = lb.pick(&Request::new()).expect("a backend is up");
//! println!("sending to {} at {}", pick.id(), *pick); // `pick` derefs to the value
//! drop(pick); // the request is done: its in-flight slot is given back
//!
//! lb.set_health("a", Health::Down)?;
//! lb.update(vec![Backend::new("b", "10.0.0.2:80"), Backend::new("c", "10.0.0.3:80")])?;
//! # Ok::<(), lbkit::Error>(())
//! ```
//!
//! ## Policies
//!
//! | policy | picks | cost per pick | choose it for |
//! |---|---|---|---|
//! | [`RoundRobin`] | the next backend in turn | O(1) | alike backends, alike requests |
//! | [`WeightedRoundRobin`] | smooth weighted turns | O(1) | unequal backends, alike requests |
//! | [`ClientSideWeightedRoundRobin`] | smooth turns weighted by backends' load reports | O(1) | backends that report load |
//! | [`Random`] | weighted at random | O(1) | stateless spread |
//! | [`LeastConnections`] | fewest in flight per weight | O(n) | long-lived connections |
//! | [`PowerOfTwoChoices`] | lighter of two weighted draws | O(1) | the default for requests |
//! | [`PeakEwma`] | cheaper of two by latency x load | O(1) | backends whose latency varies |
//! | [`Prequal`] | lowest latency of d draws not above a load quantile | O(d) | latency first, load as a guard |
//! | [`First`] | the first backend with room, in list order | O(1) | few busy backends |
//! | [`HashRing`] | the key's next point on a weighted ring | O(1) | key affinity under churn |
//! | [`Maglev`] | the key's slot in a prime-sized table | O(1) | key affinity, fastest lookup |
//! | [`Rendezvous`] | the key's highest weighted score | O(n) | exact shares, top-n replicas |
//! | [`PresetRing`] | the server nginx or libmemcached would choose | O(1) | migrations |
//! | [`JumpHash`] | the key's bucket, backends numbered in order | O(log n) | numbered shards |
//!
//! ## What every balancer guarantees
//!
//! * **Membership.** [`Balancer::update`] replaces the whole set at once: a pick sees the old
//!   set or the new one, never a mix, and a pick that starts after `update` returns never sees
//!   a removed backend. Backends are ordered by id, so the result never depends on the order
//!   of the list ([`JumpHash`] numbers its buckets in list order and [`First`] fills
//!   backends in list order, by design; no other policy depends on it).
//! * **Accounting.** A [`Pick`] counts one request in flight until it is dropped, also across
//!   updates and after its backend was removed. Backends that stay keep their in-flight count
//!   and health.
//! * **Health.** Only backends that are [`Health::Up`] with weight above 0, and not ejected,
//!   get new picks (with a [panic threshold](health) configured, too few healthy backends
//!   make every backend that is not draining eligible again; [`Health::Degraded`] ones serve
//!   what healthy capacity lacks).
//! * **Tiers and zones.** Backends may sit in priority levels
//!   ([`Backend::with_priority`]: backups that take traffic gradually) and localities, which
//!   a [`Topology`] weights or routes by zone, with Envoy's published semantics, for every
//!   policy ([`docs::tiers`]).
//! * **Feedback.** [`Pick::success`] and [`Pick::failure`] report outcomes; a
//!   [`HealthConfig`] (outlier ejection, panic threshold, slow start) acts on them for every
//!   policy, and [`PeakEwma`] and [`Prequal`] balance on the latencies. Backends' own load
//!   reports ([`LoadReport`]) weigh [`ClientSideWeightedRoundRobin`]'s turns.
//! * **Steering and caps.** A [`Request`] can [`avoid`](Request::avoid) backends (a retry
//!   not sent back where it failed) and [`prefer`](Request::prefer) one (a sticky session);
//!   a [`Backend`] can have a hard cap on picks held at once
//!   ([`with_max_in_flight`](Backend::with_max_in_flight)), never exceeded. Every policy
//!   honours them, and [`Balancer::try_pick`] says why no backend was found ([`NoPick`]).
//! * **Subsetting.** With a [`Subset`] (deterministic aperture or rendezvous subsetting), one
//!   client of a large fleet uses only its share of the set ([`subset`]); the subset is
//!   chosen when a set is built, so every policy and every guarantee above holds over it.
//! * **Errors.** Bad input gets a typed [`Error`] and changes nothing. An empty set is not an
//!   error: `pick` returns `None`.
//! * **Determinism.** Randomised policies take a seed (`X::builder().seed(s)`, or the
//!   shortcut `X::with_seed`); placement hashes are pinned ([`docs::placement`]). The hashing policies,
//!   their bounded loads and their exact placement are described in [`hash`].
//!
//! ## One way to build
//!
//! Every policy is built with `X::new(backends)` for the defaults, or `X::builder()` with the
//! policy's own knobs and the shared ones (`.seed`, `.health`, `.load_factor`), ending in
//! `.build(backends)` (see [`Builder`]). Everything that can change later is on the trait, so
//! it works through `Arc<dyn Balancer<T>>`: [`Balancer::update`], [`Balancer::set_health`],
//! [`Balancer::set_health_config`].
//!
//! ## Layout
//!
//! The public vocabulary ([`Backend`], [`Request`], [`Error`], [`Clock`], [`HealthConfig`],
//! [`Builder`]) sits at the root with the [`Balancer`] trait; the policies in two families,
//! [`spread`] (request-spreading) and [`hash`] (consistent hashing), one module per policy
//! with its algorithm, cost and when to choose it; a shared engine (snapshots, accounting,
//! passive health) that every policy runs on and that no policy reaches around.
#![deny(missing_docs)]
#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod backend;
pub mod builder;
mod clock;
pub mod docs;
mod engine;
mod error;
pub mod hash;
pub mod health;
pub mod observe;
mod placement;
mod report;
mod request;
#[cfg(feature = "tower")]
#[cfg_attr(docsrs, doc(cfg(feature = "tower")))]
pub mod service;
pub mod spread;
mod status;
pub mod subset;
pub mod topology;

/// Hooks for the loom models of tests/loom.rs: built only under `--cfg lbkit_loom`, never part
/// of the public API.
#[cfg(lbkit_loom)]
#[doc(hidden)]
pub use engine::sync::loom_model::hooks as loom_hooks;

pub use backend::{Backend, Health};
pub use builder::Builder;
pub use clock::{Clock, ManualClock, MonotonicClock};
pub use engine::core::MAX_BACKENDS;
pub use engine::pick::{Member, Pick};
pub use error::{Error, NoPick};
pub use hash::{jump_hash, HashRing, JumpHash, Maglev, Preset, PresetRing, Rendezvous};
pub use health::{
    Failure, FailureClasses, FailurePercentageEjection, HealthConfig, OutlierDetection, SlowStart,
    SoftHealth, SuccessRateEjection,
};
pub use observe::{Ejection, Event, Observer, TrafficShare};
pub use report::{LoadReport, LoadSignal};
pub use request::{Request, MAX_COST};
pub use spread::{ClientSideWeightedRoundRobin, WeightedRoundRobin, SCHEDULE_LIMIT};
pub use spread::{First, LeastConnections, PeakEwma, PowerOfTwoChoices, Random, RoundRobin};
pub use spread::{Prequal, PrequalConfig};
pub use status::{FailureCounts, Status};
pub use subset::{Aperture, RendezvousSubset, Subset};
pub use topology::Topology;

/// The README's examples, compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;

/// A load balancer: chooses a backend for each request.
///
/// Object safe, `Send + Sync`, and every method takes `&self`, so one balancer serves every
/// thread of a service as an `Arc<dyn Balancer<T>>`. Picks never block; `update`,
/// `set_health`, `set_health_config`, `set_topology` and `set_subset` serialise among
/// themselves and never block picks.
pub trait Balancer<T>: Send + Sync {
    /// Chooses a backend for `request` and counts the request in flight on it until the
    /// returned [`Pick`] is dropped. `None` when no backend can take it; the same as
    /// [`try_pick`](Balancer::try_pick)`(request).ok()`.
    fn pick(&self, request: &Request<'_>) -> Option<Pick<T>> {
        self.try_pick(request).ok()
    }

    /// Chooses a backend for `request` as [`pick`](Balancer::pick) does, and says why when
    /// there is none: [`NoPick::Empty`] (the set has no backend), then
    /// [`NoPick::NoneEligible`] (every backend is down, draining, of weight 0 or ejected),
    /// then [`NoPick::AllAtCapacity`] (eligible backends exist, each at its
    /// [`max_in_flight`](Backend::with_max_in_flight) cap), in that order of precedence.
    ///
    /// Cost: the same as `pick`; the reason is known from the snapshot the pick read.
    ///
    /// ```
    /// use lbkit::{Backend, Balancer, NoPick, Request, RoundRobin};
    /// let lb = RoundRobin::new([Backend::new("a", 1).with_max_in_flight(1)])?;
    /// let held = lb.try_pick(&Request::new()).expect("a has room");
    /// assert_eq!(lb.try_pick(&Request::new()).unwrap_err(), NoPick::AllAtCapacity);
    /// drop(held);
    /// assert!(lb.try_pick(&Request::new()).is_ok());
    /// # Ok::<(), lbkit::Error>(())
    /// ```
    fn try_pick(&self, request: &Request<'_>) -> Result<Pick<T>, NoPick>;

    /// Up to `n` distinct eligible backends in preference order, for retries, hedging or
    /// replication. The first is the one [`pick`](Balancer::pick) would choose. Each is
    /// counted in flight until its pick is dropped.
    ///
    /// Backends at their [`max_in_flight`](Backend::with_max_in_flight) cap are left out. A
    /// [preferred](Request::prefer) backend that may be honoured comes first; then the
    /// backends not [avoided](Request::avoid), in the policy's order; then the avoided ones,
    /// in the policy's order. A backend that another thread fills between the choice and
    /// its acquire is left out too, so the result can be shorter than `n` under contention.
    fn pick_n(&self, request: &Request<'_>, n: usize) -> Vec<Pick<T>>;

    /// Replaces the whole backend set at once. Backends whose id stays keep their in-flight
    /// count and health; new ones start [`Health::Up`]. A backend given
    /// [`with_health`](Backend::with_health) takes that health, new or kept.
    ///
    /// # Errors
    /// [`Error::EmptyId`], [`Error::DuplicateId`], [`Error::TooManyBackends`],
    /// [`Error::InvalidConfig`] (`"max_in_flight"`) for a cap of 0
    /// ([`Backend::with_max_in_flight`]), and the policy's own (see its constructor). On
    /// error nothing changes.
    fn update(&self, backends: Vec<Backend<T>>) -> Result<(), Error>;

    /// Sets the health of the backend with this id.
    ///
    /// # Errors
    /// [`Error::UnknownId`] if no backend has this id; then nothing changes.
    fn set_health(&self, id: &str, health: Health) -> Result<(), Error>;

    /// Replaces the passive-health rules (outlier ejection, panic threshold, slow start)
    /// while the balancer serves; the same rules [`Builder::health`] sets from the start. A
    /// new clock restarts everything measured in time (ejections, ramps, latency estimates,
    /// load reports and load-aware samples); a rule switched off ends what it started.
    ///
    /// The clock is the same only when `config` is a clone of the configuration in use, or
    /// derived from one with the builder methods other than [`HealthConfig::clock`] (clones
    /// share their clock); `HealthConfig::new()` and `.clock(..)` make a new one. So keep the
    /// configuration you built and change a clone of it:
    ///
    /// ```
    /// use lbkit::{Backend, Balancer, HealthConfig, OutlierDetection, RoundRobin};
    /// let config = HealthConfig::new().outlier_detection(OutlierDetection::default());
    /// let lb = RoundRobin::builder()
    ///     .health(config.clone())
    ///     .build([Backend::new("a", ()), Backend::new("b", ())])?;
    /// // Ejections in progress go on under the new threshold.
    /// let stricter = OutlierDetection { consecutive_failures: 3, ..OutlierDetection::default() };
    /// lb.set_health_config(config.clone().outlier_detection(stricter))?;
    /// // Ejections end; the ramps and latency estimates measured so far stay.
    /// lb.set_health_config(config.without_outlier_detection())?;
    /// # Ok::<(), lbkit::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] naming the first value out of range; then nothing changes.
    fn set_health_config(&self, config: HealthConfig) -> Result<(), Error>;

    /// Replaces how the localities of each priority level share its traffic (see
    /// [`Topology`]); the same value [`Builder::topology`] sets from the start. An update
    /// like any other: atomic, in-flight picks still counted.
    ///
    /// ```
    /// use lbkit::{Backend, Balancer, RoundRobin, Topology};
    /// let lb = RoundRobin::new([
    ///     Backend::new("a", ()).with_locality("zone-a"),
    ///     Backend::new("b", ()).with_locality("zone-b"),
    /// ])?;
    /// lb.set_topology(Topology::locality_weights([("zone-a", 3), ("zone-b", 1)]))?;
    /// assert!(lb.set_topology(Topology::locality_weights([("", 1)])).is_err());
    /// # Ok::<(), lbkit::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] with parameter `"locality"` for an empty or repeated locality
    /// name; then nothing changes.
    fn set_topology(&self, topology: Topology) -> Result<(), Error>;

    /// Takes a backend's report of its own load ([`LoadReport`]), out of band (a stream the
    /// caller owns; for the report that came with a pick's answer, [`Pick::report_load`]
    /// needs no lookup). What each backend reported last is kept, with the time it came (the
    /// balancer's clock), for what reads it: its utilisation for
    /// [`Topology::load_aware_reported`](crate::Topology::load_aware_reported), its qps,
    /// errors and utilisation for [`ClientSideWeightedRoundRobin`]'s weight, its load for a
    /// [`LoadSignal`] other than the default. A figure nothing reads is kept and does
    /// nothing.
    ///
    /// Cost: a lookup of the id in the current snapshot, a clock read and a few atomic stores
    /// on the backend's own line, no lock (for a backend outside the subset, under the
    /// writer lock).
    ///
    /// # Errors
    /// [`Error::UnknownId`] for an id not in the set, [`Error::InvalidReport`] for a field out
    /// of range; then nothing changes.
    fn report_load(&self, id: &str, report: LoadReport) -> Result<(), Error>;

    /// Replaces the subset rule ([subsetting](crate::subset)): which backends of the set this client uses
    /// (deterministic aperture, rendezvous subsetting, or all). A new coordinate (this client's
    /// index or the fleet's size changed) is an update like any other: atomic, in-flight
    /// picks still counted, states of the backends that stay kept.
    ///
    /// ```
    /// use lbkit::{Aperture, Backend, Balancer, RoundRobin, Subset};
    /// let lb = RoundRobin::new((0..40).map(|i| Backend::new(format!("b{i}"), ())))?;
    /// assert_eq!(lb.status().len(), 40);
    /// lb.set_subset(Subset::Aperture(Aperture::new(3, 20)))?;
    /// assert!(lb.status().len() < 40);
    /// assert!(lb.set_subset(Subset::Aperture(Aperture::new(20, 20))).is_err());
    /// # Ok::<(), lbkit::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] for `peer_count` 0 (or above 2^32 - 1), `peer_index >=
    /// peer_count`, a `min_aperture` or `subset_size` of 0; then nothing changes.
    fn set_subset(&self, subset: Subset) -> Result<(), Error>;

    /// Every backend's id, weight, in-flight count and health, in id order (under a
    /// [subsetting](crate::subset) rule, the subset's backends, with their coverage), with
    /// what the balancer counted and learned of it (see [`Status`]). Then the backends that
    /// are no longer members but still hold picks: those outside the subset (coverage 0),
    /// then those removed ([`Status::is_removed`]), each in id order, until their last pick
    /// is dropped.
    ///
    /// Cost: one pass over the set, under the writer lock (which picks never wait for).
    fn status(&self) -> Vec<Status>;

    /// Records the balancer's counters and gauges now through the `metrics` facade, if it was
    /// built with `Builder::metrics` (the `metrics` feature);
    /// otherwise does nothing. Busy balancers' picks record them once per interval anyway
    /// (checked once every 1024 picks of a backend): call this on a timer, or from the task
    /// that serves scrapes, so that a quiet balancer's counters and gauges are fresh too.
    fn export_metrics(&self) {}

    /// The current backends and their values, in id order, as the latest update gave them
    /// (under a [subsetting](crate::subset) rule, the subset's): no second copy of the set to keep in
    /// step with the balancer.
    fn backends(&self) -> Vec<Member<T>>;
}

impl<T> std::fmt::Debug for dyn Balancer<T> + '_ {
    /// The status of every backend.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Balancer")
            .field("backends", &self.status())
            .finish()
    }
}
