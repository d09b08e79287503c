//! Time, injected: every rule that depends on time (outlier ejection, slow start, peak EWMA)
//! reads it through a [`Clock`], so tests and simulations can drive time by hand.
//!
//! Times are [`Duration`]s since the clock's own epoch. Reading the system's monotonic clock
//! costs a large part of a whole pick on a virtual machine (0.6x a round-robin pick and drop:
//! `cargo bench --bench pick`, group `report/100`, `floor/clock` against
//! `round-robin/pick+drop`; `benches/README.md`), so lbkit never reads it on
//! every pick: only when a report needs a timestamp, when the membership is rebuilt, and on a
//! sample of picks while a time-based change (an ejection ending, a slow start ramping) is due.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A monotonic source of time.
pub trait Clock: Send + Sync + std::fmt::Debug + 'static {
    /// The time since this clock's epoch. Never decreases.
    fn now(&self) -> Duration;

    /// Whether `now` is cheap enough to read on every pick. When false (the default), picks
    /// read the clock only on a sample (one pick in 16 per thread) while a time-based change
    /// is due; when true, on every such pick, which makes tests with a manual clock exact.
    fn is_cheap(&self) -> bool {
        false
    }
}

/// The system's monotonic clock ([`Instant`]), with its epoch at creation.
#[derive(Debug, Clone, Copy)]
pub struct MonotonicClock {
    epoch: Instant,
}

impl MonotonicClock {
    /// A clock whose epoch is now.
    pub fn new() -> Self {
        MonotonicClock {
            epoch: Instant::now(),
        }
    }
}

impl Default for MonotonicClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for MonotonicClock {
    fn now(&self) -> Duration {
        self.epoch.elapsed()
    }
}

/// A clock that moves only when told to: for tests and simulations. Clones share one time.
///
/// ```
/// use std::time::Duration;
/// use lbkit::{Clock, ManualClock};
/// let clock = ManualClock::new();
/// let seen_by_balancer = clock.clone();
/// clock.advance(Duration::from_secs(3));
/// assert_eq!(seen_by_balancer.now(), Duration::from_secs(3));
/// ```
#[derive(Debug, Clone, Default)]
pub struct ManualClock {
    nanos: Arc<AtomicU64>,
}

impl ManualClock {
    /// A clock at time zero.
    pub fn new() -> Self {
        Self::default()
    }

    /// Moves time forward by `by` (saturating at about 584 years).
    pub fn advance(&self, by: Duration) {
        let by = u64::try_from(by.as_nanos()).unwrap_or(u64::MAX);
        // Relaxed: the clock is one value; readers need atomicity, not ordering with other data.
        let _ = self
            .nanos
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                Some(n.saturating_add(by))
            });
    }

    /// Sets the time; a time earlier than the current one is ignored (clocks never go back).
    pub fn set(&self, to: Duration) {
        let to = u64::try_from(to.as_nanos()).unwrap_or(u64::MAX);
        // Relaxed: as in `advance`.
        self.nanos.fetch_max(to, Ordering::Relaxed);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Duration {
        // Relaxed: as in `advance`.
        Duration::from_nanos(self.nanos.load(Ordering::Relaxed))
    }

    fn is_cheap(&self) -> bool {
        true
    }
}
