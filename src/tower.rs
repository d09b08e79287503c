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
//! use lbkit::tower::Balance;
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
//!    [`pick_n`](Balancer::pick_n) (the policy's preference order: the ring walk for
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
//! * [`poll_ready`](Service::poll_ready) applies pending membership changes, polls every inner
//!   service that is not ready yet (registering the task's waker with each), and returns
//!   `Ready` as soon as one **eligible** backend (see [`Status::is_eligible`]) has a ready
//!   inner service. It returns `Pending` only while every eligible backend's inner service
//!   is pending (their wakers wake the task) or while the set is empty (a membership change
//!   wakes it). If no backend is eligible at all (all down or ejected), it returns `Ready`
//!   and `call` fails at once with [`Unavailable::NoEligibleBackend`]: health changes with
//!   time and reports, which wake no task, so waiting would hang. For the same reason a task
//!   waiting on pending eligible services does not notice a ready one becoming eligible (an
//!   ejection ending) until one of them, or a membership change, wakes it.
//! * [`call`](Service::call) routes as above among the ready inner services only, and spends
//!   that service's readiness; it is polled again by the next `poll_ready`. If the picture
//!   changed in between (another task's reports ejected the only ready backend), the call
//!   fails with [`Unavailable::NoReadyBackend`] rather than call a service that was not
//!   polled ready.
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
//! `poll_ready` also reads [`Balancer::status`] (O(backends)) to know which are eligible;
//! when the key's first choice is not ready, `call` asks for [`pick_n`](Balancer::pick_n)
//! over every backend.
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

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use ahash::AHashMap;
use parking_lot::Mutex;
use pin_project_lite::pin_project;
use tower::discover::{Change, Discover};
use tower::{Layer, Service};

use crate::{Backend, Balancer, Clock, Health, MonotonicClock, Pick, Request};

/// The error type of [`Balance`]: the inner services' errors, boxed, or [`Unavailable`].
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Why a [`Balance`] could not send a request anywhere.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Unavailable {
    /// No backend is eligible: the set is empty, or every backend is down, draining,
    /// ejected or of weight 0.
    NoEligibleBackend,
    /// Backends are eligible, but none of their inner services was polled ready (the
    /// picture changed between `poll_ready` and `call`).
    NoReadyBackend,
}

impl fmt::Display for Unavailable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Unavailable::NoEligibleBackend => "no eligible backend",
            Unavailable::NoReadyBackend => "no eligible backend is ready",
        })
    }
}

impl std::error::Error for Unavailable {}

/// How a request is keyed: its placement hash, or `None` for "no key" (request-spreading
/// policies ignore keys; hashing policies spread keyless requests at random).
///
/// Implemented for every `Fn(&Req) -> Option<u64>` (annotate the closure's argument type:
/// `|req: &http::Request<Body>| ...`), and by [`NoKey`].
pub trait RequestKey<Req> {
    /// The request's placement hash, if it has a key.
    fn key(&self, request: &Req) -> Option<u64>;
}

impl<Req, F: Fn(&Req) -> Option<u64>> RequestKey<Req> for F {
    fn key(&self, request: &Req) -> Option<u64> {
        self(request)
    }
}

/// No request has a key: for request-spreading policies.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoKey;

impl<Req> RequestKey<Req> for NoKey {
    fn key(&self, _: &Req) -> Option<u64> {
        None
    }
}

/// What a completed response tells about its backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The backend served the request: reported with its latency ([`Pick::success`]).
    Success,
    /// The backend failed the request ([`Pick::failure`]): counts toward outlier ejection.
    Failure,
}

/// Tells successful responses from failed ones. An `Err` from the inner service is always a
/// failure; this decides for the `Ok` responses.
///
/// Implemented for every `Fn(&Response) -> Outcome`, and by [`OkIsSuccess`] (the default).
pub trait Classify<Response> {
    /// The outcome of this response.
    fn classify(&self, response: &Response) -> Outcome;
}

impl<Response, F: Fn(&Response) -> Outcome> Classify<Response> for F {
    fn classify(&self, response: &Response) -> Outcome {
        self(response)
    }
}

/// Every `Ok` response is a success; only errors are failures. The default [`Classify`].
#[derive(Debug, Clone, Copy, Default)]
pub struct OkIsSuccess;

