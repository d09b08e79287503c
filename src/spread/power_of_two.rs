//! Power of two choices (P2C).
//!
//! Each pick draws two distinct eligible backends, each with probability proportional to its
//! weight, and takes the one with fewer requests in flight per unit of weight (compared exactly
//! in integers). One random choice leaves the busiest backend about ln n / ln ln n over the
//! mean; two choices cut that to ln ln n / ln 2 + O(1) (Mitzenmacher; Azar et al.), at O(1)
//! cost and without the herding of a full scan when many clients read stale counts.
//!
//! The draws use the alias table shared with [`Random`](crate::Random); the second draw
//! rejects the first backend and, if the first carries most of the weight, falls back to an
//! exact linear draw. Seeded by [`Builder::seed`] (or [`PowerOfTwoChoices::with_seed`]).
//!
//! **Failures as load** ([`Builder::failure_penalty`], off by default): as for
//! [`LeastConnections`](crate::LeastConnections), each reported failure then weighs as one
//! more request in flight, fading with the penalty as time constant, so that a backend that
//! fails fast stops winning comparisons before any ejection.
//!
//! **A load of your own** ([`Builder::load_signal`], off by default): as for
//! [`LeastConnections`](crate::LeastConnections), candidates compared by the load backends
//! report ([`LoadSignal::Reported`]), or that added to the
//! requests in flight ([`LoadSignal::Combined`]).
//!
//! Cost: O(1) per pick (two random values, two alias lookups, two counter loads, two more
//! with a load signal); O(n) per update. Choose it as the default request balancer, and over least connections beyond a few
//! hundred backends. This is the policy Envoy, Finagle, linkerd and tower use by default.

use crate::backend::Backend;
use crate::builder::{Builder, Seedable};
use crate::engine::core::{impl_balancer, Core};
use crate::error::Error;
use crate::report::LoadSignal;
use crate::spread::choice::{InFlightPerWeight, Signal, TwoChoices};

/// Power of two choices over weighted candidates.
///
/// ```
/// use lbkit::{Backend, Balancer, PowerOfTwoChoices, Request};
/// let lb = PowerOfTwoChoices::with_seed([Backend::new("a", ()), Backend::new("b", ())], 1)?;
/// let held = lb.pick(&Request::new()).unwrap();
/// // With two backends both are always candidates: the idle one wins.
/// assert_ne!(lb.pick(&Request::new()).unwrap().id(), held.id());
/// # Ok::<(), lbkit::Error>(())
/// ```
pub struct PowerOfTwoChoices<T> {
    core: Core<T, TwoChoices<InFlightPerWeight>>,
}

impl<T: Send + Sync + 'static> PowerOfTwoChoices<T> {
    /// A P2C balancer seeded from the clock and the process (the same as
    /// `PowerOfTwoChoices::builder().build(backends)`).
    ///
    /// # Errors
    /// [`Error::EmptyId`], [`Error::DuplicateId`], [`Error::TooManyBackends`], and
    /// [`Error::InvalidConfig`] for a backend's `max_in_flight` of 0.
    pub fn new(backends: impl IntoIterator<Item = Backend<T>>) -> Result<Self, Error> {
        Builder::new(PowerOfTwoChoicesConfig::default()).build(backends)
    }

    /// A P2C balancer whose choices replay exactly for a given seed: the shortcut for
    /// `PowerOfTwoChoices::builder().seed(seed).build(backends)`.
    ///
    /// # Errors
    /// As [`PowerOfTwoChoices::new`].
    pub fn with_seed(
        backends: impl IntoIterator<Item = Backend<T>>,
        seed: u64,
    ) -> Result<Self, Error> {
        Builder::new(PowerOfTwoChoicesConfig::default())
            .seed(seed)
            .build(backends)
    }
}

impl PowerOfTwoChoices<()> {
    /// A builder, for a seed ([`Builder::seed`]) and passive health ([`Builder::health`]);
    /// its `build` makes a `PowerOfTwoChoices<T>` of any `T` (this is a function of
    /// `PowerOfTwoChoices<()>` only so that `PowerOfTwoChoices::builder()` needs no type
    /// annotation).
    pub fn builder() -> Builder<PowerOfTwoChoicesConfig> {
        Builder::new(PowerOfTwoChoicesConfig::default())
    }
}

/// The configuration of [`PowerOfTwoChoices`], the type parameter of
/// [`PowerOfTwoChoices::builder`]'s [`Builder`]: the failure penalty
/// ([`Builder::failure_penalty`]) and the load signal ([`Builder::load_signal`]).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
#[non_exhaustive]
pub struct PowerOfTwoChoicesConfig {
    failure_penalty: Option<std::time::Duration>,
    load_signal: LoadSignal,
}

impl Seedable for PowerOfTwoChoicesConfig {}

impl Builder<PowerOfTwoChoicesConfig> {
    /// Makes each reported failure weigh as one more request in flight, fading with time
    /// constant `penalty` (see the [module docs](crate::spread::power_of_two)); off by
    /// default. A penalty below 1 ms is an error at `build`.
    pub fn failure_penalty(mut self, penalty: std::time::Duration) -> Self {
        self.config.failure_penalty = Some(penalty);
        self
    }

    /// What a backend's load is: requests in flight (the default), its own reported load, or
    /// both ([`LoadSignal`]; as for [`LeastConnections`](crate::LeastConnections)).
    pub fn load_signal(mut self, signal: LoadSignal) -> Self {
        self.config.load_signal = signal;
        self
    }

    /// Builds the balancer over `backends`.
    ///
    /// # Errors
    /// As [`PowerOfTwoChoices::new`], and [`Error::InvalidConfig`] for a failure penalty
    /// below 1 ms, a [`LoadSignal::Combined`] factor out of range, or a health rule out of
    /// range.
    pub fn build<T: Send + Sync + 'static>(
        self,
        backends: impl IntoIterator<Item = Backend<T>>,
    ) -> Result<PowerOfTwoChoices<T>, Error> {
        let cost = InFlightPerWeight {
            signal: Signal::new(self.config.failure_penalty, self.config.load_signal)?,
        };
        let policy = TwoChoices::new(self.seed_or_entropy(), cost);
        Ok(PowerOfTwoChoices {
            core: self.core(policy, backends)?,
        })
    }
}

impl_balancer!(PowerOfTwoChoices);
