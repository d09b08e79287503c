//! Smooth weighted round robin, lock-free.
//!
//! nginx's smooth weighted round robin keeps a "current weight" per backend and mutates all of
//! them on every pick, under a lock. lbkit precomputes one period of an equally smooth
//! schedule when the set changes, and a pick just reads `schedule[cursor % period]`.
//!
//! The schedule is earliest-deadline-first: the backend at position p (of n, in id order) with
//! weight w has its k-th pick of each period due at (k + (2p + 1) / 2n) / w, and the period
//! lists all picks by due time (ties by id order). So, like nginx's, over each period of
//! sum(weights) picks every backend gets exactly its weight, and heavy backends are
//! interleaved with light ones rather than picked in a burst: weights 5, 1, 1 give
//! `a a a b a a c`. The phase (2p + 1) / 2n staggers the backends: with one phase for all,
//! every light backend would fall due at the same moment, and 5, 1, 1 would give
//! `a a a b c a a`, which repeated is `a a a a a b c`, the burst to avoid.
//!
//! Weights are first divided by their greatest common divisor. If the period would still
//! exceed [`SCHEDULE_LIMIT`] entries, weights are scaled down in proportion (each at least 1)
//! to bound memory; shares are then exact to within one part in about `SCHEDULE_LIMIT / n`.
//!
//! Cost: O(1) per pick (one atomic add on the thread's stripe, one division, two loads);
//! O(P + n) per update or health change, P the period (a counting sort of the due times). The cursor is per thread and survives
//! updates, as in [`RoundRobin`](crate::RoundRobin).

use crate::backend::Backend;
use crate::builder::Builder;
use crate::engine::core::{impl_balancer, Core};
use crate::error::Error;
use crate::spread::schedule::Schedule;
pub use crate::spread::schedule::SCHEDULE_LIMIT;

/// Smooth weighted round robin: exact shares per period, heavy backends interleaved.
///
/// ```
/// use lbkit::{Backend, Balancer, Request, WeightedRoundRobin};
/// let lb = WeightedRoundRobin::new([
///     Backend::new("a", ()).with_weight(5),
///     Backend::new("b", ()),
///     Backend::new("c", ()),
/// ])?;
/// let mut order = String::new();
/// for _ in 0..7 {
///     order += lb.pick(&Request::new()).unwrap().id();
/// }
/// assert_eq!(order.matches('a').count(), 5);
/// assert!(!order.contains("aaaaa"));
/// # Ok::<(), lbkit::Error>(())
/// ```
pub struct WeightedRoundRobin<T> {
    core: Core<T, Schedule>,
}

impl<T: Send + Sync + 'static> WeightedRoundRobin<T> {
    /// A WeightedRoundRobin balancer over `backends` (the same as `WeightedRoundRobin::builder().build(backends)`).
    ///
    /// # Errors
    /// [`Error::EmptyId`], [`Error::DuplicateId`], [`Error::TooManyBackends`], and
    /// [`Error::InvalidConfig`] for a backend's `max_in_flight` of 0.
    pub fn new(backends: impl IntoIterator<Item = Backend<T>>) -> Result<Self, Error> {
        Builder::new(WeightedRoundRobinConfig).build(backends)
    }
}

impl WeightedRoundRobin<()> {
    /// A builder, for passive health ([`Builder::health`]); its `build` makes a `WeightedRoundRobin<T>` of
    /// any `T` (this is a function of `WeightedRoundRobin<()>` only so that `WeightedRoundRobin::builder()` needs no type
    /// annotation).
    pub fn builder() -> Builder<WeightedRoundRobinConfig> {
        Builder::new(WeightedRoundRobinConfig)
    }
}

impl Builder<WeightedRoundRobinConfig> {
    /// Builds the balancer over `backends`.
    ///
    /// # Errors
    /// As [`WeightedRoundRobin::new`], and [`Error::InvalidConfig`] for a health rule out of range.
    pub fn build<T: Send + Sync + 'static>(
        self,
        backends: impl IntoIterator<Item = Backend<T>>,
    ) -> Result<WeightedRoundRobin<T>, Error> {
        let policy = Schedule::by_weight();
        Ok(WeightedRoundRobin {
            core: self.core(policy, backends)?,
        })
    }
}

impl_balancer!(WeightedRoundRobin);

/// The configuration of [`WeightedRoundRobin`], the type parameter of [`WeightedRoundRobin::builder`]'s [`Builder`]:
/// none of its own.
#[derive(Debug, Clone, Copy, Default)]
#[non_exhaustive]
pub struct WeightedRoundRobinConfig;
