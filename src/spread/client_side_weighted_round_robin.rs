//! Client-side weighted round robin: weights that backends' own load reports give (gRPC's
//! `weighted_round_robin`, gRFC A58; Envoy's `client_side_weighted_round_robin`).
//!
//! Weights an operator sets go stale: a backend slows down (a noisy neighbour, a bad disk, a
//! smaller machine) and keeps its share. Here every backend reports its own load
//! ([`LoadReport`](crate::LoadReport): queries per second, errors per second, utilisation),
//! in band with an answer ([`Pick::report_load`](crate::Pick::report_load)) or out of band
//! ([`Balancer::report_load`](crate::Balancer::report_load)), and its weight is what A58
//! says:
//!
//! ```text
//! weight = qps / (utilization + eps / qps x error_utilization_penalty)
//! ```
//!
//! the queries it serves per unit of utilisation: a backend that serves as much with half the
//! CPU gets twice the traffic, and errors count as utilisation, so a backend that answers
//! fast with errors does not draw traffic. The utilisation is the report's
//! [`utilization`](crate::LoadReport::utilization) (ORCA's `application_utilization`), or its
//! [`cpu_utilization`](crate::LoadReport::cpu_utilization) where that is not given or 0, as
//! gRPC chooses.
//!
//! # A58, exactly
//!
//! - A report with qps or utilisation 0 is ignored (the last weight stays).
//! - A weight is used only after the backend has reported for `blackout_period` (10 s by
//!   default) without a gap, so that a backend just started, whose first reports are noise,
//!   does not draw a burst; and only until no report has come for `weight_expiration_period`
//!   (3 min). Reports that resume after such a gap serve a new blackout, as does a backend
//!   that comes back: set up after [`Health::Down`](crate::Health::Down), an ejection that
//!   ends, or a backend re-added (A58's `OnSubchannelBecomesReady`).
//! - Every `weight_update_period` (1 s; below 100 ms counts as 100 ms, as in A58) the
//!   schedule is rebuilt from the weights then. A backend without a usable weight gets the
//!   mean of the others'; with fewer than two usable weights, every backend gets the same
//!   (plain round robin), as A58 says. The largest weight is scaled to 65,535 and each
//!   other to its share of it, at least 1 (grpc-go's integers).
//! - The configured weight ([`Backend::with_weight`](crate::Backend::with_weight)) does not
//!   count, as in A58, except that 0 still takes a backend out.
//!
//! Where lbkit differs: a report whose figure is negative, NaN or infinite is an error
//! ([`Error::InvalidReport`]) and changes nothing (A58 does not
//! say); a weight too small to round to 1 of 65,535 is 1, not 0 (grpc-go would never pick
//! that backend again; lbkit reads weight 0 as "no new picks"); the expiry that starts a new
//! blackout is noticed by the report after the gap rather than by the lookup in it (the
//! same outcome whenever the schedule looked during the gap, which it does every period).
//!
//! # With the rest of lbkit
//!
//! The schedule is [`WeightedRoundRobin`](crate::WeightedRoundRobin)'s, smooth and exact per
//! period, with the reported weights in place of the configured ones. What the engine's rules
//! leave of a backend's weight multiplies its reported one: slow start ramps a new backend's
//! share up from the mean (or its reported weight once the blackout is over), soft health and
//! a subset's coverage scale it; ejection, health, caps, steering, priority levels and
//! localities work as for every policy. The refresh runs on the clock check picks already
//! make (no thread): the first pick after the period rebuilds the snapshot.
//!
//! Cost: a pick is [`WeightedRoundRobin`](crate::WeightedRoundRobin)'s, O(1). A report is a
//! few float operations and three relaxed atomic loads and stores on the backend's own line,
//! no lock (two reports racing on one backend may interleave their fields, each a value one of
//! them wrote; grpc-go locks per backend here). Every update period one rebuild, O(n + P) for
//! a schedule period of P entries (at most [`SCHEDULE_LIMIT`](crate::SCHEDULE_LIMIT), which
//! reported weights usually fill), paid by the pick that finds the period over: 0.1-0.3 ms at
//! 1000 backends (`cargo bench --bench pick`, group `sweep/1000`). Shares are exact to about
//! one part in `SCHEDULE_LIMIT / n`.
//!
//! Choose it when backends can tell their own load (gRPC servers with ORCA, anything that can
//! put its CPU use in a trailer) and requests are alike enough that round robin's even spread
//! is what you want once the weights are right. Where they cannot report,
//! [`PeakEwma`](crate::PeakEwma) and [`PowerOfTwoChoices`](crate::PowerOfTwoChoices) see load
//! from the client side alone.

