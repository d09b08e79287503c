//! Passive health: outlier ejection, the panic threshold and slow start, configured once per
//! balancer with a [`HealthConfig`] and applied by every policy.
//!
//! These rules change which backends are eligible and with what weight, so they act where the
//! snapshot is built: a report that crosses the failure threshold marks the balancer for a
//! rebuild, the next pick rebuilds (under the writer lock, never blocking other picks), and
//! time-based changes (an ejection ending, a slow start ramping) are noticed by a sampled clock
//! check on the pick path that runs only while such a change is due.
//!
//! * **Outlier ejection** ([`OutlierDetection`], as Envoy's): after `consecutive_failures`
//!   failures in a row a backend is ejected for `base_ejection_time x n` (n = how many times
//!   it was ejected, lowered by one for every `base_ejection_time` it spent in service since
//!   its last ejection; capped at `max_ejection_time`), and returns by itself when the time is
//!   up. Never more than `max_ejection_percent` of the set is ejected at once (at least one
//!   backend may always be). [`Status::is_ejected`](crate::Status::is_ejected) shows it.
//! * **Statistical ejection** ([`SuccessRateEjection`], [`FailurePercentageEjection`], gRFC
//!   A50's algorithm, which Envoy shares): catches the backend that fails often but seldom 5
//!   times in a row. Each report is counted per backend (one relaxed add); every
//!   [`interval`](OutlierDetection::interval) a sweep looks at the interval's counts. Among
//!   the backends with at least `request_volume` reports, and if at least `minimum_hosts`
//!   have: success rate ejects those below `mean - stdev x stdev_factor / 1000` (population
//!   mean and standard deviation of the success rates, ejected backends with volume included,
//!   as in A50), failure percentage those whose failures are more than `threshold` percent
//!   (strictly: A50 and gRPC; Envoy ejects at the threshold too). Each is ejected with
//!   probability `enforcement_percentage` / 100 (a draw replayable from the sweep's number and
//!   the backend's id), never one already ejected, and none once the ejected share has
//!   reached `max_ejection_percent` (checked before each; the first is always allowed, as in
//!   grpc C++; grpc-go ejects none at a cap of 0). Success rate runs first, then failure
//!   percentage; both count toward one cap. Then every backend not ejected lowers its
//!   multiplier by one. An ejection lasts `base_ejection_time x multiplier`, at most
//!   `max(base_ejection_time, max_ejection_time)`, and ends as soon as its time is up (at the
//!   first pick after; A50 waits for the next sweep). No thread runs the sweep: the first
//!   pick (or status read) that finds it due runs it under the writer lock, so a balancer
//!   nobody uses does no work, and a sweep that comes late covers every report since the
//!   last. Reports count only while a statistical rule is on; picks dropped without a report
//!   count for nothing. Cost: `cargo bench --bench pick`, groups `report/100`
//!   (`round-robin+statistical`) and `sweep/1000`.
//! * **Kinds of failure** ([`Failure`], reported with
//!   [`Pick::failure_of`](crate::Pick::failure_of)): a local-origin failure (no answer: refused,
//!   reset, timed out), an error answer (a 5xx; what [`Pick::failure`](crate::Pick::failure)
//!   reports), or an overload answer (a 429, perhaps with a retry-after).
//!   [`OutlierDetection::counted`] says which kinds count toward ejection: all but overload
//!   answers by default, since a backend shedding load is working and ejecting it moves its
//!   load onto the others ([`FailureClasses::all`] counts every one, as gRPC does). A kind not
//!   counted is a success for the rules: it ends a run of failures (as a non-5xx answer ends
//!   Envoy's `consecutive_5xx` run) and counts as a success in the interval. With
//!   [`OutlierDetection::consecutive_local_origin_failures`] (Envoy's
//!   `split_external_local_origin_errors`), local-origin failures are counted apart instead:
//!   their own run and threshold, ended by any answer, and invisible to the other rules.
//! * **Panic threshold** (Envoy's, per priority level): considered only when the healthy
//!   capacity of every level together falls short (the normalized total health below 100,
//!   see [`crate::docs::tiers`]); then a level whose share of available backends (up or
//!   degraded, not ejected, weight above 0) is below the threshold ignores health, and every
//!   backend of it that could serve (weight above 0, not draining) is eligible again, rather
//!   than crushing the survivors. Backends that are draining or of weight 0 stay out: that was
//!   the operator's decision. With one level of up and down backends and the default
//!   overprovisioning factor (1.4), panic is considered once fewer than 5 in 7 are up. With
//!   degraded backends too, it is considered once the level's health and degraded health
//!   (each 1.4 x its share of the backends, in whole percent rounded down) add up to less
//!   than 100: the two roundings can make that so with slightly more than 5 in 7 available
//!   (1 up and 50 degraded of 71: 1 + 98).
//! * **Priority levels and degraded backends** ([`Backend::with_priority`](crate::Backend::with_priority),
//!   [`Health::Degraded`](crate::Health::Degraded), [`HealthConfig::overprovisioning_factor`]):
//!   Envoy's priority load, in integer arithmetic: see [`crate::docs::tiers`].
//! * **Soft health** ([`SoftHealth`], beyond Envoy and gRPC): a multiplier on each backend's
//!   effective weight, lowered at once for a backend slower or failing more than its peers
//!   (by how much worse it is, never below a floor) and raised gradually once it is as good
//!   again, with a band between the two where it holds. A slow backend sheds load without
//!   being ejected, so it does not flap in and out.
//! * **Slow start** ([`SlowStart`], Envoy's formula): a backend that joins by an update (not
//!   the initial set) or returns from ejection ramps its effective weight from
//!   `weight x min_weight_percent` to `weight` over `window`, as
//!   `weight x max(min_weight_percent / 100, (t / window)^(1 / aggression))`.

