//! Weighted least connections.
//!
//! Each pick scans the eligible backends and takes the one with the lowest in-flight count
//! per unit of weight, compared exactly in integers (a/w_a < b/w_b as a*w_b < b*w_a, widened
//! to 128 bits). The scan starts at a rotating position (a per-thread cursor), so among equal
//! backends the first one found changes from pick to pick and equal backends take turns rather
//! than herding onto one. With sequential picks the choice is exact; with concurrent picks two
//! threads can read the same counts and choose the same backend, as in every least-connections
//! balancer that does not lock.
//!
//! **Failures as load** ([`Builder::failure_penalty`], off by default): a backend that fails
//! fast (connection refused, `429`) holds its requests only briefly, so it looks idle and
//! attracts more traffic. With a failure penalty `d`, each reported failure (of any kind)
//! weighs as one more request in flight, fading as exp(-age / `d`): in all, as one request
//! held for `d`. A backend that only fails stops drawing traffic before any ejection; one
//! that recovers is back to its share within a few `d`.
//!
//! **A load of your own** ([`Builder::load_signal`], off by default): backends that know their
//! load better than this client's count of requests (a queue other clients feed too, a
//! KV cache filling up) report it ([`LoadReport::load`](crate::LoadReport::load)), in band or
//! out of band, and [`LoadSignal::Reported`] compares that figure instead of requests in
//! flight, [`LoadSignal::Combined`] the two added (a reported 1 as `per_unit` requests). Still
//! per unit of weight and in integers (the figure kept in 1/1024ths), so ties and turns work as
//! with counts.
//!
//! Cost: O(n) per pick (one load per eligible backend, each on its own cache line, two with a
//! load signal); O(n) per update. Choose it for long-lived connections (WebSockets, streams, database sessions) and
//! mixed request costs; beyond a few hundred backends prefer
//! [`PowerOfTwoChoices`](crate::PowerOfTwoChoices), which is O(1) and nearly as good.

use crate::backend::Backend;
use crate::builder::Builder;
use crate::engine::core::{impl_balancer, Core};
use crate::engine::policy::Policy;
use crate::engine::sequence::Sequence;
use crate::engine::snapshot::{Eligible, Snapshot, View};
use crate::engine::state::State;
use crate::error::Error;
use crate::report::LoadSignal;
use crate::request::Request;
use crate::spread::choice::{Load, Loads, Signal};

/// Weighted least connections, ties broken round-robin.
///
/// ```
/// use lbkit::{Backend, Balancer, LeastConnections, Request};
/// let lb = LeastConnections::new([Backend::new("a", ()), Backend::new("b", ())])?;
/// let first = lb.pick(&Request::new()).unwrap();
/// let second = lb.pick(&Request::new()).unwrap();
/// assert_ne!(first.id(), second.id());
/// # Ok::<(), lbkit::Error>(())
/// ```
pub struct LeastConnections<T> {
    core: Core<T, FewestInFlight>,
}

impl<T: Send + Sync + 'static> LeastConnections<T> {
    /// A LeastConnections balancer over `backends` (the same as `LeastConnections::builder().build(backends)`).
    ///
    /// # Errors
    /// [`Error::EmptyId`], [`Error::DuplicateId`], [`Error::TooManyBackends`], and
    /// [`Error::InvalidConfig`] for a backend's `max_in_flight` of 0.
    pub fn new(backends: impl IntoIterator<Item = Backend<T>>) -> Result<Self, Error> {
        Builder::new(LeastConnectionsConfig::default()).build(backends)
    }
}

impl LeastConnections<()> {
    /// A builder, for passive health ([`Builder::health`]); its `build` makes a `LeastConnections<T>` of
    /// any `T` (this is a function of `LeastConnections<()>` only so that `LeastConnections::builder()` needs no type
    /// annotation).
    pub fn builder() -> Builder<LeastConnectionsConfig> {
        Builder::new(LeastConnectionsConfig::default())
    }
}

impl Builder<LeastConnectionsConfig> {
    /// Makes each reported failure weigh as one more request in flight, fading with time
    /// constant `penalty` (see the [module docs](crate::spread::least_connections)); off by
    /// default. A penalty below 1 ms is an error at `build`.
    ///
    /// ```
    /// use std::time::Duration;
    /// use lbkit::{Backend, Balancer, LeastConnections, Request};
    /// let lb = LeastConnections::builder()
    ///     .failure_penalty(Duration::from_secs(1))
    ///     .build([Backend::new("a", ()), Backend::new("b", ())])?;
    /// let pick = lb.pick(&Request::new()).unwrap();
    /// let failed = pick.id().to_owned();
    /// pick.failure();
    /// // Both are idle, but the one that just failed weighs as one request in flight.
    /// for _ in 0..4 {
    ///     assert_ne!(lb.pick(&Request::new()).unwrap().id(), failed);
    /// }
    /// # Ok::<(), lbkit::Error>(())
    /// ```
    pub fn failure_penalty(mut self, penalty: std::time::Duration) -> Self {
        self.config.failure_penalty = Some(penalty);
        self
    }