impl<Response> Classify<Response> for OkIsSuccess {
    fn classify(&self, _: &Response) -> Outcome {
        Outcome::Success
    }
}

/// One registered service.
struct Registered<S> {
    weight: u32,
    /// Tells a replaced service (an insert under an existing id) from the one a handle holds.
    generation: u64,
    /// Set when a handle found this service broken (its `poll_ready` failed) and set the
    /// backend down; a new service under the id sets it up again.
    failed: bool,
    service: S,
}

struct Registry<S> {
    services: BTreeMap<Arc<str>, Registered<S>>,
    next_generation: u64,
    /// Tasks waiting in `poll_ready` for a membership change.
    waiters: Vec<Waker>,
}

struct Shared<B: ?Sized, S> {
    registry: Mutex<Registry<S>>,
    /// Bumped, under the registry lock, by every membership change.
    version: AtomicU64,
    balancer: Arc<B>,
}

/// One membership change, with the backend's id already made.
enum Edit<S> {
    Insert {
        id: Arc<str>,
        weight: u32,
        service: S,
    },
    Remove(Arc<str>),
}

impl<S> Edit<S> {
    fn from_change<K: fmt::Display>(change: Change<K, S>) -> Self {
        match change {
            Change::Insert(key, service) => Edit::Insert {
                id: key.to_string().into(),
                weight: 1,
                service,
            },
            Change::Remove(key) => Edit::Remove(key.to_string().into()),
        }
    }
}

/// The set of inner services of a [`Balance`] and of all its clones, by backend id. A cheap,
/// cloneable handle: keep one wherever membership changes come from.
///
/// Every change updates the balancer's backend set in the same step (a whole-set
/// [`Balancer::update`], so O(backends) per change; [`apply`](Membership::apply) takes a
/// batch for one update). In case of error nothing changes.
pub struct Membership<B: ?Sized, S> {
    shared: Arc<Shared<B, S>>,
}