use std::sync::Arc;
use std::time::Duration;

use crate::clock::{Clock, MonotonicClock};
use crate::error::Error;

/// How a balancer reacts to what it observes. Nothing is enabled by default.
///
/// ```
/// use std::time::Duration;
/// use lbkit::{Backend, HealthConfig, LeastConnections, OutlierDetection, SlowStart};
/// let lb = LeastConnections::builder()
///     .health(
///         HealthConfig::new()
///             .outlier_detection(OutlierDetection::default())
///             .panic_threshold(0.5)
///             .slow_start(SlowStart::new(Duration::from_secs(30))),
///     )
///     .build([Backend::new("a", ()), Backend::new("b", ())])?;
/// # Ok::<(), lbkit::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct HealthConfig {
    pub(crate) outlier_detection: Option<OutlierDetection>,
    pub(crate) panic_threshold: Option<f64>,
    pub(crate) overprovisioning_factor: f64,
    pub(crate) slow_start: Option<SlowStart>,
    pub(crate) soft_health: Option<SoftHealth>,
    pub(crate) clock: Arc<dyn Clock>,
}

impl Default for HealthConfig {
    fn default() -> Self {
        Self::new()
    }
}

impl HealthConfig {
    /// Nothing enabled, the system's monotonic clock.
    pub fn new() -> Self {
        HealthConfig {
            outlier_detection: None,
            panic_threshold: None,
            overprovisioning_factor: 1.4,
            slow_start: None,
            soft_health: None,
            clock: Arc::new(MonotonicClock::new()),
        }
    }

    /// Ejects backends that fail repeatedly.
    #[must_use]
    pub fn outlier_detection(mut self, rules: OutlierDetection) -> Self {
        self.outlier_detection = Some(rules);
        self
    }

    /// Ignores health in a priority level when fewer than `share` (0.0 to 1.0; Envoy's
    /// default is 0.5) of its backends are available, once the levels together fall short
    /// (see the [module docs](crate::health)). Off by default.
    #[must_use]
    pub fn panic_threshold(mut self, share: f64) -> Self {
        self.panic_threshold = Some(share);
        self
    }

