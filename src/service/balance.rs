//! The [`Balance`] service: routes each request to the inner service of the backend its
//! balancer picks.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tower::discover::Discover;
use tower::{BoxError, Service};

use super::ready::ReadyCache;
use super::registry::Waiter;
use super::{
    Classify, MarkServed, Membership, NoSteer, OkIsSuccess, RequestKey, ResponseFuture, Steer,
    Unavailable,
};
use crate::{Balancer, Clock, Health, MonotonicClock, Pick, Request};

type InlineDiscovery = Pin<Box<dyn Future<Output = Result<(), BoxError>> + Send>>;

/// A tower [`Service`] that sends each request to one of its inner services, chosen by an
/// lbkit [`Balancer`]. See the [module docs](super) for routing, readiness and ownership.
///
/// `B` is the balancer (any policy, or `dyn Balancer<()>`), `S` the inner service, `F` the
/// [`RequestKey`], `C` the [`Classify`], `St` the [`Steer`] (retries, sticky sessions). Errors are boxed ([`tower::BoxError`]): the inner
/// service's, or an [`Unavailable`].
///
/// ```
/// use std::convert::Infallible;
/// use std::sync::Arc;
/// use lbkit::hash::key_hash;
/// use lbkit::service::Balance;
/// use lbkit::HashRing;
/// use tower::{service_fn, BoxError, Service, ServiceExt};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), BoxError> {
/// // The backend set starts empty: the balance's membership fills it.
/// let ring = Arc::new(HashRing::builder().load_factor(1.25).build(Vec::new())?);
/// // The key: the user id the request carries, hashed with lbkit's pinned placement hash.
/// let mut balance = Balance::new(ring, |user: &String| Some(key_hash(user.as_bytes())));
/// for name in ["a", "b", "c"] {
///     let backend = service_fn(move |user: String| async move {
///         Ok::<_, Infallible>(format!("{name} serves {user}"))
///     });
///     balance.membership().insert(name, backend)?;
/// }
/// let reply = balance.ready().await?.call("user-42".to_owned()).await?;
/// assert!(reply.ends_with("serves user-42"));
/// # Ok(())
/// # }
/// ```
pub struct Balance<B: ?Sized, S, F, C = OkIsSuccess, St = NoSteer> {
    membership: Membership<B, S>,
    /// This handle's waker slot, for a task waiting on a membership change.
    waiter: Waiter,
    /// This handle's clones of the registered services, and which are ready.
    services: ReadyCache<S>,
    key: F,
    classify: C,
    steer: St,
    clock: Arc<dyn Clock>,
    discovery: Option<InlineDiscovery>,
}

impl<B: Balancer<()> + ?Sized, S, F> Balance<B, S, F> {
    /// A balance over no services yet: add them through [`membership`](Balance::membership)
    /// or [`discover`](Balance::discover). `balancer` should be empty (see the
    /// [module docs](super)); `key` gives each request's placement hash.
    pub fn new(balancer: Arc<B>, key: F) -> Self {
        let membership = Membership::new(balancer);
        Balance {
            waiter: membership.waiter(),
            membership,
            services: ReadyCache::new(),
            key,
            classify: OkIsSuccess,
            steer: NoSteer,
            clock: Arc::new(MonotonicClock::new()),
            discovery: None,
        }
    }
}

impl<B: Balancer<()> + ?Sized, S, F, C, St> Balance<B, S, F, C, St> {
    /// This balance with responses classified by `classify` (an HTTP 5xx as a failure, say).
    pub fn classify<C2>(self, classify: C2) -> Balance<B, S, F, C2, St> {
        Balance {
            membership: self.membership,
            waiter: self.waiter,
            services: self.services,
            key: self.key,
            classify,
            steer: self.steer,
            clock: self.clock,
            discovery: self.discovery,
        }
    }

    /// This balance with requests steered by `steer`: retries that avoid the backends their
    /// request has already been sent to, sticky sessions, responses marked with their
    /// backend. See [`Steer`], and `HttpSteer` for `http` requests.
    pub fn steer<St2>(self, steer: St2) -> Balance<B, S, F, C, St2> {
        Balance {
            membership: self.membership,
            waiter: self.waiter,
            services: self.services,
            key: self.key,
            classify: self.classify,
            steer,
            clock: self.clock,
            discovery: self.discovery,
        }
    }