impl<B: ?Sized, S> Clone for Membership<B, S> {
    fn clone(&self) -> Self {
        Membership {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<B: Balancer<()> + ?Sized, S> Membership<B, S> {
    /// Adds (or replaces) the backend `id` with weight 1, served by `service`.
    ///
    /// # Errors
    /// What [`Balancer::update`] rejects: an empty id, too many backends, the policy's own.
    pub fn insert(&self, id: impl Into<Arc<str>>, service: S) -> Result<(), crate::Error> {
        self.insert_weighted(id, 1, service)
    }

    /// Adds (or replaces) the backend `id` with this weight, served by `service`. A replaced
    /// backend keeps its in-flight count and health (a backend set down because its previous
    /// service broke comes back up).
    ///
    /// # Errors
    /// As [`insert`](Membership::insert).
    pub fn insert_weighted(
        &self,
        id: impl Into<Arc<str>>,
        weight: u32,
        service: S,
    ) -> Result<(), crate::Error> {
        self.edit(vec![Edit::Insert {
            id: id.into(),
            weight,
            service,
        }])
    }

    /// Removes the backend `id` (nothing happens if there is none). Requests in flight on it
    /// finish normally.
    ///
    /// # Errors
    /// What the policy's [`Balancer::update`] rejects for the smaller set.
    pub fn remove(&self, id: &str) -> Result<(), crate::Error> {
        self.edit(vec![Edit::Remove(id.into())])
    }

    /// Applies tower [`Change`]s in order, as one update of the balancer. The key's
    /// `Display` form is the backend id (a `SocketAddr` gives `"10.0.0.1:80"`); inserted
    /// backends have weight 1.
    ///
    /// # Errors
    /// As [`insert`](Membership::insert); then none of the changes is applied.
    pub fn apply<K: fmt::Display>(
        &self,
        changes: impl IntoIterator<Item = Change<K, S>>,
    ) -> Result<(), crate::Error> {
        self.edit(changes.into_iter().map(Edit::from_change).collect())
    }

    /// A future that applies every change of `discover` (any tower [`Discover`], that is any
    /// `TryStream` of [`Change`]s) as it comes, until the stream ends. Spawn it. Changes that
    /// arrive together are applied as one update.
    ///
    /// It resolves to `Ok(())` when the stream ends, or to the first error: the stream's, or
    /// a change the balancer rejects.
    pub fn discover<D>(&self, discover: D) -> Discovery<D, B, S>
    where
        D: Discover<Service = S>,
        D::Key: fmt::Display,
        D::Error: Into<BoxError>,
    {
        Discovery {
            discover,
            membership: self.clone(),
        }
    }

    /// The ids registered now, in order.
    pub fn ids(&self) -> Vec<Arc<str>> {
        self.shared
            .registry
            .lock()
            .services
            .keys()
            .cloned()
            .collect()
    }

    /// The balancer this membership feeds.
    pub fn balancer(&self) -> &Arc<B> {
        &self.shared.balancer
    }

    fn edit(&self, edits: Vec<Edit<S>>) -> Result<(), crate::Error> {
        if edits.is_empty() {
            return Ok(());
        }
        let mut registry = self.shared.registry.lock();
        // The new set's ids and weights first: if the balancer rejects it, nothing changes.
        let mut weights: BTreeMap<Arc<str>, u32> = registry
            .services
            .iter()
            .map(|(id, r)| (Arc::clone(id), r.weight))
            .collect();
        for edit in &edits {
            match edit {
                Edit::Insert { id, weight, .. } => {
                    weights.insert(Arc::clone(id), *weight);
                }
                Edit::Remove(id) => {
                    weights.remove(id);
                }
            }
        }
        let inserts = edits.iter().any(|e| matches!(e, Edit::Insert { .. }));
        if !inserts && weights.len() == registry.services.len() {
            // Only removals of ids that are not there: nothing to do.
            return Ok(());
        }
        let set = weights
            .into_iter()
            .map(|(id, weight)| Backend::new(id, ()).with_weight(weight))
            .collect();
        self.shared.balancer.update(set)?;
        for edit in edits {
            match edit {
                Edit::Insert {
                    id,
                    weight,
                    service,
                } => {
                    let generation = registry.next_generation;
                    registry.next_generation += 1;
                    let replaced = registry.services.insert(
                        Arc::clone(&id),
                        Registered {
                            weight,
                            generation,
                            failed: false,
                            service,
                        },
                    );
                    if replaced.is_some_and(|r| r.failed) {
                        // The id is in the set (it was just updated with it).
                        let _ = self.shared.balancer.set_health(&id, Health::Up);
                    }
                }
                Edit::Remove(id) => {
                    registry.services.remove(&id);
                }
            }
        }
        // Relaxed: handles read the registry under its lock; the version only tells them
        // to look, and a handle that misses a bump sees it at its next poll.
        self.shared.version.fetch_add(1, Ordering::Relaxed);
        for waker in registry.waiters.drain(..) {
            waker.wake();
        }
        Ok(())
    }

    /// A handle found the service `generation` of `id` broken: set the backend down, once.
    fn failed(&self, id: &str, generation: u64) {
        let mut registry = self.shared.registry.lock();
        if let Some(r) = registry.services.get_mut(id) {
            if r.generation == generation && !r.failed {
                r.failed = true;
                let _ = self.shared.balancer.set_health(id, Health::Down);
            }
        }
    }

    /// Wakes `waker` at the next change; at once if a change came after version `seen`.
    fn wait(&self, waker: &Waker, seen: u64) {
        let mut registry = self.shared.registry.lock();
        // Relaxed: changes bump the version under the lock held here.
        if self.shared.version.load(Ordering::Relaxed) != seen {
            waker.wake_by_ref();
        } else if !registry.waiters.iter().any(|w| w.will_wake(waker)) {
            registry.waiters.push(waker.clone());
        }
    }
}

impl<B: ?Sized, S> fmt::Debug for Membership<B, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Membership")
            .field(
                "ids",
                &self
                    .shared
                    .registry
                    .lock()
                    .services
                    .keys()
                    .collect::<Vec<_>>(),
            )
            .finish()
    }
}

pin_project! {
    /// Applies a tower [`Discover`] stream to a [`Membership`]; see
    /// [`Membership::discover`].
    #[must_use = "futures do nothing unless polled: spawn it"]
    pub struct Discovery<D, B: ?Sized, S> {
        #[pin]
        discover: D,
        membership: Membership<B, S>,
    }
}

impl<D, B, S> Future for Discovery<D, B, S>
where
    D: Discover<Service = S>,
    D::Key: fmt::Display,
    D::Error: Into<BoxError>,
    B: Balancer<()> + ?Sized,
{
    type Output = Result<(), BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        let mut batch = Vec::new();
        let end = loop {
            match this.discover.as_mut().poll_discover(cx) {
                Poll::Pending => break None,
                Poll::Ready(None) => break Some(Ok(())),
                Poll::Ready(Some(Err(e))) => break Some(Err(e.into())),
                Poll::Ready(Some(Ok(change))) => batch.push(Edit::from_change(change)),
            }
        };
        // Changes that came before an error or the end are applied all the same.
        if let Err(e) = this.membership.edit(batch) {
            return Poll::Ready(Err(e.into()));
        }
        match end {
            None => Poll::Pending,
            Some(result) => Poll::Ready(result),
        }
    }
}

