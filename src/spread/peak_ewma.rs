//! Peak EWMA: latency-aware power of two choices (Finagle, linkerd, tower).
//!
//! Each backend keeps a latency estimate fed by reports ([`Pick::success`](crate::Pick::success)):
//! an exponentially weighted moving average that jumps up at once to any observation above it
//! (the *peak*) and otherwise moves toward observations, and that decays toward zero with
//! time constant `decay` while nothing is observed, so that a backend that was slow once is
//! tried again later. A pick draws two distinct candidates with probability proportional to
//! weight, as [`PowerOfTwoChoices`](crate::PowerOfTwoChoices) does, and takes the one with the
//! lower cost = estimate x (in flight + 1) / weight (in flight: the work its picks hold, see
//! [`Request::cost`](crate::Request::cost); + 1 whatever the request's own cost: the
//! comparison does not see the request).
//!
//! # No clock on the pick path
//!
//! Decay multiplies every estimate by the same exp(-now / decay), so it cannot change which of
//! two candidates is cheaper. Each backend therefore stores its estimate as a log score,
//! ln(estimate) + stamp / decay (stamp = time of the last observation), and a pick compares
//! exp(score_a - score_b) x (in_a + 1) x w_b with (in_b + 1) x w_a: one `exp`, no clock read
//! (a monotonic clock read costs a large part of a pick on a VM: `cargo bench --bench pick`,
//! group `report/100`, `floor/clock`; `benches/README.md`). Only a
//! report reads the clock.
//!
//! Backends not yet observed start at `default_latency` (10 ms by default), like tower's
//! `default_rtt`: set it near your real latencies. A new backend whose default is above what
//! the others measure is not tried while they stay lightly loaded, until its estimate has
//! decayed below theirs, which takes about ln(default / their latency) x `decay` (23 s for a
//! 10 ms default against 1 ms backends at the default 10 s decay); load on the others (the
//! in-flight factor) brings it in sooner. Two reports racing on one backend can
//! lose one observation; an EWMA tolerates that, and it keeps reports lock-free (tower and
//! Finagle lock per backend on every report).
//!
//! A pick dropped without a report (a timeout, a cancellation) counts the time it was held as
//! a latency (see [`Pick`](crate::Pick)), so a hung backend never looks cheaper than the time
//! it already took. A failure counts as the time held or `failure_penalty` (5 s by default,
//! Linkerd's), whichever is more: a backend that fails fast (1 ms errors, 429s) would
//! otherwise look like the cheapest of all and draw more traffic the more it fails. After a
//! failure its estimate decays from the penalty with `decay`, and successes pull it down, so
//! a backend that failed once is tried again within seconds to a minute (about
//! ln(penalty / others' latency) x `decay` if nothing else is loaded); set the penalty to
//! zero to count only the time held. Choices therefore depend on the clock: a seed
//! replays them exactly only on a [`ManualClock`](crate::ManualClock).
//!
//! Cost: O(1) per pick (as P2C, plus one `exp` and one clock read); one clock read, two `exp`
//! and one `ln` per
//! report; O(n) per update. Choose it when backends' latencies differ or change (a slow or
//! degraded instance, noisy neighbours, garbage-collection pauses): tower's simulation put its
//! p999 at a tenth of round robin's.

use std::time::Duration;

use crate::backend::Backend;
use crate::builder::{Builder, Seedable};
use crate::engine::core::{impl_balancer, Core};
use crate::engine::snapshot::Eligible;
use crate::engine::state::LatencyTracking;
use crate::error::Error;
use crate::spread::choice::{Cost, TwoChoices};

/// Latency-aware power of two choices; report outcomes with [`Pick::success`](crate::Pick::success).
///
/// ```
/// use std::time::Duration;
/// use lbkit::{Backend, Balancer, PeakEwma, Request};
/// let lb = PeakEwma::with_seed([Backend::new("fast", ()), Backend::new("slow", ())], 1)?;
/// for _ in 0..20 {
///     let pick = lb.pick(&Request::new()).unwrap();
///     let latency = if pick.id() == "slow" { 200 } else { 2 };
///     pick.success(Duration::from_millis(latency));
/// }
/// let fast = (0..100).filter(|_| lb.pick(&Request::new()).unwrap().id() == "fast").count();
/// assert!(fast > 90);
/// # Ok::<(), lbkit::Error>(())
/// ```
pub struct PeakEwma<T> {
    core: Core<T, TwoChoices<PeakCost>>,
}

/// The configuration of [`PeakEwma`], the type parameter of [`PeakEwma::builder`]'s
/// [`Builder`]: the decay and the starting estimate, set with [`Builder::decay`] and
/// [`Builder::default_latency`].
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub struct PeakEwmaConfig {
    decay: Duration,
    default_latency: Duration,
    failure_penalty: Duration,
}

