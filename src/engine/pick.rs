//! The guard a pick returns, and the read-only view of a backend that
//! [`Balancer::backends`](crate::Balancer::backends) gives.

use std::ops::Deref;
use std::sync::Arc;

use crate::engine::entry::Entry;
use crate::engine::state::State;
use crate::health::Failure;

/// One request in flight on one backend: a guard that gives the slot back when dropped.
///
/// A `Pick` dereferences to the backend's value. While it lives, the backend's in-flight count
/// includes it, which is what least-connections, P2C and bounded loads balance on; hold it for
/// as long as the request (or connection) really occupies the backend. Dropping it releases the
/// slot exactly once, also when the backend was removed from the set in the meantime.
///
/// **Timeouts and cancellations.** A pick dropped without [`success`](Pick::success) (your
/// timeout fired, the request was cancelled, the response future was dropped) only releases
/// its slot for every policy but [`PeakEwma`](crate::PeakEwma) and
/// [`Prequal`](crate::Prequal), which also take the time the pick was held as a latency
/// observation (as tower's PeakEwma does), so a backend that hangs looks as slow as your
/// timeout, never faster; the same for
/// [`failure`](Pick::failure). Outlier ejection counts only `failure()`: report a timeout as
/// a failure for it to count.
///
/// ```
/// use lbkit::{Backend, Balancer, LeastConnections, Request};
/// let lb = LeastConnections::new([Backend::new("a", "10.0.0.1:80")])?;
/// let pick = lb.pick(&Request::new()).unwrap();
/// assert_eq!((pick.id(), *pick), ("a", "10.0.0.1:80"));
/// assert_eq!(lb.status()[0].in_flight(), 1);
/// drop(pick);
/// assert_eq!(lb.status()[0].in_flight(), 0);
/// # Ok::<(), lbkit::Error>(())
/// ```
#[must_use = "dropping a Pick at once releases its in-flight slot"]
pub struct Pick<T> {
    entry: Arc<Entry<T>>,
    /// Clock nanoseconds when the pick was made, if the policy keeps a latency estimate;
    /// [`UNTRACKED`] otherwise, or once a latency was reported.
    started: u64,
    /// The units of work it holds ([`Request::cost`](crate::Request::cost)), given back on drop.
    cost: u32,
}

/// The value of [`Pick::started`] for a pick whose end feeds no latency estimate.
const UNTRACKED: u64 = u64::MAX;

impl<T> Pick<T> {
    /// Counts one more request in flight on `entry`, holding `cost` units of work, whose
    /// state is `state` (passed apart so that its address does not wait for the entry's cache
    /// line: the two misses overlap); `None` if the cost does not fit under the backend's cap.
    /// `track`: the policy keeps a latency estimate, so the pick notes when it started.
    #[inline]
    pub(crate) fn new(
        entry: &Arc<Entry<T>>,
        state: &State,
        track: bool,
        cost: u32,
    ) -> Option<Self> {
        debug_assert!(std::ptr::eq(&*entry.state, state));
        // The clock before the count: if it panics, nothing was taken.
        let started = if track {
            state.now_ns().min(UNTRACKED - 1)
        } else {
            UNTRACKED
        };
        if !state.try_acquire(cost) {
            return None;
        }
        Some(Pick {
            entry: Arc::clone(entry),
            started,
            cost,
        })
    }

    /// The id of the backend picked.
    pub fn id(&self) -> &str {
        &self.entry.id
    }

    /// The id of the backend picked, shared (no copy).
    #[cfg(feature = "tower")]
    pub(crate) fn shared_id(&self) -> &Arc<str> {
        &self.entry.id
    }

    /// Gives the pick back unused: the request was never sent (the tower `Balance` looked at
    /// this backend and found its service not ready). Releases the slot, exactly once, and
    /// takes the pick back out of the picks taken; it is no latency observation and no
    /// dropped pick. A bounded-loads spill its choice counted stays counted: the `Balance`
    /// looks again for the same request without counting one (`Request::without_spill_count`).
    #[cfg(feature = "tower")]
    pub(crate) fn unused(mut self) {
        self.entry.state.give_back(self.cost);
        // The drop that follows releases nothing more and observes nothing.
        self.cost = 0;
        self.started = UNTRACKED;
    }

    /// The units of work this pick holds ([`Request::cost`](crate::Request::cost); 1 by
    /// default).
    pub fn cost(&self) -> u32 {
        self.cost
    }

    /// The weight the backend had in the set this pick was made from.
    pub fn weight(&self) -> u32 {
        self.entry.weight
    }

    /// The backend's value (the same as dereferencing the pick).
    pub fn value(&self) -> &T {
        &self.entry.value
    }

    /// Hands over the load report that came with this request's answer (in band: a response
    /// trailer, ORCA's per-call report), for the backend picked; then report the outcome
    /// (`success`, `failure`) as usual. The same as
    /// [`Balancer::report_load`](crate::Balancer::report_load) for this backend, without the
    /// lookup, and also after the backend left the set (a report for a backend no longer
    /// there weighs nothing).
    ///
    /// ```
    /// use std::time::Duration;
    /// use lbkit::{Backend, Balancer, ClientSideWeightedRoundRobin, LoadReport, Request};
    /// let lb = ClientSideWeightedRoundRobin::new([Backend::new("a", ()), Backend::new("b", ())])?;
    /// let pick = lb.pick(&Request::new()).unwrap();
    /// pick.report_load(LoadReport::new().qps(100.0).utilization(0.5))?;
    /// pick.success(Duration::from_millis(3));
    /// # Ok::<(), lbkit::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::InvalidReport`](crate::Error::InvalidReport) for a field that is negative, NaN
    /// or infinite; then nothing changes.
    pub fn report_load(&self, report: crate::LoadReport) -> Result<(), crate::Error> {
        report.validate()?;
        let state = &self.entry.state;
        state.take_report(&report, state.now_ns());
        Ok(())
    }

