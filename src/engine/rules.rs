//! The passive-health rules, applied when a snapshot is built (writer only): ejections that
//! start and end, and slow-start weights. What they do for users is documented in
//! [`crate::health`]; this is how.

use std::sync::Arc;
use std::time::Duration;

use crate::engine::entry::Entry;
use crate::engine::state::{State, FULL_WEIGHT, NEVER};
use crate::health::{HealthConfig, OutlierDetection};
use crate::observe::Ejection;
use crate::placement::{id_hash, mix};

/// Effective weights are scaled by this while slow start or soft health is configured, so
/// that a ramp or a multiplier has resolution even for weight 1.
const WEIGHT_SCALE: u64 = 1000;

/// When the statistical ejection rules ran last and run next (writer only).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Sweep {
    /// Clock nanoseconds of the next sweep; [`NEVER`] while no statistical rule is on.
    pub(crate) next_at: u64,
    /// When the last sweep ran (or the rules were configured).
    last_at: u64,
    /// How many sweeps ran: with the backend's id, it seeds the enforcement draw.
    count: u64,
}

impl Sweep {
    /// No statistical rule: no sweep is ever due.
    pub(crate) fn off() -> Self {
        Sweep {
            next_at: NEVER,
            last_at: 0,
            count: 0,
        }
    }

    /// The sweeps of `config` from `now` on: the first interval starts now, so reports
    /// counted before do not count in it.
    pub(crate) fn start<T>(members: &[Arc<Entry<T>>], config: &HealthConfig, now: u64) -> Self {
        let Some(rules) = config.outlier_detection.filter(OutlierDetection::sweeps) else {
            return Sweep::off();
        };
        for e in members {
            e.state.take_interval();
        }
        Sweep {
            next_at: now.saturating_add(nanos(rules.interval)).min(NEVER - 1),
            last_at: now,
            count: 0,
        }
    }
}

