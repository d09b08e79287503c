//! The [`Layer`] that builds a [`Balance`] from a tower [`Discover`] stream.

use std::fmt;
use std::sync::Arc;

use tower::discover::Discover;
use tower::{BoxError, Layer};

use super::{Balance, NoSteer, OkIsSuccess};
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
pub struct BalanceLayer<B: ?Sized, F, C = OkIsSuccess, St = NoSteer> {
    balancer: Arc<B>,
    key: F,
    classify: C,
    steer: St,
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
            steer: NoSteer,
            clock: Arc::new(MonotonicClock::new()),
        }
    }
}

impl<B: ?Sized, F, C, St> BalanceLayer<B, F, C, St> {
    /// As [`Balance::classify`].
    pub fn classify<C2>(self, classify: C2) -> BalanceLayer<B, F, C2, St> {
        BalanceLayer {
            balancer: self.balancer,
            key: self.key,
            classify,
            steer: self.steer,
            clock: self.clock,
        }
    }

    /// As [`Balance::steer`].
    pub fn steer<St2>(self, steer: St2) -> BalanceLayer<B, F, C, St2> {
        BalanceLayer {
            balancer: self.balancer,
            key: self.key,
            classify: self.classify,
            steer,
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

impl<B: ?Sized, F: Clone, C: Clone, St: Clone> Clone for BalanceLayer<B, F, C, St> {
    fn clone(&self) -> Self {
        BalanceLayer {
            balancer: Arc::clone(&self.balancer),
            key: self.key.clone(),
            classify: self.classify.clone(),
            steer: self.steer.clone(),
            clock: Arc::clone(&self.clock),
        }
    }
}

impl<B: ?Sized, F, C, St> fmt::Debug for BalanceLayer<B, F, C, St> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BalanceLayer").finish_non_exhaustive()
    }
}

impl<B, F, C, St, D> Layer<D> for BalanceLayer<B, F, C, St>
where
    B: Balancer<()> + ?Sized + Send + Sync + 'static,
    F: Clone,
    C: Clone,
    St: Clone,
    D: Discover + Send + 'static,
    D::Key: fmt::Display,
    D::Error: Into<BoxError>,
    D::Service: Send + 'static,
{
    type Service = Balance<B, D::Service, F, C, St>;

    fn layer(&self, discover: D) -> Self::Service {
        Balance::new(Arc::clone(&self.balancer), self.key.clone())
            .classify(self.classify.clone())
            .steer(self.steer.clone())
            .with_shared_clock(Arc::clone(&self.clock))
            .discover(discover)
    }
}