impl Default for PeakEwmaConfig {
    fn default() -> Self {
        PeakEwmaConfig {
            decay: Duration::from_secs(10),
            default_latency: Duration::from_millis(10),
            failure_penalty: Duration::from_secs(5),
        }
    }
}

impl Seedable for PeakEwmaConfig {}

impl<T: Send + Sync + 'static> PeakEwma<T> {
    /// A peak-EWMA balancer with the default parameters, seeded from the clock and process
    /// (the same as `PeakEwma::builder().build(backends)`).
    ///
    /// # Errors
    /// [`Error::EmptyId`], [`Error::DuplicateId`], [`Error::TooManyBackends`], and
    /// [`Error::InvalidConfig`] for a backend's `max_in_flight` of 0.
    pub fn new(backends: impl IntoIterator<Item = Backend<T>>) -> Result<Self, Error> {
        Builder::new(PeakEwmaConfig::default()).build(backends)
    }

    /// A peak-EWMA balancer whose candidate draws replay exactly for a given seed: the
    /// shortcut for `PeakEwma::builder().seed(seed).build(backends)`.
    ///
    /// # Errors
    /// As [`PeakEwma::new`].
    pub fn with_seed(
        backends: impl IntoIterator<Item = Backend<T>>,
        seed: u64,
    ) -> Result<Self, Error> {
        Builder::new(PeakEwmaConfig::default())
            .seed(seed)
            .build(backends)
    }
}

impl PeakEwma<()> {
    /// A builder, for the decay, the starting estimate, a seed and passive health; its
    /// `build` makes a `PeakEwma<T>` of any `T` (this is a function of `PeakEwma<()>` only so
    /// that `PeakEwma::builder()` needs no type annotation).
    ///
    /// ```
    /// use std::time::Duration;
    /// use lbkit::{Backend, PeakEwma};
    /// let lb = PeakEwma::builder()
    ///     .decay(Duration::from_secs(5))
    ///     .default_latency(Duration::from_millis(2))
    ///     .seed(7)
    ///     .build([Backend::new("a", ()), Backend::new("b", ())])?;
    /// # let _ = lb;
    /// assert!(PeakEwma::builder().decay(Duration::ZERO).build(Vec::<Backend<()>>::new()).is_err());
    /// # Ok::<(), lbkit::Error>(())
    /// ```
    pub fn builder() -> Builder<PeakEwmaConfig> {
        Builder::new(PeakEwmaConfig::default())
    }
}

impl Builder<PeakEwmaConfig> {
    /// The time constant of the decay (default 10 s, Finagle's).
    pub fn decay(mut self, decay: Duration) -> Self {
        self.config.decay = decay;
        self
    }

    /// The least latency a failure counts as (default 5 s, Linkerd's; zero counts only the
    /// time the pick was held).
    pub fn failure_penalty(mut self, penalty: Duration) -> Self {
        self.config.failure_penalty = penalty;
        self
    }

    /// The estimate of a backend not yet observed (default 10 ms).
    pub fn default_latency(mut self, latency: Duration) -> Self {
        self.config.default_latency = latency;
        self
    }

    /// Builds the balancer over `backends`.
    ///
    /// # Errors
    /// As [`PeakEwma::new`], and [`Error::InvalidConfig`] for a zero `decay` or
    /// `default_latency`, or a health rule out of range.
    pub fn build<T: Send + Sync + 'static>(
        self,
        backends: impl IntoIterator<Item = Backend<T>>,
    ) -> Result<PeakEwma<T>, Error> {
        let PeakEwmaConfig {
            decay,
            default_latency,
            failure_penalty,
        } = self.config;
        let tracking = LatencyTracking::new(decay, default_latency, failure_penalty)?;
        let policy = TwoChoices::new(self.seed_or_entropy(), PeakCost { tracking });
        Ok(PeakEwma {
            core: self.core(policy, backends)?,
        })
    }
}

impl_balancer!(PeakEwma);

/// The peak-EWMA cost comparison.
pub(crate) struct PeakCost {
    tracking: LatencyTracking,
}

impl Cost for PeakCost {
    #[inline]
    fn lighter(&self, a: &Eligible, b: &Eligible) -> bool {
        let ratio = (a.state.latency_score() - b.state.latency_score()).exp();
        let lhs = ratio * (a.state.in_flight() as f64 + 1.0) * b.weight as f64;
        let rhs = (b.state.in_flight() as f64 + 1.0) * a.weight as f64;
        lhs < rhs
    }

    fn latency_tracking(&self) -> Option<LatencyTracking> {
        Some(self.tracking)
    }
}
