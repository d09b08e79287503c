//! Seeing what a balancer does: an [`Observer`] is told of every change in where traffic
//! goes (ejections and returns, panic mode, slow starts that end, updates, soft-health
//! weights, subset changes, the shares of priority levels and localities).
//!
//! Events are found by the writer-side code that makes the change (an update, a health
//! change, or the rebuild that applies reports and time, which the first pick that finds it
//! due runs), queued in the order the changes were made, and delivered **after** the writer
//! lock is released, by the thread that made the change (or, if another thread is already
//! delivering, by that one). The observer is called by one thread at a time, in order, never
//! nested, and with no lock held: it may call back into the balancer (`update`, `status`,
//! even `set_health`) without deadlock, and the events of such a call are told after the
//! callback returns. A rebuild is run by a pick, so an observer should be quick (count, log,
//! send to a channel); the picks of other threads are never held up by it. Without an
//! observer, nothing is collected.
//!
//! ```
//! use std::sync::{Arc, Mutex};
//! use lbkit::{Backend, Balancer, Event, Health, RoundRobin};
//!
//! let seen = Arc::new(Mutex::new(Vec::new()));
//! let log = Arc::clone(&seen);
//! let lb = RoundRobin::builder()
//!     .observer(move |event: &Event| log.lock().unwrap().push(event.clone()))
//!     .build([Backend::new("a", ()), Backend::new("b", ())])?;
//! lb.update(vec![Backend::new("b", ()), Backend::new("c", ())])?;
//! assert_eq!(
//!     seen.lock().unwrap().last(),
//!     Some(&Event::Updated { added: 1, removed: 1, kept: 1 })
//! );
//! # Ok::<(), lbkit::Error>(())
//! ```
//!
//! # Counters
//!
//! Every backend's line in [`Balancer::status`](crate::Balancer::status) counts its picks,
//! successes, failures by kind, dropped picks and bounded-load spills
//! ([`Status`](crate::Status)). They cost the pick path nothing it did not pay before: the
//! pick count shares the in-flight count's atomic word (one add counts both), a report adds
//! one relaxed increment on the cache line it already writes.
//!
//! # Metrics
//!
//! With the `metrics` feature and `Builder::metrics`, a balancer
//! records through the [`metrics`](https://docs.rs/metrics) facade to the recorder the
//! application installed. Counters and gauges at build, at most once per interval as picks go
//! (checked once every 1024 picks of a backend), and at
//! [`Balancer::export_metrics`](crate::Balancer::export_metrics) (which a service calls on a
//! timer, so that a quiet balancer's gauges stay fresh); events as they happen. The
//! names and labels are stable:
//!
//! | Metric | Kind | Labels | What |
//! |---|---|---|---|
//! | `lbkit_picks_total` | counter | `balancer`, `backend` | picks taken |
//! | `lbkit_successes_total` | counter | `balancer`, `backend` | picks that reported success |
//! | `lbkit_failures_total` | counter | `balancer`, `backend`, `kind` | picks that reported a failure; `kind` is `local_origin`, `error` or `overloaded` |
//! | `lbkit_dropped_total` | counter | `balancer`, `backend` | picks released without a report |
//! | `lbkit_spills_total` | counter | `balancer`, `backend` | picks whose key's first choice was the backend and that went on, above its bounded-loads capacity |
//! | `lbkit_ejections_total` | counter | `balancer`, `backend`, `reason` | outlier ejections; `reason` is `consecutive_failures`, `local_origin_failures`, `success_rate` or `failure_percentage` |
//! | `lbkit_returns_total` | counter | `balancer`, `backend` | ejections that ended |
//! | `lbkit_panics_total` | counter | `balancer` | times panic mode was entered |
//! | `lbkit_updates_total` | counter | `balancer` | updates of the set applied |
//! | `lbkit_subset_changes_total` | counter | `balancer` | changes of this client's subset |
//! | `lbkit_share_changes_total` | counter | `balancer` | changes of the levels' and localities' traffic shares ([`Event::SharesChanged`]) |
//! | `lbkit_in_flight` | gauge | `balancer`, `backend` | picks held now |
//! | `lbkit_effective_weight` | gauge | `balancer`, `backend` | the weight picks see, in units of the configured weight (0: it takes no new picks) |
//! | `lbkit_eligible` | gauge | `balancer`, `backend` | 1 if the backend can take new picks now: its effective weight is above 0 (in panic mode, also a backend that is down; [`Status::is_eligible`](crate::Status::is_eligible) looks at the backend alone) |
//! | `lbkit_ejected` | gauge | `balancer`, `backend` | 1 while ejected |
//! | `lbkit_soft_health` | gauge | `balancer`, `backend` | the soft-health multiplier, in `[floor, 1]` |
//! | `lbkit_latency_seconds` | gauge | `balancer`, `backend` | the latency estimate ([`PeakEwma`](crate::PeakEwma) and [`Prequal`](crate::Prequal) only) |
//! | `lbkit_table_share` | gauge | `balancer`, `backend` | ring points or Maglev slots owned (hashing tables only) |
//! | `lbkit_table_share_min`, `lbkit_table_share_max` | gauge | `balancer` | their least and most over the set (Envoy's `min/max_hashes_per_host`) |
//! | `lbkit_backends` | gauge | `balancer` | members of the set (or the subset) |
//! | `lbkit_eligible_backends` | gauge | `balancer` | members that can take new picks now (those with `lbkit_eligible` 1) |
//! | `lbkit_panic` | gauge | `balancer` | 1 while in panic mode |
//!
//! `balancer` is [`Builder::name`](crate::Builder::name) (by default the policy's name);
//! `backend` is the backend's id. Counters record their growth since the last export, so a
//! recorder's totals are exact however often exports run. A removed backend that still holds
//! picks is recorded (as [`status`](crate::Balancer::status) lists it) until it drains. A
//! backend no longer listed (outside the subset, or removed and drained) has what it counted
//! since its last export recorded by the next, and its gauges set to 0 once; back in the
//! subset, it counts on from there. A backend removed and added back with no pick held in
//! between counts from 0 again (as its [`Status`](crate::Status) does), on top of what was
//! recorded.
//!
//! Cost: nothing on the picks between exports but a test on the pick count the acquire
//! already returns and a load of a flag beside one every pick reads; an export is one pass
//! over the set and about twenty recorder calls per backend (and a few loads for each backend
//! an earlier export listed that is out of the set or the subset now, with recorder calls
//! only for what it counted since), made by a pick that finds the interval over (after a
//! nudge), or by `export_metrics`.
//!
//! # Tracing
//!
//! With the `tracing` feature, every balancer emits its events as
//! [`tracing`](https://docs.rs/tracing) events under the target `lbkit`: ejections and panic
//! mode at `WARN`, returns, the end of panic mode and updates at `INFO`, the rest at `DEBUG`,
//! with the balancer's name and the backend's id as fields.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use crate::engine::sync::{AtomicBool, Mutex, Ordering};

