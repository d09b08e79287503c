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
}

/// The most utilisation a report keeps (ORCA allows application utilisation above 1).
pub(crate) const MAX_UTILIZATION: f64 = 4_000.0;

impl LoadReport {
    /// An empty report: it changes nothing.
    pub fn new() -> Self {
        LoadReport::default()
    }

    /// The backend's utilisation: 0 idle, 1 fully busy (ORCA's `application_utilization`).
    /// Above 1 is allowed (kept up to 4,000) and counts as fully busy for locality routing.
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

    /// Checks the fields: each given one finite and at least 0.
    pub(crate) fn validate(&self) -> Result<(), crate::Error> {
        let fields = [
            ("utilization", self.utilization),
            ("cpu_utilization", self.cpu_utilization),
            ("qps", self.qps),
            ("errors_per_second", self.errors_per_second),
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