    /// Envoy's overprovisioning factor (default 1.4): a priority level counts as fully
    /// healthy while `factor x healthy / total` is at least 1, so with 1.4 it keeps all its
    /// traffic until fewer than 5 in 7 of its backends are healthy, then hands the shortfall
    /// to the next level (and to degraded backends). The factor weighs localities the same
    /// way. It is used in whole percent (1.4 is 140; rounded to the nearest, at most
    /// `u32::MAX` percent). See [`crate::docs::tiers`].
    ///
    /// Errors (when the configuration is given to a balancer):
    /// [`Error::InvalidConfig`] with parameter `"overprovisioning_factor"` for a factor below
    /// 1.0, NaN or infinite; then nothing changes.
    ///
    /// ```
    /// use lbkit::{Balancer, HealthConfig, RoundRobin, Backend};
    /// let lb = RoundRobin::new([Backend::new("a", ())])?;
    /// lb.set_health_config(HealthConfig::new().overprovisioning_factor(1.4))?;
    /// assert!(lb.set_health_config(HealthConfig::new().overprovisioning_factor(0.9)).is_err());
    /// # Ok::<(), lbkit::Error>(())
    /// ```
    #[must_use]
    pub fn overprovisioning_factor(mut self, factor: f64) -> Self {
        self.overprovisioning_factor = factor;
        self
    }

    /// The overprovisioning factor in whole percent (140 for 1.4), once validated.
    pub(crate) fn overprovisioning_percent(&self) -> u32 {
        // Finite and at least 1.0 once validated; the cast saturates.
        (self.overprovisioning_factor * 100.0).round() as u32
    }

    /// The panic threshold in parts per million (0: none).
    pub(crate) fn panic_threshold_ppm(&self) -> u32 {
        // A share in 0.0..=1.0 once validated.
        self.panic_threshold
            .map_or(0, |share| (share * 1_000_000.0).round() as u32)
    }

    /// Ramps up backends that join or return from ejection.
    #[must_use]
    pub fn slow_start(mut self, ramp: SlowStart) -> Self {
        self.slow_start = Some(ramp);
        self
    }

    /// Lowers the weight of backends slower or failing more than their peers, gradually and
    /// without ejecting them (see [`SoftHealth`]).
    #[must_use]
    pub fn soft_health(mut self, rules: SoftHealth) -> Self {
        self.soft_health = Some(rules);
        self
    }

    /// Switches soft health off (given to
    /// [`set_health_config`](crate::Balancer::set_health_config), this gives every backend
    /// its full weight at once).
    #[must_use]
    pub fn without_soft_health(mut self) -> Self {
        self.soft_health = None;
        self
    }

    /// Switches outlier ejection off (given to
    /// [`set_health_config`](crate::Balancer::set_health_config), this ends every ejection).
    #[must_use]
    pub fn without_outlier_detection(mut self) -> Self {
        self.outlier_detection = None;
        self
    }

    /// Switches the panic threshold off.
    #[must_use]
    pub fn without_panic_threshold(mut self) -> Self {
        self.panic_threshold = None;
        self
    }

    /// Switches slow start off (given to
    /// [`set_health_config`](crate::Balancer::set_health_config), this gives every ramping
    /// backend its full weight at once).
    #[must_use]
    pub fn without_slow_start(mut self) -> Self {
        self.slow_start = None;
        self
    }

