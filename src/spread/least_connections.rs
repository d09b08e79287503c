//! Weighted least connections.
//!
//! Each pick scans the eligible backends and takes the one with the lowest in-flight count
//! per unit of weight, compared exactly in integers (a/w_a < b/w_b as a*w_b < b*w_a): loads
//! as they are when every eligible weight is the same, else products of load and weight, in 64
//! bits when the weights fit in 32 (counts always do), in 128 beyond, or with a failure
//! penalty or a load signal;
//! each its own loop, chosen once per update. The scan starts at a rotating position (a per-thread cursor), so among equal
//! backends the first one found changes from pick to pick and equal backends take turns rather
//! than herding onto one. With sequential picks the choice is exact; with concurrent picks two
//! threads can read the same counts and choose the same backend, as in every least-connections
//! balancer that does not lock.
//!
//! **Failures as load** ([`Builder::failure_penalty`], off by default): a backend that fails
//! fast (connection refused, `429`) holds its requests only briefly, so it looks idle and
//! attracts more traffic. With a failure penalty `d`, each reported failure (of any kind)
//! weighs as one more request in flight, fading as exp(-age / `d`): in all, as one request
//! held for `d`. A backend that only fails stops drawing traffic before any ejection; one
//! that recovers is back to its share within a few `d`.
//!
//! **A load of your own** ([`Builder::load_signal`], off by default): backends that know their
//! load better than this client's count of requests (a queue other clients feed too, a
//! KV cache filling up) report it ([`LoadReport::load`](crate::LoadReport::load)), in band or
//! out of band, and [`LoadSignal::Reported`] compares that figure instead of requests in
//! flight, [`LoadSignal::Combined`] the two added (a reported 1 as `per_unit` requests). Still
//! per unit of weight and in integers (the figure kept in 1/1024ths), so ties and turns work as
//! with counts.
//!
//! Cost: O(n) per pick (one load per eligible backend, each on its own cache line, two with a
//! load signal, then a compare, or two multiplies); O(n) per update. Choose it for long-lived
//! connections (WebSockets, streams, database sessions) and mixed request costs; beyond a few
//! hundred backends prefer [`PowerOfTwoChoices`](crate::PowerOfTwoChoices), which is O(1) and
//! nearly as good.

use crate::backend::Backend;
use crate::builder::Builder;
use crate::engine::core::{impl_balancer, Core};
use crate::engine::policy::Policy;
use crate::engine::sequence::Sequence;
use crate::engine::snapshot::{Eligible, Snapshot, View};
use crate::engine::state::State;
use crate::error::Error;
use crate::report::LoadSignal;
use crate::request::Request;
use crate::spread::choice::{Load, Loads, Signal};

/// Weighted least connections, ties broken round-robin.
///
/// ```
/// use lbkit::{Backend, Balancer, LeastConnections, Request};
/// let lb = LeastConnections::new([Backend::new("a", ()), Backend::new("b", ())])?;
/// let first = lb.pick(&Request::new()).unwrap();
/// let second = lb.pick(&Request::new()).unwrap();
/// assert_ne!(first.id(), second.id());
/// # Ok::<(), lbkit::Error>(())
/// ```
pub struct LeastConnections<T> {
    core: Core<T, FewestInFlight>,
}

impl<T: Send + Sync + 'static> LeastConnections<T> {
    /// A LeastConnections balancer over `backends` (the same as `LeastConnections::builder().build(backends)`).
    ///
    /// # Errors
    /// [`Error::EmptyId`], [`Error::DuplicateId`], [`Error::TooManyBackends`], and
    /// [`Error::InvalidConfig`] for a backend's `max_in_flight` of 0.
    pub fn new(backends: impl IntoIterator<Item = Backend<T>>) -> Result<Self, Error> {
        Builder::new(LeastConnectionsConfig::default()).build(backends)
    }
}

impl LeastConnections<()> {
    /// A builder, for passive health ([`Builder::health`]); its `build` makes a `LeastConnections<T>` of
    /// any `T` (this is a function of `LeastConnections<()>` only so that `LeastConnections::builder()` needs no type
    /// annotation).
    pub fn builder() -> Builder<LeastConnectionsConfig> {
        Builder::new(LeastConnectionsConfig::default())
    }
}