use std::time::Duration;

use crate::backend::Backend;
use crate::builder::Builder;
use crate::engine::core::{impl_balancer, Core};
use crate::engine::orca::{
    WeightConfig, DEFAULT_BLACKOUT_PERIOD, DEFAULT_ERROR_UTILIZATION_PENALTY,
    DEFAULT_WEIGHT_EXPIRATION_PERIOD, DEFAULT_WEIGHT_UPDATE_PERIOD,
};
use crate::error::Error;
use crate::spread::schedule::Schedule;

/// Smooth weighted round robin over weights that backends' load reports give (gRFC A58).
///
/// ```
/// use std::time::Duration;
/// use lbkit::{Backend, Balancer, ClientSideWeightedRoundRobin, LoadReport, ManualClock};
/// use lbkit::{HealthConfig, Request};
/// let clock = ManualClock::new();
/// let lb = ClientSideWeightedRoundRobin::builder()
///     .blackout_period(Duration::ZERO)
///     .health(HealthConfig::new().clock(clock.clone()))
///     .build([Backend::new("a", ()), Backend::new("b", ())])?;
/// // The same qps, but "b" needs three times the CPU for it: "a" gets three times the picks.
/// lb.report_load("a", LoadReport::new().qps(100.0).cpu_utilization(0.2))?;
/// lb.report_load("b", LoadReport::new().qps(100.0).cpu_utilization(0.6))?;
/// clock.advance(Duration::from_secs(1)); // one weight_update_period
/// let a = (0..400).filter(|_| lb.pick(&Request::new()).unwrap().id() == "a").count();
/// assert_eq!(a, 300);
/// # Ok::<(), lbkit::Error>(())
/// ```
pub struct ClientSideWeightedRoundRobin<T> {
    core: Core<T, Schedule>,
}

/// The configuration of [`ClientSideWeightedRoundRobin`], the type parameter of
/// [`ClientSideWeightedRoundRobin::builder`]'s [`Builder`]: A58's periods and error penalty,
/// set with [`Builder::blackout_period`], [`Builder::weight_expiration_period`],
/// [`Builder::weight_update_period`] and [`Builder::error_utilization_penalty`].
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub struct ClientSideWeightedRoundRobinConfig {
    blackout_period: Duration,
    weight_expiration_period: Duration,
    weight_update_period: Duration,
    error_utilization_penalty: f64,
}

impl Default for ClientSideWeightedRoundRobinConfig {
    /// A58's defaults: blackout 10 s, expiration 3 min, update every 1 s, penalty 1.0.
    fn default() -> Self {
        ClientSideWeightedRoundRobinConfig {
            blackout_period: Duration::from_nanos(DEFAULT_BLACKOUT_PERIOD),
            weight_expiration_period: Duration::from_nanos(DEFAULT_WEIGHT_EXPIRATION_PERIOD),
            weight_update_period: Duration::from_nanos(DEFAULT_WEIGHT_UPDATE_PERIOD),
            error_utilization_penalty: DEFAULT_ERROR_UTILIZATION_PENALTY,
        }
    }
}

