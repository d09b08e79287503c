//! What the load-aware request policies share: comparing in-flight requests per unit of
//! weight exactly, and the power-of-two-choices loop over any way of comparing cost. Not a
//! policy itself: [`LeastConnections`](crate::LeastConnections) uses [`lighter`];
//! [`PowerOfTwoChoices`](crate::PowerOfTwoChoices) and [`PeakEwma`](crate::PeakEwma) are
//! [`TwoChoices`] with their own [`Cost`].

use std::cell::Cell;
use std::time::Duration;

use crate::engine::alias::{draw_distinct, draw_where, AliasTable};
use crate::engine::policy::Policy;
use crate::engine::sequence::Sequence;
use crate::engine::snapshot::{Eligible, Snapshot, View};
use crate::engine::state::{LatencyTracking, State, FAILURE_UNIT};
use crate::error::Error;
use crate::placement::{splitmix64, GAMMA};
use crate::report::LoadSignal;
use crate::request::Request;

/// Whether `a` carries less load per unit of weight than `b`, exactly (a/w_a < b/w_b as
/// a x w_b < b x w_a, widened to 128 bits). Weights are above 0 for eligible backends.
#[inline]
pub(crate) fn lighter(a_load: u64, a_weight: u64, b_load: u64, b_weight: u64) -> bool {
    u128::from(a_load) * u128::from(b_weight) < u128::from(b_load) * u128::from(a_weight)
}

/// A load in the units one pick compares: requests in flight as they are (`u64`), or with
/// failures or a reported load in [`FAILURE_UNIT`]s (`u128`: a reported load reaches 2^71).
pub(crate) trait Load: Copy + PartialEq {
    /// No load: nothing is lighter.
    const ZERO: Self;
    /// Whether `self / weight` is below `other / other_weight`, exactly.
    fn lighter(self, weight: u64, other: Self, other_weight: u64) -> bool;
}

impl Load for u64 {
    const ZERO: Self = 0;
    #[inline]
    fn lighter(self, weight: u64, other: Self, other_weight: u64) -> bool {
        lighter(self, weight, other, other_weight)
    }
}

impl Load for u128 {
    const ZERO: Self = 0;
    /// Loads below 2^72 and effective weights below 2^42 (see `MAX_BACKENDS`) multiply
    /// within 2^114; saturating keeps any larger product ordered as the largest.
    #[inline]
    fn lighter(self, weight: u64, other: Self, other_weight: u64) -> bool {
        self.saturating_mul(u128::from(other_weight)) < other.saturating_mul(u128::from(weight))
    }
}

/// A failure penalty as configured: `None` (off) or at least 1 ms (the resolution of the
/// time kept with recent failures).
pub(crate) fn check_failure_penalty(penalty: Option<Duration>) -> Result<Option<Duration>, Error> {
    match penalty {
        Some(d) if d < Duration::from_millis(1) => Err(Error::config(
            "failure_penalty",
            format!("must be at least 1 ms, got {d:?}"),
        )),
        other => Ok(other),
    }
}

/// How the load-aware request policies read a backend's load during one pick: its requests
/// in flight, plus its recent failures when failures weigh on load, plus its reported load
/// under a [`LoadSignal`] that compares it (then all in [`FAILURE_UNIT`]s, one request in
/// flight being one unit, and the clock read at most once per pick, only if some candidate
/// has recent failures).
pub(crate) struct Loads {
    failures: bool,
    /// The weight of a reported [`LOAD_UNIT`](crate::report::LOAD_UNIT), in 2^-32
    /// ([`LoadSignal::factor`]); 0: reports are not compared.
    reported: u64,
    now_ms: Cell<Option<u64>>,
}

impl Loads {
    /// Loads for one pick under `signal`; `failures`: whether recent failures count.
    #[inline]
    pub(crate) fn new(signal: &Signal) -> Self {
        Loads {
            failures: signal.failure_penalty.is_some(),
            reported: signal.reported,
            now_ms: Cell::new(None),
        }
    }

    /// The load of `state`, in units consistent across one pick: [`FAILURE_UNIT`]s of one
    /// request in flight (below 2^72: 2^42 for the work held, 2^71 for a reported load).
    #[inline]
    pub(crate) fn of(&self, state: &State) -> u128 {
        let mut load = u128::from(state.in_flight() as u64) * u128::from(FAILURE_UNIT);
        if self.failures {
            let recent = state.failure_load(|| match self.now_ms.get() {
                Some(now) => now,
                None => {
                    let now = state.now_ms();
                    self.now_ms.set(Some(now));
                    now
                }
            });
            load += u128::from(recent);
        }
        if self.reported != 0 {
            // At most 2^50 x 2^52 before the shift: 2^70 after.
            load += (u128::from(state.reported_load()) * u128::from(self.reported)) >> 32;
        }
        load
    }
}

/// What the load of a backend is made of for [`LeastConnections`](crate::LeastConnections)
/// and [`PowerOfTwoChoices`](crate::PowerOfTwoChoices): their failure penalty and load
/// signal, checked.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Signal {
    pub(crate) failure_penalty: Option<Duration>,
    /// [`LoadSignal::factor`]: 0 when reports are not compared.
    pub(crate) reported: u64,
    /// The load [`Loads::of`] gives for one request: 1 for the plain count (not through
    /// `Loads`), [`FAILURE_UNIT`] where a reported 1 counts as `per_unit` requests or failures
    /// weigh, and 2^20 of those under [`LoadSignal::Reported`], where a reported 1 outweighs
    /// every count this client could hold (the count only breaks ties).
    pub(crate) request: u128,
}

