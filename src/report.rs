//! What backends say of their own load.

use crate::engine::orca::orca_utilization;

/// A backend's report of its own load, as a server sends it in a response trailer or on a
/// stream the caller owns (gRPC and Envoy carry such reports as ORCA's `OrcaLoadReport`).
/// The caller hands it over in band, for the pick it came with ([`Pick::report_load`]), or out
/// of band, for a backend by id ([`Balancer::report_load`]); lbkit does no I/O.
///
/// What reads it:
/// - [`ClientSideWeightedRoundRobin`](crate::ClientSideWeightedRoundRobin) weighs each backend
///   by `qps / (utilization + errors_per_second / qps x penalty)` (gRFC A58);
/// - [`Topology::load_aware_reported`](crate::Topology::load_aware_reported) weighs
///   localities by their backends' utilisation.
///
/// Every figure is optional. A field that is negative, NaN or infinite makes the whole report
/// an error ([`Error::InvalidReport`], naming the field) and changes nothing.
///
/// ```
/// use lbkit::{Backend, Balancer, LoadReport, RoundRobin};
/// let lb = RoundRobin::new([Backend::new("a", ())])?;
/// lb.report_load("a", LoadReport::new().utilization(0.7).qps(120.0))?;
/// assert!(lb.report_load("a", LoadReport::new().utilization(f64::NAN)).is_err());
/// assert!(lb.report_load("a", LoadReport::new().qps(-1.0)).is_err());
/// assert!(lb.report_load("zz", LoadReport::new().utilization(0.7)).is_err());
/// # Ok::<(), lbkit::Error>(())
/// ```
///
/// [`Pick::report_load`]: crate::Pick::report_load
/// [`Balancer::report_load`]: crate::Balancer::report_load
/// [`Error::InvalidReport`]: crate::Error::InvalidReport
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct LoadReport {
    pub(crate) utilization: Option<f64>,
    cpu_utilization: Option<f64>,
    qps: Option<f64>,
    errors_per_second: Option<f64>,
    load: Option<f64>,
}

/// The most utilisation a report keeps (ORCA allows application utilisation above 1).
pub(crate) const MAX_UTILIZATION: f64 = 4_000.0;

/// The most load a report keeps: 2^40.
const MAX_LOAD: f64 = (1u64 << 40) as f64;

/// A reported load of 1 in the units kept: 1024, as one request in flight is in the loads the
/// load-aware policies compare ([`FAILURE_UNIT`](crate::engine::state::FAILURE_UNIT)).
pub(crate) const LOAD_UNIT: u64 = 1 << 10;

/// What [`LeastConnections`](crate::LeastConnections) and
/// [`PowerOfTwoChoices`](crate::PowerOfTwoChoices) compare, per unit of weight (set with
/// their builders' `load_signal`).
///
/// ```
/// use lbkit::{Backend, Balancer, LoadReport, LoadSignal, PowerOfTwoChoices, Request};
/// // Each backend's queue depth, as its own reports tell it, plus what this client has in
/// // flight there: one queued request counts as one in flight.
/// let lb = PowerOfTwoChoices::builder()
///     .load_signal(LoadSignal::Combined { per_unit: 1.0 })
///     .seed(1)
///     .build([Backend::new("a", ()), Backend::new("b", ())])?;
/// lb.report_load("a", LoadReport::new().load(40.0))?;
/// for _ in 0..10 {
///     assert_eq!(lb.pick(&Request::new()).unwrap().id(), "b");
/// }
/// # Ok::<(), lbkit::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Default)]
#[non_exhaustive]
pub enum LoadSignal {
    /// Requests in flight from this balancer (the default), plus recent failures with a
    /// failure penalty.
    #[default]
    InFlight,
    /// The backends' reported load ([`LoadReport::load`]); requests in flight break ties (a
    /// reported load of 1 weighs as 2^20 of them, so up to a million they only break ties). A backend that has not reported
    /// counts 0. Between reports every pick sees the same figures, so prefer
    /// [`Combined`](Self::Combined) when reports are seconds apart and requests many: a
    /// backend's own picks then count at once.
    Reported,
    /// Requests in flight plus `per_unit` x the reported load: a reported load of 1 counts
    /// as `per_unit` requests in flight (from 2^-20 to 2^20, kept to one part in 8,192; a
    /// value outside is an error at `build`).
    Combined {
        /// Requests in flight one unit of reported load counts as.
        per_unit: f64,
    },
}

impl LoadSignal {
    /// The weight of a reported [`LOAD_UNIT`] in loads, in 2^-32 (0: not compared), or an
    /// error for a `per_unit` out of range.
    pub(crate) fn factor(self) -> Result<u64, crate::Error> {
        const SCALE: f64 = 4_294_967_296.0; // 2^32
        match self {
            LoadSignal::InFlight => Ok(0),
            LoadSignal::Reported => Ok(1 << 52),
            LoadSignal::Combined { per_unit } => {
                let (least, most) = (1.0 / (1u64 << 20) as f64, (1u64 << 20) as f64);
                if !(per_unit.is_finite() && (least..=most).contains(&per_unit)) {
                    return Err(crate::Error::config(
                        "load_signal",
                        format!("per_unit {per_unit} is not finite and within 2^-20 to 2^20"),
                    ));
                }
                // At least 2^12 and at most 2^52: kept to one part in 2^13 or better.
                Ok((per_unit * SCALE).round() as u64)
            }
        }
    }
}