#[cfg(feature = "metrics")]
pub(crate) mod metrics;
#[cfg(feature = "tracing")]
mod tracing;

/// Told of the changes in a balancer (see the [module docs](crate::observe)). Any
/// `Fn(&Event) + Send + Sync` is one.
pub trait Observer: Send + Sync + 'static {
    /// One change. Called after the writer lock is released, on the thread that made it.
    fn event(&self, event: &Event);
}

impl<F: Fn(&Event) + Send + Sync + 'static> Observer for F {
    fn event(&self, event: &Event) {
        self(event)
    }
}

/// A balancer's observers and its queue of events. Writers queue events under the writer
/// lock (so the queue is in the order the changes were made); after releasing it, each writer
/// delivers: one thread at a time drains the queue, calling the observers with no lock held. A
/// writer that finds another draining leaves its events to it, so an observer that calls back
/// into the balancer never waits for itself, and events are told in order.
///
/// The observers are the caller's ([`Builder::observer`](crate::Builder::observer)), then
/// the `metrics` feature's exporter and the `tracing` feature's events, when on.
pub(crate) struct Watcher {
    observers: Vec<Arc<dyn Observer>>,
    /// The balancer's name, for metrics labels and tracing fields.
    pub(crate) name: Arc<str>,
    /// What the `metrics` feature records, if `Builder::metrics`
    /// asked for it.
    #[cfg(feature = "metrics")]
    pub(crate) exporter: Option<Arc<metrics::Exporter>>,
    queue: Mutex<VecDeque<Event>>,
    draining: AtomicBool,
}

impl Clone for Watcher {
    /// The same observers and settings, with a queue (and a record of what was exported) of
    /// its own (one per balancer).
    fn clone(&self) -> Self {
        Watcher {
            observers: self.observers.clone(),
            name: Arc::clone(&self.name),
            #[cfg(feature = "metrics")]
            exporter: self
                .exporter
                .as_ref()
                .map(|e| Arc::new(metrics::Exporter::new(e.interval_ns))),
            queue: Mutex::new(VecDeque::new()),
            draining: AtomicBool::new(false),
        }
    }
}

impl std::fmt::Debug for Watcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Observers")
            .field("name", &self.name)
            .field("observers", &self.observers.len())
            .finish()
    }
}

impl Watcher {
    pub(crate) fn new(name: Arc<str>) -> Self {
        Watcher {
            observers: Vec::new(),
            name,
            #[cfg(feature = "metrics")]
            exporter: None,
            queue: Mutex::new(VecDeque::new()),
            draining: AtomicBool::new(false),
        }
    }

    /// Adds an observer, told after those added before.
    pub(crate) fn add(&mut self, observer: Arc<dyn Observer>) {
        self.observers.push(observer);
    }

    /// Tells every observer of one event.
    fn tell(&self, event: &Event) {
        for observer in &self.observers {
            observer.event(event);
        }
        #[cfg(feature = "metrics")]
        if let Some(exporter) = &self.exporter {
            exporter.event(&self.name, event);
        }
        #[cfg(feature = "tracing")]
        tracing::event(&self.name, event);
    }