impl Signal {
    /// The signal of a failure penalty and a load signal, or an error for either out of
    /// range.
    pub(crate) fn new(
        failure_penalty: Option<Duration>,
        signal: LoadSignal,
    ) -> Result<Self, Error> {
        let failure_penalty = check_failure_penalty(failure_penalty)?;
        let reported = signal.factor()?;
        let request = match signal {
            LoadSignal::Reported => u128::from(FAILURE_UNIT) << 20,
            _ if failure_penalty.is_some() || reported != 0 => u128::from(FAILURE_UNIT),
            _ => 1,
        };
        Ok(Signal {
            failure_penalty,
            reported,
            request,
        })
    }

    /// Whether a load is more than the requests in flight (the plain count is read faster).
    #[inline]
    pub(crate) fn is_plain(&self) -> bool {
        self.failure_penalty.is_none() && self.reported == 0
    }
}

/// How two candidates are compared: the lighter (cheaper) one wins.
pub(crate) trait Cost: Send + Sync + 'static {
    /// Whether `a` is strictly lighter than `b`.
    fn lighter(&self, a: &Eligible, b: &Eligible) -> bool;

    /// Whether reports must keep a latency estimate for this comparison.
    fn latency_tracking(&self) -> Option<LatencyTracking> {
        None
    }

    /// Whether failures weigh on load for this comparison (see [`Loads`]).
    fn failure_load(&self) -> Option<Duration> {
        None
    }
}

/// Requests in flight per unit of weight, compared exactly in integers; with a failure
/// penalty, recent failures count as requests in flight, and under a load signal the
/// reported load too (see [`Loads`]).
pub(crate) struct InFlightPerWeight {
    pub(crate) signal: Signal,
}

impl Cost for InFlightPerWeight {
    #[inline]
    fn lighter(&self, a: &Eligible, b: &Eligible) -> bool {
        if self.signal.is_plain() {
            let (a_load, b_load) = (a.state.in_flight() as u64, b.state.in_flight() as u64);
            return lighter(a_load, a.weight, b_load, b.weight);
        }
        let loads = Loads::new(&self.signal);
        Load::lighter(loads.of(&a.state), a.weight, loads.of(&b.state), b.weight)
    }

    fn failure_load(&self) -> Option<Duration> {
        self.signal.failure_penalty
    }
}

/// The power-of-two-choices loop, over any way of comparing load.
pub(crate) struct TwoChoices<L> {
    rng: Sequence,
    load: L,
}

impl<L: Cost> TwoChoices<L> {
    pub(crate) fn new(seed: u64, load: L) -> Self {
        TwoChoices {
            rng: Sequence::random(seed),
            load,
        }
    }

    /// Positions (in `eligible`) of the two candidates among those `accept` allows, the
    /// first the lighter one (the second `None` if only one is allowed).
    #[inline]
    fn candidates<T>(
        &self,
        snap: &Snapshot<T, AliasTable>,
        accept: impl Fn(usize) -> bool,
    ) -> Option<(usize, Option<usize>)> {
        let refused = |p: usize| !accept(snap.eligible[p].index);
        match snap.eligible.len() {
            0 => return None,
            // Nothing to draw or compare.
            1 => return (!refused(0)).then_some((0, None)),
            _ => {}
        }
        // One atomic step per pick: the second value is the first one re-mixed (SplitMix64's
        // output function is a bijection, so it is uniform too). Re-draws after a collision
        // or a refusal take fresh values.
        let mut first = None;
        let a = draw_where(
            &snap.table,
            &snap.eligible,
            || {
                let r = self.rng.next_random();
                first.get_or_insert(r);
                r
            },
            refused,
        )?;
        let mut second = first.map(|r| splitmix64(r ^ GAMMA));
        let b = draw_where(
            &snap.table,
            &snap.eligible,
            || second.take().unwrap_or_else(|| self.rng.next_random()),
            |p| p == a || refused(p),
        );
        match b {
            Some(b) if self.load.lighter(&snap.eligible[b], &snap.eligible[a]) => {
                Some((b, Some(a)))
            }
            b => Some((a, b)),
        }
    }
}

impl<T, L: Cost> Policy<T> for TwoChoices<L> {
    type Table = AliasTable;
    const TABLE_USES_HEALTH: bool = true;

    fn build(&self, view: &View<'_, T>) -> Result<AliasTable, Error> {
        Ok(AliasTable::new(view.eligible))
    }

    fn latency_tracking(&self) -> Option<LatencyTracking> {
        self.load.latency_tracking()
    }

    fn failure_load(&self) -> Option<Duration> {
        self.load.failure_load()
    }

    #[inline]
    fn choose(
        &self,
        snap: &Snapshot<T, AliasTable>,
        _: &Request<'_>,
        accept: impl Fn(usize) -> bool,
    ) -> Option<usize> {
        let (winner, _) = self.candidates(snap, accept)?;
        Some(snap.eligible[winner].index)
    }

    /// The winner, then the loser, then the others in weighted random order.
    fn choose_n(
        &self,
        snap: &Snapshot<T, AliasTable>,
        _: &Request<'_>,
        n: usize,
        accept: impl Fn(usize) -> bool,
        out: &mut Vec<usize>,
    ) {
        let Some((winner, loser)) = self.candidates(snap, &accept) else {
            return;
        };
        let mut chosen: Vec<usize> = std::iter::once(winner).chain(loser).take(n).collect();
        draw_distinct(
            &snap.table,
            &snap.eligible,
            || self.rng.next_random(),
            n,
            |p| !accept(snap.eligible[p].index),
            &mut chosen,
        );
        out.extend(chosen.into_iter().map(|p| snap.eligible[p].index));
    }
}
