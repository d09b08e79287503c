//! What backends say of their own load.

/// A backend's report of its own load, as a server sends it in a response trailer or on a
/// stream the caller owns (gRPC and Envoy carry such reports as ORCA's `OrcaLoadReport`).
/// The caller hands it to [`Balancer::report_load`](crate::Balancer::report_load); lbkit does
/// no I/O.
///
/// Today a report carries the backend's utilisation, which
/// [`Topology::load_aware_reported`](crate::Topology::load_aware_reported) weighs localities
/// by.
///
/// ```
/// use lbkit::{Backend, Balancer, LoadReport, RoundRobin};
/// let lb = RoundRobin::new([Backend::new("a", ())])?;
/// lb.report_load("a", LoadReport::new().utilization(0.7))?;
/// assert!(lb.report_load("a", LoadReport::new().utilization(f64::NAN)).is_err());
/// assert!(lb.report_load("zz", LoadReport::new().utilization(0.7)).is_err());
/// # Ok::<(), lbkit::Error>(())
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct LoadReport {
    pub(crate) utilization: Option<f64>,
}

/// The most utilisation a report keeps (ORCA allows application utilisation above 1).
pub(crate) const MAX_UTILIZATION: f64 = 4_000.0;

impl LoadReport {
    /// An empty report: it changes nothing.
    pub fn new() -> Self {
        LoadReport::default()
    }

    /// The backend's utilisation: 0 idle, 1 fully busy (ORCA's `application_utilization`, or
    /// its `cpu_utilization`). Above 1 is allowed (kept up to 4,000) and counts as fully
    /// busy; negative or not finite is an error when the report is given.
    #[must_use]
    pub fn utilization(mut self, utilization: f64) -> Self {
        self.utilization = Some(utilization);
        self
    }

    /// Checks the fields.
    pub(crate) fn validate(&self) -> Result<(), crate::Error> {
        if let Some(u) = self.utilization {
            if !(u.is_finite() && u >= 0.0) {
                return Err(crate::Error::InvalidReport {
                    field: "utilization",
                    reason: format!("{u} is not finite and at least 0"),
                });
            }
        }
        Ok(())
    }

    /// The utilisation in parts per million, if reported (valid).
    pub(crate) fn utilization_ppm(&self) -> Option<u32> {
        self.utilization
            .map(|u| (u.min(MAX_UTILIZATION) * 1e6).round() as u32)
    }
}
