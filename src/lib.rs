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
//! | [`Random`] | weighted at random | O(1) | stateless spread |
//! | [`LeastConnections`] | fewest in flight per weight | O(n) | long-lived connections |
//! | [`PowerOfTwoChoices`] | lighter of two weighted draws | O(1) | the default for requests |
//! | [`PeakEwma`] | cheaper of two by latency x load | O(1) | backends whose latency varies |
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
//!   of the list ([`JumpHash`] alone numbers its buckets in list order, by design).
//! * **Accounting.** A [`Pick`] counts one request in flight until it is dropped, also across
//!   updates and after its backend was removed. Backends that stay keep their in-flight count
//!   and health.
//! * **Health.** Only backends that are [`Health::Up`] with weight above 0, and not ejected,
//!   get new picks (with a [panic threshold](health) configured, too few healthy backends
//!   make every backend that is not draining eligible again).
//! * **Feedback.** [`Pick::success`] and [`Pick::failure`] report outcomes; a
//!   [`HealthConfig`] (outlier ejection, panic threshold, slow start) acts on them for every
//!   policy, and [`PeakEwma`] balances on the latencies.
//! * **Errors.** Bad input gets a typed [`Error`] and changes nothing. An empty set is not an
//!   error: `pick` returns `None`.
//! * **Determinism.** Randomised policies have `with_seed`; placement hashes are pinned
//!   ([`hash`]). The hashing policies, their bounded loads and their exact placement are
//!   described in [`hash`].
#![deny(missing_docs)]
#![forbid(unsafe_code)]

mod alias;
mod backend;
mod clock;
mod error;
pub mod hash;
pub mod health;
mod least_connections;
mod membership;
mod peak_ewma;
mod pick;
mod power_of_two;
mod random;
mod request;
mod round_robin;
mod sequence;
#[cfg(feature = "tower")]
#[cfg_attr(docsrs, doc(cfg(feature = "tower")))]
pub mod service;
mod state;
mod weighted_round_robin;

pub use backend::{Backend, Health};
pub use clock::{Clock, ManualClock, MonotonicClock};
pub use error::Error;
pub use hash::{jump_hash, HashRing, HashRingBuilder, JumpHash, Maglev, MaglevBuilder};
pub use hash::{Preset, PresetRing, PresetRingBuilder, Rendezvous, RendezvousBuilder};
pub use health::{HealthConfig, OutlierDetection, SlowStart};
pub use least_connections::LeastConnections;
pub use membership::MAX_BACKENDS;
pub use peak_ewma::{PeakEwma, PeakEwmaConfig};
pub use pick::{Pick, Status};
pub use power_of_two::PowerOfTwoChoices;
pub use random::Random;
pub use request::Request;
pub use round_robin::RoundRobin;
pub use weighted_round_robin::{WeightedRoundRobin, SCHEDULE_LIMIT};

/// A load balancer: chooses a backend for each request.
///
/// Object safe, `Send + Sync`, and every method takes `&self`, so one balancer serves every
/// thread of a service as an `Arc<dyn Balancer<T>>`. Picks never block; `update` and
/// `set_health` serialise among themselves and never block picks.
pub trait Balancer<T>: Send + Sync {
    /// Chooses a backend for `request` and counts the request in flight on it until the
    /// returned [`Pick`] is dropped. `None` when no backend is eligible (the set is empty, or
    /// every backend is down, draining or of weight 0).
    fn pick(&self, request: &Request<'_>) -> Option<Pick<T>>;

    /// Up to `n` distinct eligible backends in preference order, for retries, hedging or
    /// replication. The first is the one [`pick`](Balancer::pick) would choose. Each is
    /// counted in flight until its pick is dropped.
    fn pick_n(&self, request: &Request<'_>, n: usize) -> Vec<Pick<T>>;

    /// Replaces the whole backend set at once. Backends whose id stays keep their in-flight
    /// count and health; new ones start [`Health::Up`].
    ///
    /// # Errors
    /// [`Error::EmptyId`], [`Error::DuplicateId`], [`Error::TooManyBackends`], and the
    /// policy's own (see its constructor). On error nothing changes.
    fn update(&self, backends: Vec<Backend<T>>) -> Result<(), Error>;

    /// Sets the health of the backend with this id.
    ///
    /// # Errors
    /// [`Error::UnknownId`] if no backend has this id; then nothing changes.
    fn set_health(&self, id: &str, health: Health) -> Result<(), Error>;

    /// Every backend's id, weight, in-flight count and health, in id order.
    fn status(&self) -> Vec<Status>;
}

/// A seed for policies built without one: std's per-process random hasher keys (not used
/// for placement) mixed with the clock.
fn entropy_seed() -> u64 {
    use std::hash::{BuildHasher, RandomState};
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    RandomState::new().hash_one(nanos)
}