impl<T: Send + Sync + 'static> ClientSideWeightedRoundRobin<T> {
    /// A client-side weighted round robin over `backends` with A58's defaults (the same as
    /// `ClientSideWeightedRoundRobin::builder().build(backends)`). Until backends report, it
    /// is plain round robin.
    ///
    /// # Errors
    /// [`Error::EmptyId`], [`Error::DuplicateId`], [`Error::TooManyBackends`], and
    /// [`Error::InvalidConfig`] for a backend's `max_in_flight` of 0.
    pub fn new(backends: impl IntoIterator<Item = Backend<T>>) -> Result<Self, Error> {
        Builder::new(ClientSideWeightedRoundRobinConfig::default()).build(backends)
    }
}

impl ClientSideWeightedRoundRobin<()> {
    /// A builder, for A58's periods and penalty and passive health; its `build` makes a
    /// `ClientSideWeightedRoundRobin<T>` of any `T` (this is a function of
    /// `ClientSideWeightedRoundRobin<()>` only so that the call needs no type annotation).
    ///
    /// ```
    /// use std::time::Duration;
    /// use lbkit::{Backend, ClientSideWeightedRoundRobin};
    /// let lb = ClientSideWeightedRoundRobin::builder()
    ///     .blackout_period(Duration::from_secs(5))
    ///     .weight_expiration_period(Duration::from_secs(60))
    ///     .weight_update_period(Duration::from_millis(500))
    ///     .error_utilization_penalty(2.0)
    ///     .build([Backend::new("a", ()), Backend::new("b", ())])?;
    /// # let _ = lb;
    /// assert!(ClientSideWeightedRoundRobin::builder()
    ///     .error_utilization_penalty(-1.0)
    ///     .build(Vec::<Backend<()>>::new())
    ///     .is_err());
    /// # Ok::<(), lbkit::Error>(())
    /// ```
    pub fn builder() -> Builder<ClientSideWeightedRoundRobinConfig> {
        Builder::new(ClientSideWeightedRoundRobinConfig::default())
    }
}

impl Builder<ClientSideWeightedRoundRobinConfig> {
    /// How long a backend must report without a gap before its weight is used (default
    /// 10 s; zero: at once).
    pub fn blackout_period(mut self, period: Duration) -> Self {
        self.config.blackout_period = period;
        self
    }

    /// How long a weight lasts without a report (default 3 min; zero: no weight is ever
    /// used, so the balancer is plain round robin).
    pub fn weight_expiration_period(mut self, period: Duration) -> Self {
        self.config.weight_expiration_period = period;
        self
    }

    /// How often the schedule reads the weights anew (default 1 s; below 100 ms counts as
    /// 100 ms, as in A58).
    pub fn weight_update_period(mut self, period: Duration) -> Self {
        self.config.weight_update_period = period;
        self
    }

    /// How much the error rate `eps / qps` adds to the utilisation (default 1.0; 0: errors
    /// do not count). Must be finite and at least 0.
    pub fn error_utilization_penalty(mut self, penalty: f64) -> Self {
        self.config.error_utilization_penalty = penalty;
        self
    }

    /// Builds the balancer over `backends`.
    ///
    /// # Errors
    /// As [`ClientSideWeightedRoundRobin::new`], and [`Error::InvalidConfig`] for an
    /// `error_utilization_penalty` that is negative (A58 rejects the configuration) or not
    /// finite, or a health rule out of range.
    pub fn build<T: Send + Sync + 'static>(
        self,
        backends: impl IntoIterator<Item = Backend<T>>,
    ) -> Result<ClientSideWeightedRoundRobin<T>, Error> {
        let ClientSideWeightedRoundRobinConfig {
            blackout_period,
            weight_expiration_period,
            weight_update_period,
            error_utilization_penalty,
        } = self.config;
        let nanos = |d: Duration| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        let config = WeightConfig::new(
            nanos(blackout_period),
            nanos(weight_expiration_period),
            nanos(weight_update_period),
            error_utilization_penalty,
        )?;
        Ok(ClientSideWeightedRoundRobin {
            core: self.core(Schedule::by_reports(config), backends)?,
        })
    }
}

impl_balancer!(ClientSideWeightedRoundRobin);