impl<D, B: ?Sized, S> fmt::Debug for Discovery<D, B, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Discovery")
            .field("membership", &self.membership)
            .finish_non_exhaustive()
    }
}

/// One handle's own clone of a registered service.
struct Slot<S> {
    id: Arc<str>,
    service: S,
    generation: u64,
    /// Polled ready since its last call.
    ready: bool,
}

type InlineDiscovery = Pin<Box<dyn Future<Output = Result<(), BoxError>> + Send>>;

/// A tower [`Service`] that sends each request to one of its inner services, chosen by an
/// lbkit [`Balancer`]. See the [module docs](self) for routing, readiness and ownership.
///
/// `B` is the balancer (any policy, or `dyn Balancer<()>`), `S` the inner service, `F` the
/// [`RequestKey`], `C` the [`Classify`]. Errors are boxed ([`BoxError`]): the inner
/// service's, or an [`Unavailable`].
pub struct Balance<B: ?Sized, S, F, C = OkIsSuccess> {
    membership: Membership<B, S>,
    /// This handle's clones of the registered services.
    slots: Vec<Slot<S>>,
    /// Index into `slots` by backend id, of the usable ones (not found broken).
    local: AHashMap<Arc<str>, usize>,
    /// The indices of the usable services not polled ready since their last call.
    unready: Vec<usize>,
    /// How many local services are ready.
    ready: usize,
    /// The registry version `local` reflects (`u64::MAX`: none yet).
    seen: u64,
    key: F,
    classify: C,
    clock: Arc<dyn Clock>,
    discovery: Option<InlineDiscovery>,
}

impl<B: Balancer<()> + ?Sized, S, F> Balance<B, S, F> {
    /// A balance over no services yet: add them through [`membership`](Balance::membership)
    /// or [`discover`](Balance::discover). `balancer` should be empty (see the
    /// [module docs](self)); `key` gives each request's placement hash.
    pub fn new(balancer: Arc<B>, key: F) -> Self {
        let membership = Membership {
            shared: Arc::new(Shared {
                registry: Mutex::new(Registry {
                    services: BTreeMap::new(),
                    next_generation: 0,
                    waiters: Vec::new(),
                }),
                version: AtomicU64::new(0),
                balancer,
            }),
        };
        Balance {
            membership,
            slots: Vec::new(),
            local: AHashMap::new(),
            unready: Vec::new(),
            ready: 0,
            seen: u64::MAX,
            key,
            classify: OkIsSuccess,
            clock: Arc::new(MonotonicClock::new()),
            discovery: None,
        }
    }
}

impl<B: Balancer<()> + ?Sized, S, F, C> Balance<B, S, F, C> {
    /// This balance with responses classified by `classify` (an HTTP 5xx as a failure, say).
    pub fn classify<C2>(self, classify: C2) -> Balance<B, S, F, C2> {
        Balance {
            membership: self.membership,
            slots: self.slots,
            local: self.local,
            unready: self.unready,
            ready: self.ready,
            seen: self.seen,
            key: self.key,
            classify,
            clock: self.clock,
            discovery: self.discovery,
        }
    }

