//! lbkit as a [tower](https://docs.rs/tower) middleware: every policy balancing over inner
//! services, fed by service discovery. Behind the `tower` cargo feature.
//!
//! tower's own `balance` module offers power of two choices only, owned by one task
//! (`&mut self`), without weights or key affinity. [`Balance`] puts any lbkit [`Balancer`]
//! in front of one inner [`Service`] per backend:
//!
//! ```
//! # async fn demo() -> Result<(), tower::BoxError> {
//! use std::sync::Arc;
//! use lbkit::service::Balance;
//! use lbkit::HashRing;
//! use tower::{service_fn, Service, ServiceExt};
//!
//! // The backend set starts empty: the Balance owns membership.
//! let ring = Arc::new(HashRing::builder().load_factor(1.25).build(Vec::new())?);
//! // The key: the user id of the request, hashed with lbkit's pinned placement hash.
//! let mut balance = Balance::new(ring, |user: &String| Some(lbkit::hash::key_hash(user.as_bytes())));
//! for name in ["a", "b", "c"] {
//!     let backend = service_fn(move |user: String| async move {
//!         Ok::<_, std::convert::Infallible>(format!("{name} serves {user}"))
//!     });
//!     balance.membership().insert(name, backend)?;
//! }
//! let reply = balance.ready().await?.call("user-42".to_owned()).await?;
//! assert!(reply.ends_with("serves user-42"));
//! # Ok(()) }
//! # let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
//! # runtime.block_on(demo()).unwrap();
//! ```
//!
//! # How a request is routed
//!
//! 1. The key function (any `Fn(&Req) -> Option<u64>`, or [`NoKey`]) gives the request's
//!    placement hash; use [`hash::key_hash`](crate::hash::key_hash) on a header, a path or a
//!    user id so that every process agrees on placement.
//! 2. The balancer picks a backend. If that backend's inner service is ready, it gets the
//!    request. If not, the request goes to the first backend of
//!    [`pick_n`](crate::Balancer::pick_n) (the policy's preference order: the ring walk for
//!    [`HashRing`](crate::HashRing), the next-best for the others) whose inner service is
//!    ready. A slow backend is skipped, never waited on.
//! 3. The [`Pick`] is held by the [`ResponseFuture`] until the inner response future
//!    completes, so least connections, P2C, [`PeakEwma`](crate::PeakEwma) and bounded loads
//!    see the real load. On completion the pick reports [`Pick::success`] with the latency
//!    (measured on the [`Clock`] given to [`Balance::with_clock`]) or [`Pick::failure`]: an
//!    `Err` of the inner service, or a response that the [`Classify`] of
//!    [`Balance::classify`] calls a failure (an HTTP 5xx, say). Failures feed outlier
//!    ejection ([`HealthConfig`](crate::HealthConfig)). Dropping the response future before
//!    it completes (a timeout, a cancelled request) releases the pick without a report.
//!
//! # Readiness: the tower contract
//!
//! A tower service is polled ready before each `call`, and the readiness belongs to the
//! instance polled. The key, and so the backend, is known only in `call`, so readiness cannot
//! be reserved on the chosen backend ahead of time (tower's p2c can: it picks without a key).
//! [`Balance`] therefore keeps, per inner service, whether it has been polled ready since its
//! last call, and:
//!
//! * [`poll_ready`](tower::Service::poll_ready) applies pending membership changes, polls every inner
//!   service that is not ready yet (registering the task's waker with each), and returns
//!   `Ready` as soon as one **eligible** backend has a ready inner service: one that is up,
//!   not ejected and of weight above 0 ([`Status::is_eligible`]), or, past the
//!   [panic threshold](crate::health), any that is not draining and of weight above 0, down
//!   and ejected ones included, as the balancer itself picks. It returns `Pending` only
//!   while every eligible backend's inner service is pending (their wakers wake the task)
//!   or while the set is empty (a membership change wakes it). If no eligible backend has
//!   an inner service to wait for (all down or ejected), it returns `Ready` and `call`
//!   fails at once with [`Unavailable::NoEligibleBackend`] (or
//!   [`NoReadyBackend`](Unavailable::NoReadyBackend)): health changes with time and
//!   reports, which wake no task, so waiting would hang. For the same reason a task waiting
//!   on pending eligible services does not notice a ready one becoming eligible (an
//!   ejection ending) until one of them, or a membership change, wakes it.
//! * [`call`](tower::Service::call) routes as above among the ready inner services only,
//!   walking the policy's preference order over every eligible backend until one has a
//!   ready service, and spends that service's readiness; it is polled again by the next
//!   `poll_ready`. So when `poll_ready` returned `Ready` because a ready service exists, the
//!   call finds it. If the picture changed in between (another task's reports ejected the
//!   only ready backend), the call fails with [`Unavailable::NoReadyBackend`] rather than
//!   call a service that was not polled ready.
//! * An inner service whose `poll_ready` fails is broken for good (tower's convention): it
//!   is dropped and its backend set [`Health::Down`]; inserting a new service under its id
//!   brings it back up.
//!
//! Costs: when every inner service is ready (clients that multiplex, like HTTP/2 channels or
//! a `Buffer`), `poll_ready` polls only the service the last call used, and a request costs
//! one pick, one hash-map lookup by id, two clock reads (start and completion) and the
//! report. Over always-ready mock services that is about 0.7x the time of tower's own
//! `p2c::Balance` per request, for the same P2C choice (`benches/tower.rs`: 180 to 280 ns
//! against 250 to 400 ns on a busy 2-core machine). While some services are pending,
//! `poll_ready` also reads [`Balancer::status`] (O(backends)) to know which are eligible
//! (and, only when a backend that is down or ejected makes the panic threshold decide,
//! [`pick_n`](crate::Balancer::pick_n) over every backend, whose picks it drops at once);
//! when the key's first choice is not ready, `call` asks for
//! [`pick_n`](crate::Balancer::pick_n) over every backend.
//!
//! # Ownership: one registry, one set of clones per handle
//!
//! The services are registered by id in a [`Membership`] (insert, remove, or a tower
//! [`Discover`] stream through [`Membership::discover`] or [`BalanceLayer`]); each change
//! updates the balancer's backend set (values `()`, ids and weights) in the same step. The
//! balancer only chooses, and keeps in-flight counts, health and latency per id; the
//! services live beside it. Inner services must be `Clone` (wrap one that is not in
//! `tower::buffer::Buffer`): a [`Balance`] handle keeps its own clone of each, with its own
//! readiness, and cloning the handle (to give one to each task, with no `Buffer` in front)
//! shares the balancer and the registry, so every handle's picks count on the same backends.
//! A removed backend's service is dropped from each handle at its next `poll_ready`;
//! requests already sent to it finish normally and release their picks.
//!
//! The balancer must be given to [`Balance::new`] empty, or with backends that the
//! membership will replace: the first membership change replaces its whole set, and a
//! backend without a service is never called. Health can still be set on it from outside
//! ([`Balancer::set_health`]: draining a backend, say).
//!
//! [`Status::is_eligible`]: crate::Status::is_eligible
//! [`Health::Down`]: crate::Health::Down
//! [`Balancer`]: crate::Balancer
//! [`Balancer::pick_n`]: crate::Balancer::pick_n
//! [`Balancer::status`]: crate::Balancer::status
//! [`Balancer::set_health`]: crate::Balancer::set_health
//! [`Pick`]: crate::Pick
//! [`Pick::success`]: crate::Pick::success
//! [`Pick::failure`]: crate::Pick::failure
//! [`Clock`]: crate::Clock
//! [`Service`]: tower::Service
//! [`Discover`]: tower::discover::Discover

mod balance;
mod classify;
mod error;
mod future;
mod key;
mod layer;
mod ready;
mod registry;

pub use balance::Balance;
pub use classify::{Classify, OkIsSuccess, Outcome};
pub use error::Unavailable;
pub use future::ResponseFuture;
pub use key::{NoKey, RequestKey};
pub use layer::BalanceLayer;
pub use registry::{Discovery, Membership};