impl LoadReport {
    /// An empty report: it changes nothing.
    pub fn new() -> Self {
        LoadReport::default()
    }

    /// The backend's utilisation: 0 idle, 1 fully busy (ORCA's `application_utilization`).
    /// Above 1 is allowed (kept up to 4,000) and counts as fully busy for locality routing.
    ///
    /// **Named metrics.** ORCA reports also carry named utilisations (`named_metrics`,
    /// `utilization`), and Envoy can weigh by the largest of those its configuration lists
    /// (`metric_names_for_computing_utilization`). Which comes first has changed between
    /// Envoy versions: the largest listed metric, then `application_utilization`, then
    /// `cpu_utilization` (behind the runtime flag
    /// `orca_weight_manager_use_named_metrics_first`, on by default), or the application's
    /// figure before the named ones (the flag off). The caller parses the report, so it applies
    /// the order it runs: pass the figure that wins here (for Envoy's default, the largest
    /// listed metric above 0, else `application_utilization`), and the CPU figure to
    /// [`cpu_utilization`](Self::cpu_utilization), which counts only when this one is absent or
    /// 0.
    #[must_use]
    pub fn utilization(mut self, utilization: f64) -> Self {
        self.utilization = Some(utilization);
        self
    }

    /// The backend's CPU utilisation (ORCA's `cpu_utilization`), used where
    /// [`utilization`](Self::utilization) is not given or is 0, as gRPC does.
    #[must_use]
    pub fn cpu_utilization(mut self, utilization: f64) -> Self {
        self.cpu_utilization = Some(utilization);
        self
    }

    /// Queries per second the backend served (ORCA's `rps_fractional`).
    #[must_use]
    pub fn qps(mut self, qps: f64) -> Self {
        self.qps = Some(qps);
        self
    }

    /// Errors per second the backend answered (ORCA's `eps`).
    #[must_use]
    pub fn errors_per_second(mut self, eps: f64) -> Self {
        self.errors_per_second = Some(eps);
        self
    }

    /// The backend's load by a measure of the caller's own (queue depth, KV-cache use, open
    /// sessions, ...), lower is better: what [`LeastConnections`](crate::LeastConnections)
    /// and [`PowerOfTwoChoices`](crate::PowerOfTwoChoices) compare under
    /// [`LoadSignal::Reported`] or [`LoadSignal::Combined`]. It stands until the next report
    /// for the backend, or until the backend leaves the set (kept up to 2^40, exactly to
    /// 1/1024; compared without overflow over that whole range).
    #[must_use]
    pub fn load(mut self, load: f64) -> Self {
        self.load = Some(load);
        self
    }

    /// Checks the fields: each given one finite and at least 0.
    pub(crate) fn validate(&self) -> Result<(), crate::Error> {
        let fields = [
            ("utilization", self.utilization),
            ("cpu_utilization", self.cpu_utilization),
            ("qps", self.qps),
            ("errors_per_second", self.errors_per_second),
            ("load", self.load),
        ];
        for (field, value) in fields {
            if let Some(v) = value {
                if !(v.is_finite() && v >= 0.0) {
                    return Err(crate::Error::InvalidReport {
                        field,
                        reason: format!("{v} is not finite and at least 0"),
                    });
                }
            }
        }
        Ok(())
    }

    /// The utilisation that counts: the application's if above 0, else the CPU's (gRPC's
    /// rule), if either was given.
    fn chosen_utilization(&self) -> Option<f64> {
        match (self.utilization, self.cpu_utilization) {
            (None, None) => None,
            (application, cpu) => Some(orca_utilization(
                application.unwrap_or(0.0),
                cpu.unwrap_or(0.0),
            )),
        }
    }

    /// The utilisation in parts per million, if reported (valid).
    pub(crate) fn utilization_ppm(&self) -> Option<u32> {
        self.chosen_utilization()
            .map(|u| (u.min(MAX_UTILIZATION) * 1e6).round() as u32)
    }

    /// The load in [`LOAD_UNIT`]s (1/1024), if reported (valid): at most 2^50.
    pub(crate) fn load_units(&self) -> Option<u64> {
        self.load
            .map(|l| (l.min(MAX_LOAD) * LOAD_UNIT as f64).round() as u64)
    }

    /// `(qps, errors per second, utilisation)` for A58's weight, 0 for what was not given
    /// (a report without qps or utilisation gives no weight).
    pub(crate) fn weight_inputs(&self) -> (f64, f64, f64) {
        (
            self.qps.unwrap_or(0.0),
            self.errors_per_second.unwrap_or(0.0),
            self.chosen_utilization().unwrap_or(0.0),
        )
    }
}