    /// The clock every time-based rule reads (a [`ManualClock`](crate::ManualClock) in tests).
    ///
    /// Each call makes a new clock for the balancer, even for a clone of a clock in use:
    /// [`set_health_config`](crate::Balancer::set_health_config) keeps what was measured in
    /// time only for a configuration cloned from the one it replaces (clones share their
    /// clock).
    #[must_use]
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// Checks every value; the error names the first one out of range.
    pub(crate) fn validate(&self) -> Result<(), Error> {
        if let Some(o) = &self.outlier_detection {
            if o.consecutive_failures == 0 {
                return Err(Error::config("consecutive_failures", "must be at least 1"));
            }
            if o.consecutive_local_origin_failures == Some(0) {
                return Err(Error::config(
                    "consecutive_local_origin_failures",
                    "must be at least 1",
                ));
            }
            if o.base_ejection_time.is_zero() {
                return Err(Error::config("base_ejection_time", "must be above zero"));
            }
            if o.max_ejection_time < o.base_ejection_time {
                return Err(Error::config(
                    "max_ejection_time",
                    "must be at least base_ejection_time",
                ));
            }
            percent("max_ejection_percent", o.max_ejection_percent)?;
            if o.sweeps() && o.interval.is_zero() {
                return Err(Error::config("interval", "must be above zero"));
            }
            if let Some(r) = &o.success_rate {
                whole_percent(
                    "success_rate.enforcement_percentage",
                    r.enforcement_percentage,
                )?;
                if r.stdev_factor == 0 {
                    return Err(Error::config(
                        "success_rate.stdev_factor",
                        "must be above zero",
                    ));
                }
            }
            if let Some(r) = &o.failure_percentage {
                whole_percent("failure_percentage.threshold", r.threshold)?;
                whole_percent(
                    "failure_percentage.enforcement_percentage",
                    r.enforcement_percentage,
                )?;
            }
        }
        let factor = self.overprovisioning_factor;
        if !factor.is_finite() || factor < 1.0 {
            return Err(Error::config(
                "overprovisioning_factor",
                format!("{factor} is not a finite number of at least 1.0"),
            ));
        }
        if let Some(h) = &self.soft_health {
            h.validate()?;
        }
        if let Some(share) = self.panic_threshold {
            if !(0.0..=1.0).contains(&share) {
                return Err(Error::config(
                    "panic_threshold",
                    format!("{share} is not a share between 0.0 and 1.0"),
                ));
            }
        }
        if let Some(s) = &self.slow_start {
            if s.window.is_zero() {
                return Err(Error::config("window", "must be above zero"));
            }
            if !(s.aggression.is_finite() && s.aggression > 0.0) {
                return Err(Error::config(
                    "aggression",
                    format!("{} is not a finite number above 0", s.aggression),
                ));
            }
            percent("min_weight_percent", s.min_weight_percent)?;
        }
        Ok(())
    }
}

fn whole_percent(parameter: &'static str, value: u32) -> Result<(), Error> {
    if value <= 100 {
        Ok(())
    } else {
        Err(Error::config(
            parameter,
            format!("{value} is not a percentage between 0 and 100"),
        ))
    }
}

fn percent(parameter: &'static str, value: f64) -> Result<(), Error> {
    if (0.0..=100.0).contains(&value) {
        Ok(())
    } else {
        Err(Error::config(
            parameter,
            format!("{value} is not a percentage between 0 and 100"),
        ))
    }
}