impl Sweep {
    /// A new interval for sweeps already running: the next comes `interval` after the last
    /// (at once if that is past), as grpc-go restarts its timer.
    pub(crate) fn reschedule(&mut self, interval: Duration, now: u64) {
        self.next_at = self
            .last_at
            .saturating_add(nanos(interval))
            .max(now)
            .min(NEVER - 1);
    }
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// Outlier ejection (writer only): runs the statistical rules if their sweep is due, ends
/// ejections whose time is up, then ejects backends that crossed the failure threshold,
/// within the cap. See [`crate::health`].
pub(crate) fn apply_outlier_rules<T>(
    members: &[Arc<Entry<T>>],
    config: &HealthConfig,
    now: u64,
    sweep: &mut Sweep,
) {
    let ramp = config.slow_start.is_some();
    let rules = config.outlier_detection;
    if let Some(rules) = rules.filter(|r| r.sweeps() && now >= sweep.next_at) {
        run_sweep(members, &rules, now, sweep, ramp);
    }
    end_ejections(members, now, ramp);
    let Some(rules) = rules else {
        return;
    };
    let cap = ((members.len() as f64 * rules.max_ejection_percent / 100.0).floor() as usize).max(1);
    let mut ejected = count_ejected(members);
    let base = nanos(rules.base_ejection_time);
    let max = nanos(rules.max_ejection_time);
    for e in members {
        let s = &e.state;
        if s.ejected_until() != 0 || !s.tripped(rules.consecutive_failures) {
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
        // The multiplier drops by one for every base time served since the last return; with
        // sweeps, by one for every interval not ejected, which the sweeps did.
        let served = if rules.sweeps() {
            0
        } else {
            tripped.saturating_sub(s.returned_at()) / base
        };
        let times = s
            .ejections()
            .saturating_sub(u32::try_from(served).unwrap_or(u32::MAX))
            .saturating_add(1);
        let why = if s.consecutive_failures() >= rules.consecutive_failures {
            Ejection::ConsecutiveFailures
        } else {
            Ejection::LocalOriginFailures
        };
        eject(s, tripped, times, base, max, why);
        ejected += 1;
        if s.ejected_until() <= now {
            // Served in full already (no pick came to apply it): back at once, ramping from
            // the moment it would have returned.
            s.end_ejection(s.ejected_until(), ramp);
        }
    }
}

/// How many of `members` are ejected now.
fn count_ejected<T>(members: &[Arc<Entry<T>>]) -> usize {
    members
        .iter()
        .filter(|e| e.state.ejected_until() != 0)
        .count()
}

/// Ejects `s` from `from` as its `times`-th ejection: for `base x times`, at most `max`.
fn eject(s: &State, from: u64, times: u32, base: u64, max: u64, why: Ejection) {
    let length = base.saturating_mul(u64::from(times)).min(max);
    // Between 1 (0 means "not ejected") and NEVER - 1: an end at NEVER would read as "no
    // change due" and never be checked for, even once the clock reached it.
    let until = from.saturating_add(length).clamp(1, NEVER - 1);
    s.eject(until, times, why);
}

/// Ends the ejections whose time is up.
fn end_ejections<T>(members: &[Arc<Entry<T>>], now: u64, ramp: bool) {
    for e in members {
        let s = &e.state;
        let until = s.ejected_until();
        if until != 0 && now >= until {
            // Back when the time was up, not when a pick noticed: its time in service (which
            // lowers the next ejection's multiplier) and its ramp run from then.
            s.end_ejection(until, ramp);
        }
    }
}

/// One sweep of the statistical rules, in gRFC A50's order: the interval's counts, success
/// rate, failure percentage, then the returns and the multipliers' decay.
fn run_sweep<T>(
    members: &[Arc<Entry<T>>],
    rules: &OutlierDetection,
    now: u64,
    sweep: &mut Sweep,
    ramp: bool,
) {
    let interval = nanos(rules.interval).max(1);
    // A sweep that no pick ran on time covers every interval since the last.
    let intervals =
        u32::try_from((now.saturating_sub(sweep.last_at) / interval).max(1)).unwrap_or(u32::MAX);
    let counts: Vec<(u64, u64)> = members.iter().map(|e| e.state.take_interval()).collect();
    let total = members.len();
    let mut ejected = count_ejected(members);
    let base = nanos(rules.base_ejection_time);
    let max = nanos(rules.max_ejection_time);
    // gRFC A50: no ejection once the ejected share has reached the cap, checked before each
    // one; the first is always allowed (grpc C++; lbkit's rule for consecutive failures too).
    let room = |ejected: usize| {
        ejected == 0 || (ejected as f64 * 100.0) < rules.max_ejection_percent * total as f64
    };
    // The enforcement draw, uniform in 0..100: replayable from the sweep count and the id.
    let draw = |i: usize| mix(id_hash(&members[i].id), sweep.count) % 100;
    let eject_now = |i: usize, ejected: &mut usize, why: Ejection| {
        let s = &members[i].state;
        eject(s, now, s.ejections().saturating_add(1), base, max, why);
        *ejected += 1;
    };
    if let Some(rule) = rules.success_rate {
        let candidates = with_volume(&counts, rule.request_volume);
        if !candidates.is_empty() && candidates.len() >= rule.minimum_hosts as usize {
            let rates: Vec<f64> = candidates.iter().map(|&i| rate(counts[i])).collect();
            let n = rates.len() as f64;
            let mean = rates.iter().sum::<f64>() / n;
            let variance = rates.iter().map(|r| (r - mean) * (r - mean)).sum::<f64>() / n;
            let threshold = mean - variance.sqrt() * (f64::from(rule.stdev_factor) / 1000.0);
            for (&i, &r) in candidates.iter().zip(&rates) {
                let outlier = r < threshold && members[i].state.ejected_until() == 0;
                if outlier && room(ejected) && draw(i) < u64::from(rule.enforcement_percentage) {
                    eject_now(i, &mut ejected, Ejection::SuccessRate);
                }
            }
        }
    }
    if let Some(rule) = rules.failure_percentage {
        let candidates = with_volume(&counts, rule.request_volume);
        if !candidates.is_empty() && candidates.len() >= rule.minimum_hosts as usize {
            for &i in &candidates {
                // Failures above `threshold` percent, compared exactly in integers.
                let (ok, failed) = counts[i];
                let over = u128::from(failed) * 100
                    > u128::from(rule.threshold) * (u128::from(ok) + u128::from(failed));
                let outlier = over && members[i].state.ejected_until() == 0;
                if outlier && room(ejected) && draw(i) < u64::from(rule.enforcement_percentage) {
                    eject_now(i, &mut ejected, Ejection::FailurePercentage);
                }
            }
        }
    }
    for e in members {
        let s = &e.state;
        let until = s.ejected_until();
        if until == 0 {
            s.decay_ejections(intervals);
        } else if now >= until {
            s.end_ejection(until, ramp);
        }
    }
    sweep.last_at = now;
    sweep.next_at = now.saturating_add(interval).min(NEVER - 1);
    sweep.count += 1;
}

/// The members with at least `volume` reports in the interval (and at least one), in id
/// order: ejected ones too, as gRFC A50 counts them in the mean.
fn with_volume(counts: &[(u64, u64)], volume: u32) -> Vec<usize> {
    (0..counts.len())
        .filter(|&i| {
            let (ok, failed) = counts[i];
            ok + failed >= u64::from(volume.max(1))
        })
        .collect()
}

/// The success rate of `(successes, failures)`, a fraction (as grpc-go computes it).
fn rate((ok, failed): (u64, u64)) -> f64 {
    ok as f64 / (ok + failed) as f64
}

/// The weight a pick sees: the weight itself, or under slow start, soft health or a subset
/// the weight scaled by [`WEIGHT_SCALE`], ramped, times the soft-health multiplier and the
/// subset coverage (at least 1).
/// Lowers `refresh_at` to the ramp's next step.
pub(crate) fn effective_weight<T>(
    e: &Entry<T>,
    coverage: Option<u32>,
    config: &HealthConfig,
    now: u64,
    refresh_at: &mut u64,
) -> u64 {
    let scaled = config.soft_health.is_some() || coverage.is_some();
    let mut weight = u128::from(ramped_weight(e, config, scaled, now, refresh_at));
    if config.soft_health.is_some() {
        // At most `weight`: the multiplier is at most 1.
        weight = (weight * u128::from(e.state.soft_weight())) >> 16;
    }
    if let Some(coverage) = coverage {
        // At most `weight`: coverage is at most 2^16.
        weight = (weight * u128::from(coverage)) >> 16;
    }
    if scaled {
        weight.max(1) as u64
    } else {
        weight as u64
    }
}

/// Effective weights per unit of configured weight under `config` (and a subset's coverage):
/// [`WEIGHT_SCALE`] while a rule scales them, else 1.
pub(crate) fn weight_scale(config: &HealthConfig, coverage: bool) -> u64 {
    if config.slow_start.is_some() || config.soft_health.is_some() || coverage {
        WEIGHT_SCALE
    } else {
        1
    }
}

/// Whether `e`'s slow-start ramp is not over at `now`.
pub(crate) fn is_ramping<T>(e: &Entry<T>, config: &HealthConfig, now: u64) -> bool {
    let Some(slow_start) = config.slow_start else {
        return false;
    };
    let start = e.state.ramp_start();
    let window = u64::try_from(slow_start.window.as_nanos()).unwrap_or(u64::MAX);
    start != FULL_WEIGHT && now.saturating_sub(start) < window
}

/// The weight before soft health and coverage: scaled by [`WEIGHT_SCALE`] (if a rule needs
/// the resolution) and ramped.
fn ramped_weight<T>(
    e: &Entry<T>,
    config: &HealthConfig,
    scaled: bool,
    now: u64,
    refresh_at: &mut u64,
) -> u64 {
    let weight = u64::from(e.weight);
    let Some(slow_start) = config.slow_start else {
        return if scaled {
            weight * WEIGHT_SCALE
        } else {
            weight
        };
    };
    let start = e.state.ramp_start();
    let window = u64::try_from(slow_start.window.as_nanos()).unwrap_or(u64::MAX);
    let elapsed = now.saturating_sub(start);
    if start == FULL_WEIGHT || elapsed >= window {
        return weight * WEIGHT_SCALE;
    }
    // Re-weigh 32 times over the window.
    let step = (window / 32).max(1);
    *refresh_at = (*refresh_at).min(now.saturating_add(step).min(start.saturating_add(window)));
    let factor = slow_start.factor(std::time::Duration::from_nanos(elapsed));
    ((weight * WEIGHT_SCALE) as f64 * factor).round().max(1.0) as u64
}