    /// This balance with latencies measured on `clock` (a [`ManualClock`](crate::ManualClock)
    /// in tests). The default is the system's monotonic clock.
    #[must_use]
    pub fn with_clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// This balance with membership fed by `discover` (a tower [`Discover`]: any
    /// `TryStream` of [`Change`]s), driven by this handle's `poll_ready` (as tower's own
    /// balancer does; for many handles, spawn [`Membership::discover`] instead). An error of
    /// the stream, or a change the balancer rejects, is returned by `poll_ready`.
    #[must_use]
    pub fn discover<D>(mut self, discover: D) -> Self
    where
        D: Discover<Service = S> + Send + 'static,
        D::Key: fmt::Display,
        D::Error: Into<BoxError>,
        B: Send + Sync + 'static,
        S: Send + 'static,
    {
        self.discovery = Some(Box::pin(self.membership.discover(discover)));
        self
    }

    /// The membership handle: insert and remove backends.
    pub fn membership(&self) -> &Membership<B, S> {
        &self.membership
    }

    /// The balancer: its [`status`](Balancer::status), health settings.
    pub fn balancer(&self) -> &Arc<B> {
        self.membership.balancer()
    }

    /// Brings `local` up to the registry: drops removed or replaced services, clones new ones.
    fn sync(&mut self)
    where
        S: Clone,
    {
        // Relaxed: only says whether to look; the registry is read under its lock.
        if self.membership.shared.version.load(Ordering::Relaxed) == self.seen {
            return;
        }
        let registry = self.membership.shared.registry.lock();
        // Exact under the lock: changes bump it while holding the lock.
        self.seen = self.membership.shared.version.load(Ordering::Relaxed);
        let mut kept: AHashMap<Arc<str>, Slot<S>> = AHashMap::new();
        for slot in self.slots.drain(..) {
            let current = registry
                .services
                .get(&slot.id)
                .is_some_and(|r| r.generation == slot.generation && !r.failed);
            if current && self.local.contains_key(&slot.id) {
                kept.insert(Arc::clone(&slot.id), slot);
            }
        }
        self.local.clear();
        self.unready.clear();
        self.ready = 0;
        for (id, r) in registry.services.iter().filter(|(_, r)| !r.failed) {
            let slot = kept.remove(id).unwrap_or_else(|| Slot {
                id: Arc::clone(id),
                service: r.service.clone(),
                generation: r.generation,
                ready: false,
            });
            let index = self.slots.len();
            if slot.ready {
                self.ready += 1;
            } else {
                self.unready.push(index);
            }
            self.local.insert(Arc::clone(id), index);
            self.slots.push(slot);
        }
    }

    /// The index of the slot of backend `id` if its service is usable and polled ready.
    fn ready_slot(&self, id: &str) -> Option<usize> {
        self.local.get(id).copied().filter(|&i| self.slots[i].ready)
    }
}

impl<B, S, F, C> Clone for Balance<B, S, F, C>
where
    B: Balancer<()> + ?Sized,
    S: Clone,
    F: Clone,
    C: Clone,
{
    /// Another handle on the same balancer and membership, with its own clones of the inner
    /// services (each polled ready by its own handle). An inline
    /// [`discover`](Balance::discover) stream stays with the original.
    fn clone(&self) -> Self {
        Balance {
            membership: self.membership.clone(),
            slots: Vec::new(),
            local: AHashMap::new(),
            unready: Vec::new(),
            ready: 0,
            seen: u64::MAX,
            key: self.key.clone(),
            classify: self.classify.clone(),
            clock: Arc::clone(&self.clock),
            discovery: None,
        }
    }
}

impl<B: ?Sized, S, F, C> fmt::Debug for Balance<B, S, F, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut ids: Vec<(&str, bool)> = self
            .local
            .iter()
            .map(|(id, &i)| (&**id, self.slots[i].ready))
            .collect();
        ids.sort_unstable();
        f.debug_struct("Balance")
            .field("services_ready", &ids)
            .finish_non_exhaustive()
    }
}