/// When to eject a failing backend and for how long. The defaults are Envoy's, with the
/// statistical rules off.
///
/// Three rules can eject a backend, and share one bookkeeping (ejection time, multiplier,
/// cap):
///
/// * `consecutive_failures` failures in a row (Envoy's `consecutive_5xx`): at once, on the
///   report that crosses it.
/// * [`success_rate`](OutlierDetection::success_rate) (gRFC A50, Envoy): every `interval`,
///   backends whose success rate in the interval is far below the others'.
/// * [`failure_percentage`](OutlierDetection::failure_percentage) (gRFC A50, Envoy): every
///   `interval`, backends whose share of failures in the interval is at or above a threshold.
///
/// With a statistical rule on, a sweep is due every `interval`; no thread runs it: the first
/// pick that finds it due runs it under the writer lock (a balancer nobody picks from does no
/// work). The sweep also decays the ejection multiplier: by one for every interval a backend
/// spends not ejected (A50); without a statistical rule, by one for every
/// `base_ejection_time` spent in service.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OutlierDetection {
    /// Failures in a row that eject a backend (default 5; `u32::MAX` in effect turns the rule
    /// off, as gRPC has no such rule).
    pub consecutive_failures: u32,
    /// The first ejection's length, multiplied by the number of ejections (default 30 s).
    pub base_ejection_time: Duration,
    /// The longest ejection (default 300 s).
    pub max_ejection_time: Duration,
    /// The most of the set that may be ejected at once, in percent (default 10; at least one
    /// backend may always be ejected).
    pub max_ejection_percent: f64,
    /// How often the statistical rules look at the last interval's reports (default 10 s).
    pub interval: Duration,
    /// Success-rate ejection (default off).
    pub success_rate: Option<SuccessRateEjection>,
    /// Failure-percentage ejection (default off).
    pub failure_percentage: Option<FailurePercentageEjection>,
    /// Which kinds of failure ([`Failure`]) count toward every rule above (default: all but
    /// overload answers). A failure of a kind not counted counts as a success for the rules
    /// (it ends a run of failures, as a non-5xx answer ends Envoy's `consecutive_5xx` run).
    pub counted: FailureClasses,
    /// Local-origin failures counted apart (Envoy's `split_external_local_origin_errors`
    /// with `consecutive_local_origin_failure`; default off): with `Some(k)`, `k`
    /// [`Failure::LocalOrigin`] reports in a row eject the backend, any answer (a success, an
    /// error or an overload answer: the connection worked) ends that run, and local-origin
    /// failures no longer count toward the rules above, neither as failures nor as successes
    /// (they neither extend nor end a run of answered failures, and the statistical rules see
    /// only answers). `Some(0)` is an error.
    pub consecutive_local_origin_failures: Option<u32>,
}

impl Default for OutlierDetection {
    fn default() -> Self {
        OutlierDetection {
            consecutive_failures: 5,
            base_ejection_time: Duration::from_secs(30),
            max_ejection_time: Duration::from_secs(300),
            max_ejection_percent: 10.0,
            interval: Duration::from_secs(10),
            success_rate: None,
            failure_percentage: None,
            counted: FailureClasses::default(),
            consecutive_local_origin_failures: None,
        }
    }
}

impl OutlierDetection {
    /// Whether a statistical rule is on, so that a sweep runs every `interval`.
    pub(crate) fn sweeps(&self) -> bool {
        self.success_rate.is_some() || self.failure_percentage.is_some()
    }
}

/// What kind of failure a request ended in, reported with
/// [`Pick::failure_of`](crate::Pick::failure_of) (Envoy's split of the errors outlier detection
/// sees). [`Pick::failure`](crate::Pick::failure) reports [`Failure::Error`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Failure {
    /// No answer came: the connection was refused or reset, or the attempt timed out
    /// (Envoy's local-origin errors).
    LocalOrigin,
    /// The backend answered with an error: a 5xx, a gRPC `INTERNAL` or `UNAVAILABLE`.
    Error,
    /// The backend answered that it is overloaded (an HTTP 429, a gRPC `RESOURCE_EXHAUSTED`),
    /// perhaps with how long to wait before trying it again. For
    /// [`PeakEwma`](crate::PeakEwma) and [`Prequal`](crate::Prequal) the wait, if given, is a
    /// latency observation (the failure penalty's floor).
    Overloaded {
        /// The backend's `Retry-After`, if it sent one.
        retry_after: Option<Duration>,
    },
}

/// Which kinds of [`Failure`] count toward outlier ejection ([`OutlierDetection::counted`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FailureClasses {
    /// [`Failure::LocalOrigin`] (default counted).
    pub local_origin: bool,
    /// [`Failure::Error`] (default counted).
    pub error: bool,
    /// [`Failure::Overloaded`] (default not counted: a backend that sheds load is working,
    /// and ejecting it moves its load onto the others).
    pub overloaded: bool,
}

impl Default for FailureClasses {
    fn default() -> Self {
        FailureClasses {
            local_origin: true,
            error: true,
            overloaded: false,
        }
    }
}

