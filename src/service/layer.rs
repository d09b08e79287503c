//! The [`Layer`] that builds a [`Balance`] from a tower [`Discover`] stream.

use std::fmt;
use std::sync::Arc;

use tower::discover::Discover;
use tower::{BoxError, Layer};

use super::{Balance, OkIsSuccess};
use crate::{Balancer, Clock, MonotonicClock};

/// A [`Layer`] that turns a tower [`Discover`] stream of inner services into a [`Balance`]
/// over them, for `ServiceBuilder`:
///
/// ```
/// use std::sync::Arc;
/// use lbkit::service::{BalanceLayer, NoKey};
/// use lbkit::LeastConnections;
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
    /// A layer balancing with `balancer` (empty; see the [module docs](super)), keying
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
        Balance::new(Arc::clone(&self.balancer), self.key.clone())
            .classify(self.classify.clone())
            .with_shared_clock(Arc::clone(&self.clock))
            .discover(discover)
    }
}