impl<B, S, F, C, Req> Service<Req> for Balance<B, S, F, C>
where
    B: Balancer<()> + ?Sized,
    S: Service<Req> + Clone,
    S::Error: Into<BoxError>,
    F: RequestKey<Req>,
    C: Classify<S::Response> + Clone,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future, C>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        if let Some(discovery) = &mut self.discovery {
            match discovery.as_mut().poll(cx) {
                Poll::Pending => {}
                Poll::Ready(Ok(())) => self.discovery = None,
                Poll::Ready(Err(e)) => {
                    self.discovery = None;
                    return Poll::Ready(Err(e));
                }
            }
        }
        self.sync();
        let mut i = 0;
        while i < self.unready.len() {
            let slot = &mut self.slots[self.unready[i]];
            match slot.service.poll_ready(cx) {
                Poll::Pending => i += 1,
                Poll::Ready(Ok(())) => {
                    slot.ready = true;
                    self.ready += 1;
                    self.unready.swap_remove(i);
                }
                Poll::Ready(Err(_)) => {
                    // Broken for good: never used again by this handle (the slot goes at
                    // the next sync), and the backend is set down for all.
                    self.local.remove(&slot.id);
                    self.membership.failed(&slot.id, slot.generation);
                    self.unready.swap_remove(i);
                }
            }
        }
        if self.unready.is_empty() && self.ready > 0 {
            // Every service is ready: any eligible backend will do (and with none, `call`
            // fails fast).
            return Poll::Ready(Ok(()));
        }
        if !self.local.is_empty() {
            let (mut eligible, mut eligible_ready) = (false, false);
            for status in self.membership.balancer().status() {
                if status.is_eligible() {
                    if let Some(&i) = self.local.get(status.id()) {
                        eligible = true;
                        eligible_ready |= self.slots[i].ready;
                    }
                }
            }
            if eligible_ready || !eligible {
                // A ready choice, or none to wait for: no waker would ever come for health.
                return Poll::Ready(Ok(()));
            }
        }
        // Wait for an inner service (their wakers are registered) or a membership change.
        self.membership.wait(cx.waker(), self.seen);
        Poll::Pending
    }

    fn call(&mut self, request: Req) -> Self::Future {
        let hash = self.key.key(&request);
        let lb_request = hash.map_or_else(Request::new, Request::with_hash);
        let balancer = self.membership.balancer();
        let Some(first) = balancer.pick(&lb_request) else {
            return ResponseFuture::unavailable(Unavailable::NoEligibleBackend, &self.classify);
        };
        let (pick, index) = match self.ready_slot(first.id()) {
            Some(index) => (first, index),
            None => {
                drop(first);
                let ready = balancer
                    .pick_n(&lb_request, self.local.len())
                    .into_iter()
                    .find_map(|p| self.ready_slot(p.id()).map(|i| (p, i)));
                match ready {
                    Some(found) => found,
                    None => {
                        return ResponseFuture::unavailable(
                            Unavailable::NoReadyBackend,
                            &self.classify,
                        )
                    }
                }
            }
        };
        let slot = &mut self.slots[index];
        slot.ready = false;
        let start = self.clock.now();
        let inner = slot.service.call(request);
        self.ready -= 1;
        self.unready.push(index);
        ResponseFuture {
            inner: Some(inner),
            pick: Some(Outstanding {
                pick,
                start,
                clock: Arc::clone(&self.clock),
            }),
            classify: self.classify.clone(),
            unavailable: None,
        }
    }
}

/// A request in flight: the pick, and when it started.
struct Outstanding {
    pick: Pick<()>,
    start: Duration,
    clock: Arc<dyn Clock>,
}

pin_project! {
    /// The response of a [`Balance`]: the inner service's response future, holding the
    /// backend's [`Pick`] until it completes. Dropping it releases the pick without a report.
    #[must_use = "futures do nothing unless polled"]
    pub struct ResponseFuture<Fut, C> {
        #[pin]
        inner: Option<Fut>,
        pick: Option<Outstanding>,
        classify: C,
        unavailable: Option<Unavailable>,
    }
}

impl<Fut, C: Clone> ResponseFuture<Fut, C> {
    fn unavailable(why: Unavailable, classify: &C) -> Self {
        ResponseFuture {
            inner: None,
            pick: None,
            classify: classify.clone(),
            unavailable: Some(why),
        }
    }
}

