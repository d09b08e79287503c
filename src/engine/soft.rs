//! Soft health's sweep (writer only): every interval, each backend's weight multiplier moves
//! by how its latency and failures compare with its peers'. What it does for users is
//! documented in [`SoftHealth`]; this is how.

use std::sync::Arc;
use std::time::Duration;

use crate::engine::entry::Entry;
use crate::engine::state::{SoftCounts, FULL_SOFT_WEIGHT, NEVER};
use crate::health::{HealthConfig, SoftHealth};

/// When soft health ran last and runs next (writer only).
#[derive(Debug, Clone, Copy)]
pub(crate) struct SoftSweep {
    /// Clock nanoseconds of the next sweep; [`NEVER`] while soft health is off.
    pub(crate) next_at: u64,
    last_at: u64,
}

impl SoftSweep {
    /// The sweeps of `config` from `now` on (none if soft health is off). The first interval
    /// starts now; every backend starts at its full weight.
    pub(crate) fn start<T>(members: &[Arc<Entry<T>>], config: &HealthConfig, now: u64) -> Self {
        for e in members {
            e.state.set_soft_weight(FULL_SOFT_WEIGHT);
        }
        let Some(rules) = config.soft_health else {
            return SoftSweep {
                next_at: NEVER,
                last_at: now,
            };
        };
        for e in members {
            e.state.take_soft_interval();
        }
        SoftSweep {
            next_at: after(now, rules.interval),
            last_at: now,
        }
    }

    /// A new interval for sweeps already running: the next comes `interval` after the last
    /// (at once if that is past).
    pub(crate) fn reschedule(&mut self, interval: Duration, now: u64) {
        self.next_at = after(self.last_at, interval).max(now);
    }
}

fn after(at: u64, interval: Duration) -> u64 {
    let interval = u64::try_from(interval.as_nanos()).unwrap_or(u64::MAX);
    at.saturating_add(interval).min(NEVER - 1)
}

/// Runs the sweep if it is due.
pub(crate) fn apply_soft_health<T>(
    members: &[Arc<Entry<T>>],
    config: &HealthConfig,
    now: u64,
    sweep: &mut SoftSweep,
) {
    let Some(rules) = config.soft_health else {
        return;
    };
    if now < sweep.next_at {
        return;
    }
    let counts: Vec<SoftCounts> = members
        .iter()
        .map(|e| e.state.take_soft_interval())
        .collect();
    let current: Vec<u32> = members.iter().map(|e| e.state.soft_weight()).collect();
    for (e, weight) in members.iter().zip(next_weights(&rules, &counts, &current)) {
        e.state.set_soft_weight(weight);
    }
    sweep.last_at = now;
    sweep.next_at = after(now, rules.interval);
}

/// How a backend compares with its peers in one interval.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Verdict {
    /// Worse than the tolerance allows: cut the multiplier by this factor (at most 1/2).
    Worse(f64),
    /// Within the middle of the tolerance band, or not judged: recover.
    AsGood,
    /// In the band: hold.
    Hold,
}

/// The multipliers after one interval with `counts`, from `current` (both per member).
fn next_weights(rules: &SoftHealth, counts: &[SoftCounts], current: &[u32]) -> Vec<u32> {
    let verdicts = verdicts(rules, counts);
    let floor =
        ((rules.floor * f64::from(FULL_SOFT_WEIGHT)).round() as u32).clamp(1, FULL_SOFT_WEIGHT);
    verdicts
        .iter()
        .zip(current)
        .map(|(verdict, &weight)| match *verdict {
            Verdict::Worse(factor) => ((f64::from(weight) * factor) as u32).max(floor),
            // Times 3/2, at least one unit up, at most full.
            Verdict::AsGood => {
                (weight.saturating_add(weight / 2).max(weight + 1)).clamp(floor, FULL_SOFT_WEIGHT)
            }
            Verdict::Hold => weight.max(floor),
        })
        .collect()
}

/// Each member's verdict (see [`SoftHealth`]).
fn verdicts(rules: &SoftHealth, counts: &[SoftCounts]) -> Vec<Verdict> {
    let judged: Vec<usize> = (0..counts.len())
        .filter(|&i| counts[i].successes + counts[i].failures >= u64::from(rules.request_volume))
        .collect();
    if judged.len() < rules.minimum_hosts as usize {
        return vec![Verdict::AsGood; counts.len()];
    }
    let failure_share = |c: &SoftCounts| c.failures as f64 / (c.successes + c.failures) as f64;
    // A backend with volume but no timed success has no latency to compare (all failures,
    // or a caller that reports no latencies): the failure share judges it alone.
    let latency = |c: &SoftCounts| (c.timed > 0).then(|| c.latency_ns as f64 / c.timed as f64);
    let median_latency = median(judged.iter().filter_map(|&i| latency(&counts[i])).collect());
    let median_failures =
        median(judged.iter().map(|&i| failure_share(&counts[i])).collect()).unwrap_or(0.0);
    let mut verdicts = vec![Verdict::AsGood; counts.len()];
    for &i in &judged {
        let c = &counts[i];
        let failures = failure_share(c);
        let mut factor = 1.0f64;
        let mut band = true;
        if let (Some(own), Some(median)) = (latency(c), median_latency) {
            if own > rules.latency_tolerance * median {
                factor = factor.min(median / own);
            }
            band &= own <= median * (1.0 + rules.latency_tolerance) / 2.0;
        }
        if failures > median_failures + rules.failure_tolerance {
            let ratio = (1.0 - failures) / (1.0 - median_failures);
            factor = factor.min(ratio * ratio);
        }
        band &= failures <= median_failures + rules.failure_tolerance / 2.0;
        verdicts[i] = if factor < 1.0 {
            Verdict::Worse(factor.min(0.5))
        } else if band {
            Verdict::AsGood
        } else {
            Verdict::Hold
        };
    }
    verdicts
}

