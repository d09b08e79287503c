//! lbkit as a [tower](https://docs.rs/tower) middleware: every policy balancing over inner
//! services, fed by service discovery. Behind the `tower` cargo feature.
//!
//! tower's own `balance` module offers power of two choices only, owned by one task
//! (`&mut self`), without weights or key affinity. [`Balance`] puts any lbkit [`Balancer`]
//! in front of one inner [`Service`] per backend. The module is `service`, not `tower`, so
//! that `use lbkit::*` leaves the `tower` crate's path alone.
//!
//! | item | what it is |
//! |---|---|
//! | [`Balance`] | the `Service`: for each request, one pick and one inner service |
//! | [`Membership`] | the inner services by backend id, shared by every clone |
//! | [`Discovery`] | a tower `Discover` stream applied to a `Membership` |
//! | [`BalanceLayer`] | a `Layer` building a `Balance` from a `Discover` stream |
//! | [`RequestKey`], [`NoKey`] | how a request is keyed for the hashing policies |
//! | [`Classify`], [`Outcome`], [`OkIsSuccess`] | which responses are failures |
//! | [`Steer`], [`MarkServed`], [`NoSteer`] | what a request carries to steer its pick; marking responses |
//! | [`Attempts`] | the backends a request was sent to, shared by its retries |
//! | [`Served`] | the id of the backend that served a response |
//! | `HttpSteer` | [`Steer`] for `http` requests (the `http` cargo feature) |
//! | [`ResponseFuture`] | the response, holding the pick until it completes |
//! | [`Unavailable`] | why a request could not be sent anywhere |
//!
//! # An HTTP client over a hash ring
//!
//! The balancer chooses a backend id; the inner service of that backend sends the request.
//! With one hyper client shared by every backend, each backend's inner service is the client
//! aimed at its own address: it sets the scheme and authority of the request's URI, which
//! the caller wrote as a path only. The requests are keyed by their `x-user` header, so each
//! user's requests go to the same server while the set allows.
//!
//! lbkit's [`Request`](crate::Request) (what a balancer is asked to place) and http's share
//! a name: import lbkit's renamed, `use lbkit::Request as LbRequest;`.
//!
//! ```no_run
//! use std::sync::Arc;
//! use std::task::{Context, Poll};
//!
//! use bytes::Bytes;
//! use http_body_util::Full;
//! use hyper::body::Incoming;
//! use hyper::http::uri::{Authority, PathAndQuery, Scheme};
//! use hyper::{Request, Response, Uri};
//! use hyper_util::client::legacy::connect::HttpConnector;
//! use hyper_util::client::legacy::{Client, Error, ResponseFuture};
//! use hyper_util::rt::TokioExecutor;
//! use lbkit::Request as LbRequest;
//! use lbkit::{hash::key_hash, service::Balance, Balancer, HashRing};
//! use tower::{BoxError, Service, ServiceExt};
//!
//! /// One backend's inner service: the shared client, aimed at this backend.
//! #[derive(Clone)]
//! struct Upstream {
//!     client: Client<HttpConnector, Full<Bytes>>,
//!     authority: Authority,
//! }
//!
//! impl Service<Request<Full<Bytes>>> for Upstream {
//!     type Response = Response<Incoming>;
//!     type Error = Error;
//!     type Future = ResponseFuture;
//!
//!     fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
//!         self.client.poll_ready(cx)
//!     }
//!
//!     fn call(&mut self, mut request: Request<Full<Bytes>>) -> ResponseFuture {
//!         // The caller's path and query stay; scheme and authority become this backend's
//!         // (and hyper sets the Host header from them).
//!         let mut uri = std::mem::take(request.uri_mut()).into_parts();
//!         uri.scheme = Some(Scheme::HTTP);
//!         uri.authority = Some(self.authority.clone());
//!         if uri.path_and_query.is_none() {
//!             uri.path_and_query = Some(PathAndQuery::from_static("/"));
//!         }
//!         *request.uri_mut() = Uri::from_parts(uri).expect("scheme, authority and path are set");
//!         self.client.request(request)
//!     }
//! }
//!
//! #[tokio::main(flavor = "current_thread")]
//! async fn main() -> Result<(), BoxError> {
//!     // The backend set starts empty: the balance's membership fills it.
//!     let ring = Arc::new(HashRing::new(Vec::new())?);
//!     // The key: the pinned placement hash of the `x-user` header, which every process
//!     // computes alike.
//!     let user = |request: &Request<Full<Bytes>>| {
//!         let header = request.headers().get("x-user")?;
//!         Some(key_hash(header.as_bytes()))
//!     };
//!     let mut balance = Balance::new(Arc::clone(&ring), user);
//!     let client = Client::builder(TokioExecutor::new()).build_http();
//!     for address in ["10.0.0.1:8080", "10.0.0.2:8080", "10.0.0.3:8080"] {
//!         let upstream = Upstream {
//!             client: client.clone(),
//!             authority: address.parse()?,
//!         };
//!         balance.membership().insert(address, upstream)?;
//!     }
//!
//!     // The caller writes the path only: the balance chooses the server.
//!     let request = Request::get("/profile")
//!         .header("x-user", "user-42")
//!         .body(Full::new(Bytes::new()))?;
//!     let response = balance.ready().await?.call(request).await?;
//!
//!     // The ring alone, asked with lbkit's own request, places the same key on the same
//!     // server (while that server is ready and not ejected).
//!     let home = ring.pick(&LbRequest::with_key("user-42"));
//!     let home = home.as_ref().map(|pick| pick.id());
//!     println!("{} from {home:?}", response.status());
//!     Ok(())
//! }
//! ```
//!
//! `examples/tower_http.rs` runs the same client against three servers on loopback, with
//! outlier detection taking a stopped server out (`cargo run --example tower_http --features
//! tower`).
//!
//! # How a request is routed
//!
//! 1. The key function (any `Fn(&Req) -> Option<u64>`, or [`NoKey`]) gives the request's
//!    placement hash; use [`hash::key_hash`](crate::hash::key_hash) on a header, a path or a
//!    user id so that every process agrees on placement.
//! 2. The balancer picks a backend. If that backend's inner service is ready, it gets the
//!    request. If not, the request goes to the first backend of
//!    [`pick_n`](crate::Balancer::pick_n) over every eligible backend (the policy's
//!    preference order: the ring walk for [`HashRing`](crate::HashRing), the next-best for
//!    the others) whose inner service is ready. A slow backend is skipped, never waited on.
//!    The picks taken only to look (the first choice whose service is not ready, the rest of
//!    that walk, and the walk `poll_ready` makes in panic mode, below) are given back
//!    unused: each held its backend's in-flight slot for that instant and leaves no other
//!    trace, no latency observation for [`PeakEwma`](crate::PeakEwma) and
//!    [`Prequal`](crate::Prequal) (a backend skipped does not look faster for it), and no pick
//!    taken or dropped in [`Status`](crate::Status) and the metrics (while held, such a pick
//!    counts as taken and held; a reading then shows it, and the next no longer does). A
//!    bounded-loads spill is counted once per request, by its first choice.
//! 3. The [`Pick`] is held by the [`ResponseFuture`] until the inner response future
//!    completes, so least connections, P2C, [`PeakEwma`](crate::PeakEwma),
//!    [`Prequal`](crate::Prequal) and bounded loads
//!    see the real load. On completion the pick reports [`Pick::success`] with the latency
//!    (measured on the [`Clock`] given to [`Balance::with_clock`]) or a failure
//!    ([`Pick::failure_of`]): an `Err` of the inner service is a local-origin failure (no
//!    answer came), a response that the [`Classify`] of [`Balance::classify`] calls a
//!    failure is an error answer (an HTTP 5xx, say), and one it calls overloaded is an
//!    overload answer (a 429, with its `Retry-After`). Failures feed outlier ejection
//!    ([`HealthConfig`](crate::HealthConfig); overload answers only if it counts them). Dropping the response future before
//!    it completes (a timeout, a cancelled request) releases the pick without a report.
//!
//! # Retries, sticky sessions, and which backend served
//!
//! [`Balance::steer`] gives the balance a [`Steer`]: what it reads from each request to steer
//! the pick, and how it marks each response.
//!
//! * **Retries avoid the backends already tried.** A request that carries an [`Attempts`]
//!   record (put in before the first attempt; every retry's clone of the request shares it)
//!   is routed with [`Request::avoid`](crate::Request::avoid) over the backends recorded
//!   there, and the backend it is sent to is added. So tower's own `Retry` middleware, or
//!   any retry loop, sends a retry to a backend not yet tried while one can serve; a hashing
//!   policy walks on to the key's next backend for that request only (no other key moves).
//!   When every backend that can serve was tried, the attempt goes to one of them anyway.
//! * **Sticky sessions.** [`Steer::sticky`] gives the id the request's session sticks to (a
//!   cookie's value): the request goes there while that backend is up and not ejected, or
//!   draining, has room, and is not avoided ([`Request::prefer`](crate::Request::prefer));
//!   otherwise the policy chooses.
//! * **Which backend served.** [`MarkServed::mark`] is called on every `Ok` response with
//!   its backend's id, before it is classified: `HttpSteer` puts a [`Served`] in the
//!   response's extensions, so the caller can set its sticky cookie or log it.
//!
//! With the `http` cargo feature, `HttpSteer` does all three for `http::Request` and
//! `http::Response`: the record from the request's extensions, the sticky id from a header
//! or a cookie. For other request types, implement [`Steer`] and [`MarkServed`] (a few
//! lines; see [`Steer`]). Without a steer ([`NoSteer`], the default) nothing is read or
//! written and a request costs what it did.
//!
//! ```
//! # #[cfg(feature = "http")]
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), tower::BoxError> {
//! use std::sync::Arc;
//! use lbkit::service::{Attempts, Balance, HttpSteer, NoKey, Served};
//! use lbkit::RoundRobin;
//! use tower::{service_fn, Service, ServiceExt};
//!
//! let lb = Arc::new(RoundRobin::new(Vec::new())?);
//! let mut balance = Balance::new(lb, NoKey).steer(HttpSteer::new().sticky_cookie("backend"));
//! for name in ["a", "b", "c"] {
//!     let server = service_fn(move |_: http::Request<()>| async move {
//!         Ok::<_, std::convert::Infallible>(http::Response::new(name))
//!     });
//!     balance.membership().insert(name, server)?;
//! }
//! // A session pinned to "b" by its cookie.
//! let mut request = http::Request::get("/cart").header("cookie", "backend=b").body(())?;
//! let attempts = Attempts::new();
//! request.extensions_mut().insert(attempts.clone());
//! let response = balance.ready().await?.call(request).await?;
//! assert_eq!(response.extensions().get::<Served>().map(Served::id), Some("b"));
//!
//! // Its retry (sharing the record) avoids "b", cookie or not.
//! let mut retry = http::Request::get("/cart").header("cookie", "backend=b").body(())?;
//! retry.extensions_mut().insert(attempts.clone());
//! let response = balance.ready().await?.call(retry).await?;
//! assert_ne!(*response.body(), "b");
//! assert_eq!(attempts.len(), 2);
//! # Ok(())
//! # }
//! # #[cfg(not(feature = "http"))]
//! # fn main() {}
//! ```
//!
//! Cost: reading the record takes its lock and builds the avoid list (one small allocation
//! once the list is not empty); a sticky id is one header lookup; marking is one `Arc` clone
//! and an extension insert.
//!
//! # Readiness: the tower contract
//!
//! A tower service is polled ready before each `call`, and the readiness belongs to the
//! instance polled. The key, and so the backend, is known only in `call`, so readiness cannot
//! be reserved on the chosen backend ahead of time (tower's p2c can: it picks without a key).
//! [`Balance`] therefore keeps, per inner service, whether it has been polled ready since its
//! last call, and:
//!
//! * [`poll_ready`](tower::Service::poll_ready) applies pending membership changes, polls every
//!   inner service that is not ready yet (registering the task's waker with each), and returns
//!   `Ready` as soon as one **eligible** backend has a ready inner service: one that is up, not
//!   ejected and of weight above 0 ([`Status::is_eligible`]), or, past the [panic
//!   threshold](crate::health), any that is not draining and of weight above 0, down and ejected
//!   ones included, as the balancer itself picks. It returns `Pending` only while every eligible
//!   backend's inner service is pending (their wakers wake the task) or while the set is empty (a
//!   membership change wakes it: each handle leaves one waker for that, its latest task's, taken
//!   away when the handle is dropped). If no eligible backend has an inner service to wait for (all
//!   down or ejected), it returns `Ready` and `call` fails at once with
//!   [`Unavailable::NoEligibleBackend`] (or [`NoReadyBackend`](Unavailable::NoReadyBackend)):
//!   health changes with time and reports, which wake no task, so waiting would hang. For the same
//!   reason a task waiting on pending eligible services does not notice a ready one becoming
//!   eligible (an ejection ending) until one of them, or a membership change, wakes it.
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
//! `p2c::Balance` per request, for the same P2C choice (`cargo bench --bench tower
//! --features tower`, group `overhead/N`: `lbkit-p2c` against `tower-p2c`; figures in
//! `benches/README.md`). While some services are pending,
//! `poll_ready` also reads [`Balancer::status`] (O(backends)) to know which are eligible
//! (and, only when a backend that is down or ejected makes the panic threshold decide,
//! [`pick_n`](crate::Balancer::pick_n) over every backend, whose picks it gives back unused);
//! when the key's first choice is not ready, `call` asks for
//! [`pick_n`](crate::Balancer::pick_n) over every backend. A `Pending` poll registers its
//! waker for membership changes in O(1), however many handles wait.
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
//! [`Pick::failure_of`]: crate::Pick::failure_of
//! [`Clock`]: crate::Clock
//! [`Service`]: tower::Service
//! [`Discover`]: tower::discover::Discover

mod balance;
mod classify;
mod error;
mod future;
#[cfg(feature = "http")]
mod http;
mod key;
mod layer;
mod ready;
mod registry;
mod steer;

pub use balance::Balance;
pub use classify::{Classify, OkIsSuccess, Outcome};
pub use error::Unavailable;
pub use future::ResponseFuture;
#[cfg(feature = "http")]
pub use http::HttpSteer;
pub use key::{NoKey, RequestKey};
pub use layer::BalanceLayer;
pub use registry::{Discovery, Membership};
pub use steer::{Attempts, MarkServed, NoSteer, Served, Steer};