impl Builder<LeastConnectionsConfig> {
    /// Makes each reported failure weigh as one more request in flight, fading with time
    /// constant `penalty` (see the [module docs](crate::spread::least_connections)); off by
    /// default. A penalty below 1 ms is an error at `build`.
    ///
    /// ```
    /// use std::time::Duration;
    /// use lbkit::{Backend, Balancer, LeastConnections, Request};
    /// let lb = LeastConnections::builder()
    ///     .failure_penalty(Duration::from_secs(1))
    ///     .build([Backend::new("a", ()), Backend::new("b", ())])?;
    /// let pick = lb.pick(&Request::new()).unwrap();
    /// let failed = pick.id().to_owned();
    /// pick.failure();
    /// // Both are idle, but the one that just failed weighs as one request in flight.
    /// for _ in 0..4 {
    ///     assert_ne!(lb.pick(&Request::new()).unwrap().id(), failed);
    /// }
    /// # Ok::<(), lbkit::Error>(())
    /// ```
    pub fn failure_penalty(mut self, penalty: std::time::Duration) -> Self {
        self.config.failure_penalty = Some(penalty);
        self
    }

    /// What a backend's load is: requests in flight (the default), its own reported load, or
    /// both ([`LoadSignal`]; see the [module docs](crate::spread::least_connections)).
    pub fn load_signal(mut self, signal: LoadSignal) -> Self {
        self.config.load_signal = signal;
        self
    }

    /// Builds the balancer over `backends`.
    ///
    /// # Errors
    /// As [`LeastConnections::new`], and [`Error::InvalidConfig`] for a failure penalty
    /// below 1 ms, a [`LoadSignal::Combined`] factor out of range, or a health rule out of
    /// range.
    pub fn build<T: Send + Sync + 'static>(
        self,
        backends: impl IntoIterator<Item = Backend<T>>,
    ) -> Result<LeastConnections<T>, Error> {
        let policy = FewestInFlight {
            cursor: Sequence::counter(0),
            signal: Signal::new(self.config.failure_penalty, self.config.load_signal)?,
        };
        Ok(LeastConnections {
            core: self.core(policy, backends)?,
        })
    }
}

impl_balancer!(LeastConnections);

/// The configuration of [`LeastConnections`], the type parameter of
/// [`LeastConnections::builder`]'s [`Builder`]: the failure penalty
/// ([`Builder::failure_penalty`]) and the load signal ([`Builder::load_signal`]).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
#[non_exhaustive]
pub struct LeastConnectionsConfig {
    failure_penalty: Option<std::time::Duration>,
    load_signal: LoadSignal,
}

pub(crate) struct FewestInFlight {
    cursor: Sequence,
    signal: Signal,
}

/// What least connections precomputes from the eligible backends' effective weights, so that
/// the scan does the cheapest exact comparison: loads as they are when the weights are equal
/// (a load per unit of weight orders as the load does), 64-bit products when every weight is
/// below 2^32 (in-flight counts are too), 128-bit ones otherwise.
#[derive(Clone, Copy)]
pub(crate) struct Weights {
    uniform: bool,
    narrow: bool,
}

impl FewestInFlight {
    /// The position (in `eligible`) of the least loaded among those `accept` allows (in
    /// flight, or the configured signal, per unit of weight), the first of the lightest from
    /// `start` on; `weights` is the table built from these backends. One loop per kind of
    /// load and comparison, so that the plain one reads nothing but the counts and compares
    /// as cheaply as the weights allow.
    #[inline]
    fn lightest(
        &self,
        eligible: &[Eligible],
        weights: Weights,
        start: usize,
        accept: impl Fn(usize) -> bool,
    ) -> Option<usize> {
        let Weights { uniform, narrow } = weights;
        if self.signal.is_plain() {
            // Counts are below 2^32 (`State::in_flight`).
            let count = |s: &State| s.in_flight() as u64;
            if uniform {
                Self::scan(eligible, start, count, accept, |a, _, b, _| a < b)
            } else if narrow {
                // Both products below 2^64.
                let lighter = |a: u64, aw: u64, b: u64, bw: u64| a * bw < b * aw;
                Self::scan(eligible, start, count, accept, lighter)
            } else {
                Self::scan(eligible, start, count, accept, u64::lighter)
            }
        } else {
            let loads = Loads::new(&self.signal);
            let load = |s: &State| loads.of(s);
            if uniform {
                Self::scan(eligible, start, load, accept, |a, _, b, _| a < b)
            } else if narrow {
                // Loads are below 2^72 (`Loads::of`), so both products are below 2^104: no
                // saturation to check.
                let lighter = |a: u128, aw: u64, b: u128, bw: u64| {
                    a.wrapping_mul(u128::from(bw)) < b.wrapping_mul(u128::from(aw))
                };
                Self::scan(eligible, start, load, accept, lighter)
            } else {
                Self::scan(eligible, start, load, accept, u128::lighter)
            }
        }
    }

