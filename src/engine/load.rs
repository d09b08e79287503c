//! Load-aware locality routing's sweep (writer only): every update period, each locality's
//! utilisation is sampled from its healthy backends' picks in flight and smoothed; the
//! rebuild that follows splits the levels by [`load_aware_weights`](super::zone::
//! load_aware_weights). What it does for users is documented in
//! [`Topology::load_aware`](crate::Topology::load_aware); this is how.
//!
//! Envoy's pseudo-code (`load_aware_locality.rst`) samples each host's reported utilisation;
//! here a backend of weight `w` with `n` picks held is `min(1, n / (capacity x w))` utilised,
//! read when the period is over (the picks held at that instant, exact), and a locality's
//! sample is the average over its healthy backends (Envoy averages the hosts that reported).
//! Smoothing is Envoy's: the first sample as it is, then `alpha x sample + (1 - alpha) x
//! previous` with `alpha = 1 - exp(-period / time constant)`. A locality with no healthy
//! backend keeps its value (it has no host to weigh anyway). No host is ever stale: the count
//! is always current.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use crate::backend::Health;
use crate::engine::entry::Entry;
use crate::engine::state::NEVER;
use crate::topology::{to_parts, LoadAware, Signal, Topology};

/// A locality of a level: its priority and its name (`None` for the backends that name none).
pub(crate) type Place = (u32, Option<Arc<str>>);

/// When the utilisation was sampled last and is next, and its smoothed values (writer only).
#[derive(Debug, Clone, Default)]
pub(crate) struct LoadSweep {
    /// Clock nanoseconds of the next sample; [`NEVER`] without load-aware routing.
    pub(crate) next_at: u64,
    /// Smoothed utilisation of each locality sampled so far, in [0, 1].
    smoothed: BTreeMap<Place, f64>,
}

impl LoadSweep {
    /// The samples of `topology` from `now` on (none unless it is load-aware). Until the first
    /// sample every locality counts as idle, so the shares follow the healthy backends.
    pub(crate) fn start(topology: &Topology, now: u64) -> Self {
        LoadSweep {
            next_at: topology
                .load
                .as_ref()
                .map_or(NEVER, |load| after(now, load.update_period)),
            smoothed: BTreeMap::new(),
        }
    }

    /// Keeps the samples for `topology` (measured the same way), with the next sample no
    /// later than one of its update periods from `now`.
    pub(crate) fn reschedule(&mut self, topology: &Topology, now: u64) {
        if let Some(load) = &topology.load {
            self.next_at = self.next_at.min(after(now, load.update_period));
        }
    }

    /// The smoothed utilisation of a locality in parts of [`UTILISATION_SCALE`] (0 before its
    /// first sample).
    pub(crate) fn utilisation(&self, priority: u32, locality: Option<&Arc<str>>) -> u32 {
        self.smoothed
            .get(&(priority, locality.cloned()))
            .map_or(0, |&u| to_parts(u))
    }

    /// Samples and smooths if the period is over.
    pub(crate) fn apply<T>(&mut self, members: &[Arc<Entry<T>>], topology: &Topology, now: u64) {
        let Some(load) = &topology.load else {
            return;
        };
        if now < self.next_at {
            return;
        }
        let alpha = load.alpha();
        for (place, sample) in samples(members, load, now) {
            self.smoothed
                .entry(place)
                .and_modify(|u| *u = alpha * sample + (1.0 - alpha) * *u)
                .or_insert(sample);
        }
        // Localities no member is in any more are forgotten (one that comes back starts
        // over), so the map stays as small as the set's localities.
        self.smoothed.retain(|(priority, locality), _| {
            members
                .iter()
                .any(|e| e.priority == *priority && e.locality == *locality)
        });
        self.next_at = after(now, load.update_period);
    }
}

/// Each locality's utilisation now: the average over its healthy backends (those with a
/// fresh report, for reported utilisation; a locality without one has no sample).
fn samples<T>(members: &[Arc<Entry<T>>], load: &LoadAware, now: u64) -> BTreeMap<Place, f64> {
    let mut sums: BTreeMap<Place, (f64, u32)> = BTreeMap::new();
    for e in members {
        let healthy =
            e.weight > 0 && e.state.health() == Health::Up && e.state.ejected_until() == 0;
        if !healthy {
            continue;
        }
        let utilisation = match load.signal {
            Signal::InFlight { capacity } => {
                let full = capacity * f64::from(e.weight);
                (e.state.in_flight() as f64 / full).min(1.0)
            }
            Signal::Reported { expiration } => {
                let Some((ppm, at)) = e.state.reported_utilisation() else {
                    continue;
                };
                let expiration = u64::try_from(expiration.as_nanos()).unwrap_or(u64::MAX);
                if expiration != 0 && now.saturating_sub(at) > expiration {
                    continue;
                }
                // Above 1 counts as fully busy, in the average too.
                (f64::from(ppm) / 1e6).min(1.0)
            }
        };
        let sum = sums
            .entry((e.priority, e.locality.clone()))
            .or_insert((0.0, 0));
        sum.0 += utilisation;
        sum.1 += 1;
    }
    sums.into_iter()
        .map(|(place, (sum, n))| (place, sum / f64::from(n)))
        .collect()
}

fn after(at: u64, period: Duration) -> u64 {
    let period = u64::try_from(period.as_nanos()).unwrap_or(u64::MAX);
    at.saturating_add(period).min(NEVER - 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::zone::UTILISATION_SCALE;

    #[test]
    fn utilisation_is_zero_before_any_sample_and_scaled_after() {
        let mut sweep = LoadSweep::default();
        assert_eq!(sweep.utilisation(0, None), 0);
        sweep.smoothed.insert((0, None), 0.45);
        assert_eq!(sweep.utilisation(0, None), 4_500);
        assert_eq!(UTILISATION_SCALE, 10_000);
    }
}