impl<Fut, C, T, E> Future for ResponseFuture<Fut, C>
where
    Fut: Future<Output = Result<T, E>>,
    E: Into<BoxError>,
    C: Classify<T>,
{
    type Output = Result<T, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        let Some(inner) = this.inner.as_mut().as_pin_mut() else {
            return match this.unavailable.take() {
                Some(why) => Poll::Ready(Err(why.into())),
                // Polled after completion.
                None => Poll::Pending,
            };
        };
        let result = match inner.poll(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(result) => result,
        };
        this.inner.set(None);
        if let Some(Outstanding { pick, start, clock }) = this.pick.take() {
            match result.as_ref().map(|r| this.classify.classify(r)) {
                Ok(Outcome::Success) => pick.success(clock.now().saturating_sub(start)),
                Ok(Outcome::Failure) | Err(_) => pick.failure(),
            }
        }
        Poll::Ready(result.map_err(Into::into))
    }
}

impl<Fut, C> fmt::Debug for ResponseFuture<Fut, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture")
            .field("backend", &self.pick.as_ref().map(|o| o.pick.id()))
            .field("unavailable", &self.unavailable)
            .finish_non_exhaustive()
    }
}

/// A [`Layer`] that turns a tower [`Discover`] stream of inner services into a [`Balance`]
/// over them, for `ServiceBuilder`:
///
/// ```
/// use std::sync::Arc;
/// use lbkit::tower::{BalanceLayer, NoKey};
/// use lbkit::{Balancer, LeastConnections};
/// use tower::discover::ServiceList;
/// use tower::{service_fn, ServiceBuilder};
///
/// let lb = Arc::new(LeastConnections::new(Vec::new())?);
/// let backends = ServiceList::new((0..3).map(|i| {
///     service_fn(move |x: u32| async move { Ok::<_, std::convert::Infallible>(x + i) })
/// }));
/// let balance = ServiceBuilder::new()
///     .layer(BalanceLayer::new(Arc::clone(&lb), NoKey))
///     .service(backends);
/// # drop(balance);
/// # Ok::<(), lbkit::Error>(())
/// ```
///
/// The discovery stream is driven by the balance's `poll_ready` (see
/// [`Balance::discover`]).
pub struct BalanceLayer<B: ?Sized, F, C = OkIsSuccess> {
    balancer: Arc<B>,
    key: F,
    classify: C,
    clock: Arc<dyn Clock>,
}

impl<B: Balancer<()> + ?Sized, F> BalanceLayer<B, F> {
    /// A layer balancing with `balancer` (empty; see the [module docs](self)), keying
    /// requests with `key`.
    pub fn new(balancer: Arc<B>, key: F) -> Self {
        BalanceLayer {
            balancer,
            key,
            classify: OkIsSuccess,
            clock: Arc::new(MonotonicClock::new()),
        }
    }
}

impl<B: ?Sized, F, C> BalanceLayer<B, F, C> {
    /// As [`Balance::classify`].
    pub fn classify<C2>(self, classify: C2) -> BalanceLayer<B, F, C2> {
        BalanceLayer {
            balancer: self.balancer,
            key: self.key,
            classify,
            clock: self.clock,
        }
    }

    /// As [`Balance::with_clock`].
    #[must_use]
    pub fn with_clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }
}

impl<B: ?Sized, F: Clone, C: Clone> Clone for BalanceLayer<B, F, C> {
    fn clone(&self) -> Self {
        BalanceLayer {
            balancer: Arc::clone(&self.balancer),
            key: self.key.clone(),
            classify: self.classify.clone(),
            clock: Arc::clone(&self.clock),
        }
    }
}

impl<B: ?Sized, F, C> fmt::Debug for BalanceLayer<B, F, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BalanceLayer").finish_non_exhaustive()
    }
}

impl<B, F, C, D> Layer<D> for BalanceLayer<B, F, C>
where
    B: Balancer<()> + ?Sized + Send + Sync + 'static,
    F: Clone,
    C: Clone,
    D: Discover + Send + 'static,
    D::Key: fmt::Display,
    D::Error: Into<BoxError>,
    D::Service: Send + 'static,
{
    type Service = Balance<B, D::Service, F, C>;

    fn layer(&self, discover: D) -> Self::Service {
        let mut balance = Balance::new(Arc::clone(&self.balancer), self.key.clone())
            .classify(self.classify.clone())
            .discover(discover);
        balance.clock = Arc::clone(&self.clock);
        balance
    }
}