    /// The position (in `eligible`) of the least loaded among those `accept` allows, as
    /// `lighter` orders them, scanning from `start` to the end, then from the beginning: the
    /// first of the lightest in scan order. An idle backend cannot be beaten, so the scan
    /// stops there. Two plain loops over the halves (an iterator chain would test which half
    /// it is in at every step).
    #[inline(always)]
    fn scan<L: Load>(
        eligible: &[Eligible],
        start: usize,
        load: impl Fn(&State) -> L,
        accept: impl Fn(usize) -> bool,
        lighter: impl Fn(L, u64, L, u64) -> bool,
    ) -> Option<usize> {
        let (head, tail) = eligible.split_at(start);
        // The first accepted, in scan order, is the first best.
        let first = tail
            .iter()
            .position(|e| accept(e.index))
            .map(|k| start + k)
            .or_else(|| head.iter().position(|e| accept(e.index)))?;
        let mut best = first;
        let mut best_load = load(&eligible[first].state);
        let mut best_weight = eligible[first].weight;
        // What is left in scan order: after `first` to the end of its half, then (if `first`
        // is in the tail) the head.
        let rest: [&[Eligible]; 2] = if first >= start {
            [&eligible[first + 1..], head]
        } else {
            [&head[first + 1..], &[]]
        };
        let mut offset = first + 1;
        for part in rest {
            if best_load == L::ZERO {
                break;
            }
            for (k, e) in part.iter().enumerate() {
                if !accept(e.index) {
                    continue;
                }
                let load = load(&e.state);
                if lighter(load, e.weight, best_load, best_weight) {
                    (best, best_load, best_weight) = (offset + k, load, e.weight);
                    if load == L::ZERO {
                        return Some(best);
                    }
                }
            }
            offset = 0;
        }
        Some(best)
    }
}

impl<T> Policy<T> for FewestInFlight {
    type Table = Weights;
    // The table says whether the effective weights are equal, which health and time-based
    // rules change.
    const TABLE_USES_HEALTH: bool = true;

    fn build(&self, view: &View<'_, T>) -> Result<Weights, Error> {
        let weights = || view.eligible.iter().map(|e| e.weight);
        let first = weights().next();
        Ok(Weights {
            uniform: weights().all(|w| Some(w) == first),
            narrow: weights().all(|w| w <= u64::from(u32::MAX)),
        })
    }

    fn failure_load(&self) -> Option<std::time::Duration> {
        self.signal.failure_penalty
    }

    /// The lightest; those not accepted are left out of the scan.
    #[inline]
    fn choose(
        &self,
        snap: &Snapshot<T, Weights>,
        _: &Request<'_>,
        accept: impl Fn(usize) -> bool,
    ) -> Option<usize> {
        let n = snap.eligible.len();
        if n == 0 {
            return None;
        }
        let start = (self.cursor.next() % n as u64) as usize;
        let best = self.lightest(&snap.eligible, *snap.table, start, accept)?;
        Some(snap.eligible[best].index)
    }