/// The median (the mean of the middle two for an even count), `None` for no values.
fn median(mut values: Vec<f64>) -> Option<f64> {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(values[n / 2]),
        _ => Some((values[n / 2 - 1] + values[n / 2]) / 2.0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(successes: u64, failures: u64, latency_ms: u64) -> SoftCounts {
        SoftCounts {
            successes,
            failures,
            timed: successes,
            latency_ns: successes * latency_ms * 1_000_000,
        }
    }

    const FULL: u32 = FULL_SOFT_WEIGHT;

    #[test]
    fn a_backend_four_times_slower_is_cut_to_a_quarter_at_once() {
        let rules = SoftHealth::default();
        let c = [counts(100, 0, 10), counts(100, 0, 10), counts(100, 0, 40)];
        assert_eq!(next_weights(&rules, &c, &[FULL; 3]), [FULL, FULL, FULL / 4]);
    }

    #[test]
    fn a_backend_a_little_slower_is_cut_by_half() {
        let rules = SoftHealth::default();
        // 16 ms against a median of 10: over the 1.5 tolerance, but 10/16 > 1/2.
        let c = [counts(100, 0, 10), counts(100, 0, 10), counts(100, 0, 16)];
        assert_eq!(next_weights(&rules, &c, &[FULL; 3])[2], FULL / 2);
    }

    #[test]
    fn the_band_holds_and_below_it_recovers() {
        let rules = SoftHealth::default();
        let half = FULL / 2;
        // 14 ms: within 1.5 x 10 but above the middle of the band (12.5): hold.
        let c = [counts(100, 0, 10), counts(100, 0, 10), counts(100, 0, 14)];
        assert_eq!(next_weights(&rules, &c, &[FULL, FULL, half])[2], half);
        // 12 ms: in the lower half: recover by 3/2.
        let c = [counts(100, 0, 10), counts(100, 0, 10), counts(100, 0, 12)];
        assert_eq!(
            next_weights(&rules, &c, &[FULL, FULL, half])[2],
            half + half / 2
        );
        // Never above full.
        assert_eq!(next_weights(&rules, &c, &[FULL; 3])[2], FULL);
    }

    #[test]
    fn failures_cut_by_the_square_of_the_success_ratio() {
        let rules = SoftHealth::default();
        // 30% failures against 0%: 0.7^2 = 0.49.
        let c = [counts(100, 0, 10), counts(100, 0, 10), counts(70, 30, 10)];
        let w = next_weights(&rules, &c, &[FULL; 3]);
        assert_eq!(w[2], (f64::from(FULL) * 0.49) as u32);
        // 4% failures: within the 5-point tolerance, but above half of it: hold.
        let c = [counts(100, 0, 10), counts(100, 0, 10), counts(96, 4, 10)];
        assert_eq!(next_weights(&rules, &c, &[FULL, FULL, 10_000])[2], 10_000);
    }

    #[test]
    fn a_backend_that_only_fails_goes_to_the_floor() {
        let rules = SoftHealth::default();
        let c = [counts(100, 0, 10), counts(100, 0, 10), counts(0, 100, 0)];
        let floor = (0.05 * f64::from(FULL)).round() as u32;
        assert_eq!(next_weights(&rules, &c, &[FULL; 3])[2], floor);
        // And stays there while it fails.
        assert_eq!(next_weights(&rules, &c, &[FULL, FULL, floor])[2], floor);
    }

    #[test]
    fn without_volume_or_enough_peers_every_multiplier_recovers() {
        let rules = SoftHealth::default();
        // The slow one has 19 reports: not judged, it recovers.
        let c = [
            counts(100, 0, 10),
            counts(100, 0, 10),
            counts(100, 0, 10),
            counts(19, 0, 90),
        ];
        assert_eq!(
            next_weights(&rules, &c, &[FULL, FULL, FULL, 10_000])[3],
            15_000
        );
        // Two judged backends, fewer than minimum_hosts: nobody is cut.
        let c = [counts(100, 0, 10), counts(100, 0, 90), counts(5, 0, 10)];
        assert_eq!(
            next_weights(&rules, &c, &[FULL, 10_000, FULL]),
            [FULL, 15_000, FULL]
        );
        // A multiplier below the floor (a floor raised by a new configuration) rises to it.
        assert_eq!(next_weights(&rules, &c, &[FULL, 100, FULL])[1], 3277);
    }

    #[test]
    fn the_median_is_robust_to_the_outlier() {
        // Two slow backends of five: the median is still a fast one's latency (11 ms).
        let rules = SoftHealth::default();
        let c = [
            counts(100, 0, 10),
            counts(100, 0, 10),
            counts(100, 0, 11),
            counts(100, 0, 50),
            counts(100, 0, 100),
        ];
        let w = next_weights(&rules, &c, &[FULL; 5]);
        assert_eq!(&w[..3], &[FULL; 3]);
        assert_eq!(w[3], (f64::from(FULL) * 11.0 / 50.0) as u32);
        assert_eq!(w[4], (f64::from(FULL) * 11.0 / 100.0) as u32);
        assert_eq!(median(vec![3.0, 1.0, 2.0, 10.0]), Some(2.5));
        assert_eq!(median(vec![]), None);
    }
}