impl FailureClasses {
    /// Every kind counts (gRPC's view: any non-OK status is a failure).
    pub fn all() -> Self {
        FailureClasses {
            local_origin: true,
            error: true,
            overloaded: true,
        }
    }

    /// Whether `failure` is of a kind that counts.
    pub fn counts(&self, failure: Failure) -> bool {
        match failure {
            Failure::LocalOrigin => self.local_origin,
            Failure::Error => self.error,
            Failure::Overloaded { .. } => self.overloaded,
        }
    }

    /// As bits, for the report path: local origin 1, error 2, overloaded 4.
    pub(crate) fn bits(&self) -> u8 {
        u8::from(self.local_origin) | u8::from(self.error) << 1 | u8::from(self.overloaded) << 2
    }
}

impl Failure {
    /// The kind's index among the three (local origin 0, error 1, overloaded 2), for counters
    /// kept by kind.
    #[inline]
    pub(crate) fn index(&self) -> usize {
        match self {
            Failure::LocalOrigin => 0,
            Failure::Error => 1,
            Failure::Overloaded { .. } => 2,
        }
    }

    /// The bit of [`FailureClasses::bits`] for this kind.
    pub(crate) fn bit(&self) -> u8 {
        match self {
            Failure::LocalOrigin => 1,
            Failure::Error => 2,
            Failure::Overloaded { .. } => 4,
        }
    }
}

/// Success-rate ejection (gRFC A50, Envoy's `success_rate_*`; defaults are theirs). Every
/// interval, among the backends with at least `request_volume` reports in it, and only if at
/// least `minimum_hosts` have, a backend whose success rate is below
/// `mean - stdev x stdev_factor / 1000` (over those backends) is ejected with probability
/// `enforcement_percentage` / 100.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SuccessRateEjection {
    /// How many standard deviations (in thousandths) below the mean ejects (default 1900).
    pub stdev_factor: u32,
    /// The chance, in percent, that a backend found to be an outlier is ejected (default 100).
    pub enforcement_percentage: u32,
    /// The fewest backends with enough reports for the rule to act (default 5).
    pub minimum_hosts: u32,
    /// The fewest reports in the interval for a backend to count (default 100).
    pub request_volume: u32,
}

impl Default for SuccessRateEjection {
    fn default() -> Self {
        SuccessRateEjection {
            stdev_factor: 1900,
            enforcement_percentage: 100,
            minimum_hosts: 5,
            request_volume: 100,
        }
    }
}

/// Failure-percentage ejection (gRFC A50, Envoy's `failure_percentage_*`; defaults are
/// theirs). Every interval, among the backends with at least `request_volume` reports in it,
/// and only if at least `minimum_hosts` have, a backend whose failures are more than
/// `threshold` percent of its reports is ejected with probability
/// `enforcement_percentage` / 100.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FailurePercentageEjection {
    /// The failure percentage above which a backend is ejected (default 85).
    pub threshold: u32,
    /// The chance, in percent, that a backend over the threshold is ejected (default 100).
    pub enforcement_percentage: u32,
    /// The fewest backends with enough reports for the rule to act (default 5).
    pub minimum_hosts: u32,
    /// The fewest reports in the interval for a backend to count (default 50).
    pub request_volume: u32,
}

impl Default for FailurePercentageEjection {
    fn default() -> Self {
        FailurePercentageEjection {
            threshold: 85,
            enforcement_percentage: 100,
            minimum_hosts: 5,
            request_volume: 50,
        }
    }
}