    /// This balance with latencies measured on `clock` (a [`ManualClock`](crate::ManualClock)
    /// in tests). The default is the system's monotonic clock.
    #[must_use]
    pub fn with_clock(self, clock: impl Clock) -> Self {
        self.with_shared_clock(Arc::new(clock))
    }

    /// As [`with_clock`](Self::with_clock), with a clock already shared.
    pub(super) fn with_shared_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// This balance with membership fed by `discover` (a tower [`Discover`]: any
    /// `TryStream` of [`Change`](tower::discover::Change)s), driven by this handle's
    /// `poll_ready` (as tower's own balancer does; for many handles, spawn
    /// [`Membership::discover`] instead). An error of the stream, or a change the balancer
    /// rejects, is returned by `poll_ready`.
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

    /// Drives the inline discovery stream, if any. `Some` is the stream's end in error.
    fn poll_discovery(&mut self, cx: &mut Context<'_>) -> Option<BoxError> {
        let discovery = self.discovery.as_mut()?;
        match discovery.as_mut().poll(cx) {
            Poll::Pending => None,
            Poll::Ready(result) => {
                self.discovery = None;
                result.err()
            }
        }
    }

    /// Whether `poll_ready` should return `Ready` while some services are not ready, in
    /// agreement with what `call` can do: an eligible backend has a ready service (`call`
    /// finds it), or no eligible backend has a service here to wait for (`call` fails fast;
    /// no waker would ever come for health, so waiting would hang).
    ///
    /// [`Status::is_eligible`](crate::Status::is_eligible) tells health, weight and
    /// ejection, not the panic threshold: past it, every backend that could serve (weight
    /// above 0, not draining) is eligible again, down and ejected ones included. The truth
    /// is one of those two sets. When both give the same answer (always, unless a backend
    /// that is down or ejected has a ready service here, or the only pending ones are),
    /// the statuses decide; otherwise the balancer's own list of eligible backends does
    /// ([`pick_n`](Balancer::pick_n) over every backend, its picks given back unused).
    fn ready_or_nothing_to_wait_for(&self) -> bool {
        let balancer = self.membership.balancer();
        let statuses = balancer.status();
        let (mut healthy, mut could_serve) = (Tally::default(), Tally::default());
        for status in &statuses {
            let Some(ready) = self.services.is_ready(status.id()) else {
                continue;
            };
            if status.is_eligible() {
                healthy.count(ready);
            }
            if status.weight() > 0 && status.health() != Health::Draining {
                could_serve.count(ready);
            }
        }
        if healthy.ready_or_nothing_to_wait_for() == could_serve.ready_or_nothing_to_wait_for() {
            return healthy.ready_or_nothing_to_wait_for();
        }
        let mut eligible = Tally::default();
        // A look, not a request: no spill counted, every pick given back unused.
        let look = Request::new().without_spill_count();
        for pick in balancer.pick_n(&look, statuses.len()) {
            if let Some(ready) = self.services.is_ready(pick.id()) {
                eligible.count(ready);
            }
            pick.unused();
        }
        eligible.ready_or_nothing_to_wait_for()
    }
}

/// What this handle holds for a set of backends: whether any has a service here, and
/// whether any of those is ready.
#[derive(Default)]
struct Tally {
    services: bool,
    ready: bool,
}

impl Tally {
    fn count(&mut self, ready: bool) {
        self.services = true;
        self.ready |= ready;
    }

    /// A ready service to call, or none to wait for.
    fn ready_or_nothing_to_wait_for(&self) -> bool {
        self.ready || !self.services
    }
}

impl<B, S, F, C, St> Clone for Balance<B, S, F, C, St>
where
    B: Balancer<()> + ?Sized,
    S: Clone,
    F: Clone,
    C: Clone,
    St: Clone,
{
    /// Another handle on the same balancer and membership, with its own clones of the inner
    /// services (each polled ready by its own handle). An inline
    /// [`discover`](Balance::discover) stream stays with the original.
    fn clone(&self) -> Self {
        Balance {
            membership: self.membership.clone(),
            waiter: self.membership.waiter(),
            services: ReadyCache::new(),
            key: self.key.clone(),
            classify: self.classify.clone(),
            steer: self.steer.clone(),
            clock: Arc::clone(&self.clock),
            discovery: None,
        }
    }
}