    fn choose_n(
        &self,
        snap: &Snapshot<T, Weights>,
        _: &Request<'_>,
        n: usize,
        accept: impl Fn(usize) -> bool,
        out: &mut Vec<usize>,
    ) {
        let len = snap.eligible.len();
        if len == 0 {
            return;
        }
        let start = (self.cursor.next() % len as u64) as usize;
        // Read every count once, then order by load, ties by distance from the rotating start.
        let loads = Loads::new(&self.signal);
        let mut order: Vec<(usize, u128, u64)> = (0..len)
            .map(|k| (start + k) % len)
            .filter(|&p| accept(snap.eligible[p].index))
            .map(|p| {
                (
                    p,
                    loads.of(&snap.eligible[p].state),
                    snap.eligible[p].weight,
                )
            })
            .collect();
        order.sort_by(|a, b| {
            if a.1.lighter(a.2, b.1, b.2) {
                std::cmp::Ordering::Less
            } else if b.1.lighter(b.2, a.1, a.2) {
                std::cmp::Ordering::Greater
            } else {
                std::cmp::Ordering::Equal
            }
        });
        out.extend(
            order
                .iter()
                .take(n)
                .map(|&(p, _, _)| snap.eligible[p].index),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::LoadReport;
    use proptest::prelude::*;
    use std::sync::Arc;
    use std::time::Duration;

    /// A least connections comparing `signal`, with a failure penalty or not.
    fn policy(signal: LoadSignal, penalty: Option<Duration>) -> FewestInFlight {
        FewestInFlight {
            cursor: Sequence::counter(0),
            signal: Signal::new(penalty, signal).unwrap(),
        }
    }

    /// Every kind of load: counts (plain), failures as load (128-bit loads, none
    /// reported), a reported load alone and one that counts 2^20 requests per unit.
    fn policies() -> [FewestInFlight; 4] {
        [
            policy(LoadSignal::InFlight, None),
            policy(LoadSignal::InFlight, Some(Duration::from_secs(1))),
            policy(LoadSignal::Reported, None),
            policy(
                LoadSignal::Combined {
                    per_unit: 1048576.0,
                },
                None,
            ),
        ]
    }

    /// The lightest load per unit of weight among the accepted, by exact 128-bit products
    /// (loads below 2^72, weights below 2^43: no overflow), the first in scan order from
    /// `start`: the rule every comparison mode must give.
    fn reference(
        policy: &FewestInFlight,
        eligible: &[Eligible],
        start: usize,
        accepted: &[bool],
    ) -> Option<usize> {
        let loads = Loads::new(&policy.signal);
        let load = |p: usize| -> u128 {
            if policy.signal.is_plain() {
                eligible[p].state.in_flight() as u128
            } else {
                loads.of(&eligible[p].state)
            }
        };
        let n = eligible.len();
        let mut best: Option<usize> = None;
        for p in (start..n).chain(0..start).filter(|&p| accepted[p]) {
            let lighter = |b: usize| {
                load(p) * u128::from(eligible[b].weight) < load(b) * u128::from(eligible[p].weight)
            };
            if best.map_or(true, lighter) {
                best = Some(p);
            }
        }
        best
    }

    /// Backends of these weights holding these counts and reporting these loads, and the
    /// table built from them.
    fn backends(backends: &[(u64, Option<f64>, u64)]) -> (Vec<Eligible>, Weights) {
        let eligible: Vec<Eligible> = backends
            .iter()
            .enumerate()
            .map(|(index, &(count, reported, weight))| {
                let state = Arc::new(State::default());
                for _ in 0..count {
                    state.acquire();
                }
                if let Some(load) = reported {
                    state.take_report(&LoadReport::new().load(load), 0);
                }
                Eligible {
                    index,
                    weight,
                    state,
                }
            })
            .collect();
        let view = View::<()> {
            members: &[],
            eligible: &eligible,
            now: 0,
            weight_scale: 1,
        };
        let table = Policy::<()>::build(&policies()[0], &view).unwrap();
        (eligible, table)
    }

    #[test]
    fn the_table_tells_equal_and_narrow_weights() {
        let flags = |weights: &[u64]| {
            let set: Vec<_> = weights.iter().map(|&w| (0, None, w)).collect();
            let (_, t) = backends(&set);
            (t.uniform, t.narrow)
        };
        assert_eq!(flags(&[3, 3, 3]), (true, true));
        assert_eq!(flags(&[1, 2]), (false, true));
        assert_eq!(flags(&[1 << 32, 1]), (false, false));
        assert_eq!(flags(&[u64::from(u32::MAX), 7]), (false, true));
        assert_eq!(flags(&[]), (true, true));
    }

    proptest! {
        /// Equal weights, weights below 2^32 and wider ones (up to 2^42, the most an
        /// effective weight reaches) each take their own loop, for counts and for 128-bit
        /// loads up to 2^70 (a reported 10^12 counting 2^20 requests per unit): every one
        /// chooses what the exact rule chooses.
        #[test]
        fn every_comparison_mode_chooses_as_the_exact_rule(
            (set, accepted, start) in (1usize..16).prop_flat_map(|n| (
                prop_oneof![
                    // Equal weights.
                    (1u64..1 << 42).prop_flat_map(move |w| proptest::collection::vec(
                        (0u64..6, proptest::option::of(prop_oneof![Just(0.5), Just(1.0), Just(1e12)]), Just(w)),
                        n,
                    )),
                    // Small weights: ties between different loads and weights.
                    proptest::collection::vec(
                        (
                            0u64..6,
                            proptest::option::of(prop_oneof![Just(0.5), Just(1.0), Just(1e12)]),
                            1u64..5,
                        ),
                        n,
                    ),
                    // Any weights, narrow or wide.
                    proptest::collection::vec(
                        (
                            0u64..6,
                            proptest::option::of(prop_oneof![Just(0.5), Just(1.0), Just(1e12)]),
                            prop_oneof![
                                1u64..5,
                                Just(u64::from(u32::MAX)),
                                Just(1u64 << 32),
                                1u64..1 << 42,
                            ],
                        ),
                        n,
                    ),
                ],
                proptest::collection::vec(proptest::bool::weighted(0.8), n),
                0..n,
            )),
        ) {
            let (eligible, table) = backends(&set);
            for policy in policies() {
                let want = reference(&policy, &eligible, start, &accepted);
                let got = policy.lightest(&eligible, table, start, |i| accepted[i]);
                prop_assert_eq!(got, want);
            }
        }
    }
}