/// Soft, peer-relative health: a multiplier on each backend's effective weight, in
/// `[floor, 1]`, recomputed every `interval` from how the backend's mean latency and failure
/// share compare with its peers', so that a slow or error-prone backend gets less traffic
/// without being ejected (binary ejection lets a slow backend keep its full share until its
/// timeouts eject it, then flaps it back).
///
/// Every `interval`, among the backends with at least `request_volume` reports in it, and
/// only if at least `minimum_hosts` have (else every multiplier recovers):
///
/// * the peers' level is the median of those backends' mean latencies (over successes
///   reported with [`Pick::success`](crate::Pick::success)) and the median of their failure
///   shares (the kinds [`OutlierDetection::counted`] counts; all but overload answers without
///   outlier detection);
/// * a backend is **worse** when its mean latency is above `latency_tolerance x` the median
///   latency, or its failure share above the median share `+ failure_tolerance`. Its
///   multiplier is cut at once, by at least half and by as much as it is worse: times
///   `min(1/2, median latency / its latency, (its success share / the median success
///   share)^2)` (only the terms it is worse on), never below `floor`;
/// * a backend is **as good** when its mean latency is at most the middle of the tolerance
///   band (`(1 + latency_tolerance) / 2 x` the median) and its failure share at most the
///   median `+ failure_tolerance / 2`: its multiplier recovers, times 3/2 per interval, up to
///   1; between the two it holds (the hysteresis that keeps it from flapping);
/// * a backend without the volume (including one ejected, or one whose multiplier left it
///   too few requests to judge) recovers as one as good does: the floor keeps a share
///   that shows a recovery, and no evidence lets the weight climb back.
///
/// The multiplier scales the effective weight (after slow start), so it acts through every
/// policy that uses weights: the weighted request policies and P2C, least connections and
/// Peak EWMA (which compare load per weight), and the hashing policies' bounded loads (the
/// backend's capacity shrinks, so its keys spill to the next backends sooner; a hashing policy
/// without a bound, [`RoundRobin`](crate::RoundRobin), [`JumpHash`](crate::JumpHash) and
/// [`First`](crate::First) ignore weights and so this rule). It never makes a backend
/// ineligible. Cost: with soft health on, a success report makes three relaxed adds (the
/// count, the latency sum, the count of latencies), a failure one; the sweep is
/// O(n log n) over the set, run by the first pick that finds it due, as the statistical
/// ejection rules' sweep is.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SoftHealth {
    /// How often the multipliers are recomputed (default 1 s).
    pub interval: Duration,
    /// The fewest reports in the interval for a backend to be judged (default 20).
    pub request_volume: u32,
    /// The fewest backends with that volume for any to be judged (default 3).
    pub minimum_hosts: u32,
    /// The least multiplier, in (0, 1] (default 0.05).
    pub floor: f64,
    /// How many times the peers' median latency a backend's mean may reach before its
    /// multiplier is cut, at least 1 (default 1.5).
    pub latency_tolerance: f64,
    /// How far above the peers' median failure share a backend's may be before its
    /// multiplier is cut, in [0, 1] (default 0.05).
    pub failure_tolerance: f64,
}

impl Default for SoftHealth {
    fn default() -> Self {
        SoftHealth {
            interval: Duration::from_secs(1),
            request_volume: 20,
            minimum_hosts: 3,
            floor: 0.05,
            latency_tolerance: 1.5,
            failure_tolerance: 0.05,
        }
    }
}

impl SoftHealth {
    fn validate(&self) -> Result<(), Error> {
        if self.interval.is_zero() {
            return Err(Error::config("soft_health.interval", "must be above zero"));
        }
        if self.request_volume == 0 {
            return Err(Error::config(
                "soft_health.request_volume",
                "must be at least 1",
            ));
        }
        if self.minimum_hosts == 0 {
            return Err(Error::config(
                "soft_health.minimum_hosts",
                "must be at least 1",
            ));
        }
        if !(self.floor > 0.0 && self.floor <= 1.0) {
            return Err(Error::config(
                "soft_health.floor",
                format!("{} is not in (0, 1]", self.floor),
            ));
        }
        if !(self.latency_tolerance.is_finite() && self.latency_tolerance >= 1.0) {
            return Err(Error::config(
                "soft_health.latency_tolerance",
                format!(
                    "{} is not a finite number of at least 1",
                    self.latency_tolerance
                ),
            ));
        }
        if !(0.0..=1.0).contains(&self.failure_tolerance) {
            return Err(Error::config(
                "soft_health.failure_tolerance",
                format!("{} is not in [0, 1]", self.failure_tolerance),
            ));
        }
        Ok(())
    }
}