    /// Reports that the request succeeded after `latency`, and releases the slot. Resets the
    /// backend's run of failures, and feeds its latency estimate if the policy keeps one
    /// ([`PeakEwma`](crate::PeakEwma), [`Prequal`](crate::Prequal)).
    pub fn success(mut self, latency: std::time::Duration) {
        self.entry.state.report_success(latency);
        self.started = UNTRACKED;
    }

    /// Reports that the request failed with an error answer ([`Failure::Error`]), and
    /// releases the slot: the same as `failure_of(Failure::Error)`. Failures eject the
    /// backend if outlier detection is configured ([`HealthConfig`](crate::HealthConfig)). For
    /// [`PeakEwma`](crate::PeakEwma) and [`Prequal`](crate::Prequal), the failure is a
    /// latency observation of the time the pick was held or the policy's failure penalty (5 s
    /// by default), whichever is more.
    pub fn failure(self) {
        self.failure_of(Failure::Error);
    }

    /// Reports that the request failed, and how ([`Failure`]), and releases the slot.
    ///
    /// A kind that outlier detection counts ([`OutlierDetection::counted`]; all but
    /// [`Failure::Overloaded`] by default) is a failure for every ejection rule; another kind
    /// is a success for them. Every kind is a failure for the latency estimate of
    /// [`PeakEwma`](crate::PeakEwma) and [`Prequal`](crate::Prequal) (as
    /// [`failure`](Pick::failure) says), and an overload answer's `retry_after`
    /// is a floor on that observation too.
    ///
    /// ```
    /// use std::time::Duration;
    /// use lbkit::{Backend, Balancer, Failure, LeastConnections, Request};
    /// let lb = LeastConnections::new([Backend::new("a", ())])?;
    /// let pick = lb.pick(&Request::new()).unwrap();
    /// // An HTTP 429 with `Retry-After: 2`.
    /// pick.failure_of(Failure::Overloaded { retry_after: Some(Duration::from_secs(2)) });
    /// # Ok::<(), lbkit::Error>(())
    /// ```
    ///
    /// [`OutlierDetection::counted`]: crate::OutlierDetection::counted
    pub fn failure_of(mut self, kind: Failure) {
        let state = &self.entry.state;
        state.report_failure_of(kind);
        if self.started != UNTRACKED {
            let floor = match kind {
                Failure::Overloaded { retry_after } => retry_after,
                _ => None,
            };
            state.observe_failure(self.started, floor);
            self.started = UNTRACKED;
        }
    }
}

impl<T> Deref for Pick<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.entry.value
    }
}

impl<T> Drop for Pick<T> {
    #[inline]
    fn drop(&mut self) {
        self.entry.state.release(self.cost);
        if self.started != UNTRACKED {
            // Dropped without a latency report, or failed: the time held is the latency.
            self.entry.state.observe_elapsed(self.started);
        }
    }
}

impl<T> std::fmt::Debug for Pick<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pick").field("id", &self.id()).finish()
    }
}

/// One backend of a balancer's current set, as [`Balancer::backends`](crate::Balancer::backends)
/// gives it: its id, weight and value, read without counting a request in flight.
///
/// It holds the backend's value alive (as a [`Pick`] does) but takes no in-flight slot, so
/// keep it for as long as you need the value, not per request.
///
/// ```
/// use lbkit::{Backend, Balancer, RoundRobin};
/// let lb = RoundRobin::new([Backend::new("b", 2), Backend::new("a", 1)])?;
/// let now: Vec<(String, i32)> = lb.backends().iter().map(|m| (m.id().to_owned(), **m)).collect();
/// assert_eq!(now, [("a".to_owned(), 1), ("b".to_owned(), 2)]);
/// # Ok::<(), lbkit::Error>(())
/// ```
pub struct Member<T> {
    entry: Arc<Entry<T>>,
}

impl<T> Member<T> {
    pub(crate) fn new(entry: &Arc<Entry<T>>) -> Self {
        Member {
            entry: Arc::clone(entry),
        }
    }

    /// The backend's id.
    pub fn id(&self) -> &str {
        &self.entry.id
    }

    /// The backend's weight, as the latest update gave it.
    pub fn weight(&self) -> u32 {
        self.entry.weight
    }

    /// The backend's value (the same as dereferencing the member).
    pub fn value(&self) -> &T {
        &self.entry.value
    }
}

impl<T> Deref for Member<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.entry.value
    }
}

impl<T> Clone for Member<T> {
    fn clone(&self) -> Self {
        Member {
            entry: Arc::clone(&self.entry),
        }
    }
}

impl<T: std::fmt::Debug> std::fmt::Debug for Member<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Member")
            .field("id", &self.id())
            .field("weight", &self.weight())
            .field("value", self.value())
            .finish()
    }
}
