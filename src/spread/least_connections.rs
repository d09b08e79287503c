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
//! Cost: O(n) per pick (one load per eligible backend, each on its own cache line); O(n) per
//! update. Choose it for long-lived connections (WebSockets, streams, database sessions) and
//! mixed request costs; beyond a few hundred backends prefer
//! [`PowerOfTwoChoices`](crate::PowerOfTwoChoices), which is O(1) and nearly as good.

use crate::backend::Backend;
use crate::builder::Builder;
use crate::engine::core::{impl_balancer, Core};
use crate::engine::policy::Policy;
use crate::engine::sequence::Sequence;
use crate::engine::snapshot::{Eligible, Snapshot, View};
use crate::error::Error;
use crate::request::Request;
use crate::spread::choice::lighter;

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
        Builder::new(LeastConnectionsConfig).build(backends)
    }
}

impl LeastConnections<()> {
    /// A builder, for passive health ([`Builder::health`]); its `build` makes a `LeastConnections<T>` of
    /// any `T` (this is a function of `LeastConnections<()>` only so that `LeastConnections::builder()` needs no type
    /// annotation).
    pub fn builder() -> Builder<LeastConnectionsConfig> {
        Builder::new(LeastConnectionsConfig)
    }
}

impl Builder<LeastConnectionsConfig> {
    /// Builds the balancer over `backends`.
    ///
    /// # Errors
    /// As [`LeastConnections::new`], and [`Error::InvalidConfig`] for a health rule out of range.
    pub fn build<T: Send + Sync + 'static>(
        self,
        backends: impl IntoIterator<Item = Backend<T>>,
    ) -> Result<LeastConnections<T>, Error> {
        let policy = FewestInFlight {
            cursor: Sequence::counter(0),
        };
        Ok(LeastConnections {
            core: Core::new(policy, backends, self.health)?,
        })
    }
}

impl_balancer!(LeastConnections);

/// The configuration of [`LeastConnections`], the type parameter of [`LeastConnections::builder`]'s [`Builder`]:
/// none of its own.
#[derive(Debug, Clone, Copy, Default)]
#[non_exhaustive]
pub struct LeastConnectionsConfig;

pub(crate) struct FewestInFlight {
    cursor: Sequence,
}

impl FewestInFlight {
    /// The position (in `eligible`) of the least loaded among those `accept` allows,
    /// scanning from `start`: the first of the lightest in scan order. An idle backend
    /// cannot be beaten, so the scan stops there.
    #[inline]
    fn scan(eligible: &[Eligible], start: usize, accept: impl Fn(usize) -> bool) -> Option<usize> {
        let n = eligible.len();
        let mut order = (start..n).chain(0..start);
        let mut best = order.find(|&p| accept(eligible[p].index))?;
        let (mut best_in_flight, mut best_weight) =
            (eligible[best].state.in_flight(), eligible[best].weight);
        for p in order {
            if best_in_flight == 0 {
                break;
            }
            let e = &eligible[p];
            if !accept(e.index) {
                continue;
            }
            let in_flight = e.state.in_flight();
            if lighter(in_flight, e.weight, best_in_flight, best_weight) {
                (best, best_in_flight, best_weight) = (p, in_flight, e.weight);
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
        Some(snap.eligible[Self::scan(&snap.eligible, start, accept)?].index)
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
        let mut order: Vec<(usize, usize, u64)> = (0..len)
            .map(|k| (start + k) % len)
            .filter(|&p| accept(snap.eligible[p].index))
            .map(|p| {
                (
                    p,
                    snap.eligible[p].state.in_flight(),
                    snap.eligible[p].weight,
                )
            })
            .collect();
        order.sort_by(|a, b| {
            if lighter(a.1, a.2, b.1, b.2) {
                std::cmp::Ordering::Less
            } else if lighter(b.1, b.2, a.1, a.2) {
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