/// How a joining backend's weight ramps up. Defaults follow Envoy's.
///
/// The ramp moves in 32 steps over the window: each step is one rebuild of the balancer's
/// snapshot, done by the first pick after it is due, so a ramp costs 32 rebuilds whatever
/// the request rate.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SlowStart {
    /// How long the ramp lasts.
    pub window: Duration,
    /// The ramp's curve: 1.0 is linear; above 1 ramps faster early (default 1.0).
    pub aggression: f64,
    /// The weight a backend starts at, in percent of its weight (default 10).
    pub min_weight_percent: f64,
}

impl SlowStart {
    /// A linear ramp over `window`, from 10% of the weight.
    pub fn new(window: Duration) -> Self {
        SlowStart {
            window,
            aggression: 1.0,
            min_weight_percent: 10.0,
        }
    }

    /// The share of its weight a backend has `elapsed` into its ramp, in (0, 1].
    pub(crate) fn factor(&self, elapsed: Duration) -> f64 {
        if elapsed >= self.window {
            return 1.0;
        }
        let t = elapsed.as_secs_f64() / self.window.as_secs_f64();
        t.powf(1.0 / self.aggression)
            .max(self.min_weight_percent / 100.0)
            .clamp(f64::MIN_POSITIVE, 1.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slow_start_follows_envoys_formula() {
        let s = SlowStart {
            window: Duration::from_secs(10),
            aggression: 2.0,
            min_weight_percent: 10.0,
        };
        assert_eq!(s.factor(Duration::ZERO), 0.1);
        assert!((s.factor(Duration::from_secs(4)) - 0.4f64.sqrt()).abs() < 1e-12);
        assert_eq!(s.factor(Duration::from_secs(10)), 1.0);
        assert_eq!(s.factor(Duration::from_secs(99)), 1.0);
    }

    #[test]
    fn every_bad_value_is_named() {
        let bad = [
            (
                HealthConfig::new().outlier_detection(OutlierDetection {
                    consecutive_failures: 0,
                    ..Default::default()
                }),
                "consecutive_failures",
            ),
            (
                HealthConfig::new().outlier_detection(OutlierDetection {
                    base_ejection_time: Duration::ZERO,
                    ..Default::default()
                }),
                "base_ejection_time",
            ),
            (
                HealthConfig::new().outlier_detection(OutlierDetection {
                    max_ejection_time: Duration::from_secs(1),
                    ..Default::default()
                }),
                "max_ejection_time",
            ),
            (
                HealthConfig::new().outlier_detection(OutlierDetection {
                    max_ejection_percent: f64::NAN,
                    ..Default::default()
                }),
                "max_ejection_percent",
            ),
            (HealthConfig::new().panic_threshold(1.5), "panic_threshold"),
            (
                HealthConfig::new().panic_threshold(f64::NAN),
                "panic_threshold",
            ),
            (
                HealthConfig::new().slow_start(SlowStart::new(Duration::ZERO)),
                "window",
            ),
            (
                HealthConfig::new().slow_start(SlowStart {
                    aggression: f64::INFINITY,
                    ..SlowStart::new(Duration::from_secs(1))
                }),
                "aggression",
            ),
            (
                HealthConfig::new().slow_start(SlowStart {
                    min_weight_percent: -1.0,
                    ..SlowStart::new(Duration::from_secs(1))
                }),
                "min_weight_percent",
            ),
        ];
        for (config, name) in bad {
            match config.validate() {
                Err(Error::InvalidConfig { parameter, .. }) => assert_eq!(parameter, name),
                other => panic!("{name}: {other:?}"),
            }
        }
        assert!(HealthConfig::new()
            .outlier_detection(OutlierDetection::default())
            .panic_threshold(0.5)
            .slow_start(SlowStart::new(Duration::from_secs(30)))
            .validate()
            .is_ok());
    }
}