    /// What a backend's load is: requests in flight (the default), its own reported load, or
    /// both ([`LoadSignal`]; see the [module docs](crate::spread::least_connections)).
    pub fn load_signal(mut self, signal: LoadSignal) -> Self {
        self.config.load_signal = signal;
        self
    }

    /// Builds the balancer over `backends`.
    ///
    /// # Errors
    /// As [`LeastConnections::new`], and [`Error::InvalidConfig`] for a failure penalty
    /// below 1 ms, a [`LoadSignal::Combined`] factor out of range, or a health rule out of
    /// range.
    pub fn build<T: Send + Sync + 'static>(
        self,
        backends: impl IntoIterator<Item = Backend<T>>,
    ) -> Result<LeastConnections<T>, Error> {
        let policy = FewestInFlight {
            cursor: Sequence::counter(0),
            signal: Signal::new(self.config.failure_penalty, self.config.load_signal)?,
        };
        Ok(LeastConnections {
            core: self.core(policy, backends)?,
        })
    }
}

impl_balancer!(LeastConnections);

/// The configuration of [`LeastConnections`], the type parameter of
/// [`LeastConnections::builder`]'s [`Builder`]: the failure penalty
/// ([`Builder::failure_penalty`]) and the load signal ([`Builder::load_signal`]).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
#[non_exhaustive]
pub struct LeastConnectionsConfig {
    failure_penalty: Option<std::time::Duration>,
    load_signal: LoadSignal,
}

pub(crate) struct FewestInFlight {
    cursor: Sequence,
    signal: Signal,
}

impl FewestInFlight {
    /// The position (in `eligible`) of the least loaded among those `accept` allows,
    /// scanning from `start`: the first of the lightest in scan order. An idle backend
    /// cannot be beaten, so the scan stops there.
    #[inline]
    fn scan<L: Load>(
        eligible: &[Eligible],
        start: usize,
        load: impl Fn(&State) -> L,
        accept: impl Fn(usize) -> bool,
    ) -> Option<usize> {
        let n = eligible.len();
        let mut order = (start..n).chain(0..start);
        let mut best = order.find(|&p| accept(eligible[p].index))?;
        let (mut best_load, mut best_weight) = (load(&eligible[best].state), eligible[best].weight);
        for p in order {
            if best_load == L::ZERO {
                break;
            }
            let e = &eligible[p];
            if !accept(e.index) {
                continue;
            }
            let load = load(&e.state);
            if load.lighter(e.weight, best_load, best_weight) {
                (best, best_load, best_weight) = (p, load, e.weight);
            }
        }
        Some(best)
    }
}

impl<T> Policy<T> for FewestInFlight {
    type Table = ();
    const TABLE_USES_HEALTH: bool = false;

    fn build(&self, _: &View<'_, T>) -> Result<(), Error> {
        Ok(())
    }

    fn failure_load(&self) -> Option<std::time::Duration> {
        self.signal.failure_penalty
    }

    /// The lightest; those not accepted are left out of the scan.
    #[inline]
    fn choose(
        &self,
        snap: &Snapshot<T, ()>,
        _: &Request<'_>,
        accept: impl Fn(usize) -> bool,
    ) -> Option<usize> {
        let n = snap.eligible.len();
        if n == 0 {
            return None;
        }
        let start = (self.cursor.next() % n as u64) as usize;
        // Two loops, so that the plain one reads nothing but the counts.
        let best = if self.signal.is_plain() {
            Self::scan(&snap.eligible, start, |s| s.in_flight() as u64, accept)
        } else {
            let loads = Loads::new(&self.signal);
            Self::scan(&snap.eligible, start, |s| loads.of(s), accept)
        };
        Some(snap.eligible[best?].index)
    }

    fn choose_n(
        &self,
        snap: &Snapshot<T, ()>,
        _: &Request<'_>,
        n: usize,
        accept: impl Fn(usize) -> bool,
        out: &mut Vec<usize>,
    ) {
        let len = snap.eligible.len();
        if len == 0 {
            return;
        }
        let start = (self.cursor.next() % len as u64) as usize;
        // Read every count once, then order by load, ties by distance from the rotating start.
        let loads = Loads::new(&self.signal);
        let mut order: Vec<(usize, u128, u64)> = (0..len)
            .map(|k| (start + k) % len)
            .filter(|&p| accept(snap.eligible[p].index))
            .map(|p| {
                (
                    p,
                    loads.of(&snap.eligible[p].state),
                    snap.eligible[p].weight,
                )
            })
            .collect();
        order.sort_by(|a, b| {
            if a.1.lighter(a.2, b.1, b.2) {
                std::cmp::Ordering::Less
            } else if b.1.lighter(b.2, a.1, a.2) {
                std::cmp::Ordering::Greater
            } else {
                std::cmp::Ordering::Equal
            }
        });
        out.extend(
            order
                .iter()
                .take(n)
                .map(|&(p, _, _)| snap.eligible[p].index),
        );
    }
}