impl<B: ?Sized, S, F, C, St> fmt::Debug for Balance<B, S, F, C, St> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Balance")
            .field("services_ready", &self.services)
            .finish_non_exhaustive()
    }
}

impl<B, S, F, C, St, Req> Service<Req> for Balance<B, S, F, C, St>
where
    B: Balancer<()> + ?Sized,
    S: Service<Req> + Clone,
    S::Error: Into<BoxError>,
    F: RequestKey<Req>,
    C: Classify<S::Response> + Clone,
    St: Steer<Req> + MarkServed<S::Response> + Clone,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future, C, St>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        if let Some(error) = self.poll_discovery(cx) {
            return Poll::Ready(Err(error));
        }
        // A service found broken while polling publishes a change (so that every handle drops
        // it): sync again, so that this handle waits from the version it has seen rather than
        // waking itself at once. A few rounds at most; past them the wait below wakes the
        // task at once, which is correct, only less efficient.
        for _ in 0..4 {
            self.services.sync(&self.membership);
            self.services.poll_unready(cx, &self.membership);
            if !self.membership.changed_since(self.services.seen()) {
                break;
            }
        }
        if self.services.all_ready() {
            // Every service is ready: any eligible backend will do (and with none, `call`
            // fails fast).
            return Poll::Ready(Ok(()));
        }
        if !self.services.is_empty() && self.ready_or_nothing_to_wait_for() {
            return Poll::Ready(Ok(()));
        }
        // Wait for an inner service (their wakers are registered) or a membership change.
        self.waiter
            .wait_for_change(cx.waker(), self.services.seen());
        Poll::Pending
    }

    fn call(&mut self, request: Req) -> Self::Future {
        let hash = self.key.key(&request);
        let keyed = hash.map_or_else(Request::new, Request::with_hash);
        let sticky = self.steer.sticky(&request).unwrap_or("");
        let lb_request = keyed.prefer(sticky);
        let routed = match self.steer.attempts(&request) {
            None => self.route(&lb_request),
            Some(attempts) => attempts.route(|tried| {
                let routed = self.route(&lb_request.avoid(tried));
                let sent_to = routed
                    .as_ref()
                    .ok()
                    .map(|(pick, _)| pick.shared_id().clone());
                (routed, sent_to)
            }),
        };
        let (pick, index) = match routed {
            Ok(routed) => routed,
            Err(why) => return ResponseFuture::unavailable(why, self.classify.clone()),
        };
        let start = self.clock.now();
        let response = self.services.call(index, request);
        ResponseFuture::new(
            response,
            pick,
            start,
            Arc::clone(&self.clock),
            self.classify.clone(),
            self.steer.clone(),
        )
    }
}

impl<B: Balancer<()> + ?Sized, S, F, C, St> Balance<B, S, F, C, St> {
    /// The pick for `request` and the index of its backend's ready service: the policy's
    /// choice if its service is ready here, else the first of the policy's preference order
    /// whose service is.
    ///
    /// The picks taken only to look (the first choice when its service is not ready, and
    /// every pick of the walk but the one used) are given back unused: no latency
    /// observation, not counted as taken or dropped, and the walk counts no second spill.
    fn route(&self, request: &Request<'_>) -> Result<(Pick<()>, usize), Unavailable> {
        let balancer = self.membership.balancer();
        let first = balancer
            .pick(request)
            .ok_or(Unavailable::NoEligibleBackend)?;
        if let Some(index) = self.services.ready_index(first.id()) {
            return Ok((first, index));
        }
        first.unused();
        // Walk the policy's whole preference order: it may hold backends this handle has no
        // service for (one found broken is eligible again past the panic threshold), so a
        // walk only as long as the services here could stop short of the ready one. Its first
        // choice is the one just given back, whose spill (if any) is counted already.
        let every = self.membership.backend_count().max(self.services.len());
        let mut routed = None;
        for pick in balancer.pick_n(&request.without_spill_count(), every) {
            if routed.is_none() {
                if let Some(index) = self.services.ready_index(pick.id()) {
                    routed = Some((pick, index));
                    continue;
                }
            }
            pick.unused();
        }
        routed.ok_or(Unavailable::NoReadyBackend)
    }
}
