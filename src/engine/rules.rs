//! The passive-health rules, applied when a snapshot is built (writer only): ejections that
//! start and end, and slow-start weights. What they do for users is documented in
//! [`crate::health`]; this is how.

use std::sync::Arc;

use crate::engine::entry::Entry;
use crate::engine::state::{FULL_WEIGHT, NEVER};
use crate::health::{HealthConfig, OutlierDetection};

/// Effective weights are scaled by this while slow start is configured, so that a ramp has
/// resolution even for weight 1.
const SLOW_START_SCALE: u64 = 1000;

/// Outlier ejection (writer only): ends ejections whose time is up, then ejects backends that
/// crossed the failure threshold, within the cap. See [`crate::health`].
pub(crate) fn apply_outlier_rules<T>(members: &[Arc<Entry<T>>], config: &HealthConfig, now: u64) {
    let ramp = config.slow_start.is_some();
    for e in members {
        let s = &e.state;
        let until = s.ejected_until();
        if until != 0 && now >= until {
            // Back when the time was up, not when a pick noticed: its time in service (which
            // lowers the next ejection's multiplier) and its ramp run from then.
            s.end_ejection(until, ramp);
        }
    }
    let Some(OutlierDetection {
        consecutive_failures,
        base_ejection_time,
        max_ejection_time,
        max_ejection_percent,
    }) = config.outlier_detection
    else {
        return;
    };
    let cap = ((members.len() as f64 * max_ejection_percent / 100.0).floor() as usize).max(1);
    let mut ejected = members
        .iter()
        .filter(|e| e.state.ejected_until() != 0)
        .count();
    let base = u64::try_from(base_ejection_time.as_nanos()).unwrap_or(u64::MAX);
    let max = u64::try_from(max_ejection_time.as_nanos()).unwrap_or(u64::MAX);
    for e in members {
        let s = &e.state;
        if s.ejected_until() != 0 || s.consecutive_failures() < consecutive_failures {
            continue;
        }
        if ejected >= cap {
            // Deferred by the cap: when room frees, its ejection starts then, in full.
            s.clear_trip();
            continue;
        }
        // The ejection runs from the report that crossed the threshold (or from now, for a
        // run counted before the threshold was configured).
        let tripped = s.tripped_at().map_or(now, |at| at.min(now));
        // The multiplier drops by one for every base time served since the last return.
        let served = tripped.saturating_sub(s.returned_at()) / base;
        let times = s
            .ejections()
            .saturating_sub(u32::try_from(served).unwrap_or(u32::MAX))
            .saturating_add(1);
        let length = base.saturating_mul(u64::from(times)).min(max);
        // Between 1 (0 means "not ejected") and NEVER - 1: an end at NEVER would read as "no
        // change due" and never be checked for, even once the clock reached it.
        let until = tripped.saturating_add(length).clamp(1, NEVER - 1);
        s.eject(until, times);
        ejected += 1;
        if until <= now {
            // Served in full already (no pick came to apply it): back at once, ramping from
            // the moment it would have returned.
            s.end_ejection(until, ramp);
        }
    }
}

/// The weight a pick sees: the weight itself, or under slow start the weight scaled by
/// [`SLOW_START_SCALE`] and ramped. Lowers `refresh_at` to the ramp's next step.
pub(crate) fn effective_weight<T>(
    e: &Entry<T>,
    config: &HealthConfig,
    now: u64,
    refresh_at: &mut u64,
) -> u64 {
    let weight = u64::from(e.weight);
    let Some(slow_start) = config.slow_start else {
        return weight;
    };
    let start = e.state.ramp_start();
    let window = u64::try_from(slow_start.window.as_nanos()).unwrap_or(u64::MAX);
    let elapsed = now.saturating_sub(start);
    if start == FULL_WEIGHT || elapsed >= window {
        return weight * SLOW_START_SCALE;
    }
    // Re-weigh 32 times over the window.
    let step = (window / 32).max(1);
    *refresh_at = (*refresh_at).min(now.saturating_add(step).min(start.saturating_add(window)));
    let factor = slow_start.factor(std::time::Duration::from_nanos(elapsed));
    ((weight * SLOW_START_SCALE) as f64 * factor)
        .round()
        .max(1.0) as u64
}