    /// Queues `events` (called under the writer lock).
    pub(crate) fn enqueue(&self, events: Vec<Event>) {
        if !events.is_empty() {
            self.queue.lock().extend(events);
        }
    }

    /// Tells the observer of every queued event, in order, unless another thread (or an
    /// outer call on this one) is doing it; called with no lock held.
    pub(crate) fn deliver(&self) {
        loop {
            // Acquire: pairs with the Release below, so a drainer sees the events queued
            // before the previous drainer gave up the role.
            if self.draining.swap(true, Ordering::Acquire) {
                return;
            }
            loop {
                // The queue lock only around the pop: never held while the observer runs.
                let next = self.queue.lock().pop_front();
                let Some(event) = next else {
                    break;
                };
                self.tell(&event);
            }
            self.draining.store(false, Ordering::Release);
            // An event queued after the last pop and before the store above found the role
            // taken and left it to us: look again.
            if self.queue.lock().is_empty() {
                return;
            }
        }
    }
}

/// Why outlier detection ejected a backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Ejection {
    /// Failures in a row ([`OutlierDetection::consecutive_failures`]).
    ///
    /// [`OutlierDetection::consecutive_failures`]: crate::OutlierDetection::consecutive_failures
    ConsecutiveFailures,
    /// Local-origin failures in a row, counted apart
    /// ([`OutlierDetection::consecutive_local_origin_failures`]).
    ///
    /// [`OutlierDetection::consecutive_local_origin_failures`]:
    ///     crate::OutlierDetection::consecutive_local_origin_failures
    LocalOriginFailures,
    /// Success-rate ejection ([`SuccessRateEjection`](crate::SuccessRateEjection)).
    SuccessRate,
    /// Failure-percentage ejection
    /// ([`FailurePercentageEjection`](crate::FailurePercentageEjection)).
    FailurePercentage,
}

impl Ejection {
    pub(crate) fn to_u8(self) -> u8 {
        match self {
            Ejection::ConsecutiveFailures => 1,
            Ejection::LocalOriginFailures => 2,
            Ejection::SuccessRate => 3,
            Ejection::FailurePercentage => 4,
        }
    }

    pub(crate) fn from_u8(value: u8) -> Option<Self> {
        Some(match value {
            1 => Ejection::ConsecutiveFailures,
            2 => Ejection::LocalOriginFailures,
            3 => Ejection::SuccessRate,
            4 => Ejection::FailurePercentage,
            _ => return None,
        })
    }
}

/// A change in where traffic goes.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Event {
    /// Outlier detection ejected a backend, for `why`, until the clock reads `until`.
    Ejected {
        /// The backend.
        id: Arc<str>,
        /// Which rule.
        why: Ejection,
        /// When the ejection ends, on the balancer's clock ([`Clock::now`](crate::Clock::now)).
        until: Duration,
    },
    /// An ejected backend returned (its time was up, or outlier detection was switched off).
    Returned {
        /// The backend.
        id: Arc<str>,
    },
    /// Too few backends were healthy: the panic threshold made every backend that is not
    /// draining eligible.
    PanicEntered {
        /// Backends up and not ejected.
        healthy: usize,
        /// Backends that could serve (weight above 0, not draining).
        could: usize,
    },
    /// Enough backends are healthy again: health counts again.
    PanicLeft {
        /// Backends up and not ejected.
        healthy: usize,
        /// Backends that could serve.
        could: usize,
    },
    /// A backend's slow-start ramp ended: it has its full weight.
    SlowStartDone {
        /// The backend.
        id: Arc<str>,
    },
    /// An update was applied: how many backends joined, left and stayed.
    Updated {
        /// Backends that joined.
        added: usize,
        /// Backends that left.
        removed: usize,
        /// Backends that stayed.
        kept: usize,
    },
    /// Soft health moved a backend's weight multiplier.
    SoftWeight {
        /// The backend.
        id: Arc<str>,
        /// The new multiplier, in `[floor, 1]`.
        multiplier: f64,
    },
    /// The backends this client uses changed (a new subset rule, an update that moved the
    /// subset, or a subset that fell back to the whole set or came back from it).
    SubsetChanged {
        /// How many backends the client uses now.
        members: usize,
    },
    /// How traffic splits between priority levels and localities changed (a level lost
    /// healthy capacity, a [`Topology`](crate::Topology) was set, load-aware routing moved
    /// traffic between zones). Told only when some share moved by at least one part per
    /// million.
    SharesChanged {
        /// Every level and locality with a share now, in priority then locality order.
        shares: Vec<TrafficShare>,
    },
}

/// One priority level's (or one of its localities') share of the picks, as
/// [`Event::SharesChanged`] tells it.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct TrafficShare {
    /// The level's priority (0 is the highest).
    pub priority: u32,
    /// The locality, or `None` for the level's backends balanced as a whole (or those that
    /// name no locality).
    pub locality: Option<Arc<str>>,
    /// The share of picks, in [0, 1] (healthy and degraded backends together).
    pub share: f64,
}
